"""rnnx.sweep and `rnnx sweep`: grids, cells, engines, the results file, resume, maps."""
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import rnnx
from rnnx.cli.main import build_parser, main
from rnnx.sweep import SETTINGS, parse_grid, read_rows

PNG = b"\x89PNG\r\n\x1a\n"
# tiny, fast cells; lr 1 and a backward-signal bound of 100 make the unclipped ones fail
# steps ("exploded"), clipping by global norm at 0.5 keeps the others finite
BASE = {"steps": 12, "hidden": 6, "length": 8, "lr": 1.0, "eval_sequences": 100,
        "batch_size": 8, "max_norm": 100.0}
GRID = {"spectral_radius": [0.9, 2.0], "clip": [None, 0.5]}
BASE_FLAGS = ["--steps", "12", "--hidden", "6", "--length", "8", "--lr", "1",
              "--eval-sequences", "100", "--batch-size", "8", "--max-norm", "100"]


def _without_time(rows):
    """The rows keyed by cell, without the measured seconds (the only non-deterministic
    field); floats as repr, so that NaN equals NaN and equal means the same bits."""
    return {r["key"]: {k: repr(v) if isinstance(v, float) else v for k, v in r.items()
                       if k != "seconds"} for r in rows}


def _keys_in_file(path):
    with open(path, newline="") as f:
        return [row["key"] for row in csv.DictReader(f)]


# --- grid ---------------------------------------------------------------------------------

def test_grid_syntax_lists_and_inclusive_ranges():
    g = parse_grid(["spectral_radius=0.8:2.0:13", "clip=none,1,0.1", "length=25,50,100",
                    "hidden=8:32:4", "init=orthogonal,identity", "clip_threshold=1"])
    assert np.allclose(g["spectral_radius"], np.linspace(0.8, 2.0, 13), rtol=0, atol=1e-12)
    assert g["spectral_radius"][0] == 0.8 and g["spectral_radius"][-1] == 2.0
    assert g["spectral_radius"][1] == 0.9          # printed values stay short
    assert g["clip"] == [None, 1.0, 0.1]
    assert g["length"] == [25, 50, 100] and all(type(v) is int for v in g["length"])
    assert g["hidden"] == [8, 16, 24, 32]
    assert g["init"] == ["orthogonal", "identity"]
    assert parse_grid(["clip=global_norm,value"])["clip"] == ["global_norm", "value"]
    assert parse_grid(["spectral-radius=1"]) == {"spectral_radius": [1.0]}


@pytest.mark.parametrize("spec, words", [
    ("radius=1,2", ["radius", "unknown setting"]),
    ("lr=", ["lr", "no values"]),
    ("lr=0.1,,0.2", ["lr", "empty value"]),
    ("lr=0.1:1", ["lr", "START:STOP:COUNT"]),
    ("lr=a:1:3", ["lr", "START:STOP:COUNT"]),
    ("lr=0.1:1:0", ["lr", "COUNT"]),
    ("length=1:10:3", ["length", "whole numbers"]),
    ("lr=abc", ["lr", "expected a number > 0", "'abc'"]),
    ("length=2.5", ["length", "expected an int"]),
    ("lr=-1", ["lr", "> 0"]),
    ("clip=big", ["clip", "threshold"]),
    ("task=nope", ["task", "one of"]),
    ("init=orthogonal:identity:2", ["init", "numeric"]),
    ("lr=0.1,0.1", ["lr", "twice"]),
    ("seed=1,2", ["seed", "--seeds"]),
    ("nonsense", ["NAME=V1"]),
])
def test_bad_grids_name_the_setting(spec, words):
    with pytest.raises(ValueError) as e:
        parse_grid([spec])
    assert all(w in str(e.value) for w in words), str(e.value)


def test_api_grid_values_are_checked(tmp_path):
    unused = tmp_path / "unused"
    for grid, words in [({"lr": []}, ["lr", "no values"]),
                        ({"lr": [0.1, "x"]}, ["lr", "'x'"]),
                        ({"length": [True]}, ["length", "True"]),
                        ({"nope": [1]}, ["nope", "unknown"])]:
        with pytest.raises(ValueError) as e:
            rnnx.sweep({}, grid, seeds=1, out=unused, plots=False, engine="serial")
        assert all(w in str(e.value) for w in words), str(e.value)
    with pytest.raises(ValueError, match="momentum"):
        rnnx.sweep({"momentum": 0.9}, {"optimizer": ["sgd", "adam"]}, seeds=1,
                   engine="serial", plots=False, out=unused)
    assert not unused.exists()


