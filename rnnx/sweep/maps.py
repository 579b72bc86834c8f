"""Stability maps of a sweep (PNG; matplotlib, an optional extra: rnnx[plot]).

A map is a heatmap over two grid axes (x, y), one panel per value of a third; the seeds
and any further axes are aggregated. The outcome map colours each square by the fractions
of its runs that exploded (red), did not learn (grey) and solved (green), mixed, and
writes the fraction solved in it; a metric map shows the mean of a column over the
runs that have a value (the fraction for a yes/no column; first_nonfinite_step averages
the runs that exploded, a square where none did is blank). For diagnose sweeps the lambda_1 map has a
diverging scale centred on 0 and draws the contour lambda_1 = 0: the edge of chaos.
Cells that raised are left out (a square with none left is blank).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .cells import DIAGNOSE_METRICS, OUTCOMES, TRAIN_METRICS
from .grid import value_order

__all__ = ["save_maps", "check_map_options", "OUTCOME_COLOURS"]

OUTCOME_COLOURS = {"exploded": (0.84, 0.15, 0.16), "did not learn": (0.62, 0.62, 0.62),
                   "solved": (0.17, 0.63, 0.17)}
_DPI = 110
_NOT_METRICS = ("outcome", "verdict")


def _metrics(kind):
    names = TRAIN_METRICS if kind == "train" else DIAGNOSE_METRICS
    return [m for m in names if m not in _NOT_METRICS] + ["seconds"]


def check_map_options(kind, grid_names, metric=None, axes=None):
    """ValueError naming metric or axes when they cannot be drawn (checked before any cell
    runs)."""
    if metric is not None and metric not in _metrics(kind):
        raise ValueError(f"metric: expected one of {', '.join(_metrics(kind))} for a {kind} "
                         f"sweep; got {metric!r}")
    if axes is not None:
        axes = list(axes)
        bad = [a for a in axes if a not in grid_names]
        if bad or not 1 <= len(axes) <= 3 or len(set(axes)) != len(axes):
            raise ValueError(f"axes: expected 1 to 3 distinct grid axes among "
                             f"{', '.join(grid_names) or '(none)'}; got {axes}")


def _label(v):
    return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _layout(rows, grid_names, axes):
    """(x, y, panel) names (y, panel may be None) and the sorted values of each axis."""
    values = {n: sorted({r[n] for r in rows}, key=value_order) for n in grid_names}
    if axes is None:
        varying = [n for n in grid_names if len(values[n]) > 1]
        axes = (varying or list(grid_names))[:3]
    axes = list(axes) + [None] * (3 - len(axes))
    return axes, {n: values.get(n, [None]) for n in axes if n is not None}


def _grids(rows, axes, values, reduce):
    """{panel value: (ny, nx) array of reduce(rows of each square)}."""
    x, y, p = axes
    xs, ys, ps = values[x] if x else [None], values[y] if y else [None], \
        values[p] if p else [None]
    out = {}
    for pv in ps:
        grid = np.full((len(ys), len(xs)), math.nan, dtype=object)
        for i, yv in enumerate(ys):
            for j, xv in enumerate(xs):
                square = [r for r in rows if (x is None or r[x] == xv)
                          and (y is None or r[y] == yv) and (p is None or r[p] == pv)]
                grid[i, j] = reduce(square) if square else None
        out[pv] = grid
    return out


def _figure(n_panels):
    from ..cli.plots import require_matplotlib
    require_matplotlib()
    from matplotlib.figure import Figure
    cols = min(n_panels, 4)
    nrows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(1.0 + 3.6 * cols, 0.6 + 3.2 * nrows), layout="constrained")
    axs = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax in axs[n_panels:]:
        ax.set_visible(False)
    return fig, axs[:n_panels]


def _ticks(ax, axes, values):
    x, y, _ = axes
    xs, ys = (values[x] if x else [None]), (values[y] if y else [None])
    ax.set_xticks(range(len(xs)), [_label(v) for v in xs], rotation=45 if len(xs) > 6 else 0)
    ax.set_yticks(range(len(ys)), [_label(v) for v in ys])
    ax.set_xlabel(x or "")
    ax.set_ylabel(y or "")


def _title(fig, what, rows, grid_names, axes):
    seeds = len({r["seed"] for r in rows})
    rest = [n for n in grid_names if n not in axes]
    extra = f" and over {', '.join(rest)}" if rest else ""
    fig.suptitle(f"{what}\n{len(rows)} runs; aggregated over {seeds} seed"
                 f"{'s' if seeds > 1 else ''}{extra}", fontsize=9)


def _outcome_map(path, rows, grid_names, axes, values):
    panels = _grids(rows, axes, values, lambda square: np.array(
        [sum(r["outcome"] == o for r in square) / len(square) for o in OUTCOMES]))
    fig, axs = _figure(len(panels))
    for ax, (pv, grid) in zip(axs, panels.items()):
        ny, nx = grid.shape
        image = np.ones((ny, nx, 3))
        for i in range(ny):
            for j in range(nx):
                if grid[i, j] is None:
                    continue
                f = grid[i, j]
                image[i, j] = sum(fk * np.array(OUTCOME_COLOURS[o])
                                  for fk, o in zip(f, OUTCOMES))
                if nx * ny <= 150:
                    ax.text(j, i, f"{f[2]:.0%}", ha="center", va="center", fontsize=7,
                            color="white")
        ax.imshow(image, origin="lower", aspect="auto", interpolation="nearest")
        _ticks(ax, axes, values)
        if axes[2]:
            ax.set_title(f"{axes[2]} = {_label(pv)}")
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=c, label=o) for o, c in OUTCOME_COLOURS.items()],
               loc="outside lower center", ncols=3, fontsize=8)
    _title(fig, "Outcome (colours mixed by the fractions of runs; text: fraction solved)",
           rows, grid_names, axes)
    return _save(fig, path)


def _mean(metric):
    def reduce(square):
        v = np.array([np.nan if r[metric] is None else float(r[metric]) for r in square])
        v = v[~np.isnan(v)]
        return float(v.mean()) if v.size else None
    return reduce


def _metric_map(path, rows, grid_names, axes, values, metric):
    from matplotlib.colors import TwoSlopeNorm
    panels = {pv: np.array([[np.nan if v is None else v for v in row] for row in g],
                           dtype=float)
              for pv, g in _grids(rows, axes, values, _mean(metric)).items()}
    every = np.concatenate([g.ravel() for g in panels.values()])
    every = every[np.isfinite(every)]
    lo, hi = (float(every.min()), float(every.max())) if every.size else (0.0, 1.0)
    edge = metric == "lambda_1"
    norm = TwoSlopeNorm(0.0, min(lo, -1e-6), max(hi, 1e-6)) if edge else None
    fig, axs = _figure(len(panels))
    for ax, (pv, grid) in zip(axs, panels.items()):
        image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto",
                          interpolation="nearest", cmap="RdBu_r" if edge else "viridis",
                          norm=norm, vmin=None if edge else lo, vmax=None if edge else hi)
        if edge and min(grid.shape) >= 2 and np.isfinite(grid).all() and (
                grid.min() < 0 < grid.max()):
            ax.contour(grid, levels=[0.0], colors="black", linewidths=1.5)
        _ticks(ax, axes, values)
        if axes[2]:
            ax.set_title(f"{axes[2]} = {_label(pv)}")
    fig.colorbar(image, ax=list(axs), label=metric + (" (nats/step)" if edge else ""))
    what = ("lambda_1 (black line: lambda_1 = 0, the edge of chaos)" if edge
            else f"Mean of {metric}")
    _title(fig, what, rows, grid_names, axes)
    return _save(fig, path)


def _save(fig, path):
    path = Path(path)
    fig.savefig(path, dpi=_DPI)
    return path


def save_maps(folder, rows, grid_names, kind, *, metric=None, axes=None):
    """Write the maps of a sweep's rows into folder; returns their paths.

    train: outcome.png, and map_<metric>.png when a metric is named. diagnose:
    lambda_1.png over spectral_radius x length when both are grid axes (else the first
    axes), and map_<metric>.png. axes: (x[, y[, panel]]) grid names; default the first
    grid axes with more than one value.
    """
    check_map_options(kind, grid_names, metric, axes)
    rows = [r for r in rows if r["status"] == "ok"]
    if not rows:
        return []
    folder = Path(folder)
    layout, values = _layout(rows, grid_names, axes)
    paths = []
    if kind == "train":
        paths.append(_outcome_map(folder / "outcome.png", rows, grid_names, layout, values))
    else:
        edge_axes = axes
        if axes is None and {"spectral_radius", "length"} <= set(grid_names):
            edge_axes = ["spectral_radius", "length"] + [
                n for n in grid_names if n not in ("spectral_radius", "length")][:1]
        edge_layout, edge_values = _layout(rows, grid_names, edge_axes)
        paths.append(_metric_map(folder / "lambda_1.png", rows, grid_names, edge_layout,
                                 edge_values, "lambda_1"))
    if metric is not None and not (kind == "diagnose" and metric == "lambda_1"):
        paths.append(_metric_map(folder / f"map_{metric}.png", rows, grid_names, layout,
                                 values, metric))
    return paths
