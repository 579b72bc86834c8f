"""The early-warning forecaster: growth rates, overflow horizons, trend forecasts on
constructed norm sequences, and the warning on a real explosion."""
import math

import numpy as np
import pytest

import rnnx
from rnnx.diagnostics.forecast import (TrendForecaster, growth_rate, kendall_score, line_fit,
                                       log_max, overflow_horizon, theil_sen)
from rnnx.training.warnings import EarlyWarning, LowerLR


def test_growth_rate_of_a_geometric_backward_signal():
    T, rate = 30, 0.37
    d = 2.0 * np.exp(rate * (T - 1 - np.arange(T)))    # grows back in time
    assert growth_rate(d) == pytest.approx(rate, rel=1e-12)
    d[:10] = np.nan                                    # BPTT stopped early
    assert growth_rate(d) == pytest.approx(rate, rel=1e-12)
    assert math.isnan(growth_rate([np.nan, 1.0]))


def test_overflow_horizon_transcribes_its_definition():
    # n0 * exp(rate * k) = finfo.max  <=>  k = (ln max - ln n0) / rate
    assert log_max("float32") == pytest.approx(math.log(3.4028234663852886e38))
    assert overflow_horizon(0.5, np.float32, 1.0) == pytest.approx(88.7228 / 0.5, rel=1e-5)
    assert overflow_horizon(0.5, np.float64, math.e) == pytest.approx(
        (709.782712893384 - 1) / 0.5, rel=1e-9)
    assert overflow_horizon(-0.1, np.float32) == math.inf
    assert overflow_horizon(math.nan, np.float32) == math.inf


def test_line_fit_and_theil_sen_against_numpy():
    rng = np.random.default_rng(0)
    x = np.arange(12.0)
    y = 0.3 * x + 1 + rng.normal(0, 0.1, 12)
    assert line_fit(x, y) == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-10)
    y[5] = 100.0                                      # one outlier
    a, b = theil_sen(x, y)
    assert a == pytest.approx(0.3, abs=0.05)


def _forecaster_on(norms, thresholds, **kw):
    f = TrendForecaster(**kw)
    out = []
    for s, n in enumerate(norms, 1):
        f.observe(s, n)
        out.append(f.forecast(thresholds))
    return out


def test_geometric_growth_predicts_the_crossing_step():
    """Norm 1 for 30 steps, then x1.5 per step: once the forecaster's window lies on the
    climb, the predicted crossing of 1e6 is within 1 step of the true one (constructed:
    exact geometric); before that (the window straddles the plateau) it is late, never
    early."""
    norms = [1.0] * 30 + [1.5 ** k for k in range(1, 40)]
    cross = next(s for s, n in enumerate(norms, 1) if n >= 1e6)
    out = _forecaster_on(norms, {"t": 1e6})
    predicted = [(s, f.steps["t"]) for s, f in enumerate(out, 1) if math.isfinite(f.steps["t"])]
    assert predicted and predicted[0][0] < cross - 5      # a forecast well ahead
    window = TrendForecaster().window
    for s, k in predicted:
        if s < cross:
            assert s + k >= cross - 1.0
            if s >= 30 + window - 1:
                assert abs((s + k) - cross) <= 1.0
    assert out[cross - 1].steps["t"] == 0.0
    assert out[-1].trend == pytest.approx(math.log(1.5))


def test_noisy_growth_predicted_within_tolerance():
    """x1.5 per step with multiplicative log-normal noise (sigma 0.3 in ln): every
    prediction made once the window lies on the climb lands within max(4 steps, 35% of
    the steps still to go) of the true crossing, and their median error is at most 2
    steps."""
    rng = np.random.default_rng(1)
    base = [1.0] * 30 + [1.5 ** k for k in range(1, 40)]
    norms = [n * math.exp(rng.normal(0, 0.3)) for n in base]
    cross = next(s for s, n in enumerate(norms, 1) if n >= 1e6)
    out = _forecaster_on(norms, {"t": 1e6})
    predicted = [(s, f.steps["t"]) for s, f in enumerate(out, 1)
                 if math.isfinite(f.steps["t"]) and s < cross]
    assert predicted and cross - predicted[0][0] >= 5
    climbing = [(s, k) for s, k in predicted if s >= 30 + TrendForecaster().window - 1]
    assert all(abs(s + k - cross) <= max(4, 0.35 * (cross - s)) for s, k in climbing)
    assert np.median([abs(s + k - cross) for s, k in climbing]) <= 2


