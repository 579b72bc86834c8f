"""Blame for an exploding step: which parameter, which time step, which sequences.

* The parameter: the first whose gradient is non-finite, else the one with the largest
  ratio ||grad|| / max(||weight||, 1) -- the size of the step a plain update would take
  relative to the weight; weights smaller than 1 in norm count as 1, so that a bias that
  is still zero is compared by its gradient's size rather than divided by zero.
* The time step: where BPTT's backward signal delta[t] = dL/dh[t] first became non-finite
  (the pass runs from t = T-1 down to 0, so the largest such t), else where its norm peaks.
* The batch elements: the rows b of delta[t] (B, H) at that time step that are
  non-finite, else those whose norm is at least half the largest row's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Blame", "blame_parameter", "blame_time_step", "blame_rows", "safe_norms"]

FLOOR = 1.0         # floor on ||weight|| in the relative gradient size
MAX_ROWS = 5        # batch elements named at most


def _norm(a):
    a = np.asarray(a, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sqrt(np.sum(a * a)))


def safe_norms(a, axis):
    """L2 norms of the finite array a over axis, scaled by its largest entry so that the
    squares cannot overflow."""
    a = np.asarray(a, np.float64)
    top = float(np.max(np.abs(a))) if a.size else 0.0
    if top == 0:
        return np.sqrt(np.sum(a * a, axis=axis))          # zeros
    return top * np.sqrt(np.sum((a / top) ** 2, axis=axis))


def blame_parameter(grads, params):
    """The name of the parameter to blame: the first (in grads' order) whose gradient
    holds a non-finite value, else the largest ||grads[k]|| / max(||params[k]||, FLOOR).
    None for no gradients."""
    best, best_ratio = None, -1.0
    for k, g in grads.items():
        g = np.asarray(g)
        if not np.all(np.isfinite(g)):
            return k
        ratio = _norm(g) / max(_norm(params[k]), FLOOR)
        if ratio > best_ratio:
            best, best_ratio = k, ratio
    return best


def blame_time_step(delta_norms):
    """The time step to blame in delta_norms (T,) (NaN where BPTT did not reach): the
    largest t whose norm is infinite, else the argmax of the finite norms; -1 when none is
    known."""
    d = np.asarray(delta_norms, np.float64).reshape(-1)
    inf = np.flatnonzero(np.isinf(d))
    if inf.size:
        return int(inf[-1])
    finite = np.where(np.isfinite(d), d, -np.inf)
    if not finite.size or finite.max() == -np.inf:
        return -1
    return int(np.argmax(finite))


def blame_rows(delta_t):
    """The batch elements to blame at one time step, delta_t (B, H): the rows holding a
    non-finite value, else those whose norm is at least half the largest row norm, largest
    first; at most MAX_ROWS."""
    delta_t = np.asarray(delta_t, np.float64)
    bad = np.flatnonzero(~np.all(np.isfinite(delta_t), axis=1))
    if bad.size:
        return tuple(int(b) for b in bad[:MAX_ROWS])
    rows = safe_norms(delta_t, axis=1)
    order = np.argsort(-rows, kind="stable")
    keep = [int(b) for b in order if rows[b] >= 0.5 * rows[order[0]]]
    return tuple(keep[:MAX_ROWS])


@dataclass(frozen=True)
class Blame:
    """parameter (name or None), time_step (-1: unknown), rows (batch elements)."""

    parameter: str | None = None
    time_step: int = -1
    rows: tuple = ()

    def describe(self):
        """One phrase: 'blame W_hh, time step t=12, batch elements [3, 7]'."""
        parts = [f"blame {self.parameter or '?'}"]
        if self.time_step >= 0:
            parts.append(f"time step t={self.time_step}")
        if self.rows:
            parts.append(f"batch element{'s' if len(self.rows) > 1 else ''} "
                         f"{list(self.rows)}")
        return ", ".join(parts)

    def to_record(self, record):
        record["blame_param"] = self.parameter or ""
        record["blame_t"] = self.time_step
        record["blame_rows"] = " ".join(map(str, self.rows))

    def info(self):
        return {"parameter": self.parameter, "time_step": self.time_step,
                "batch_elements": list(self.rows)}

