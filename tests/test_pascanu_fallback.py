"""Pascanu et al.'s code's replacement of an untrusted gradient, against its definition:
g(W_hh) = 0.02 W_hh and 0 elsewhere when the norm is NaN, inf, negative or above 1e10; as
the clipping pascanu_rescale (the code's clipstyle "rescale") and the failure policy
PascanuFallback, in real Trainer runs, rnnx train and checkpoints."""
import math

import numpy as np
import pytest

from rnnx import RNN
from rnnx.optim.clipping import clip_by_global_norm, global_norm
from rnnx.optim.optimizers import SGD
from rnnx.optim.pascanu_fallback import pascanu_fallback, pascanu_rescale, untrustworthy
from rnnx.tasks import make
from rnnx.training import EVENTS, Callback, PascanuFallback, Trainer

KEYS = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")


def model_params(dtype, D=3, H=4, O=2, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"W_xh": (H, D), "W_hh": (H, H), "b_h": (H,), "W_hy": (O, H), "b_y": (O,)}
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def reference(grads, params, norm):
    """RNN.py's switch, transcribed: new_cond = isnan | isinf | norm < 0 | norm > 1e10."""
    new_cond = math.isnan(norm) or math.isinf(norm) or norm < 0 or norm > 1e10
    if not new_cond:
        return grads
    return {k: (0.02 * params[k] if k == "W_hh" else np.zeros_like(g))
            for k, g in grads.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm", [0.0, 1.0, 1e10, np.nextafter(1e10, np.inf), 1e30,
                                  math.inf, -math.inf, math.nan, -1.0])
def test_matches_the_codes_switch(dtype, norm):
    params = model_params(dtype)
    grads = model_params(dtype, seed=1)
    before = {k: v.copy() for k, v in grads.items()}
    got = pascanu_fallback(grads, params, norm)
    want = reference(grads, params, norm)
    assert set(got) == set(KEYS)
    for k in KEYS:
        assert got[k].dtype == dtype and got[k].shape == params[k].shape
        np.testing.assert_allclose(got[k], want[k], rtol=1e-7)
        np.testing.assert_array_equal(grads[k], before[k])      # input untouched
    assert (got is grads) == (not untrustworthy(norm))


def test_sgd_step_with_the_replacement_shrinks_W_hh_only():
    params = model_params(np.float64)
    grads = {k: np.full_like(v, np.inf) for k, v in params.items()}
    lr = 0.01
    g = pascanu_fallback(grads, params, math.inf)
    new = {k: params[k] - lr * g[k] for k in KEYS}
    np.testing.assert_allclose(new["W_hh"], (1 - 0.02 * lr) * params["W_hh"], rtol=1e-15)
    for k in ("W_xh", "b_h", "W_hy", "b_y"):
        np.testing.assert_array_equal(new[k], params[k])


def test_no_gradient_at_all_after_an_aborted_backward():
    params = model_params(np.float32)
    g = pascanu_fallback(None, params, math.nan)
    np.testing.assert_allclose(g["W_hh"], 0.02 * params["W_hh"], rtol=1e-7)
    assert g["W_hh"].dtype == np.float32
    assert not any(g[k].any() for k in ("W_xh", "b_h", "W_hy", "b_y"))
    with pytest.raises(ValueError, match="grads is None"):
        pascanu_fallback(None, params, 1.0)


