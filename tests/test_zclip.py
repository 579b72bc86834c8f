"""ZClip (rnnx.zclip) against a plain transcription of the paper's update, and in a Trainer."""
import math

import numpy as np
import pytest
import rnnx
from rnnx.optim.zclip import ZCLIP_MODES


def reference_zclip(norms, z_threshold=2.5, alpha=0.97, warmup=25, mode="reciprocal",
                     max_norm=None, eps=1e-6):
    """Kumar et al. 2025, written out step by step: the clipped norm of every step.

    Warm-up: record N norms, then mu = their mean, var = their population variance.
    After: z = (g - mu) / (sqrt(var) + eps) from the previous statistics; a spike
    (z > z_threshold) is brought to g* (reciprocal: mu + z_threshold^2 sigma / z); the
    EMAs are then updated with g*, the variance around the new mean.
    """
    out, recorded, mu, var = [], [], None, None
    for g in norms:
        if not math.isfinite(g):
            out.append(g)
            continue
        g_star = g
        if mu is None:
            recorded.append(g)
            if len(recorded) == warmup:
                mu = sum(recorded) / warmup
                var = sum((r - mu) ** 2 for r in recorded) / warmup
        else:
            sigma = var ** 0.5
            z = (g - mu) / (sigma + eps)
            if z > z_threshold:
                if mode == "reciprocal":
                    g_star = mu + (z_threshold / z) * z_threshold * sigma
                elif mode == "threshold":
                    g_star = mu + z_threshold * sigma
                else:
                    g_star = mu
                if g_star <= 0:
                    g_star = g
            mu = alpha * mu + (1 - alpha) * g_star
            var = alpha * var + (1 - alpha) * (g_star - mu) ** 2
        out.append(min(g_star, max_norm) if max_norm is not None else g_star)
    return np.array(out)


def spiky_norms(n=200, seed=0):
    """Log-normal norms around a slow drift, with a tenfold spike every 17 steps."""
    rng = np.random.default_rng(seed)
    g = np.exp(rng.normal(0, 0.2, n)) * np.linspace(1, 3, n)
    g[30::17] *= 10
    return g


def grads_with_norm(norm, dtype, rng):
    """A dict of gradients of odd shapes whose global norm is `norm`."""
    parts = {"W": rng.standard_normal((3, 5)), "b": rng.standard_normal(1),
             "v": rng.standard_normal((1, 1, 2))}
    scale = norm / math.sqrt(sum(float(np.sum(p * p)) for p in parts.values()))
    return {k: (p * scale).astype(dtype) for k, p in parts.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ZCLIP_MODES)
def test_matches_the_papers_update_step_by_step(mode, dtype):
    norms = spiky_norms()
    t = rnnx.zclip(2.5, alpha=0.9, warmup=10, mode=mode)
    rng = np.random.default_rng(1)
    before, after = [], []
    for g in norms:
        grads = grads_with_norm(g, dtype, rng)
        new, report = t(grads)
        assert all(new[k].dtype == dtype and new[k].shape == grads[k].shape for k in grads)
        c = report.coefficient
        for k in grads:        # a rescale by one factor: the direction is kept
            np.testing.assert_allclose(new[k], grads[k] * c, rtol=1e-6, atol=0)
        before.append(report.norm_before)
        after.append(rnnx.global_norm(new))
    ref = reference_zclip(before, 2.5, 0.9, 10, mode)
    np.testing.assert_allclose(after, ref, rtol=1e-6 if dtype == np.float32 else 1e-12)
    clipped = np.array(after) < norms * (1 - 1e-6)
    assert clipped[30::17].all(), "every tenfold spike is clipped"
    assert not clipped[:10].any(), "nothing is clipped during the warm-up"
    if mode != "mean":     # clipping to the mean shrinks the variance: then it clips all
        assert clipped.sum() < 0.2 * len(norms), "ordinary steps pass"


def test_coefficient_path_equals_the_call_path():
    norms = spiky_norms(seed=3)
    a, b = rnnx.zclip(2.0, warmup=5), rnnx.zclip(2.0, warmup=5)
    rng = np.random.default_rng(0)
    for g in norms:
        c = a.coefficient(float(g))
        _, report = b(grads_with_norm(g, np.float64, rng))
        assert c == pytest.approx(report.coefficient, rel=1e-12)


def test_warmup_then_statistics_are_the_mean_and_population_variance():
    t = rnnx.zclip(warmup=4)
    for g in (1.0, 2.0, 3.0):
        assert t.coefficient(g) == 1.0 and t.mean is None and t.std is None
    assert t.coefficient(100.0) == 1.0           # warm-up norms are never clipped
    w = np.array([1.0, 2.0, 3.0, 100.0])
    assert t.mean == pytest.approx(w.mean()) and t.std == pytest.approx(w.std())


