"""The built-in demo, its summary table and the story of a run (rnnx.cli.report,
rnnx.cli.story)."""
import csv
import io
import json
import math

import numpy as np
import pytest
from rnnx.cli.demo import DEFAULTS, baseline, run_demo
from rnnx.cli.main import main
from rnnx.cli.report import format_table
from rnnx.cli.story import BAND, CALM_STEPS, growth_rate, narrate, read_story
from rnnx.tasks import make
from rnnx.training.history import History, load_history


# --- the story of a run, on logs built by hand ----------------------------------------------

def _history(norms, T=8, rates=None, nonfinite=(), clip=None):
    """A History with the given gradient norms; the backward signal of step i is
    exp(rates[i] * (T - 1 - t)) (growing back in time when the rate is positive)."""
    h = History()
    for i, g in enumerate(norms):
        bad = i + 1 in nonfinite
        rate = 0.0 if rates is None else rates[i]
        t = np.arange(T)
        d = np.exp(rate * (T - 1 - t)) if not bad else np.where(t < 3, np.nan, np.inf)
        coef = 1.0 if clip is None or bad else min(1.0, clip / g)
        h.append({"step": i + 1, "loss": math.nan if bad else 1.0,
                  "grad_norm": math.nan if bad else g,
                  "clipped_norm": math.nan if bad else g * coef,
                  "clip_coef": math.nan if bad else coef, "overflow_t": 3 if bad else -1,
                  "nonfinite": bad, "spike": False, "skipped": bad, "rolled_back": False,
                  "grad_norm_W_hh": math.nan if bad else 0.9 * g},
                 d)
    return h


def test_growth_rate_of_an_exact_exponential():
    t = np.arange(30)
    rate, r2, t0, t1 = growth_rate(5.0 * 1.2 ** (29 - t))
    assert rate == pytest.approx(math.log(1.2)) and r2 == pytest.approx(1.0)
    assert (t0, t1) == (0, 29)
    # non-finite or zero entries are left out of the fit; too few points give NaN
    d = 1.1 ** -t.astype(float)
    d[:5], d[7] = np.nan, 0.0
    rate, r2, t0, t1 = growth_rate(d)
    assert rate == pytest.approx(math.log(1.1)) and t0 == 5
    assert math.isnan(growth_rate([1.0, np.nan, 2.0])[0])


def test_growth_rate_r2_against_numpy():
    rng = np.random.default_rng(0)
    y = 0.3 * np.arange(20) + rng.normal(0, 1.0, 20)
    rate, r2, _, _ = growth_rate(np.exp(y))
    assert rate == pytest.approx(-np.polyfit(np.arange(20), y, 1)[0])
    assert r2 == pytest.approx(np.corrcoef(np.arange(20), y)[0, 1] ** 2)


def test_story_calm_jump_spike_overflow():
    norms = [1.0, 2.0, 0.5] * 10 + [1.5, 30.0, 3e3, 2e5, 1.0]    # 35 steps
    rates = [-0.2] * 30 + [0.1, 0.5, 0.8, 1.0, 0.0]
    h = _history(norms, rates=rates, nonfinite=(36, 37))
    h.append(dict(h.records()[-1], step=36, grad_norm=math.nan, nonfinite=True,
                  overflow_t=4, skipped=True), np.full(8, np.nan))
    s = read_story(h)
    assert s.calm_steps == CALM_STEPS and s.calm_held and s.calm_median == pytest.approx(1.0)
    assert s.left_band == 32 and s.jump_step == 34 and s.jump_factor == pytest.approx(2e5)
    assert s.spike_step == 34 and s.growth == pytest.approx(1.0) and s.growth_r2 > 0.999
    assert s.first_nonfinite == 36 and s.overflow_t == 4 and s.nonfinite_steps == 1
    assert s.W_hh_share == pytest.approx(0.9)
    assert s.signal_before == pytest.approx(math.exp(-0.2 * 7))      # median at t = 0
    assert s.signal_after == pytest.approx(1.0)                      # the NaN row left out
    text = narrate(s, name="run", sigma_max=3.2, lyapunov=0.41, calm_lyapunov=(10, -0.2),
                   policy="skip")
    for piece in ("median 1", "step 32", "2e+05x", "5.3 decades", "2.718", "step 34",
                  "sigma_max(W_hh) was 3.2", "+0.410", "-0.200", "step 36",
                  "time step t = 4", "skipped 1 step (weights unchanged)", "median 0.247",
                  "after it 1."):
        assert piece in text, piece


