"""The rnnx command through main(argv), `python -m rnnx` and the `rnnx` entry point."""
import csv
import json
import shutil
import subprocess
import sys

import pytest
from rnnx.cli.main import main

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.read_bytes()[:8] == PNG


def test_help_for_every_command(capsys):
    for argv in ([], ["demo"], ["train"], ["diagnose"], ["plot"]):
        assert main(argv + ["--help"]) == 0
        out = capsys.readouterr().out
        assert "usage: rnnx" in out and "example" in out


def test_usage_errors_exit_2_without_traceback(capsys, tmp_path):
    for argv in ([], ["nope"], ["train", "--hidden", "-3"], ["train", "--steps", "x"],
                 ["train", "--resume"], ["demo", "--task", "nope"],
                 ["train", "--optimizer", "adam", "--momentum", "0.9"],
                 ["train", "--log", str(tmp_path / "log.txt"), "--steps", "1"],
                 ["diagnose", str(tmp_path / "x.csv")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 30


def test_missing_and_unreadable_files_exit_1(capsys, tmp_path):
    assert main(["plot", str(tmp_path / "missing.csv")]) == 1
    assert "no log file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("just,a\n1,2\n")
    assert main(["plot", str(bad)]) == 1
    assert "not a training log" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    assert main(["diagnose", str(junk)]) == 1
    err = capsys.readouterr().err
    assert "cannot read checkpoint" in err and len(err.strip().splitlines()) == 1


def test_train_json_checkpoint_resume_plot_diagnose(tmp_path, capsys):
    log, ckpt = tmp_path / "run.csv", tmp_path / "run.npz"
    common = ["train", "--spectral-radius", "1.5", "--lr", "0.3", "--log", str(log),
              "--checkpoint", str(ckpt), "--json"]
    assert main(common + ["--steps", "40"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["steps"] == 40 and s["exploded"] and s["first_overflow_step"] <= 40
    assert main(common + ["--steps", "50", "--resume"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["steps"] == 50 and s["resumed_from_step"] == 40
    with open(log) as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 51))
    assert main(["train", "--steps", "20", "--clip", "global_norm", "--clip-threshold", "0.5",
                 "--spectral-radius", "1.5", "--lr", "0.3", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["diagnose", str(ckpt), "--json", "--length", "20"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["verdict"] in ("exploding", "vanishing", "near the edge", "saturated")
    assert d["T"] == 20
    pytest.importorskip("matplotlib")
    assert main(["plot", str(log), "--out", str(tmp_path / "figs")]) == 0
    for name in ("grad_norms", "delta_heatmap", "losses"):
        assert _is_png(tmp_path / "figs" / f"{name}.png")


def test_train_policy_raise_fails_cleanly(capsys):
    assert main(["train", "--spectral-radius", "1.5", "--lr", "0.3", "--steps", "60",
                 "--policy", "raise", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "gradient overflow at training step" in err and "Traceback" not in err


def test_diagnose_random_init(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "d.png"
    assert main(["diagnose", "--hidden", "8", "--spectral-radius", "3", "--init", "identity",
                 "--task", "noise", "--length", "30", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "spectral radius 3" in out and "verdict:" in out and _is_png(png)


def test_demo_main(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["demo", "--steps", "40", "--seed", "1", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "unclipped: over the first 20 steps" in out and "first backward overflow" in out
    runs = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert [r["run"] for r in runs] == ["unclipped", "clipped (global norm 1)",
                                        "rollback (no clipping)"]
    for name in ("grad_norms", "backward_signal", "delta_heatmap", "loss_accuracy",
                 "overview"):
        assert _is_png(tmp_path / f"{name}.png")


def _commands():
    yield [sys.executable, "-m", "rnnx"]
    exe = shutil.which("rnnx")
    yield pytest.param([exe] if exe else None, marks=pytest.mark.skipif(
        exe is None, reason="the rnnx console script is not installed"))


@pytest.mark.parametrize("cmd", list(_commands()))
def test_entry_points(cmd, tmp_path):
    # cwd away from the checkout: `python -m` puts the cwd first on sys.path, where the
    # source tree's rnnx/ (no compiled core) would shadow the installed package
    run = lambda *a: subprocess.run(cmd + list(a), capture_output=True, text=True,
                                    timeout=120, cwd=tmp_path)
    r = run("demo", "--steps", "40", "--no-plots", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "unclipped: over the first" in r.stdout and "figures skipped" in r.stdout
    assert len(json.loads((tmp_path / "summary.json").read_text())["runs"]) == 3
    r = run("train", "--hidden", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run("plot", str(tmp_path / "missing.csv"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    r = run("diagnose", "--json", "--length", "10")
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"]


def test_choices_are_the_defining_modules(capsys):
    from rnnx._checks import FLOAT_DTYPES
    from rnnx.model.init import RECURRENT_INITS
    from rnnx.optim.optimizers import OPTIMIZERS
    from rnnx.training import POLICIES, SPIKE_POLICIES
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for choices in (OPTIMIZERS, POLICIES, FLOAT_DTYPES, RECURRENT_INITS,
                    ["off" if p is None else p for p in SPIKE_POLICIES]):
        assert "{" + ",".join(choices) + "}" in out


def test_train_with_zclip(capsys):
    assert main(["train", "--clip", "zclip", "--spectral-radius", "1.3", "--lr", "0.3",
                 "--steps", "120", "--hidden", "16", "--length", "20", "--batch-size", "8",
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["clip"].startswith("zclip(z_threshold=2.5,") and s["clipped_steps"] > 0
    assert main(["train", "--clip", "zclip", "--clip-threshold", "3", "--steps", "2",
                 "--json"]) == 0
    assert "zclip(z_threshold=3.0," in capsys.readouterr().out
