"""Sweeps: stability maps over a grid of ``rnnx train`` settings, on local processes or a
Dask cluster.

settings  the settings of one run and the run they build (task, model, optimizer, trainer)
grid      axes parsed and checked; the cells of a grid, each keyed by its settings
cells     what one cell computes (a short training run, or a diagnosis of the init)
engines   where cells run: local process pool, Dask, a plain loop
results   the results folder: one CSV row per finished cell, appended as it arrives
maps      the PNG stability maps
run       rnnx.sweep(): the cells on an engine, saved and mapped

``rnnx.sweep`` is the function (rnnx/__init__.py binds it after importing this package);
reach the modules with ``from rnnx.sweep import grid`` or ``import rnnx.sweep.grid as
grid``, not as attributes of ``rnnx.sweep``.
"""
from .grid import parse_grid
from .maps import save_maps
from .results import read_rows
from .run import SweepResult, sweep
from .settings import SETTINGS, build_run

__all__ = ["sweep", "SweepResult", "SETTINGS", "build_run", "parse_grid", "read_rows",
           "save_maps"]
