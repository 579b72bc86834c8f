"""Reliability of `rnnx train` checkpoints, resume and logs under kills and damaged files.

1. Kills: a run is started with a checkpoint every few steps and a CSV log, then resumed
   again and again, each resume killed with SIGKILL (a bounded number of times) once it
   reaches the log: every other one at once, the others at a random moment up to 1 s
   later. After every kill the checkpoint must load, and the log must hold every step
   up to the checkpoint's once, in order, with no torn row (a torn last line, which the
   log reader drops and the next resume rewrites, is counted apart). A last resume runs
   to the end, and its weights must equal those of a run never interrupted, bit for bit.
2. Damaged checkpoints: `rnnx train --resume` on truncated, empty and random-byte files,
   a torn settings document, missing entries, and arrays of the wrong shape or dtype
   (a scalar W_hh among them). Each must end with one clear line naming the file and a
   non-zero exit status: no traceback, and never a run that starts.

    .venv/bin/python benchmarks/reliability_training.py [--kills 20 --seed 0]

Prints a markdown table; the targets are 0 tracebacks, 0 silent accepts, 0 lost or torn
rows and a bit-identical final run.
"""
import argparse
import csv
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnx.training.checkpoint import load_checkpoint, save_checkpoint
from rnnx.training.files import stale_temp_files

STEPS = 5000
SETTINGS = ["--task", "adding", "--length", "30", "--hidden", "24", "--optimizer", "adam",
            "--lr", "0.003", "--policy", "rollback", "--clip", "global_norm",
            "--checkpoint-every", "25", "--quiet"]


def _rnnx(args, **kw):
    return subprocess.run([sys.executable, "-m", "rnnx", *args], capture_output=True,
                          text=True, **kw)