def test_cutoff_and_shrink_can_be_changed():
    params = model_params(np.float64)
    grads = model_params(np.float64, seed=1)
    assert pascanu_fallback(grads, params, 5.0, cutoff=10.0) is grads
    g = pascanu_fallback(grads, params, 11.0, cutoff=10.0, shrink=0.5)
    np.testing.assert_allclose(g["W_hh"], 0.5 * params["W_hh"])


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda p, g: pascanu_fallback(g, p, "big"), TypeError, "norm"),
    (lambda p, g: pascanu_fallback(g, p, True), TypeError, "norm"),
    (lambda p, g: pascanu_fallback(g, p, 1.0, cutoff=0), ValueError, "cutoff"),
    (lambda p, g: pascanu_fallback(g, p, math.inf, shrink=-1), ValueError, "shrink"),
    (lambda p, g: pascanu_fallback(g, {k: p[k] for k in p if k != "W_hh"}, math.inf),
     KeyError, "W_hh"),
    (lambda p, g: pascanu_fallback({"W_hh": g["W_hh"]}, p, math.inf), KeyError, "keys"),
    (lambda p, g: pascanu_fallback([1.0], p, math.inf), TypeError, "grads"),
    (lambda p, g: pascanu_fallback(g, [1.0], math.inf), TypeError, "params"),
])
def test_bad_arguments(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(model_params(np.float64), model_params(np.float64, seed=1))


# --- the code's clipstyle "rescale" as a Transform, and the policy, in a real Trainer ------

def reference_rescale(grads, params, norm, c=1.0):
    """RNN.py's clipstyle 'rescale', transcribed: rescale to c if norm > c, then the
    switch on the raw norm replaces the result."""
    if not (math.isnan(norm) or math.isinf(norm)) and norm > c:
        grads = {k: c * g / norm for k, g in grads.items()}
    return reference(grads, params, norm)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e-3, 0.5, 3.0, 1e9, 1e11])
def test_pascanu_rescale_is_the_codes_clipstyle(dtype, scale):
    params = model_params(dtype)
    raw = model_params(dtype, seed=1)
    unit = global_norm(raw)
    grads = {k: (v * (scale / unit)).astype(dtype) for k, v in raw.items()}
    norm = global_norm(grads)
    t = pascanu_rescale(1.0)
    got, report = t(grads, params)
    want = reference_rescale(grads, params, norm)
    for k in KEYS:
        assert got[k].dtype == dtype
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6 if dtype == np.float32
                                   else 1e-12)
    assert report.norm_before == norm
    assert math.isclose(report.norm_after, global_norm(want), rel_tol=1e-6)
    # what the Trainer folds into the update: the clip's factor, none for the replacement
    c = t.coefficient(norm)
    assert (c is None) == (norm > 1e10)
    if c is not None:
        assert c == (1.0 if norm <= 1.0 else 1.0 / norm)