def test_cli_bad_grid_fails_before_any_cell(tmp_path, capsys):
    for spec in ("radius=1,2", "lr=", "lr=0.1:1", "lr=abc"):
        out = tmp_path / "out"
        assert main(["sweep", "--grid", spec, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert spec.split("=")[0] in err and not out.exists()
    assert main(["sweep", "--lr", "x", "--out", str(tmp_path / "o")]) == 2
    assert "lr" in capsys.readouterr().err


def test_settings_mirror_rnnx_train():
    """Every setting but eval_sequences is a flag of `rnnx train` with the same default."""
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    defaults = {a.dest: a.default for a in train._actions}
    for name, s in SETTINGS.items():
        if name == "eval_sequences":
            continue
        assert name in defaults, name
        expected = None if (name == "clip" and defaults[name] == "none") else defaults[name]
        assert s.default == expected, (name, s.default, expected)


# --- cells --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, clip", [("float32", "none"), ("float64", "global_norm")])
def test_train_cell_is_the_run_rnnx_train_does(tmp_path, capsys, dtype, clip):
    """A cell with the settings of an `rnnx train` command measures that run."""
    flags = ["--spectral-radius", "1.5", "--lr", "0.3", "--steps", "30", "--length", "20",
             "--hidden", "8", "--seed", "3", "--dtype", dtype, "--clip", clip,
             "--clip-threshold", "0.5"]
    assert main(["train", *flags, "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    r = rnnx.sweep({"spectral_radius": 1.5, "lr": 0.3, "steps": 30, "length": 20,
                    "hidden": 8, "seed": 3, "dtype": dtype,
                    "clip": None if clip == "none" else 0.5}, {}, seeds=1, engine="serial",
                   out=tmp_path, plots=False, progress=False).rows[0]
    for name in ("final_loss", "accuracy", "max_grad_norm", "clipped_steps",
                 "first_overflow_step", "first_overflow_t", "first_nonfinite_step",
                 "exploded", "solved"):
        want = ref[name]
        got = r[name]
        assert (want is None and got is None) or got == want or (
            isinstance(want, float) and math.isclose(got, want, rel_tol=0, abs_tol=0)), name
    assert r["nonfinite_steps"] == ref["nonfinite_steps"]
    assert r["spike_steps"] == ref["spikes"] and r["skipped_steps"] == ref["skipped_steps"]
    assert r["outcome"] == ("solved" if ref["solved"] else
                            "exploded" if ref["exploded"] else "did not learn")


def test_diagnose_cell_against_rnnx_diagnose(tmp_path, capsys):
    for radius, dtype in ((0.7, "float32"), (1.8, "float64")):
        assert main(["diagnose", "--spectral-radius", str(radius), "--hidden", "10",
                     "--length", "30", "--batch-size", "4", "--seed", "2", "--dtype", dtype,
                     "--json"]) == 0
        ref = json.loads(capsys.readouterr().out)
        r = rnnx.sweep({"spectral_radius": radius, "hidden": 10, "length": 30,
                        "batch_size": 4, "seed": 2, "dtype": dtype}, {}, seeds=1,
                       kind="diagnose", engine="serial", out=tmp_path / dtype, plots=False,
                       progress=False).rows[0]
        assert r["status"] == "ok"
        assert math.isclose(r["sigma_max"], ref["sigma_max"], rel_tol=1e-12)
        assert math.isclose(r["spectral_radius_measured"], radius, rel_tol=1e-6)
        # rnnx diagnose draws float32 inputs and casts them; the cell draws them in dtype
        assert math.isclose(r["lambda_1"], ref["lambda_max"], rel_tol=1e-6, abs_tol=1e-9)
        assert r["verdict"] == ref["verdict"]
        L = ref["jacobian_log_norms_mean"]
        assert math.isclose(r["log_norm_growth"], L[-1] / ref["T"], rel_tol=1e-6)
        log_max = math.log(float(np.finfo(dtype).max))
        horizon = log_max / r["lambda_1"] if r["lambda_1"] > 0 else math.inf
        assert r["overflow_horizon"] == horizon


def test_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path):
    # the adding task needs T >= 6: the length-2 cells raise inside the cell
    res = rnnx.sweep(BASE, {"length": [2, 8]}, seeds=2, workers=1, out=tmp_path,
                     plots=False, progress=False)
    assert len(res.rows) == 4 and len(res.errors) == 2
    for row in res.errors:
        assert row["length"] == 2 and row["error"].startswith("ValueError: T must be")
        assert row["outcome"] is None
    assert all(r["status"] == "ok" and r["error"] is None for r in res.rows
               if r["length"] == 8)


@pytest.mark.parametrize("kind", ["train", "diagnose"])
def test_smallest_cells(tmp_path, kind):
    """H = B = 1 and the shortest adding sequence, in both dtypes."""
    res = rnnx.sweep({**BASE, "hidden": 1, "batch_size": 1, "length": 6},
                     {"dtype": ["float32", "float64"]}, seeds=1, kind=kind,
                     engine="serial", out=tmp_path, plots=False, progress=False)
    assert [r["status"] for r in res.rows] == ["ok", "ok"], res.errors
    if kind == "diagnose":
        assert all(r["sigma_max"] == abs(r["spectral_radius_measured"]) for r in res.rows)


def test_policy_raise_counts_as_exploded(tmp_path):
    r = rnnx.sweep({**BASE, "spectral_radius": 2.0, "policy": "raise"}, {},
                   seeds=1, engine="serial", out=tmp_path, plots=False,
                   progress=False).rows[0]
    assert r["status"] == "ok" and r["exploded"] and r["outcome"] == "exploded"
    assert "GradientOverflowError" in r["error"] or "FloatingPointError" in r["error"]


# --- engines and the results file ----------------------------------------------------------

def test_same_bits_local_1_and_2_workers_and_in_process(tmp_path):
    runs = [rnnx.sweep(BASE, GRID, seeds=2, out=tmp_path / name, plots=False,
                       progress=False, **kw)
            for name, kw in (("w1", {"workers": 1}), ("w2", {"workers": 2}),
                             ("serial", {"engine": "serial"}))]
    first = _without_time(runs[0].rows)
    assert len(first) == 8
    assert any(r["exploded"] for r in first.values())      # both branches compared
    assert any(not r["exploded"] for r in first.values())
    for other in runs[1:]:
        assert _without_time(other.rows) == first
    # the files hold the same bytes per cell (floats written with repr)
    lines = [{line.split(",")[0]: line.split(",", 5)[5]
              for line in (tmp_path / n / "results.csv").read_text().splitlines()[1:]}
             for n in ("w1", "w2")]
    assert lines[0] == lines[1]


def test_serial_engine_leaves_this_process_blas_threads_alone(tmp_path):
    from threadpoolctl import threadpool_info, threadpool_limits
    with threadpool_limits(limits=2, user_api="blas"):
        before = [lib["num_threads"] for lib in threadpool_info()]
        rnnx.sweep(BASE, {}, engine="serial", out=tmp_path, plots=False, progress=False)
        assert [lib["num_threads"] for lib in threadpool_info()] == before


def test_same_bits_on_a_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    reference = rnnx.sweep(BASE, GRID, seeds=2, workers=1, out=tmp_path / "local",
                           plots=False, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = rnnx.sweep(BASE, GRID, seeds=2, engine=client, out=tmp_path / "dask",
                             plots=False, progress=False)
        assert not client.status == "closed"      # the caller's client is left open
        assert len(client.scheduler_info()["workers"]) == 2
        by_address = rnnx.sweep(BASE, GRID, seeds=1, engine=cluster.scheduler_address,
                                out=tmp_path / "address", plots=False, progress=False)
    assert _without_time(on_dask.rows) == _without_time(reference.rows)
    assert _without_time(by_address.rows).items() <= _without_time(reference.rows).items()
    assert len(by_address.rows) == 4


def test_unreachable_scheduler_fails_fast_in_one_line(tmp_path):
    pytest.importorskip("distributed")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rnnx", "sweep", "--scheduler", "tcp://127.0.0.1:9",
         "--out", str(tmp_path / "o"), "--quiet", *BASE_FLAGS],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert time.monotonic() - start < 15
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "tcp://127.0.0.1:9" in err[0] and "Traceback" not in err[0], \
        proc.stderr


def test_rerun_skips_done_cells_and_drops_a_cut_line(tmp_path):
    res = rnnx.sweep(BASE, GRID, seeds=1, engine="serial", out=tmp_path, plots=False,
                     progress=False)
    path = tmp_path / "results.csv"
    before = path.read_text()
    rnnx.sweep(BASE, GRID, seeds=1, engine="serial", out=tmp_path, plots=False,
               progress=False)
    assert path.read_text() == before                     # nothing ran again
    # a kill in the middle of a write leaves a line without its newline
    lines = before.splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:20])
    again = rnnx.sweep(BASE, GRID, seeds=2, engine="serial", out=tmp_path, plots=False,
                       progress=False)
    keys = _keys_in_file(path)
    assert len(keys) == len(set(keys)) == 8 and len(again.rows) == 8
    assert _without_time(again.rows[::2]) == _without_time(res.rows)
    with pytest.raises(ValueError, match="another base"):
        rnnx.sweep({**BASE, "lr": 0.1}, GRID, seeds=1, engine="serial", out=tmp_path,
                   plots=False, progress=False)


