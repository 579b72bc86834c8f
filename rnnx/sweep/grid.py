"""The grid of a sweep: its axes parsed and checked, and the cells it spans.

An axis is a setting of ``rnnx train`` (rnnx.sweep.settings) with a list of values, written
``NAME=V1,V2,...`` or ``NAME=START:STOP:COUNT`` (COUNT evenly spaced values, both ends
included). Every value is checked before any cell runs; an error names the axis. A cell is
the base settings with one value per axis and one seed; its key is a hash of its complete
settings, so the same cell has the same key in every run (resuming a sweep skips the keys
already in its results file).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import numbers
from dataclasses import dataclass

import numpy as np

from .settings import SETTINGS, check_settings

__all__ = ["Cell", "parse_axis", "parse_grid", "check_grid", "expand", "value_order"]


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: kind ("train" | "diagnose"), complete settings, key."""

    kind: str
    settings: dict
    key: str


def _setting(name):
    if name not in SETTINGS:
        raise ValueError(f"grid {name}: unknown setting; expected one of "
                         f"{', '.join(SETTINGS)}")
    return SETTINGS[name]


def _range(name, text):
    """Values of START:STOP:COUNT, inclusive."""
    setting = _setting(name)
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"grid {name}: a range is START:STOP:COUNT; got {text!r}")
    if not setting.numeric:
        raise ValueError(f"grid {name}: a range needs a numeric setting; {name} takes "
                         f"{setting.expected()}")
    try:
        start, stop = float(parts[0]), float(parts[1])
        count = int(parts[2])
    except ValueError:
        raise ValueError(f"grid {name}: a range is START:STOP:COUNT with numbers and an int "
                         f"COUNT; got {text!r}") from None
    if count < 1 or (count == 1 and start != stop):
        raise ValueError(f"grid {name}: COUNT must be >= 2 (1 when START == STOP); "
                         f"got {text!r}")
    values = np.linspace(start, stop, count)
    if setting.kind == "int":
        if not np.all(values == np.round(values)):
            raise ValueError(f"grid {name}: {text!r} does not give whole numbers "
                             f"({', '.join(f'{v:g}' for v in values)})")
        return [setting.check(int(round(v))) for v in values]
    # 12 significant digits: 0.8:2.0:13 gives 0.9, not 0.9000000000000001
    return [setting.check(float(f"{v:.12g}")) for v in values]


def parse_axis(text):
    """(name, values) of one ``NAME=V1,V2,...`` or ``NAME=START:STOP:COUNT``."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise ValueError(f"grid: expected NAME=V1,V2,... or NAME=START:STOP:COUNT; "
                         f"got {text!r}")
    return name, _values(name, values.strip())


def _values(name, text):
    setting = _setting(name)
    if not text:
        raise ValueError(f"grid {name}: no values")
    if ":" in text:
        return _range(name, text)
    items = [v.strip() for v in text.split(",")]
    if any(not v for v in items):
        raise ValueError(f"grid {name}: an empty value in {text!r}")
    return [setting.parse(v) for v in items]


def _checked_values(name, values):
    """A checked list of an axis's values given as a string or a list (API)."""
    if isinstance(values, str):
        return _values(name, values)
    setting = _setting(name)
    if not isinstance(values, (list, tuple, np.ndarray, range)):
        raise ValueError(f"grid {name}: expected a list of values or a string "
                         f"'V1,V2' / 'START:STOP:COUNT'; got {type(values).__name__}")
    if not len(values):
        raise ValueError(f"grid {name}: no values")
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        out.append(setting.parse(v) if isinstance(v, str) else setting.check(v))
    return out


def check_grid(grid):
    """{name: [values]} checked: known settings, typed values, no repeats, no seed."""
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict of setting name -> values; got "
                        f"{type(grid).__name__}")
    out = {}
    for name, values in grid.items():
        name = str(name).replace("-", "_")
        if name == "seed":
            raise ValueError("grid seed: give the number of seeds with seeds= (--seeds N), "
                             "not as a grid axis")
        values = _checked_values(name, values)
        repeated = [v for i, v in enumerate(values) if v in values[:i]]
        if repeated:
            raise ValueError(f"grid {name}: value {repeated[0]!r} appears twice")
        out[name] = values
    return out


def parse_grid(specs):
    """{name: [values]} of the command line's --grid texts (an axis given twice: error)."""
    grid = {}
    for text in specs:
        name, values = parse_axis(text)
        if name in grid:
            raise ValueError(f"grid {name}: given twice")
        grid[name] = values
    return check_grid(grid)


def value_order(value):
    """Sort key of an axis's values: None first, then numbers by value, then names."""
    return (value is not None, isinstance(value, str), 0 if value is None else value)


def _key(kind, settings):
    text = json.dumps({"kind": kind, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(kind, base, grid, seeds):
    """The cells of a sweep, axes in grid order and seeds innermost; every cell's settings
    are checked (ValueError naming the setting) before any runs.

    seeds: N (seeds base["seed"] .. base["seed"] + N - 1) or a list of ints.
    """
    if kind not in ("train", "diagnose"):
        raise ValueError(f"kind must be 'train' or 'diagnose'; got {kind!r}")
    grid = check_grid(grid)
    base = check_settings(base)
    first = base["seed"]
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1; got {seeds}")
        seeds = range(first, first + int(seeds))
    elif not isinstance(seeds, (list, tuple, range)) or not seeds:
        raise ValueError(f"seeds must be a number of seeds >= 1 or a list of ints; "
                         f"got {seeds!r}")
    seeds = [SETTINGS["seed"].check(s) for s in seeds]
    names = list(grid)
    cells = []
    for values in itertools.product(*(grid[n] for n in names)):
        for seed in seeds:
            settings = dict(base)          # a grid value overrides the base value
            settings.update(zip(names, values))
            settings["seed"] = seed
            try:
                settings = check_settings(settings)
            except ValueError as e:
                at = ", ".join(f"{n}={v}" for n, v in zip(names, values))
                raise ValueError(f"grid cell {at}: {e}") from None
            cells.append(Cell(kind, settings, _key(kind, settings)))
    return cells