def test_pascanu_rescale_leaves_a_nonfinite_gradient_to_the_policy():
    params = model_params(np.float64)
    grads = {k: np.full_like(v, np.nan) for k, v in params.items()}
    got, report = pascanu_rescale()(grads, params)
    assert all(np.isnan(got[k]).all() for k in KEYS) and math.isnan(report.norm_before)
    with pytest.raises(ValueError, match="params"):
        pascanu_rescale(1.0, cutoff=1e-3)(model_params(np.float64))
    for bad in ({"max_norm": 0}, {"cutoff": -1.0}, {"shrink": math.nan}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            pascanu_rescale(**bad)


class Events(Callback):
    def __init__(self):
        self.events = []

    def on_event(self, trainer, event):
        self.events.append(event)


def trainer_on_temporal_order(dtype, *, lr=0.5, steps_of=None, **kw):
    task = make("temporal_order", 12, dtype=dtype)
    model = RNN(task.input_size, 6, task.output_size, dtype=dtype, init="smart_tanh",
                seed=1)
    events = Events()
    trainer = Trainer(model, SGD(lr=lr), loss=task.loss, progress=False, seed=2,
                      callbacks=[events], **kw)
    return task, model, trainer, events


def shrunk(params, lr, dtype):
    """SGD's step with the replacement, in numpy: W_hh - lr * (0.02 W_hh), the rest kept."""
    out = {k: v.copy() for k, v in params.items()}
    W = params["W_hh"]
    out["W_hh"] = W - dtype(lr) * (dtype(0.02) * W)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("how", ["overflow", "forward"])
def test_policy_pascanu_steps_with_the_replacement_in_a_trainer(dtype, how):
    """A failed step -- BPTT's backward signal past max_norm, or a forward pass whose
    pre-activations overflow (b_h and W_hh near the dtype's largest value) -- shrinks W_hh
    by (1 - 0.02 lr), moves nothing else, and training goes on."""
    kw = {"max_norm": 1e-12} if how == "overflow" else {}
    task, model, trainer, events = trainer_on_temporal_order(dtype, policy="pascanu", **kw)
    if how == "forward":
        model.params["b_h"][:] = np.finfo(dtype).max
        model.params["W_hh"][:] = np.finfo(dtype).max / 4
    x, target = task.sample(4, np.random.default_rng(0))
    for _ in range(3):
        before = {k: v.copy() for k, v in model.params.items()}
        record = trainer.train_step(x, target)
        want = shrunk(before, 0.5, dtype)
        for k in KEYS:
            np.testing.assert_allclose(model.params[k], want[k], rtol=2e-7, atol=0)
        assert record["skipped"] and record["nonfinite"]
    assert trainer.policy == "pascanu" and isinstance(trainer.on_failure, PascanuFallback)
    fallbacks = [e for e in events.events if e["event"] == "fallback"]
    assert len(fallbacks) == 3 and "fallback" in EVENTS
    assert all(np.isfinite(v).all() for v in model.params.values())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_pascanu_replaces_a_gradient_above_the_cutoff_in_a_trainer(dtype):
    """With the cutoff below every gradient, each step is the replacement's; with the
    cutoff out of reach, the run is clip_by_global_norm's bit for bit."""
    task, model, trainer, _ = trainer_on_temporal_order(
        dtype, clip=pascanu_rescale(1.0, cutoff=1e-9))
    before = {k: v.copy() for k, v in model.params.items()}
    x, target = task.sample(4, np.random.default_rng(0))
    record = trainer.train_step(x, target)
    assert record["grad_norm"] > 1e-9 and not record["skipped"]
    want = shrunk(before, 0.5, dtype)
    for k in KEYS:
        np.testing.assert_allclose(model.params[k], want[k], rtol=2e-7, atol=0)
    runs = []
    for clip in (pascanu_rescale(0.05), clip_by_global_norm(0.05)):
        task, model, trainer, _ = trainer_on_temporal_order(dtype, clip=clip)
        h = trainer.fit(task, steps=20, batch_size=4)
        assert (h["clip_coef"] < 1).any()
        runs.append({k: v.copy() for k, v in model.params.items()})
    for k in KEYS:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_pascanu_policy_is_for_failures_only_and_survives_a_checkpoint(tmp_path):
    task, model, trainer, _ = trainer_on_temporal_order(np.float32, policy="pascanu",
                                                        max_norm=1e-12)
    with pytest.raises(ValueError, match="spikes"):
        Trainer(model, SGD(lr=0.1), spikes="pascanu")
    with pytest.raises(ValueError, match="failed steps only"):
        Trainer(model, SGD(lr=0.1), spikes=PascanuFallback())
    with pytest.raises(ValueError, match="shrink"):
        PascanuFallback(shrink=0)
    trainer.fit(task, steps=3, batch_size=4)
    trainer.save_checkpoint(tmp_path / "run.npz")
    _, model2, again, _ = trainer_on_temporal_order(np.float32, policy="pascanu",
                                                    max_norm=1e-12)
    again.load_checkpoint(tmp_path / "run.npz")
    assert again.step == 3
    for k in KEYS:
        np.testing.assert_array_equal(model2.params[k], model.params[k])


def test_rnnx_train_accepts_the_named_clip_and_policy(tmp_path, capsys):
    import json
    from rnnx.cli.main import main
    assert main(["train", "--task", "temporal_order", "--length", "10", "--hidden", "5",
                 "--init", "smart_tanh", "--steps", "5", "--clip", "pascanu",
                 "--policy", "pascanu", "--max-norm", "1e-12", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["nonfinite_steps"] == 5 and summary["skipped_steps"] == 5
    assert main(["train", "--task", "temporal_order", "--length", "10", "--hidden", "5",
                 "--steps", "3", "--policy", "pascanu", "--max-norm", "1e-12",
                 "--quiet"]) == 0
    assert main(["train", "--task", "temporal_order", "--length", "10", "--hidden", "5",
                 "--steps", "3", "--policy", "pascanu", "--max-norm", "1e-12"]) == 0
    assert "3 (replaced by 0.02 W_hh)" in capsys.readouterr().out