def test_the_statistics_take_the_clipped_norm_not_the_raw_one():
    t = rnnx.zclip(2.5, alpha=0.9, warmup=3)
    for g in (1.0, 1.1, 0.9):
        t.coefficient(g)
    mu, sigma = t.mean, t.std
    g = 50.0
    z = (g - mu) / (sigma + 1e-6)
    g_star = mu + 2.5 ** 2 / z * sigma
    assert t.coefficient(g) == pytest.approx(g_star / g)
    new_mu = 0.9 * mu + 0.1 * g_star
    assert t.mean == pytest.approx(new_mu)
    assert t.std ** 2 == pytest.approx(0.9 * sigma ** 2 + 0.1 * (g_star - new_mu) ** 2)
    assert t.mean < 0.9 * mu + 0.1 * g                # not the raw norm


def test_reciprocal_is_continuous_at_the_threshold_and_tames_bigger_spikes_more():
    def target(g):
        t = rnnx.zclip(2.5, warmup=2, eps=1e-12)
        t.coefficient(1.0), t.coefficient(3.0)        # mu = 2, sigma = 1
        return g * t.coefficient(g)
    assert target(2 + 2.5 + 1e-9) == pytest.approx(4.5, rel=1e-9)
    spikes = [target(g) for g in (5.0, 10.0, 100.0, 1e6)]
    assert all(a > b for a, b in zip(spikes, spikes[1:])) and spikes[-1] > 2.0


def test_max_norm_caps_during_and_after_warmup():
    norms = spiky_norms(60)
    t = rnnx.zclip(warmup=5, max_norm=2.0)
    got = np.array([g * t.coefficient(float(g)) for g in norms])
    np.testing.assert_allclose(got, reference_zclip(norms, warmup=5, max_norm=2.0),
                               rtol=1e-12)
    assert got.max() <= 2.0 + 1e-12


def test_non_finite_norms_pass_unchanged_and_are_not_recorded():
    t = rnnx.zclip(warmup=3)
    grads = {"W": np.array([np.inf, 1.0])}
    new, report = t(grads)
    assert new["W"] is grads["W"] and report.norm_before == math.inf
    assert t.coefficient(math.nan) == 1.0
    assert t.state_dict()["warmup_norms"].size == 0


def test_zero_norms_never_clip_to_zero():
    t = rnnx.zclip(warmup=3, mode="mean")
    for _ in range(3):
        t.coefficient(0.0)
    assert t.coefficient(1.0) == 1.0 and t.coefficient(1e3) > 0


@pytest.mark.parametrize("cut", [3, 40])         # in the warm-up, and after it
def test_state_dict_round_trip_continues_identically(cut, tmp_path):
    norms = spiky_norms(80, seed=5)
    whole = rnnx.zclip(warmup=10)
    expected = [whole.coefficient(float(g)) for g in norms]
    first = rnnx.zclip(warmup=10)
    got = [first.coefficient(float(g)) for g in norms[:cut]]
    rnnx.save_checkpoint(tmp_path / "z.npz", {"clip": first.state_dict()})
    second = rnnx.zclip(warmup=10)
    second.load_state_dict(rnnx.load_checkpoint(tmp_path / "z.npz")["clip"])
    got += [second.coefficient(float(g)) for g in norms[cut:]]
    assert got == expected                      # bit for bit


def test_bad_arguments_and_state_name_what_is_wrong():
    for kwargs, name in (({"z_threshold": 0}, "z_threshold"), ({"alpha": 1.0}, "alpha"),
                         ({"alpha": -0.5}, "alpha"), ({"warmup": 0}, "warmup"),
                         ({"mode": "percentile"}, "mode"), ({"max_norm": -1}, "max_norm"),
                         ({"eps": math.nan}, "eps")):
        with pytest.raises(ValueError, match=name):
            rnnx.zclip(**kwargs)
    with pytest.raises(KeyError, match="warmup_norms"):
        rnnx.zclip().load_state_dict({"history": []})
    with pytest.raises(ValueError, match="both"):
        rnnx.zclip().load_state_dict({"warmup_norms": [], "mean": 1.0, "var": None})


def test_composes_in_a_chain():
    t = rnnx.chain(rnnx.zclip(warmup=2), rnnx.clip_by_value(0.5))
    grads = {"W": np.full((2, 2), 2.0)}
    for _ in range(3):
        new, report = t(grads)
    assert np.all(new["W"] == 0.5) and report.norm_after == pytest.approx(1.0)
    t.load_state_dict(t.state_dict())


def test_a_trainer_run_clips_its_spikes_as_the_paper_says():
    task = rnnx.tasks.make("adding", 20)
    model = rnnx.RNN(task.input_size, 16, task.output_size, readout=task.readout,
                     spectral_radius=1.3, seed=0)
    clip = rnnx.zclip(2.0, alpha=0.9, warmup=10)
    trainer = rnnx.Trainer(model, rnnx.SGD(lr=0.3), loss=task.loss, clip=clip,
                           policy="skip", spikes=None, seed=0)
    trainer.fit(task, steps=120, batch_size=8)
    h = trainer.history
    norm, coef = h["grad_norm"], h["clip_coef"]
    finite = np.isfinite(norm)
    ref = reference_zclip(norm[finite], 2.0, 0.9, 10) / norm[finite]
    np.testing.assert_allclose(coef[finite], ref, rtol=1e-9)
    assert (coef[finite] < 1).any(), "the run had spikes to clip"
    assert all(np.isfinite(p).all() for p in model.params.values())