@pytest.mark.parametrize("policy, words", [
    ("skip", "The policy skipped 3 steps (weights unchanged)."),
    ("pascanu", "The policy skipped 1 step (weights unchanged) and replaced the update of 2 "
                "steps (non-finite) by Pascanu et al.'s fallback step"),
    (None, "The policy skipped 1 step (weights unchanged) and did not apply the update of 2 "
           "steps (non-finite)."),
])
def test_story_says_what_the_policy_did_instead_of_an_update(policy, words):
    # steps 31 and 33 non-finite (the failure policy's), step 32 a finite spike skipped
    h = _history([1.0] * 30 + [math.nan, 50.0, math.nan], nonfinite=(31, 33))
    records = h.records()
    records[31]["skipped"] = True
    h = History()
    for r in records:
        h.append(r, np.ones(8))
    s = read_story(h)
    assert (s.skipped_steps, s.skipped_nonfinite, s.rolled_back_steps) == (3, 2, 0)
    assert words in narrate(s, policy=policy)


def test_story_of_a_calm_clipped_run():
    s = read_story(_history([1.0, 3.0] * 15, clip=2.0))
    assert s.left_band is None and s.first_nonfinite is None and s.clipped_steps == 15
    assert s.largest_clipped == 3.0 and s.clipped_to == pytest.approx(2.0)
    text = narrate(s, name="c", accuracy=0.995, eval_sequences=10_000, solved=True)
    assert "never left" in text and "No step was non-finite" in text
    assert "15 of 30 updates" in text and "99.50%" in text and "solved" in text


def test_story_edge_cases():
    s = read_story(_history([math.nan] * 3, nonfinite=(1, 2, 3)))
    assert s.calm_steps == 0 and "no story" in narrate(s)
    s = read_story(_history([1.0, 1.0, 50.0]))            # shorter than the calm stretch
    assert s.calm_steps == 3 and not s.calm_held and s.left_band is None
    assert BAND == 10


def test_baseline_is_the_constant_prediction():
    task = make("temporal_order", 20)
    loss, acc = baseline(task, 0, n=4000)
    assert loss == pytest.approx(math.log(4), abs=0.01) and acc == pytest.approx(0.25, abs=0.02)
    loss, acc = baseline(make("adding", 20), 0, n=4000)
    x, target = make("adding", 20).sample(4000, 0)
    assert loss == pytest.approx(np.nanmean((target - np.nanmean(target)) ** 2), rel=1e-5)


# --- the demo ------------------------------------------------------------------------------

_RUNS = {}


def _demo(tmp_path_factory, seed):
    """`rnnx demo` with its defaults (and seed), through main(argv); its summary.json's
    runs, computed once per seed for the tests of this module."""
    if seed not in _RUNS:
        out = tmp_path_factory.mktemp(f"demo{seed}")
        assert main(["demo", "--seed", str(seed), "--out", str(out), "--quiet",
                     "--no-plots"]) == 0
        _RUNS[seed] = json.loads((out / "summary.json").read_text())["runs"]
    return _RUNS[seed]


