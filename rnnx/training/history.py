"""The training log: one record per training step, in memory and streamed to disk.

A record is a flat dict of scalars (see COLUMNS; the per-parameter gradient norms add one
``grad_norm_<name>`` column per parameter). History keeps the columns as numpy arrays and
the per-time-step backward-signal norms delta_norms of every step as a (steps, T) matrix
(NaN-padded when T varies) for heatmaps. LogWriter appends each record to a CSV or
JSON-lines file (chosen by the suffix) and flushes it, so a killed run keeps every row
written before it; load_history reads such a file (and its .npy delta matrix) back.
"""
from __future__ import annotations

import csv
import json
import math
import operator
import os
from pathlib import Path

import numpy as np

from .._checks import choice
from .files import atomic_write

__all__ = ["COLUMNS", "History", "LogWriter", "load_history", "delta_norms_path",
           "blank_record", "peak_delta"]

# name -> kind. "int" columns use -1 for "none"; "float" columns NaN for "not measured".
COLUMNS = {
    "step": "int",                # training step, from 1
    "loss": "float",              # data loss (+ alpha*Omega); NaN when the forward failed
    "grad_norm": "float",         # global L2 norm of the gradients before clipping
    "clipped_norm": "float",      # ... after clipping
    "clip_coef": "float",         # clipped_norm / grad_norm (1.0 when unchanged)
    "lr": "float",                # learning rate the step used (or would have used)
    "max_delta_norm": "float",    # largest ||dL/dh[t]|| over t
    "max_delta_t": "int",         # ... and its time step t
    "overflow_t": "int",          # t where the backward signal overflowed, else -1
    "nonfinite": "bool",          # loss, gradients, backward signal or new weights non-finite
    "spike": "bool",              # robust z-score of grad_norm above the detector threshold
    "skipped": "bool",            # update not applied
    "rolled_back": "bool",        # state restored from the ring buffer, lr lowered
    "omega": "float",             # Pascanu's regulariser value (0 when unused)
    "spectral_radius": "float",   # of W_hh, every diag_every steps (NaN in other rows)
    "sigma_max": "float",         # largest singular value of W_hh, same rows
    "eval_loss": "float",         # on held-out data, every eval_every steps
    "eval_accuracy": "float",     # task criterion on held-out data (task evaluation only)
    # explosion forensics (rnnx.training.forensics, rnnx.training.warnings)
    "growth": "float",            # slope of ln||dL/dh[t]|| per time step back in time
    "overflow_horizon": "float",  # time steps until that signal overflows the dtype
    "warn_steps": "float",        # predicted training steps until the norm crosses a
                                  # threshold (inf: not at the current trend)
    "warning": "bool",            # an early-warning event was emitted at this step
    "shadow_verdict": "str",      # float64 second opinion: real / disputed / artefact
    "shadow_norm": "float",       # the float64 gradient norm of that recomputation
    "blame_param": "str",         # parameter blamed for a spike, failure or warning
    "blame_t": "int",             # time step blamed (first overflow or peak of delta)
    "blame_rows": "str",          # batch elements blamed, space-separated
}
_DTYPES = {"int": np.int64, "float": np.float64, "bool": np.bool_, "str": np.str_}
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


_BLANK = {"int": -1, "float": math.nan, "bool": False, "str": ""}


def blank_record(param_keys):
    """A record with every column at its "not measured" value (NaN, -1, False); the
    per-parameter gradient norms follow the omega column."""
    record = {}
    for column, kind in COLUMNS.items():
        record[column] = _BLANK[kind]
        if column == "omega":
            record.update(("grad_norm_" + k, math.nan) for k in param_keys)
    return record


def peak_delta(delta_norms):
    """(largest delta norm, its time step) of a partial delta_norms (NaN where BPTT did
    not reach); (nan, -1) when there is none."""
    if delta_norms is None or not len(delta_norms):
        return math.nan, -1
    d = np.where(np.isnan(delta_norms), -np.inf, delta_norms)
    t = int(np.argmax(d))
    return (float(d[t]), t) if d[t] > -np.inf else (math.nan, -1)


def _kind(column):
    return COLUMNS.get(column, "float")   # grad_norm_<param> columns are floats