RESUME_GRID = {"spectral_radius": "0.8:2:6", "clip": "none,0.5"}


def test_resume_after_sigkill_equals_an_uninterrupted_sweep(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    base = {**BASE, "steps": 60}
    command = [sys.executable, "-m", "rnnx", "sweep", "--seeds", "2", "--workers", "1",
               "--quiet", "--no-plots", "--out", str(killed), *BASE_FLAGS[2:],
               "--steps", "60"]
    for name, values in RESUME_GRID.items():
        command += ["--grid", f"{name}={values}"]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    results = killed / "results.csv"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if results.exists() and len(results.read_text().splitlines()) >= 4:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)            # the sweep and its worker process
        proc.wait()
    done = len(_keys_in_file(results))
    assert 3 <= done < 24, f"{done} cells before the kill: too fast to test a resume"
    # the rerun (in this process: the engine does not change the bits, tested above)
    resumed = rnnx.sweep(base, RESUME_GRID, seeds=2, engine="serial", out=killed,
                         plots=False, progress=False)
    uninterrupted = rnnx.sweep(base, RESUME_GRID, seeds=2, engine="serial", out=whole,
                               plots=False, progress=False)
    keys = _keys_in_file(results)
    assert len(keys) == len(set(keys)) == 24
    assert _without_time(read_rows(killed)) == _without_time(read_rows(whole))
    assert _without_time(resumed.rows) == _without_time(uninterrupted.rows)


