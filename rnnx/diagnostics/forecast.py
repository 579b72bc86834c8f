"""Forecasting an explosion before it happens: growth rates, overflow horizons, trends.

Two rates say where the gradient is heading.

* Back in time, within one step: BPTT multiplies the backward signal
  delta[t] = dL/dh[t] by J_t^T = W_hh^T diag(1 - h[t]^2) once per time step, so
  ln ||delta[t]|| is close to a straight line in the number of steps back from the end,
  k = T-1-t. Its least-squares slope is the **growth rate** g (nats per time step;
  g > 0: the signal grows as it flows back). At that rate a signal of norm n0 at the end
  overflows a float type whose largest value is M after (ln M - ln n0) / g steps: the
  **overflow horizon**, the sequence length the step's model cannot be trained on in that
  dtype (ln M is 88.7 for float32 and 709.8 for float64).

* Over training steps: the global gradient norm of an exploding run rises roughly
  geometrically over its last few dozen steps (W_hh's singular values grow, the growth
  rate with them), so ln ||grad|| against the training step is close to a straight line
  too. TrendForecaster fits it over sliding windows, robustly, and extrapolates it to a
  threshold: the predicted number of training steps until the norm crosses it.
"""
from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .._checks import positive, whole_number

__all__ = ["log_max", "growth_rate", "overflow_horizon", "line_fit", "theil_sen",
           "TrendForecaster", "Forecast"]


@functools.lru_cache(maxsize=None)
def log_max(dtype):
    """ln of the largest finite value of a float dtype (88.72 for float32)."""
    return float(np.log(np.finfo(np.dtype(dtype)).max))


@functools.lru_cache(maxsize=64)
def _centred_lags(T):
    """(k - mean k, sum of its squares) for the lags k = T-1-t, t = 0..T-1."""
    k = np.arange(T - 1, -1, -1, dtype=np.float64)
    k -= k.mean()
    return k, float(k @ k)


def line_fit(x, y):
    """The least-squares slope of y against x (1-D; NaN without two distinct x)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc = x - x.mean()
    sxx = float(xc @ xc)
    return float(xc @ (y - y.mean())) / sxx if sxx > 0 else math.nan


def theil_sen(x, y):
    """(slope, intercept) of the Theil-Sen line through (x, y): the median of the slopes
    between all pairs of points with distinct x, and the median of y - slope * x. Unlike
    least squares it ignores a minority of outliers (one spike among steady norms)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    i, j = np.triu_indices(len(x), 1)
    dx = x[j] - x[i]
    ok = dx != 0
    if not ok.any():
        return math.nan, math.nan
    a = float(np.median((y[j] - y[i])[ok] / dx[ok]))
    return a, float(np.median(y - a * x))


