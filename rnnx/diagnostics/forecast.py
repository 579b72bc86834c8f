"""Forecasting an explosion before it happens: growth rates, overflow horizons, trends.

Three rates say where the gradient is heading.

* Back in time, within one step: BPTT multiplies the backward signal
  delta[t] = dL/dh[t] by J_t^T = W_hh^T diag(1 - h[t]^2) once per time step, so
  ln ||delta[t]|| is close to a straight line in the number of steps back from the end,
  k = T-1-t. Its least-squares slope is the **growth rate** g (nats per time step;
  g > 0: the signal grows as it flows back). At that rate a signal of norm n0 at the end
  overflows a float type whose largest value is M after (ln M - ln n0) / g steps: the
  **overflow horizon**, the sequence length the step's model cannot be trained on in that
  dtype (ln M is 88.7 for float32 and 709.8 for float64).

* Over training steps: the global gradient norm of an exploding run rises roughly
  geometrically over its last few dozen steps, so ln ||grad|| against the training step
  is close to a straight line too. TrendForecaster fits it, robustly, over a window of
  steps that rise together, and extrapolates it to a threshold: the predicted number of
  training steps until the norm crosses it.

* Across training steps, along the data: the largest finite-time Lyapunov exponent
  lambda_1 of the recurrence (sampled every few steps) is the growth rate's asymptotic
  value; while it rises, exp(lambda_1 T) predicts the crossing before the norm itself
  rises (TrendForecaster's second channel).
"""
from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .._checks import number_in, positive, whole_number

__all__ = ["log_max", "growth_rate", "overflow_horizon", "line_fit", "theil_sen",
           "kendall_score", "TrendForecaster", "Forecast"]


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


def kendall_score(y):
    """Mann-Kendall's S of the sequence y over its pairs i < j, sum of sign(y[j] - y[i]),
    as a fraction of the number of pairs: 1 for a strictly increasing sequence, -1 for a
    strictly decreasing one, near 0 for noise around a level."""
    y = np.asarray(y, np.float64)
    if len(y) < 2:
        return math.nan
    i, j = np.triu_indices(len(y), 1)
    return float(np.sign(y[j] - y[i]).sum()) / len(i)


@dataclass(frozen=True)
class Forecast:
    """Where the gradient norm is heading. steps: {threshold name: predicted training steps
    until the norm crosses it} (inf: not at the current trend; 0: already above), the
    nearer of the two channels (the norm's trend, the rate's); trend: the slope of
    ln ||grad|| per training step over the window (nats/step; NaN while the norm is not
    rising); rise: ln of the latest norm over the median of the recent ones (NaN while
    not rising); growth: the latest growth rate per time step (nats/step); rate: the
    latest sampled largest Lyapunov exponent (nats per time step; NaN before the first
    sample); rate_trend: its slope per training step (NaN while it is not rising)."""

    steps: dict
    trend: float
    rise: float
    growth: float
    rate: float = math.nan
    rate_trend: float = math.nan


