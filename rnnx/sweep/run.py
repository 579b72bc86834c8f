"""rnnx.sweep: run a grid of cells on an engine, every finished cell saved as it arrives."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .cells import run_cell
from .engines import DaskEngine, LocalEngine, SerialEngine
from .grid import expand, value_order
from .maps import check_map_options
from .results import ResultsFile, read_rows

__all__ = ["sweep", "SweepResult"]


@dataclass
class SweepResult:
    """The rows of a sweep's cells in grid order (dicts of plain values), its results file
    and the figures drawn."""

    path: Path
    rows: list
    figures: list = field(default_factory=list)

    @property
    def errors(self):
        """The rows of the cells that raised."""
        return [r for r in self.rows if r["status"] == "error"]

    def to_dataframe(self):
        """The rows as a pandas DataFrame (pandas is imported here)."""
        import pandas as pd
        return pd.DataFrame(self.rows)


def _engine(engine, workers):
    if engine is None or engine == "local":
        return LocalEngine(workers)
    if workers is not None:
        raise ValueError("workers applies to the local engine only; a Dask cluster has its "
                         "own workers")
    if engine == "serial":
        return SerialEngine()
    return DaskEngine(engine)


def sweep(base=None, grid=None, *, seeds=1, kind="train", engine=None, workers=None,
          out="rnnx-sweep", progress=True, plots=True, metric=None, axes=None):
    """Run every cell of grid x seeds over the base settings; returns a SweepResult.

    base: {setting: value} of ``rnnx train``'s settings (rnnx.sweep.SETTINGS; the rest
    take their defaults). grid: {setting: [values] or "V1,V2" or "START:STOP:COUNT"}.
    seeds: how many seeds per grid point (base["seed"] onwards) or a list of seeds.
    kind: "train" (a short training run per cell) or "diagnose" (the initial weights).
    engine: None or "local" (a pool of ``workers`` processes, default all cores),
    "serial" (this process, one cell after another), a dask.distributed.Client or a
    scheduler address "tcp://HOST:PORT". out: the folder of results.csv, sweep.json and
    the maps. A rerun with the same arguments skips the cells already in results.csv.
    plots: draw the stability maps (PNG, needs matplotlib); metric and axes choose them
    (rnnx.sweep.maps.save_maps).

    Every value is checked before any cell runs (ValueError naming the setting); a cell
    that raises is recorded with its error and the sweep goes on.
    """
    cells = expand(kind, base or {}, grid or {}, seeds)
    grid_names = list(grid or {})
    if plots:
        check_map_options(kind, grid_names, metric, axes)
    swept = set(grid_names) | {"seed"}
    runner = _engine(engine, workers)       # a scheduler that cannot be reached fails here
    try:
        if plots:
            from ..cli.plots import require_matplotlib
            require_matplotlib()
        results = ResultsFile(
            out, kind, {k: v for k, v in cells[0].settings.items() if k not in swept},
            {n: sorted({c.settings[n] for c in cells}, key=value_order) for n in grid_names})
        todo = [c for c in cells if c.key not in results.done]
        if todo:
            _run(todo, len(cells), results, runner, progress)
    finally:
        runner.close()
    keys = {c.key: i for i, c in enumerate(cells)}
    rows = sorted((r for r in read_rows(results.path) if r["key"] in keys),
                  key=lambda r: keys[r["key"]])
    figures = []
    if plots:
        from .maps import save_maps
        figures = save_maps(results.folder, rows, grid_names, kind, metric=metric,
                            axes=axes)
    return SweepResult(results.path, rows, figures)


def _run(todo, total, results, engine, progress):
    from tqdm.auto import tqdm
    bar = tqdm(total=total, initial=total - len(todo), unit="cell", dynamic_ncols=True,
               disable=not progress, desc=f"sweep on {engine.name}", file=sys.stderr)
    failed = 0
    try:
        for row in engine.results(run_cell, todo):
            results.append(row)
            failed += row["status"] == "error"
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed, refresh=False)
    finally:
        bar.close()