@pytest.mark.parametrize("norms", [
    [1.0] * 200,                                            # a plateau
    list(np.exp(np.random.default_rng(2).normal(0, 0.5, 200))),   # noise, no trend
    [1.0] * 100 + [50.0] + [1.0] * 99,                      # a single spike
    [1.0] * 50 + [5.0] * 150,              # a step up by less than rise, then a plateau
])
def test_no_crossing_predicted_without_sustained_growth(norms):
    out = _forecaster_on(norms, {"t": 1e6})
    assert all(f.steps["t"] > 30 for f in out)


def test_state_dict_round_trip():
    f = TrendForecaster()
    for s in range(1, 40):
        f.observe(s, 1.3 ** s, 0.1)
    g = TrendForecaster()
    g.load_state_dict(f.state_dict())
    assert g.forecast({"t": 1e9}) == f.forecast({"t": 1e9})


def _exploding_trainer(callbacks=(), warnings=None, policy="skip"):
    """adding, H=32, W_hh radius 2, SGD warm-up to lr 0.3: gradients explode after ~20
    steps (the settings of benchmarks/early_warning.py)."""
    task = rnnx.tasks.make("adding", 40)
    m = rnnx.RNN(task.input_size, 32, task.output_size, readout=task.readout,
                 spectral_radius=2.0, seed=0)
    tr = rnnx.Trainer(m, rnnx.SGD(lambda k: 0.3 * min(1.0, (k + 1) / 40)), spikes=None,
                      progress=False, seed=1, policy=policy, callbacks=list(callbacks),
                      warnings=warnings or EarlyWarning(threshold=1e6))
    return tr, task


class Events(rnnx.Callback):
    def __init__(self):
        self.events = []

    def on_event(self, trainer, event):
        self.events.append(event)


def test_warns_before_a_real_explosion():
    events = Events()
    tr, task = _exploding_trainer([events])
    tr.fit(task, steps=40, batch_size=16)
    h = tr.history
    bad = np.flatnonzero(~(h["grad_norm"] <= 1e6) | h["nonfinite"])
    assert bad.size, "the run was meant to explode"
    warned = np.flatnonzero(h["warning"])
    assert warned.size and warned[0] < bad[0]
    w = next(e for e in events.events if e["event"] == "warning")
    assert w["step"] == warned[0] + 1
    assert set(w["predicted_steps"]) == {"threshold", "range"}    # no clip, no clip key
    assert w["predicted_steps"]["threshold"] <= 30 and w["trend"] > 0
    assert w["parameter"] in tr.model.params and w["time_step"] >= 0 and w["batch_elements"]
    assert "predicted to cross the threshold" in w["message"] and "\n" not in w["message"]
    assert math.isfinite(h["warn_steps"][warned[0]])
    # every row up to the explosion has the growth rate and the overflow horizon of its step
    good = np.arange(len(h)) < bad[0]
    assert np.all(np.isfinite(h["growth"][good]))
    np.testing.assert_allclose(h["overflow_horizon"][good & (h["growth"] > 0)],
                               [overflow_horizon(g, np.float32, n) for g, n in zip(
                                   h["growth"][good & (h["growth"] > 0)],
                                   [d[np.isfinite(d)][-1] for d in
                                    h.delta_norms[good & (h["growth"] > 0)]])])


def test_lower_lr_policy_acts_on_the_warning():
    tr, task = _exploding_trainer(warnings=EarlyWarning(threshold=1e6, policy=LowerLR(0.1)))
    tr.fit(task, steps=40, batch_size=16)
    assert tr.history["warning"].any()
    assert tr.optimizer.lr_scale == pytest.approx(0.1 ** tr.history["warning"].sum())


def test_warning_arguments_checked():
    with pytest.raises(ValueError, match="policy"):
        EarlyWarning(policy="panic")
    with pytest.raises(ValueError, match="threshold"):
        EarlyWarning(threshold=-1)
    m = rnnx.RNN(1, 2, 1)
    with pytest.raises((TypeError, ValueError), match="warnings"):
        rnnx.Trainer(m, rnnx.SGD(0.1), warnings="sometimes")
    assert "warning" in rnnx.training.EVENTS