def _log_rows(path):
    """(steps of the whole rows, torn rows before the last line, torn last line)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return [], 0, False
    header, body = rows[0], rows[1:]
    whole = [int(r[0]) for r in body if len(r) == len(header)]
    torn = [i for i, r in enumerate(body) if len(r) != len(header)]
    last_torn = bool(torn) and torn[-1] == len(body) - 1
    return whole, len(torn) - last_torn, last_torn


def kills(folder, n, rng):
    ckpt, log = folder / "run.npz", folder / "run.csv"
    ref = folder / "ref.npz"
    out = {"kills": 0, "during training": 0, "finished before the kill": 0, "lost rows": 0, "torn rows": 0,
           "torn last lines": 0, "unreadable checkpoints": 0, "tracebacks": 0}
    first = _rnnx(["train", "--steps", "50", "--checkpoint", str(ckpt), "--log", str(log)]
                  + SETTINGS)
    assert first.returncode == 0, first.stderr
    for _ in range(n):
        before = (load_checkpoint(ckpt)["step"], log.stat().st_size, log.stat().st_mtime_ns)
        old_temps = set(stale_temp_files(log))
        proc = subprocess.Popen([sys.executable, "-m", "rnnx", "train", "--steps", str(STEPS),
                                 "--checkpoint", str(ckpt), "--resume"], stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True)
        # Python and numpy take seconds to start here: wait until the resume reaches the log
        # (its rewrite's temporary file, or the log itself, changes), then kill it at once
        # (every other kill: mid-rewrite when the timing allows) or a random moment later.
        def reached():
            return (set(stale_temp_files(log)) - old_temps or (
                log.stat().st_size, log.stat().st_mtime_ns) != before[1:])

        while proc.poll() is None and not reached():
            time.sleep(0.001)
        out["during training"] += bool(reached())
        if out["kills"] % 2:
            time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            out["kills"] += 1
        else:
            out["finished before the kill"] += 1
        err = proc.communicate()[1]
        out["tracebacks"] += "Traceback" in err
        try:
            step = int(load_checkpoint(ckpt)["step"])
        except Exception:  # noqa: BLE001 -- counted, the table reports it
            out["unreadable checkpoints"] += 1
            continue
        whole, torn, last_torn = _log_rows(log)
        out["torn rows"] += torn
        out["torn last lines"] += last_torn
        out["lost rows"] += len(set(range(1, step + 1)) - set(whole))
        out["lost rows"] += len(whole) - len(set(whole))          # duplicated rows
    final = _rnnx(["train", "--steps", str(STEPS), "--checkpoint", str(ckpt), "--resume"])
    out["tracebacks"] += "Traceback" in final.stderr
    reference = _rnnx(["train", "--steps", str(STEPS), "--checkpoint", str(ref)] + SETTINGS)
    assert reference.returncode == 0, reference.stderr
    a, b = load_checkpoint(ckpt)["params"], load_checkpoint(ref)["params"]
    out["final run bit-identical"] = final.returncode == 0 and all(
        np.array_equal(a[k], b[k]) for k in b)
    whole, torn, last_torn = _log_rows(log)
    out["final log complete"] = whole == list(range(1, STEPS + 1)) and not torn
    out["temp files left"] = len(stale_temp_files(log)) + len(stale_temp_files(ckpt))
    return out


def _tampered(state, how):
    p = state["params"]
    if how == "missing config":
        del state["config"]
    elif how == "missing params/W_hh":
        del p["W_hh"]
    elif how == "scalar W_hh":
        p["W_hh"] = np.float32(0.5)
    elif how == "W_hh wrong shape":
        p["W_hh"] = np.zeros((3, 3), np.float32)
    elif how == "W_hh wrong dtype":
        p["W_hh"] = p["W_hh"].astype(np.float64)
    elif how == "W_xh NaN":
        p["W_xh"] = np.full_like(p["W_xh"], np.nan)
    elif how == "optimizer buffer wrong shape":
        key = next(k for k in state["optimizer"] if "." in k)
        state["optimizer"][key] = np.zeros(1, np.float32)
    elif how == "optimizer buffer wrong dtype":
        key = next(k for k in state["optimizer"] if "." in k)
        state["optimizer"][key] = state["optimizer"][key].astype(np.float64)
    elif how == "missing history":
        del state["history"]
    elif how == "carry wrong shape":
        state["carry"] = np.zeros((1, 1), np.float32)
    elif how == "snapshot W_hh scalar":
        state["policies"]["policy"]["snapshots"][0]["params"]["W_hh"] = np.float32(1)
    elif how == "rng state damaged":
        state["rng"] = {"bit_generator": "PCG64", "state": {"state": -1}}
    return state


DAMAGE = ["truncated", "empty", "random bytes", "torn settings document", "missing config",
          "missing params/W_hh", "scalar W_hh", "W_hh wrong shape", "W_hh wrong dtype",
          "W_xh NaN", "optimizer buffer wrong shape", "optimizer buffer wrong dtype",
          "missing history", "carry wrong shape", "snapshot W_hh scalar",
          "rng state damaged"]


def damaged(folder):
    good = folder / "good.npz"
    run = _rnnx(["train", "--steps", "30", "--checkpoint", str(good)] + SETTINGS)
    assert run.returncode == 0, run.stderr
    rows = []
    for how in DAMAGE:
        bad = folder / "bad.npz"
        data = good.read_bytes()
        if how == "truncated":
            bad.write_bytes(data[:len(data) * 2 // 3])
        elif how == "empty":
            bad.write_bytes(b"")
        elif how == "random bytes":
            bad.write_bytes(os.urandom(len(data)))
        elif how == "torn settings document":
            arrays = dict(np.load(good))
            arrays["__meta__"] = np.array(str(arrays["__meta__"])[:-25])
            with open(bad, "wb") as f:
                np.savez(f, **arrays)
        else:
            save_checkpoint(bad, _tampered(load_checkpoint(good), how))
        r = _rnnx(["train", "--steps", "40", "--checkpoint", str(bad), "--resume"])
        lines = r.stderr.strip().splitlines()
        clean = (r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr
                 and str(bad) in lines[0] and "pickle" not in lines[0])
        rows.append((how, r.returncode, clean, "Traceback" in r.stderr, r.returncode == 0,
                     lines[-1] if lines else ""))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="print each damaged case's error")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        k = kills(folder, args.kills, rng)
        d = damaged(folder)
    print("| check | cases | clean one-line errors | tracebacks | silent accepts | "
          "lost / torn rows |")
    print("|---|---|---|---|---|---|")
    print(f"| SIGKILL of a resumed `rnnx train` | {k['kills']} kills ({k['during training']} "
          f"once the resume had reached the log, +{k['finished before the kill']} finished "
          f"first) | - | {k['tracebacks']} | - | "
          f"{k['lost rows']} / {k['torn rows']} |")
    print(f"| damaged checkpoint under `--resume` | {len(d)} | {sum(r[2] for r in d)} | "
          f"{sum(r[3] for r in d)} | {sum(r[4] for r in d)} | - |")
    print()
    print(f"unreadable checkpoints after a kill: {k['unreadable checkpoints']}; torn last "
          f"lines (dropped by the reader, rewritten on resume): {k['torn last lines']}; "
          f"final run bit-identical to an uninterrupted one: {k['final run bit-identical']}; "
          f"final log complete: {k['final log complete']}; temporary files left after it: "
          f"{k['temp files left']}")
    if args.verbose:
        for how, code, clean, tb, accepted, last in d:
            print(f"- {how}: exit {code}{'' if clean else ' (NOT CLEAN)'}: {last}")


if __name__ == "__main__":
    main()
