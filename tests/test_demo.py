"""The built-in demo: the unclipped run explodes, the clipped one does not."""
import csv
import io
import json

import numpy as np
import pytest
from rnnx.cli.demo import DEFAULTS, format_table, run_demo

STEPS = 60      # the default settings overflow by step 38 for seeds 0..5 (300-step runs)


def _contrast(tmp_path, seed, steps):
    out = io.StringIO()
    r = run_demo(tmp_path, steps=steps, seed=seed, plots=False, progress=False, stream=out)
    unclipped, clipped = r.summaries
    assert unclipped["exploded"] and unclipped["nonfinite_steps"] > 0
    assert unclipped["first_overflow_step"] is not None and unclipped["first_overflow_t"] >= 0
    assert unclipped["max_grad_norm"] > 1e6
    assert not clipped["exploded"] and clipped["nonfinite_steps"] == 0
    assert clipped["first_overflow_step"] is None and clipped["clipped_steps"] > 0
    assert np.isfinite(clipped["final_loss"])
    text = out.getvalue()
    assert "exploded" in text and "YES" in text and "figures skipped" in text


@pytest.mark.parametrize("seed", [0, 2])
def test_contrast_holds_across_seeds(tmp_path, seed):
    _contrast(tmp_path, seed, STEPS)


@pytest.mark.parametrize("seed", range(6))
def test_contrast_holds_with_default_steps(tmp_path, seed):
    _contrast(tmp_path, seed, DEFAULTS["steps"])


def test_files_and_table(tmp_path):
    r = run_demo(tmp_path / "d", steps=30, plots=False, progress=False, stream=io.StringIO())
    for stem in ("unclipped", "clipped"):
        with open(tmp_path / "d" / f"{stem}.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 30 and {"step", "grad_norm", "nonfinite"} <= rows[0].keys()
        assert np.load(tmp_path / "d" / f"{stem}.delta_norms.npy").shape[0] == 30
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["settings"]["steps"] == 30 and len(summary["runs"]) == 2
    assert r.figures_skipped == "--no-plots" and r.seconds > 0
    table = format_table(r.summaries)
    for label in ("training steps", "final loss", "task solved", "largest gradient norm",
                  "gradient spikes", "non-finite steps", "first backward overflow"):
        assert label in table


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