def delta_norms_path(log_path):
    """Where the delta_norms matrix of the log at log_path is saved: run.csv ->
    run.delta_norms.npy."""
    path = Path(log_path)
    return path.with_name(path.stem + ".delta_norms.npy")


class History:
    """Per-step records as numpy columns: ``history["grad_norm"]`` is a float64 array.

    ``history.delta_norms`` is the (steps, T_max) float64 matrix of the per-time-step
    backward-signal norms (NaN-padded), ``history.records()`` the rows as dicts.
    """

    def __init__(self, columns=None):
        self.columns = list(columns) if columns is not None else None
        self._data = {}
        self._lists = None             # the lists of _data in the order of columns
        self._deltas = []

    def append(self, record, delta_norms=None):
        """Add one record (a dict with the same keys as the first one) and its delta_norms
        (T,) (None for NaN)."""
        if self.columns is None:
            self.columns = list(record)
        if self._lists is None:
            self._lists = [self._data.setdefault(k, []) for k in self.columns]
        if len(record) != len(self.columns) or not all(map(operator.eq, record, self.columns)):
            raise ValueError(f"record keys {sorted(record)} differ from the history's "
                             f"columns {sorted(self.columns)}")
        for column, value in zip(self._lists, record.values()):
            column.append(value)
        self._deltas.append(np.empty(0) if delta_norms is None
                            else np.array(delta_norms, np.float64).reshape(-1))

    def __len__(self):
        return len(self._deltas)

    def __contains__(self, column):
        return self.columns is not None and column in self.columns

    def __getitem__(self, column):
        if column not in self:
            raise KeyError(f"no column {column!r}; columns are {self.columns}")
        return np.array(self._data.get(column, []), _DTYPES[_kind(column)])

    @property
    def delta_norms(self):
        T = max((len(d) for d in self._deltas), default=0)
        out = np.full((len(self._deltas), T), np.nan)
        for i, d in enumerate(self._deltas):
            out[i, :len(d)] = d
        return out

    def records(self):
        return [dict(zip(self.columns, row)) for row in zip(*(self._data[k]
                                                               for k in self.columns))]

    def to_dataframe(self):
        """The records as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("History.to_dataframe needs pandas: pip install pandas") from None
        return pd.DataFrame({k: self[k] for k in self.columns or []})

    def state_dict(self):
        """Columns and delta matrix as arrays (for checkpoints)."""
        return {"columns": list(self.columns or []),
                "data": {k: self[k] for k in self.columns or []},
                "delta_norms": self.delta_norms,
                "delta_lengths": np.array([len(d) for d in self._deltas], np.int64)}

    @classmethod
    def from_state_dict(cls, state):
        history = cls(state["columns"] or None)
        lengths = np.asarray(state["delta_lengths"])
        deltas = np.asarray(state["delta_norms"])
        columns = state["columns"]
        for i in range(len(lengths)):
            row = {k: np.asarray(state["data"][k])[i].item() for k in columns}
            history.append(row, deltas[i, :lengths[i]])
        return history

    def save(self, path):
        """Write the history as a log file (CSV or JSON-lines by suffix) plus its .npy,
        each atomically: a run killed meanwhile leaves the old file whole."""
        fmt = _format(path)

        def write(f):
            writer = LogWriter(path, file=f, format=fmt)
            for record in self.records():
                writer.write(record)
        atomic_write(path, write, text=True)
        save_delta_norms(path, self.delta_norms)


def save_delta_norms(log_path, matrix):
    """Atomically write the delta_norms matrix next to the log."""
    atomic_write(delta_norms_path(log_path), lambda f: np.save(f, matrix))


def _format(path):
    fmt = _SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"log path must end in one of {sorted(_SUFFIXES)}; got {str(path)!r}")
    return fmt


class LogWriter:
    """Streams records to a CSV or JSON-lines file, flushing after each one.

    mode "w" starts a new file; "a" appends to an existing one (no second CSV header).
    file: write to this open text file instead (opened with newline=""), which the
    caller closes.
    """

    def __init__(self, path, mode="w", *, file=None, format=None):
        self.path = Path(path)
        self.format = format or _format(path)
        choice("mode", mode, ("w", "a"))
        self._header = mode == "a" and self.path.exists() and self.path.stat().st_size > 0
        self._owned = file is None
        self._file = file if file is not None else open(
            self.path, mode, newline="" if self.format == "csv" else None, encoding="utf-8")
        self._csv = csv.writer(self._file) if self.format == "csv" else None

    @staticmethod
    def check_path(path):
        """Raise ValueError unless path ends in a log suffix (.csv, .jsonl, .ndjson)."""
        _format(path)

    def write(self, record):
        if self._csv is not None:
            if not self._header:
                self._csv.writerow(record.keys())
                self._header = True
            self._csv.writerow([int(v) if isinstance(v, (bool, np.bool_)) else v
                                for v in record.values()])
        else:
            self._file.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def close(self):
        if self._owned:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _plain(v):
    """numpy scalars -> Python scalars for json."""
    return v.item() if isinstance(v, np.generic) else v


def _parse(column, text):
    kind = _kind(column)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text in ("1", "True", "true")
    if kind == "str":
        return text
    return int(text)


def load_history(path):
    """Read a log written by LogWriter / Trainer(log_path=...) back into a History.

    LogWriter ends every record with a newline, so a last line without one is a record
    cut short by a killed run: it is dropped. Anything else that cannot be read (not
    UTF-8, a value that is not a number, a row with another number of fields, a line that
    is not a JSON object) is a ValueError naming the file and the line. The delta_norms
    matrix is read from the .npy next to the log when it exists (rows beyond the log's
    are dropped; rows it lacks are NaN).
    """
    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise FileNotFoundError(f"no log file at {str(path)!r}")
    name = os.fsencode(path).decode("utf-8", "backslashreplace")   # printable

    def bad(line, what):
        return ValueError(f"log file '{name}', line {line}: {what}")

    try:
        with open(path, newline="" if fmt == "csv" else None, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"log file '{name}' is not a text log written by rnnx (not UTF-8: "
                         f"byte {e.object[e.start]:#04x} at offset {e.start})") from None
    lines = text.splitlines()
    if lines and not text.endswith(("\n", "\r")):
        lines.pop()                           # the torn last line of a killed run
    records = []
    if fmt == "csv":
        try:
            rows = list(csv.reader(lines))
        except csv.Error as e:
            raise ValueError(f"log file '{name}' is not a CSV log ({e})") from None
        header = rows[0] if rows else None
        for n, row in enumerate(rows[1:], start=2):
            if len(row) != len(header):
                raise bad(n, f"{len(row)} fields where the header has {len(header)}")
            record = {}
            for k, v in zip(header, row):
                if _kind(k) == "bool" and v not in ("0", "1", "True", "False", "true",
                                                    "false"):
                    raise bad(n, f"column {k!r} is {v!r}, not a bool (0 or 1)")
                try:
                    record[k] = _parse(k, v)
                except ValueError:
                    raise bad(n, f"column {k!r} is {v!r}, not a number") from None
            records.append(record)
    else:
        for n, line in enumerate(lines, start=1):
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                raise bad(n, f"not JSON ({e.msg})") from None
            if not isinstance(raw, dict):
                raise bad(n, f"a JSON {type(raw).__name__}, not an object")
            for k, v in raw.items():
                if _kind(k) == "str":
                    if not isinstance(v, str):
                        raise bad(n, f"{k!r} is {v!r}, not a string")
                elif not (v is None or isinstance(v, (int, float))):
                    raise bad(n, f"{k!r} is {v!r}, not a number")
            records.append({k: (math.nan if v is None else v) for k, v in raw.items()})
    deltas = None
    npy = delta_norms_path(path)
    if npy.exists():
        shown = os.fsencode(npy).decode("utf-8", "backslashreplace")
        try:
            deltas = np.load(npy, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"cannot read '{shown}', the backward-signal norms of the log "
                             f"'{name}' ({type(e).__name__}): delete it or write it "
                             "again") from None
        if deltas.ndim != 2 or deltas.dtype.kind != "f":
            raise ValueError(f"'{shown}' holds a {deltas.dtype} array of shape "
                             f"{deltas.shape}; expected a (steps, T) float matrix")
    history = History()
    for i, record in enumerate(records):
        try:
            history.append(record, deltas[i] if deltas is not None and i < len(deltas)
                           else None)
        except ValueError as e:
            raise bad(i + 2 if fmt == "csv" else i + 1, str(e)) from None
    return history