# --- maps and the command line --------------------------------------------------------------

def test_cli_sweep_maps_and_plot_redraw(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "map"
    argv = ["sweep", "--grid", "spectral_radius=0.9,2", "--grid", "clip=none,0.5",
            "--grid", "lr=0.03,1", "--workers", "1", "--out", str(out),
            "--metric", "max_grad_norm", *BASE_FLAGS[2:]]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "8 cells" in captured.out and "exploded" in captured.out
    assert "8/8" in captured.err and "cell/s" in captured.err       # the progress bar
    for name in ("outcome.png", "map_max_grad_norm.png"):
        assert (out / name).read_bytes()[:8] == PNG
        (out / name).unlink()
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["kind"] == "train" and list(manifest["grid"]) == [
        "spectral_radius", "clip", "lr"]
    assert main(["plot", str(out / "results.csv"), "--metric", "accuracy",
                 "--axes", "lr,clip"]) == 0
    assert (out / "outcome.png").exists() and (out / "map_accuracy.png").exists()
    assert main(["plot", str(out), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "outcome.png").exists()
    capsys.readouterr()
    assert main(["plot", str(out), "--metric", "nope"]) == 2
    assert "metric" in capsys.readouterr().err


def test_unknown_metric_or_axis_fails_before_any_cell(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for extra in (["--metric", "nope"], ["--axes", "lr,hidden"]):
        assert main(["sweep", "--grid", "lr=0.1,0.2", "--out", str(tmp_path / "o"),
                     *extra]) == 2
        assert not (tmp_path / "o").exists()
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_diagnose_map_with_edge_contour(tmp_path):
    pytest.importorskip("matplotlib")
    res = rnnx.sweep({"hidden": 16, "batch_size": 4}, {"spectral_radius": "0.5:3:4",
                                                       "length": [10, 20]},
                     seeds=2, kind="diagnose", engine="serial", out=tmp_path,
                     progress=False)
    assert [p.name for p in res.figures] == ["lambda_1.png"]
    assert res.figures[0].read_bytes()[:8] == PNG
    lam = {(r["spectral_radius"], r["seed"]): r["lambda_1"] for r in res.rows
           if r["length"] == 20}
    assert lam[(0.5, 0)] < 0 < lam[(3.0, 0)]               # the map crosses the edge
    df = res.to_dataframe() if _has("pandas") else None
    if df is not None:
        import pandas as pd
        assert len(pd.read_csv(res.path)) == len(df) == 16


def test_outcome_colours_mix_the_fractions_of_runs(tmp_path):
    """A square whose runs exploded, did not learn and solved in the proportions 2:1:1 is
    coloured 1/2 red + 1/4 grey + 1/4 green (a square of one outcome, pure)."""
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread
    from rnnx.sweep.maps import OUTCOME_COLOURS, save_maps
    outcomes = {0.1: ["exploded", "exploded", "did not learn", "solved"],
                0.2: ["solved"] * 4}
    rows = [{"status": "ok", "lr": lr, "seed": i, "outcome": o}
            for lr, runs in outcomes.items() for i, o in enumerate(runs)]
    (path,) = save_maps(tmp_path, rows, ["lr"], "train")
    image = imread(path)[..., :3]
    colour = {o: np.array(c) for o, c in OUTCOME_COLOURS.items()}
    mixed = 0.5 * colour["exploded"] + 0.25 * colour["did not learn"] + 0.25 * colour["solved"]
    for want in (mixed, colour["solved"]):
        # some pixel of the image has the colour (to 8-bit rounding)
        assert np.abs(image - want).max(axis=-1).min() < 1.5 / 255, want


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_workers_and_scheduler_exclude_each_other(tmp_path, capsys):
    assert main(["sweep", "--workers", "2", "--scheduler", "tcp://127.0.0.1:9",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--workers" in capsys.readouterr().err and not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="workers"):
        rnnx.sweep(BASE, {}, engine="serial", workers=2, out=tmp_path / "o", plots=False)


def test_help_and_python_api_export():
    assert callable(rnnx.sweep) and "sweep" in rnnx.__all__
    assert main(["sweep", "--help"]) == 0


def test_pascanu_clip_and_policy_by_name(tmp_path):
    """clip=pascanu and policy=pascanu (Pascanu et al.'s code's SGD-C step) are settings,
    a grid axis and the run rnnx train does; a failing step is replaced, not skipped."""
    from rnnx.optim.pascanu_fallback import pascanu_rescale
    from rnnx.sweep.settings import build_run
    from rnnx.training import PascanuFallback
    assert parse_grid(["clip=none,pascanu,0.5", "policy=raise,pascanu"]) == {
        "clip": [None, "pascanu", 0.5], "policy": ["raise", "pascanu"]}
    _, model, trainer = build_run({"clip": "pascanu", "clip_threshold": 0.25,
                                   "policy": "pascanu"})
    assert isinstance(trainer.clip, pascanu_rescale) and trainer.clip.max_norm == 0.25
    assert isinstance(trainer.on_failure, PascanuFallback)
    base = {**BASE, "task": "temporal_order", "length": 10, "hidden": 6,
            "init": "smart_tanh", "lr": 0.5, "steps": 4, "clip": "pascanu",
            "policy": "pascanu", "max_norm": 1e-12}
    row = rnnx.sweep(base, {}, seeds=1, engine="serial", out=tmp_path, plots=False,
                     progress=False).rows[0]
    assert row["status"] == "ok" and row["error"] is None, row["error"]
    assert row["nonfinite_steps"] == row["skipped_steps"] == 4
    # the cell's run again (its weights are not in its row): four replacement steps
    task, model, trainer = build_run(base)
    W = model.params["W_hh"].copy()
    trainer.fit(task, steps=4, batch_size=base["batch_size"])
    np.testing.assert_allclose(model.params["W_hh"], W * (1 - 0.02 * 0.5) ** 4, rtol=1e-6)
