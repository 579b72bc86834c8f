"""Pascanu, Mikolov & Bengio (2013)'s synthetic-task protocol, run with ``rnnx sweep``:
the success rates of SGD, SGD-C (clipping) and SGD-CR (clipping and Omega) over tasks x
lengths x seeds.

The protocol (ICML 2013, section 4.1.1, and the published code, pascanur/trainingRNNs):
50 tanh units, init "smart_tanh" (sparse W_hh at spectral radius 0.95, W_xh and W_hy
N(0, 0.01^2)), plain SGD at lr 0.01 without momentum, minibatches of 20, float32;
clipping by global norm at threshold 1 with the code's fallback (a gradient whose norm is
non-finite or above 1e10 replaced by 0.02 W_hh: ``--clip pascanu --policy pascanu``);
Omega in the code's form with alpha 4 (the paper's "regularization weight was fixed to 4";
the code's example settings use 2: ``--alpha 2``). SGD runs without clipping and without
the fallback (the code has it only with clipping), so a non-finite step ends the run
(``--policy raise``, counted "exploded"). A run is solved when fewer than 1% of 10,000
fresh sequences are wrong. The paper allows 5M updates and stops a run once it is solved;
an ``rnnx sweep`` cell trains for its whole budget and is judged at its end.

Two ``rnnx sweep`` commands run them (grid: task x length, ``--seeds``): SGD-C and SGD-CR
differ only in omega, so they are one sweep with an omega axis (OUT/sgd-c-cr), SGD the
other (OUT/sgd); a rerun of the same command skips the cells already in their
results.csv. The
script prints the sweep commands, the success table and the measured steps/s (training
steps per second of a worker, from the cells' own wall times).

    .venv/bin/python benchmarks/pascanu2013.py                 # temporal order, T = 50,
                                                                # 5 seeds, 100k steps
    .venv/bin/python benchmarks/pascanu2013.py --steps 20000 --seeds 3
    .venv/bin/python benchmarks/pascanu2013.py --estimate      # core-hours of --full
    .venv/bin/python benchmarks/pascanu2013.py --full --scheduler tcp://HOST:8786

--full is the paper's protocol: every task of section 4.1 at T = 50, 100, 150, 200, 5
seeds, 5M steps. --estimate times a few hundred steps of every (task, length, method) of
it on one core (CPU time) and prints its core-hours. A benchmark, not a test: on a shared machine
the times move with the load; the successes do not (every draw comes from the seed).
"""
import argparse
import csv
import shlex
import sys
import time
from pathlib import Path

ALPHA = 4.0                 # the paper's regularization weight (section 4.1.1)
BASE = {"hidden": 50, "init": "smart_tanh", "spectral_radius": 0.95, "dtype": "float32",
        "optimizer": "sgd", "lr": 0.01, "batch_size": 20, "clip_threshold": 1.0,
        "spikes": "off", "eval_sequences": 10_000}
METHODS = {"SGD": {"clip": None, "policy": "raise", "omega": 0.0},
           "SGD-C": {"clip": "pascanu", "policy": "pascanu", "omega": 0.0},
           "SGD-CR": {"clip": "pascanu", "policy": "pascanu", "omega": ALPHA}}
# The sweeps that run them: SGD-C and SGD-CR differ only in omega, so they are one sweep
# with an omega axis, its slower SGD-CR cells first (the pool then ends evenly).
SWEEPS = {"sgd-c-cr": ("SGD-CR", "SGD-C"), "sgd": ("SGD",)}
FULL = {"tasks": ["temporal_order", "temporal_order_3bit", "addition", "multiplication",
                  "random_permutation", "noiseless_memorization"],
        "lengths": [50, 100, 150, 200], "seeds": 5, "steps": 5_000_000}


def method_settings(method, alpha):
    s = dict(METHODS[method])
    if s["omega"]:
        s["omega"] = alpha
    return s


def method_of(row):
    """The method a results row ran: SGD (no clipping), SGD-C or SGD-CR (omega > 0)."""
    if row["clip"] in ("", "none"):
        return "SGD"
    return "SGD-CR" if float(row["omega"]) > 0 else "SGD-C"