def _contrast(u, c, rollback):
    """What holds for every seed tried: both runs start calm with lambda_1 < 0; the
    unclipped run leaves its band and never learns; the clipped run is never non-finite
    and solves the task by the published criterion on 10,000 fresh sequences."""
    su = u["story"]
    assert su["calm_held"] and su["left_band"] is not None and u["calm_lambda_1"] < 0
    assert su["spike_factor"] > 10 and su["W_hh_share"] > 0.5
    assert not u["solved"] and u["accuracy"] < 0.5
    assert not c["exploded"] and c["nonfinite_steps"] == 0 and c["clipped_steps"] > 0
    assert c["solved"] and c["accuracy"] > 0.99 and c["eval_sequences"] == 10_000
    # rollback alone survives the spikes by lowering the learning rate, and does not solve
    assert rollback["policy"] == "rollback" and rollback["rolled_back_steps"] > 0
    assert rollback["story"]["lr_last"] < rollback["story"]["lr_first"]
    assert not rollback["solved"]


@pytest.mark.slow
def test_default_demo_tells_the_story(tmp_path_factory):
    u, c, rollback = _demo(tmp_path_factory, DEFAULTS["seed"])
    _contrast(u, c, rollback)
    # at the spike the backward signal grows exponentially back in time: a straight line
    # in ln ||dL/dh[t]|| against t, above 0.05 per time step, with sigma_max(W_hh) above
    # its calm value; the run did not go non-finite (the issue's 4 decades and overflow
    # are not reached: see rnnx/cli/demo.py)
    su = u["story"]
    assert su["growth"] > 0.05 and su["growth_r2"] > 0.8
    assert su["left_band"] <= su["spike_step"] <= su["left_band"] + 20
    assert u["spike_sigma_max"] > u["calm_sigma_max"] and su["first_nonfinite"] is None


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3])
def test_contrast_for_other_seeds(tmp_path_factory, seed):
    _contrast(*_demo(tmp_path_factory, seed))


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 12's unclipped run is not reached by the "
                   "demo's defaults: see 'What it does not show' in rnnx/cli/demo.py")
@pytest.mark.parametrize("seed", [0, 2, 3])
def test_issue_specification_of_the_unclipped_run(tmp_path_factory, seed):
    """The issue's unclipped run: calm, then within 10 steps of leaving the band a finite
    norm of at least 10^4 x the calm median, a non-finite step after it, and growth at
    the spike above 0.05 per time step with R^2 above 0.8. Expected to fail (strict: a
    setting that meets it turns this into an error to remove the mark)."""
    su = _demo(tmp_path_factory, seed)[0]["story"]
    assert su["calm_held"] and su["jump_factor"] >= 1e4
    assert su["first_nonfinite"] is not None and su["first_nonfinite"] > su["spike_step"]
    assert su["growth"] > 0.05 and su["growth_r2"] > 0.8


