"""Hostile command lines against the `rnnx` command, each in its own process.

    python benchmarks/reliability_cli.py [--timeout SECONDS] [--verbose]

Runs every command line of CASES (bad numbers, sizes that cannot fit in memory, missing,
garbage and torn files, bad paths, file names that are not UTF-8, unknown flags, every
subcommand, readers that close the pipe) with `python -m rnnx` from a scratch folder, and
prints a markdown table: how many ended in a clean one-line error with a non-zero exit
status, how many ended quietly on a closed pipe, how many printed a traceback (target 0),
how many hung (killed after --timeout seconds), and any other outcome; then every case
that was not clean. Run it from anywhere, with the rnnx under test installed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnx.training.history import COLUMNS

XFF = os.fsdecode(b"\xff")          # a file-name byte that is not UTF-8

# (command-line arguments, how it is run: "run", or "pipe" for a reader that is gone)
TRAIN = ["train", "--quiet", "--steps", "2"]
CASES = [
    # the command itself
    ([], "run"), (["nope"], "run"), (["--bogus"], "run"), (["train", "--bogus-flag"], "run"),
    (["diagnose", "--bogus"], "run"), (["plot"], "run"), (["demo", "--bogus"], "run"),
    (["train", "--task", XFF], "run"), (["train", "--hidden", XFF], "run"),
    # bad numbers
    *[(["train", flag, value, "--quiet"], "run") for flag, value in (
        ("--hidden", "-3"), ("--hidden", "0"), ("--hidden", "1.5"), ("--hidden", "nan"),
        ("--hidden", "1e3"), ("--length", "0"), ("--length", "-1"), ("--steps", "x"),
        ("--steps", "0"), ("--batch-size", "0"), ("--lr", "0"), ("--lr", "-1"),
        ("--lr", "nan"), ("--lr", "inf"), ("--momentum", "nan"), ("--momentum", "2"),
        ("--omega", "-1"), ("--omega", "nan"), ("--clip-threshold", "0"),
        ("--clip-threshold", "inf"), ("--seed", "-1"), ("--seed", "abc"),
        ("--spectral-radius", "0"), ("--max-norm", "0"), ("--clip-delta", "-1"),
        ("--task", "nope"), ("--dtype", "float16"), ("--policy", "explode"),
        ("--spikes", "maybe"), ("--optimizer", "lbfgs"), ("--clip", "magic"),
        ("--init", "zeros"), ("--std", "-1"))],
    (TRAIN + ["--clip", "autoclip", "--clip-threshold", "500"], "run"),
    (TRAIN + ["--clip", "zclip", "--clip-threshold", "-1"], "run"),
    (TRAIN + ["--spectral-radius", "1e308"], "run"),
    (TRAIN + ["--init", "gaussian", "--std", "1e300"], "run"),
    (TRAIN + ["--checkpoint-every", "5"], "run"), (TRAIN + ["--resume"], "run"),
    (TRAIN + ["--optimizer", "adam", "--momentum", "0.9"], "run"),
    (["diagnose", "--length", "0"], "run"), (["diagnose", "--spectral-radius", "1e308"], "run"),
    (["diagnose", "--task", "nope"], "run"), (["demo", "--steps", "0"], "run"),
    (["demo", "--task", "nope"], "run"),
    # sizes that cannot fit in memory
    *[([command, flag, value] + (["--quiet", "--steps", "1"] if command == "train" else []),
       "run") for command in ("train", "diagnose") for flag, value in (
        ("--hidden", "100000000"), ("--length", "100000000"),
        ("--batch-size", "1000000000"))],
    (TRAIN + ["--task", "random_permutation", "--length", "10000000"], "run"),
    (TRAIN + ["--hidden", "1000000"], "run"),
    # files and paths
    (TRAIN + ["--log", "run.txt"], "run"), (TRAIN + ["--log", "no/such/dir/run.csv"], "run"),
    (TRAIN + ["--checkpoint", "ck.txt"], "run"),
    (TRAIN + ["--checkpoint", "no/such/dir/ck.npz"], "run"),
    (TRAIN + ["--resume", "--checkpoint", "missing.npz"], "run"),
    (TRAIN + ["--resume", "--checkpoint", "garbage.npz"], "run"),
    (TRAIN + ["--resume", "--checkpoint", "empty.npz"], "run"),
    (["diagnose", "missing.npz"], "run"), (["diagnose", "garbage.npz"], "run"),
    (["diagnose", "empty.npz"], "run"), (["diagnose", "good.csv"], "run"),
    (["diagnose", "adir.npz"], "run"), (["diagnose", "--plot", "no/such/d.png"], "run"),
    (["diagnose", "--length", "10", "--plot", "d.unknownformat"], "run"),
    (["plot", "missing.csv"], "run"), (["plot", "garbage.csv"], "run"),
    (["plot", "garbage.jsonl"], "run"), (["plot", f"g{XFF}arbage.csv"], "run"),
    (["plot", "torn.csv"], "run"), (["plot", "empty.csv"], "run"),
    (["plot", "header.csv"], "run"), (["plot", "run.txt"], "run"),
    (["plot", "adir.csv"], "run"), (["plot", "array.jsonl"], "run"),
    (["plot", "text.jsonl"], "run"), (["plot", "nul.csv"], "run"),
    (["plot", "baddelta.csv"], "run"), (["plot", "good.csv", "--out", "afile"], "run"),
    (["demo", "--out", "afile/sub", "--steps", "2", "--quiet"], "run"),
    # readers that are gone (`rnnx ... | head`)
    (["diagnose", "--json", "--length", "10"], "pipe"), (["diagnose", "--length", "10"], "pipe"),
    (["train", "--steps", "3", "--json"], "pipe"), (["train", "--steps", "3"], "pipe"),
    (["train", "--help"], "pipe"), (["--version"], "pipe"),
    (["plot", "good.csv", "--out", "figs"], "pipe"),
]


def make_files(root):
    """The files the CASES refer to, in the scratch folder root."""
    rng = np.random.default_rng(0)
    subprocess.run([sys.executable, "-m", "rnnx", "train", "--steps", "5", "--quiet",
                    "--log", "good.csv"], cwd=root, check=True, timeout=300)
    good = (root / "good.csv").read_text()
    for name, data in {"garbage.csv": rng.bytes(300), "garbage.jsonl": rng.bytes(300),
                       f"g{XFF}arbage.csv": rng.bytes(300), "garbage.npz": rng.bytes(300),
                       "empty.npz": b"", "empty.csv": b"", "header.csv": b"step,loss\n",
                       "run.txt": good.encode(), "array.jsonl": b"[1, 2]\n",
                       "text.jsonl": b'{"step": "one"}\n', "nul.csv": b"step,loss\n1,\x002\n",
                       "afile": b"a file, not a folder"}.items():
        (root / name).write_bytes(data)
    lines = good.splitlines()
    # the last numeric field torn to "na" (text columns such as blame_rows may follow it)
    header, fields = lines[0].split(","), lines[-1].split(",")
    k = max(i for i, name in enumerate(header) if COLUMNS.get(name, "float") != "str")
    fields[k] = "na"
    (root / "torn.csv").write_text("\n".join(lines[:-1] + [",".join(fields)]) + "\n")
    (root / "baddelta.csv").write_text(good)
    (root / "baddelta.delta_norms.npy").write_bytes(b"\x93NUMPY" + rng.bytes(100))
    (root / "adir.npz").mkdir()
    (root / "adir.csv").mkdir()


def run_case(argv, how, root, timeout):
    """(outcome, first line of stderr, seconds)."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "rnnx"] + argv
    proc = subprocess.Popen(cmd, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    if how == "pipe":
        proc.stdout.close()                  # the reader is gone before rnnx writes
        stdout = b""
    try:
        if how == "pipe":
            err = proc.stderr.read()
            proc.wait(timeout=timeout)
        else:
            stdout, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "hang", f"killed after {timeout} s", time.perf_counter() - start
    err = err.decode("utf-8", "backslashreplace")
    # the progress bar of a run that trained is output, not an error
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.strip() and "step/s" not in line]
    first = lines[0] if lines else ""
    seconds = time.perf_counter() - start
    if "Traceback" in err:
        return "traceback", lines[-1], seconds
    if how == "pipe":
        return ("quiet on a closed pipe" if not lines and proc.returncode in (0, 141)
                else "other"), first or f"exit {proc.returncode}", seconds
    if proc.returncode == 0:
        return "accepted (exit 0)", stdout.decode(errors="replace")[:80], seconds
    if len(lines) == 1:
        return "clean one-line error", first, seconds
    return "other", f"exit {proc.returncode}, {len(lines)} lines: {first}", seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds before a command line counts as hung (default: 120)")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args()
    outcomes = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_files(root)
        start = time.perf_counter()
        for argv, how in CASES:
            outcome, detail, seconds = run_case(argv, how, root, args.timeout)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            shown = " ".join(os.fsencode(a).decode("utf-8", "backslashreplace") or "''"
                             for a in argv)
            shown = f"rnnx {shown}" + (" | (reader gone)" if how == "pipe" else "")
            rows.append((shown, outcome, detail, seconds))
            if args.verbose:
                print(f"{seconds:6.1f} s  {outcome:24} {shown}\n          {detail}",
                      flush=True)
        total = time.perf_counter() - start
    print(f"\n| command lines tried | clean one-line errors, non-zero exit | quiet on a "
          f"closed pipe | tracebacks | hangs (> {args.timeout:g} s) | accepted (exit 0) "
          f"| other |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(CASES)} | {outcomes.get('clean one-line error', 0)} | "
          f"{outcomes.get('quiet on a closed pipe', 0)} | {outcomes.get('traceback', 0)} | "
          f"{outcomes.get('hang', 0)} | {outcomes.get('accepted (exit 0)', 0)} | "
          f"{outcomes.get('other', 0)} |")
    print(f"\n{len(CASES)} command lines in {total:.0f} s.")
    odd = [r for r in rows if r[1] not in ("clean one-line error", "quiet on a closed pipe")]
    if odd:
        print("\n| command line | outcome | detail |\n|---|---|---|")
        for shown, outcome, detail, _ in odd:
            print(f"| `{shown}` | {outcome} | {detail.replace('|', '/')[:160]} |")
    return 1 if outcomes.get("traceback") or outcomes.get("hang") else 0


if __name__ == "__main__":
    sys.exit(main())