def _flag(value):
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def sweep_argv(name, args, out):
    """The ``rnnx sweep`` arguments of one of SWEEPS."""
    methods = [method_settings(m, args.alpha) for m in SWEEPS[name]]
    shared = {k: v for k, v in methods[0].items() if all(m[k] == v for m in methods)}
    settings = {**BASE, **shared, "steps": args.steps}
    argv = ["sweep", "--grid", "task=" + ",".join(args.tasks),
            "--grid", "length=" + ",".join(map(str, args.lengths))]
    for k in methods[0]:
        if k not in shared:
            argv += ["--grid", f"{k}=" + ",".join(_flag(m[k]) for m in methods)]
    argv += ["--seeds", str(args.seeds), "--out", str(out), "--no-plots"]
    for k, value in settings.items():
        argv += ["--" + k.replace("_", "-"), _flag(value)]
    if args.scheduler:
        argv += ["--scheduler", args.scheduler]
    elif args.workers:
        argv += ["--workers", str(args.workers)]
    return argv


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table(rows_by_method, args):
    """The success table: runs solved / runs finished per (task, length) and method,
    with the runs that exploded or raised."""
    head = ["task", "T"] + list(rows_by_method)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in args.tasks:
        for T in args.lengths:
            cells = []
            for rows in rows_by_method.values():
                mine = [r for r in rows if r["task"] == task and int(r["length"]) == T
                        and int(r["seed"]) < args.seeds]
                solved = sum(r["outcome"] == "solved" for r in mine)
                exploded = sum(r["outcome"] == "exploded" for r in mine)
                failed = sum(r["status"] != "ok" for r in mine)
                note = f" ({exploded} exploded)" if exploded else ""
                note += f" ({failed} raised)" if failed else ""
                cells.append(f"{solved}/{len(mine)}{note}")
            lines.append(f"| {task} | {T} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speeds(rows):
    """Training steps per second of a worker over a method's cells (their wall time,
    evaluation included: on a loaded machine a worker has less than a core), and the
    cells' total seconds."""
    ok = [r for r in rows if r["status"] == "ok"]
    seconds = sum(float(r["seconds"]) for r in ok)
    steps = sum(int(r["steps"]) for r in ok)
    return (steps / seconds if seconds else float("nan")), seconds


def run(args):
    from rnnx.cli import main
    out = Path(args.out)
    rows_by_method, walls = {m: [] for m in METHODS}, {}
    for name in SWEEPS:
        argv = sweep_argv(name, args, out / name)
        print("$ rnnx " + shlex.join(argv), flush=True)
        t0 = time.perf_counter()
        status = main(argv)
        walls[name] = time.perf_counter() - t0
        if status:
            raise SystemExit(f"rnnx sweep {name} exited with status {status}")
        for row in read(out / name / "results.csv"):
            rows_by_method[method_of(row)].append(row)
    print(f"\nPascanu et al. 2013's protocol at {args.steps:,} steps, {args.seeds} seeds "
          f"(alpha {args.alpha:g}): runs solved (fewer than 1% of 10,000 wrong)\n")
    print(table(rows_by_method, args))
    print("\n| method | steps/s per worker (wall time) | worker-seconds |")
    print("|---|---:|---:|")
    for method, rows in rows_by_method.items():
        rate, seconds = speeds(rows)
        print(f"| {method} | {rate:.0f} | {seconds:.0f} |")
    print("\nwall time: " + ", ".join(f"{n} {w:.0f} s" for n, w in walls.items())
          + f"; a rerun skips the cells already in {out}/*/results.csv")


def estimate(args):
    """Time every (task, length, method) of the full protocol for args.steps steps on
    one core and print the core-hours of FULL's budget. The times are the process's CPU
    time (one BLAS thread), so that a loaded machine gives nearly a quiet one's figures."""
    from rnnx.sweep.cells import run_cell
    from rnnx.sweep.engines import SerialEngine
    from rnnx.sweep.grid import Cell
    from rnnx.sweep.settings import check_settings
    total = 0.0
    print("| task | T | " + " | ".join(f"{m} steps/s" for m in METHODS) + " |")
    print("|---|---:|" + "---:|" * len(METHODS))
    engine = SerialEngine()          # one BLAS thread, as in every sweep worker
    for task in FULL["tasks"]:
        for T in FULL["lengths"]:
            rates = []
            for method in METHODS:
                s = check_settings({**BASE, **method_settings(method, args.alpha),
                                    "task": task, "length": T, "steps": args.steps,
                                    "eval_sequences": 20})
                cpu = time.process_time()
                row, = engine.results(run_cell, [Cell("train", s, "estimate")])
                cpu = time.process_time() - cpu
                if row["status"] != "ok":
                    raise SystemExit(f"{task} T={T} {method}: {row['error']}")
                rate = args.steps / cpu
                rates.append(rate)
                total += FULL["seeds"] * FULL["steps"] / rate
            print(f"| {task} | {T} | " + " | ".join(f"{r:.0f}" for r in rates) + " |",
                  flush=True)
    print(f"\nfull protocol: {len(FULL['tasks'])} tasks x {len(FULL['lengths'])} lengths x "
          f"{len(METHODS)} methods x {FULL['seeds']} seeds at {FULL['steps']:,} steps: "
          f"{total / 3600:,.0f} core-hours (every run trained for its whole budget)")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100_000, help="training steps per run")
    p.add_argument("--seeds", type=int, default=5, help="seeds per (task, length)")
    p.add_argument("--tasks", type=lambda s: s.split(","), default=["temporal_order"])
    p.add_argument("--lengths", type=lambda s: [int(v) for v in s.split(",")],
                   default=[50])
    p.add_argument("--alpha", type=float, default=ALPHA, help="Omega's weight in SGD-CR")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: all cores)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run the cells on a Dask cluster")
    p.add_argument("--out", default="pascanu2013", help="folder of the three sweeps")
    p.add_argument("--full", action="store_true",
                   help="the paper's protocol: every task, T = 50..200, 5M steps")
    p.add_argument("--estimate", action="store_true",
                   help="time --steps (default 200) steps of every cell of --full on one "
                        "core and print its core-hours")
    args = p.parse_args(argv)
    if args.full:
        args.tasks, args.lengths = FULL["tasks"], FULL["lengths"]
        args.seeds, args.steps = FULL["seeds"], FULL["steps"]
    if args.estimate and "--steps" not in (argv or sys.argv):
        args.steps = 200
    return args


if __name__ == "__main__":
    arguments = parse()
    estimate(arguments) if arguments.estimate else run(arguments)