def test_files_table_and_narrative(tmp_path):
    out = io.StringIO()
    r = run_demo(tmp_path / "d", steps=30, plots=False, progress=False, stream=out)
    for stem in ("unclipped", "clipped", "rollback"):
        with open(tmp_path / "d" / f"{stem}.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 30 and {"step", "grad_norm", "nonfinite"} <= rows[0].keys()
        assert np.load(tmp_path / "d" / f"{stem}.delta_norms.npy").shape[0] == 30
        assert main(["diagnose", str(tmp_path / "d" / f"{stem}.npz"), "--task",
                     DEFAULTS["task"], "--length", "20", "--json"]) == 0
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["settings"]["steps"] == 30 and len(summary["runs"]) == 3
    assert summary["baseline"]["accuracy"] == pytest.approx(0.25, abs=0.02)
    step, lam = summary["runs"][0]["lambda_1_along_run"][0]       # measured at step 1
    assert step == 1 and lam == pytest.approx(summary["runs"][0]["calm_lambda_1"], abs=0.1)
    assert r.figures_skipped == "--no-plots" and r.seconds > 0
    table = format_table(r.summaries)
    for label in ("training steps", "final loss", "task solved", "largest gradient norm",
                  "gradient spikes", "non-finite steps", "first backward overflow"):
        assert label in table
    text = out.getvalue()
    assert "over the first 20 steps the gradient norm" in text and "Accuracy on 10,000" in text
    assert text.index("unclipped: over") < text.index("training steps")


def test_checkpoints_hold_the_final_weights(tmp_path):
    import rnnx
    run_demo(tmp_path, steps=12, plots=False, progress=False, stream=io.StringIO())
    state = rnnx.load_checkpoint(tmp_path / "clipped.npz")
    assert state["step"] == 12 and state["config"]["clip"].startswith("clip_by_global_norm")
    assert state["params"]["W_hh"].shape == (DEFAULTS["hidden"],) * 2


def test_deterministic(tmp_path):
    a = run_demo(tmp_path / "a", steps=25, plots=False, progress=False, stream=io.StringIO())
    b = run_demo(tmp_path / "b", steps=25, plots=False, progress=False, stream=io.StringIO())
    assert a.narrative == b.narrative
    assert (tmp_path / "a" / "unclipped.csv").read_text() == \
        (tmp_path / "b" / "unclipped.csv").read_text()


def test_missing_matplotlib_still_trains(tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = io.StringIO()
    r = run_demo(tmp_path, steps=5, progress=False, stream=out)
    assert r.figures_skipped and 'pip install "rnnx[plot]"' in out.getvalue()
    assert (tmp_path / "clipped.csv").exists() and not list(tmp_path.glob("*.png"))


def test_bad_settings(tmp_path):
    with pytest.raises(TypeError, match="unknown demo settings"):
        run_demo(tmp_path, hiden=3)
    with pytest.raises(ValueError, match="task"):
        run_demo(tmp_path, task="nope", progress=False, stream=io.StringIO())
    assert set(DEFAULTS) >= {"task", "steps", "seed", "spectral_radius", "lr", "clip"}


# --- --explain on train and plot ------------------------------------------------------------

def test_train_and_plot_explain(tmp_path, capsys):
    log = tmp_path / "run.csv"
    assert main(["train", "--steps", "40", "--hidden", "8", "--length", "12",
                 "--spectral-radius", "1.5", "--lr", "0.3", "--log", str(log),
                 "--explain"]) == 0
    said = capsys.readouterr().out
    assert "task solved" in said and "this run: over the first 20 steps" in said
    assert main(["train", "--steps", "25", "--hidden", "8", "--json", "--explain"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert "over the first 20 steps" in got["explanation"] and got["story"]["steps"] == 25
    pytest.importorskip("matplotlib")
    assert main(["plot", str(log), "--out", str(tmp_path), "--explain"]) == 0
    again = capsys.readouterr().out
    story = read_story(load_history(log))
    assert narrate(story, name="run")[:60] in again.replace("\n", " ")


def test_jsonable_and_wrap():
    from rnnx.cli.args import jsonable
    from rnnx.cli.story import wrap
    got = jsonable({"a": (1, np.float32(2.5), math.nan), "b": [math.inf, {"c": np.int64(3)}]})
    assert json.dumps(got) == '{"a": [1, 2.5, null], "b": [null, {"c": 3}]}'
    text = wrap(("word " * 40).strip() + "\n\n" + "short")
    assert max(map(len, text.splitlines())) <= 92 and text.endswith("\n\nshort")


def test_logged_sigma_max_is_the_last_before_the_step():
    from rnnx.cli.story import logged_sigma_max
    h = _history([1.0] * 6)
    assert logged_sigma_max(h, 4) == (None, None)              # no such column
    h = History()
    for s, v in enumerate([math.nan, 1.5, math.nan, 2.5, math.nan], start=1):
        h.append({"step": s, "sigma_max": v})
    assert logged_sigma_max(h, 4) == (2, 1.5) and logged_sigma_max(h, 5) == (4, 2.5)
    assert logged_sigma_max(h, 1) == (None, None) and logged_sigma_max(h, None) == (None, None)
    s = read_story(_history([1.0] * 20 + [50.0]))
    assert "as logged after step 4, was 2.5" in narrate(s, sigma_max=2.5, sigma_max_step=4)