def growth_rate(delta_norms):
    """The growth rate of the backward signal back in time, in nats per time step: the
    least-squares slope of ln ||delta[t]|| against k = T-1-t over the finite, positive
    entries of delta_norms (T,) (NaN where BPTT stopped early). NaN with fewer than two
    such entries."""
    d = np.asarray(delta_norms, np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(d)
    if len(d) > 1 and np.isfinite(logs.sum()):       # the usual case: every norm > 0
        k, kk = _centred_lags(len(d))
        return float(k @ logs) / kk
    ok = np.isfinite(d) & (d > 0)
    if np.count_nonzero(ok) < 2:
        return math.nan
    k = (len(d) - 1 - np.arange(len(d)))[ok]
    return line_fit(k, np.log(d[ok]))


def overflow_horizon(rate, dtype, start_norm=1.0):
    """The number of time steps after which a backward signal of norm start_norm,
    growing by rate nats per time step, exceeds the largest finite value of dtype
    (inf when rate <= 0 or NaN)."""
    if not rate > 0:
        return math.inf
    start = math.log(start_norm) if start_norm > 0 else 0.0
    return max(0.0, (log_max(dtype) - start) / rate)


@dataclass(frozen=True)
class Forecast:
    """Where the gradient norm is heading. steps: {threshold name: predicted training steps
    until the norm crosses it} (inf: not at the current trend; 0: already above); trend:
    the slope of ln ||grad|| per training step behind the nearest crossing (nats/step;
    the steepest window's when all are crossed; NaN while the norm is not rising); rise:
    ln of the latest norm over the median of the recent ones (NaN while not rising);
    growth: the latest growth rate per time step (nats/step)."""

    steps: dict
    trend: float
    rise: float
    growth: float


class TrendForecaster:
    """An online forecast of ln ||grad|| over training steps.

    observe(step, norm, growth) adds a step (a non-finite norm is the explosion itself,
    not its trend, and is left out); forecast(thresholds) predicts the training steps
    until the norm crosses each threshold. A crossing is predicted only while the norm is
    rising: the latest ``persist`` norms all at least ``rise`` times the median of the last
    ``baseline`` norms, once the longest window is filled. Then a Theil-Sen line is
    fitted to ln ||grad|| over each of the last ``windows`` steps (a short window
    follows an accelerating climb, a longer one is steadier) and each line with a
    positive slope is extrapolated from the latest norm; the nearest crossing counts.
    The gate keeps the noise of a stable run -- norms wandering by a factor of a few,
    single spikes that the median ignores -- from extrapolating to a crossing.
    """

    def __init__(self, windows=(5, 10), rise=30.0, baseline=50, persist=1):
        if isinstance(windows, int):
            windows = (windows,)
        self.windows = tuple(whole_number("windows", w, low=3) for w in windows)
        self.rise = positive("rise", rise)
        self.baseline = whole_number("baseline", baseline, low=max(self.windows))
        self.persist = whole_number("persist", persist)
        self._steps = deque(maxlen=self.baseline)
        self._logs = deque(maxlen=self.baseline)
        self.growth = math.nan

    def observe(self, step, norm, growth=math.nan):
        if math.isfinite(growth):
            self.growth = float(growth)
        if math.isfinite(norm) and norm > 0:
            self._steps.append(float(step))
            self._logs.append(math.log(norm))

    def forecast(self, thresholds):
        """A Forecast for {name: threshold} (thresholds of None are left out)."""
        thresholds = {k: v for k, v in thresholds.items() if v is not None}
        steps = {k: math.inf for k in thresholds}
        if not self._logs:
            return Forecast(steps, math.nan, math.nan, self.growth)
        last = self._logs[-1]
        for name, value in thresholds.items():
            if last >= math.log(value):
                steps[name] = 0.0
        if len(self._logs) < max(self.windows) or min(
                self._logs[-i] for i in range(1, self.persist + 1)) - min(
                self._logs) < math.log(self.rise):
            # not rising even above the smallest recent norm (a cheap bound on the median)
            return Forecast(steps, math.nan, math.nan, self.growth)
        logs = np.fromiter(self._logs, np.float64, len(self._logs))
        if float(logs[-self.persist:].min() - np.median(
                logs)) < math.log(self.rise):
            return Forecast(steps, math.nan, math.nan, self.growth)
        x = np.fromiter(self._steps, np.float64, len(self._steps))
        best, trend, slopes = math.inf, math.nan, []
        for w in self.windows:
            a, b = theil_sen(x[-w:], logs[-w:])
            if not a > 0:
                continue
            slopes.append(a)
            start = max(a * x[-1] + b, last)
            for name, value in thresholds.items():
                if steps[name] > 0:
                    k = max(0.0, (math.log(value) - start) / a)
                    steps[name] = min(steps[name], k)
                    if k < best:
                        best, trend = k, a
        if slopes and math.isnan(trend):       # every threshold already crossed
            trend = max(slopes)
        return Forecast(steps, trend, float(last - np.median(logs)), self.growth)

    def state_dict(self):
        return {"steps": np.array(self._steps, np.float64),
                "logs": np.array(self._logs, np.float64), "growth": self.growth}

    def load_state_dict(self, state):
        self._steps.clear()
        self._logs.clear()
        self._steps.extend(np.asarray(state["steps"], np.float64).tolist())
        self._logs.extend(np.asarray(state["logs"], np.float64).tolist())
        self.growth = float(state["growth"])