class TrendForecaster:
    """An online forecast of ln ||grad|| over training steps, from two channels.

    The norm's channel: observe(step, norm, growth) adds a step (a non-finite norm is
    the explosion itself, not its trend, and is left out). A crossing is predicted only
    while the norm is rising: the latest norm at least ``rise`` times the median of the
    last ``baseline`` norms, and the last ``window`` norms rising together -- their
    Mann-Kendall score (kendall_score) at least ``agree``. Then the Theil-Sen line of
    ln ||grad|| over those ``window`` steps is extrapolated from the latest norm to each
    threshold. The score is what tells a climb from the noise of a stable run (norms
    wandering by a factor of a few around a level, single spikes that the median and
    the score both ignore).

    The rate's channel: observe_rate(step, rate, length) adds a sample of the largest
    finite-time Lyapunov exponent lambda_1 of the recurrence along the step's batch
    (sequences of ``length`` time steps), taken every few training steps. Once
    lambda_1 > 0 the backward signal grows like exp(lambda_1 * length) back through the
    sequence, so ln ||grad|| moves by about length * d(lambda_1) when lambda_1 does.
    When the last ``rate_samples`` samples strictly increase, their Theil-Sen slope r
    (per training step) predicts a crossing of ln(threshold) once lambda_1 has risen to
    0 (from below) and then by (ln threshold - ln ||grad||) / length: after
    ((ln threshold - ln ||grad||) / length - min(lambda_1, 0)) / r steps. This channel
    sees an explosion that the norm does not show yet: while lambda_1 < 0 the gradient is
    dominated by the last few time steps and its norm stays nearly flat as lambda_1
    climbs towards 0.
    forecast(thresholds) takes the nearer crossing of the two channels.
    """

    def __init__(self, window=8, rise=5.0, baseline=50, agree=0.6, rate_samples=4):
        self.window = whole_number("window", window, low=3)
        self.rise = positive("rise", rise)
        self.baseline = whole_number("baseline", baseline, low=self.window)
        self.agree = number_in("agree", agree, -1, 1, closed="both")
        self.rate_samples = whole_number("rate_samples", rate_samples, low=2)
        self._steps = deque(maxlen=self.baseline)
        self._logs = deque(maxlen=self.baseline)
        self._rate_steps = deque(maxlen=self.rate_samples)
        self._rates = deque(maxlen=self.rate_samples)
        self.length = 0
        self.growth = math.nan

    def observe(self, step, norm, growth=math.nan):
        if math.isfinite(growth):
            self.growth = float(growth)
        if math.isfinite(norm) and norm > 0:
            self._steps.append(float(step))
            self._logs.append(math.log(norm))

    def observe_rate(self, step, rate, length):
        """A sample of lambda_1 (nats per time step) along sequences of length time steps
        (a non-finite rate -- a saturated trajectory -- is left out)."""
        if math.isfinite(rate):
            self._rate_steps.append(float(step))
            self._rates.append(float(rate))
            self.length = int(length)

    def forecast(self, thresholds):
        """A Forecast for {name: threshold} (thresholds of None are left out)."""
        thresholds = {k: v for k, v in thresholds.items() if v is not None}
        steps = {k: math.inf for k in thresholds}
        rate = self._rates[-1] if self._rates else math.nan
        if not self._logs:
            return Forecast(steps, math.nan, math.nan, self.growth, rate)
        last = self._logs[-1]
        for name, value in thresholds.items():
            if last >= math.log(value):
                steps[name] = 0.0
        trend, rise = self._norm_channel(steps, thresholds, last)
        rate_trend = self._rate_channel(steps, thresholds, last)
        return Forecast(steps, trend, rise, self.growth, rate, rate_trend)

    def _norm_channel(self, steps, thresholds, last):
        """(trend, rise) of the norm's channel, its crossings folded into steps."""
        w = self.window
        # not rising even above the smallest recent norm (a cheap bound on the median)
        if len(self._logs) < w or last - min(self._logs) < math.log(self.rise):
            return math.nan, math.nan
        logs = np.fromiter(self._logs, np.float64, len(self._logs))
        rise = float(last - np.median(logs))
        if rise < math.log(self.rise) or kendall_score(logs[-w:]) < self.agree:
            return math.nan, math.nan
        x = np.fromiter(self._steps, np.float64, len(self._steps))[-w:]
        a, b = theil_sen(x, logs[-w:])
        if not a > 0:
            return math.nan, math.nan
        start = max(a * x[-1] + b, last)
        for name, value in thresholds.items():
            if steps[name] > 0:
                steps[name] = min(steps[name], max(0.0, (math.log(value) - start) / a))
        return a, rise

    def _rate_channel(self, steps, thresholds, last):
        """The slope of lambda_1 per training step (NaN unless it is rising), its
        crossings folded into steps."""
        rates = list(self._rates)
        if len(rates) < self.rate_samples or any(b <= a for a, b in zip(rates, rates[1:])):
            return math.nan
        r, _ = theil_sen(np.array(self._rate_steps), np.array(rates))
        if not r > 0:
            return math.nan
        for name, value in thresholds.items():
            if steps[name] > 0:
                # lambda_1 must reach 0, then length * lambda_1 must cover the rest
                need = (math.log(value) - last) / self.length - min(rates[-1], 0.0)
                steps[name] = min(steps[name], max(0.0, need / r))
        return r

    def state_dict(self):
        return {"steps": np.array(self._steps, np.float64),
                "logs": np.array(self._logs, np.float64), "growth": self.growth,
                "rate_steps": np.array(self._rate_steps, np.float64),
                "rates": np.array(self._rates, np.float64), "length": self.length}

    def load_state_dict(self, state):
        for q, key in ((self._steps, "steps"), (self._logs, "logs"),
                       (self._rate_steps, "rate_steps"), (self._rates, "rates")):
            q.clear()
            q.extend(np.asarray(state.get(key, ()), np.float64).tolist())
        self.growth = float(state["growth"])
        self.length = int(state.get("length", 0))