def test_diagnose_prints_the_overflow_horizons(capsys):
    import json

    from rnnx.cli.main import main
    assert main(["diagnose", "--hidden", "16", "--spectral-radius", "4", "--length", "40",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lam = out["lyapunov_exponents"][0]
    assert lam > 0
    assert out["overflow_horizon"]["float32"] == pytest.approx(log_max("float32") / lam)
    assert out["overflow_horizon"]["float64"] == pytest.approx(log_max("float64") / lam)
    assert main(["diagnose", "--hidden", "16", "--spectral-radius", "4", "--length",
                 "40"]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("overflow")]
    assert len(line) == 1 and f"float32 after {log_max('float32') / lam:.0f}" in line[0]


def test_train_prints_the_forensics_line(capsys):
    from rnnx.cli.main import main
    assert main(["train", "--steps", "5", "--hidden", "8", "--length", "10"]) == 0
    out = capsys.readouterr().out
    assert "forensics: 0 early warning(s); float64 second opinion on spikes/failures" in out


def test_tighten_clip_policy_and_the_clip_threshold():
    from rnnx.training.warnings import TightenClip
    events = Events()
    tr, task = _exploding_trainer([events], EarlyWarning(threshold=1e6,
                                                         policy=TightenClip(0.5)))
    tr.clip = rnnx.clip_by_global_norm(1e9)
    tr.fit(task, steps=40, batch_size=16)
    n = int(tr.history["warning"].sum())
    assert n >= 1 and tr.clip.max_norm == pytest.approx(1e9 * 0.5 ** n)
    w = [e for e in events.events if e["event"] == "warning"]
    assert "clip" in w[0]["predicted_steps"] and w[0]["clip_max_norm"] == 5e8


def test_kendall_score_transcribes_its_definition():
    rng = np.random.default_rng(3)
    y = rng.normal(size=9)
    pairs = [(i, j) for i in range(9) for j in range(i + 1, 9)]
    assert kendall_score(y) == pytest.approx(
        sum(np.sign(y[j] - y[i]) for i, j in pairs) / len(pairs))
    assert kendall_score(np.arange(5.0)) == 1.0 and kendall_score(-np.arange(5.0)) == -1.0
    assert math.isnan(kendall_score([1.0]))


def test_rate_channel_predicts_the_exp_lambda_T_crossing():
    """Flat norms (the norm's channel is silent) while lambda_1 rises linearly from
    below 0: the crossing is predicted when lambda_1 reaches 0 and then covers
    ln(threshold / norm) / T (the definition, transcribed)."""
    f = TrendForecaster()
    T, r = 200, 0.002
    for s in range(1, 61):
        f.observe(s, 2.0)
        if s % 10 == 0:
            f.observe_rate(s, -0.05 + r * s, T)
    out = f.forecast({"t": 1e6})
    lam = -0.05 + r * 60
    assert out.rate == pytest.approx(lam) and out.rate_trend == pytest.approx(r)
    assert math.isnan(out.trend)
    assert out.steps["t"] == pytest.approx((math.log(1e6 / 2.0) / T - min(lam, 0)) / r)
    below = TrendForecaster()
    for s in range(1, 61):
        below.observe(s, 2.0)
        if s % 10 == 0:
            below.observe_rate(s, -0.2 + r * s, T)
    assert below.forecast({"t": 1e6}).steps["t"] == pytest.approx(
        (math.log(1e6 / 2.0) / T + 0.2 - r * 60) / r)


@pytest.mark.parametrize("rates", [
    [0.01, 0.03, 0.02, 0.04],                  # not rising at every sample
    [0.05, 0.04, 0.03, 0.02],                  # falling
    [0.01, 0.02, 0.03],                        # too few samples
    [0.01, 0.02, math.inf, 0.03, -math.inf],  # non-finite samples left out: too few
])
def test_rate_channel_silent_without_a_steady_rise(rates):
    f = TrendForecaster()
    for i, lam in enumerate(rates, 1):
        f.observe(10 * i, 1.0)
        f.observe_rate(10 * i, lam, 100)
    out = f.forecast({"t": 1e6})
    assert out.steps["t"] == math.inf and math.isnan(out.rate_trend)


class _Drift(rnnx.Callback):
    """W_hh times 1.01 after every step: the recurrence drifts into the exploding regime
    while SGD (lr 1e-6) barely moves the weights."""

    def on_step_end(self, trainer, record):
        trainer.model.params["W_hh"] *= np.float32(1.01)


def _drifting_run(rate_every):
    task = rnnx.tasks.make("adding", 200)
    m = rnnx.RNN(task.input_size, 32, task.output_size, readout=task.readout,
                 spectral_radius=0.9, seed=0)
    tr = rnnx.Trainer(m, rnnx.SGD(1e-6), spikes=None, progress=False, seed=1,
                      policy="skip", diag_every=None, callbacks=[_Drift()],
                      warnings=EarlyWarning(threshold=1e6, rate_every=rate_every,
                                            blame=False))
    tr.fit(task, steps=70, batch_size=16)
    h = tr.history
    bad = np.flatnonzero(~(h["grad_norm"] <= 1e6) | h["nonfinite"])
    warned = np.flatnonzero(h["warning"])
    return bad[0], warned[0], tr


def test_lambda_1_warns_earlier_than_the_norm_on_a_drift():
    """On long sequences whose W_hh drifts up, the gradient norm stays flat while
    lambda_1 climbs towards 0; sampling lambda_1 warns well before the norm rises."""
    bad, with_rate, tr = _drifting_run(10)
    bad_off, without, _ = _drifting_run(None)
    assert bad == bad_off and with_rate < without < bad
    assert bad - with_rate >= 20
    f = tr.warnings.forecaster
    assert f.length >= 200 and len(f.state_dict()["rates"]) == f.rate_samples   # T varies


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("T,B,D,H", [(1, 1, 1, 1), (5, 3, 2, 7)])
def test_lambda_1_samples_on_odd_shapes(dtype, T, B, D, H):
    """Every rate_every steps the forecaster gets lambda_1 along the step's batch: the
    mean over its first RATE_ROWS sequences of local_lyapunov_exponents."""
    from rnnx.diagnostics.lyapunov import local_lyapunov_exponents
    from rnnx.training.warnings import RATE_ROWS
    rng = np.random.default_rng(4)
    m = rnnx.RNN(D, H, 1, spectral_radius=1.2, seed=0, dtype=dtype)
    batches = [(rng.standard_normal((T, B, D)).astype(dtype),
                rng.standard_normal((B, 1)).astype(dtype)) for _ in range(4)]
    tr = rnnx.Trainer(m, rnnx.SGD(0.01), progress=False, spikes=None,
                      warnings=EarlyWarning(rate_every=2, blame=False))
    tr.fit(batches)
    p, x = m.params, batches[-1][0]
    want = local_lyapunov_exponents(x[:, :RATE_ROWS], p["W_xh"], p["W_hh"], p["b_h"],
                                    window=T, k=1).mean()
    rates = tr.warnings.forecaster.state_dict()["rates"]
    assert len(rates) == 2 and rates[-1] == pytest.approx(want, rel=1e-12)
    assert tr.warnings.forecaster.length == T


def test_checkpoint_keeps_the_lambda_1_samples(tmp_path):
    bad, _, tr = _drifting_run(10)
    path = tmp_path / "c.npz"
    tr.save_checkpoint(path)
    _, _, other = _drifting_run(None)
    other.load_checkpoint(path)
    a, b = tr.warnings.forecaster.state_dict(), other.warnings.forecaster.state_dict()
    assert a.keys() == b.keys() and a["length"] == b["length"]
    for k in ("steps", "logs", "rate_steps", "rates"):
        np.testing.assert_array_equal(a[k], b[k])


def test_forecaster_arguments_checked():
    for kw, name in (({"window": 2}, "window"), ({"agree": 1.5}, "agree"),
                     ({"agree": "high"}, "agree"), ({"rise": 0}, "rise"),
                     ({"baseline": 4}, "baseline"), ({"rate_samples": 1}, "rate_samples")):
        with pytest.raises(ValueError, match=name):
            TrendForecaster(**kw)
    with pytest.raises(ValueError, match="rate_every"):
        EarlyWarning(rate_every=0)


def _climb(turns_back):
    """ln||grad|| flat at 0 for 60 steps, then +0.5 per step: for 5 steps before falling
    back to 0 (a stable run's transient climb), or on until it crosses ln 1e6."""
    logs = [0.0] * 60 + [0.5 * k for k in range(1, 6 if turns_back else 40)]
    return [math.exp(v) for v in logs + ([0.0] * 40 if turns_back else [])]


def test_default_lead_ignores_a_climb_that_turns_back_but_not_an_explosion():
    """At its peak the transient is 2.5 nats up, 11.3 nats (about 23 steps at its slope)
    below ln 1e6: a lead of 30 warns, EarlyWarning's default does not. The same climb
    carried on is warned by the default lead at least 5 steps before it crosses."""
    lead = EarlyWarning().lead
    transient = [f.steps["t"] for f in _forecaster_on(_climb(True), {"t": 1e6})]
    assert min(transient) == pytest.approx(11.3 / 0.5, abs=1.0)
    assert lead < min(transient) <= 30
    norms = _climb(False)
    cross = next(s for s, n in enumerate(norms, 1) if n >= 1e6)
    out = _forecaster_on(norms, {"t": 1e6})
    first = next(s for s, f in enumerate(out, 1) if 0 < f.steps["t"] <= lead)
    assert cross - first >= 5
