"""The results folder of a sweep: ``results.csv``, one row a finished cell, and
``sweep.json``, what was swept.

Each row is appended, flushed and fsynced as its cell arrives, so a sweep killed at any
moment keeps every cell it finished; a line cut short by the kill is dropped when the file
is opened again, and the keys already present are skipped by the rerun. Floats are written
with repr (they read back bit for bit), None as an empty field; pandas.read_csv reads the
file as it is. A folder holds one sweep: its kind and base settings must match on a rerun
(the grid may grow).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from .cells import DIAGNOSE_METRICS, TRAIN_METRICS
from .settings import SETTINGS

__all__ = ["RESULTS_NAME", "MANIFEST_NAME", "columns", "ResultsFile", "read_rows",
           "read_manifest", "results_path", "is_results"]

RESULTS_NAME, MANIFEST_NAME = "results.csv", "sweep.json"


def columns(kind):
    metrics = TRAIN_METRICS if kind == "train" else DIAGNOSE_METRICS
    return ["key", "kind", "status", "error", "seconds", *SETTINGS, *metrics]


def _text(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _value(text):
    """A field read back: "" -> None, True/False, int, float (repr round-trips), else str."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def results_path(path):
    """The results file of a folder or file path (a folder holds results.csv)."""
    path = Path(path)
    return path / RESULTS_NAME if path.is_dir() else path


def is_results(path):
    """Whether path is a sweep's results file, or a folder holding one."""
    path = results_path(path)
    try:
        with open(path, newline="") as f:
            return f.readline().startswith("key,kind,status,")
    except (OSError, UnicodeDecodeError):
        return False


def read_rows(path):
    """The rows of a results file, as dicts of typed values (a cut last line dropped)."""
    path = results_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no sweep results at {str(path)!r}")
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[:3] != ["key", "kind", "status"]:
        raise OSError(f"{str(path)!r} is not a results file written by rnnx sweep")
    return [dict(zip(header, map(_value, fields))) for fields in reader]


def read_manifest(folder):
    """sweep.json of a results folder ({} when absent)."""
    path = Path(folder) / MANIFEST_NAME
    return json.loads(path.read_text()) if path.exists() else {}


def _jsonable(settings):
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in settings.items()}


class ResultsFile:
    """The results of one sweep in folder ``out``: ``done`` holds the keys present; append
    writes one row durably. Opening checks that the folder holds this sweep."""

    def __init__(self, out, kind, base, grid):
        self.folder = Path(out)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"out must be a folder; {str(out)!r} is a file")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / RESULTS_NAME
        self.columns = columns(kind)
        manifest = read_manifest(self.folder)
        new = {"kind": kind, "base": _jsonable(base), "grid": grid}
        for what in ("kind", "base"):
            if manifest and manifest.get(what) != new[what]:
                raise ValueError(f"out: {str(out)!r} holds a sweep with another {what} "
                                 f"({manifest.get(what)} vs {new[what]}); use another "
                                 f"--out folder")
        (self.folder / MANIFEST_NAME).write_text(json.dumps(new, indent=1) + "\n")
        self.done = set()
        if self.path.exists() and self.path.stat().st_size:
            self._drop_cut_line()
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), None)
            if header != self.columns:
                raise ValueError(f"out: {str(self.path)!r} has other columns than a "
                                 f"{kind} sweep of this rnnx writes; use another --out")
            self.done = {row["key"] for row in read_rows(self.path)}
        else:
            self._write(self.columns)

    def _drop_cut_line(self):
        """Truncate a last line that a kill cut short (no newline)."""
        with open(self.path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            f.truncate(data.rfind(b"\n") + 1)

    def _write(self, fields):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(fields)
        with open(self.path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def append(self, row):
        """Write row (a dict with the columns) as one line, durably."""
        self._write([_text(row.get(c)) for c in self.columns])
        self.done.add(row["key"])
