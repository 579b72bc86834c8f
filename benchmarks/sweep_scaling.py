"""How fast the engines of rnnx.sweep run the same grid of cells, and what each adds per cell.

One grid (train cells; spectral radius x clipping x seeds, see GRID and BASE) is run:

* in a plain loop in this process (run_cell on every cell: the baseline),
* on the local engine with 1 and with 2 worker processes,
* on a Dask LocalCluster with 2 worker processes of one thread each (needs rnnx[dask]).

Each engine first runs a warm-up pass of WARMUP cells (starting its processes and importing
rnnx in them: the "start" column), then the whole grid, timed. Printed per engine: cells/s,
the speed-up over the plain loop, and the overhead per cell: (wall time x workers - loop
wall time) / cells, the core-seconds an engine spends per cell beyond the cell's own work
(scheduling, pickling the cell and its row, process hops; negative when workers run a cell
faster than the loop, e.g. with warmer caches). Results go nowhere on disk: this times the
engines, not the results file (one fsynced line per cell).

    .venv/bin/python benchmarks/sweep_scaling.py [--steps 100 --seeds 4 --repeat 1]

A benchmark, not a test: on a shared machine the figures move with the load.
"""
import argparse
import os
import time

import rnnx  # noqa: F401  (import once here, before the clock starts)
from rnnx.sweep.cells import run_cell
from rnnx.sweep.engines import DaskEngine, LocalEngine, SerialEngine
from rnnx.sweep.grid import expand

BASE = {"task": "adding", "length": 50, "hidden": 32, "lr": 0.3, "batch_size": 32,
        "eval_sequences": 1000}
GRID = {"spectral_radius": "0.8:2.0:6", "clip": "none,0.5"}
WARMUP = 4


def timed(engine, cells):
    """(start-up seconds, wall seconds of the grid) on engine."""
    t0 = time.perf_counter()
    list(engine.results(run_cell, cells[:WARMUP]))
    t1 = time.perf_counter()
    rows = list(engine.results(run_cell, cells))
    t2 = time.perf_counter()
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} cells raised: {failed[0]['error']}")
    return t1 - t0, t2 - t1


def engines(with_dask):
    yield "plain loop", 1, SerialEngine, None
    yield "local, 1 worker", 1, lambda: LocalEngine(1), None
    yield "local, 2 workers", 2, lambda: LocalEngine(2), None
    if with_dask:
        import distributed
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        yield "dask LocalCluster, 2 workers", 2, lambda: DaskEngine(client), \
            lambda: (client.close(), cluster.close())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100, help="training steps per cell")
    p.add_argument("--seeds", type=int, default=4, help="seeds per grid point")
    p.add_argument("--repeat", type=int, default=1, help="passes per engine (best kept)")
    p.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster")
    args = p.parse_args()
    cells = expand("train", {**BASE, "steps": args.steps}, GRID, args.seeds)
    try:
        import distributed  # noqa: F401
        with_dask = not args.no_dask
    except ImportError:
        with_dask = False
        print('(dask not installed: pip install "rnnx[dask]" to time the Dask engine)')
    print(f"{len(cells)} train cells: {GRID}, {args.seeds} seeds, {args.steps} steps each, "
          f"base {BASE}; {os.cpu_count()} cores")
    print(f"| engine | start (s) | cells/s | speed-up | overhead per cell (ms) |")
    print(f"|---|---:|---:|---:|---:|")
    loop_wall = None
    for name, workers, make, close in engines(with_dask):
        engine = make()
        try:
            runs = [timed(engine, cells) for _ in range(args.repeat)]
        finally:
            engine.close()
            if close:
                close()
        start, wall = min(runs, key=lambda r: r[1])
        loop_wall = wall if loop_wall is None else loop_wall
        overhead = (wall * workers - loop_wall) / len(cells) * 1e3
        print(f"| {name} | {start:.2f} | {len(cells) / wall:.1f} | {loop_wall / wall:.2f}x "
              f"| {overhead:+.1f} |", flush=True)


if __name__ == "__main__":
    main()
