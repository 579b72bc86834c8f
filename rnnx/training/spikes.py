"""Spike detection on the global gradient norm: a robust z-score over a rolling window.

    z = (norm - median) / (1.4826 * MAD)

over the last ``window`` finite norms, where MAD is the median absolute deviation (1.4826
makes it estimate the standard deviation of Gaussian data). The median and MAD ignore the
spikes themselves, unlike a mean and standard deviation, so one explosion does not hide
the next. A norm is a spike when z > threshold; only upward jumps count, since the
exploding-gradient problem is about growth.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _reductions
from .._checks import positive, whole_number

__all__ = ["SpikeDetector"]

_MAD_TO_STD = 1.4826


class SpikeDetector:
    """Flags a gradient norm whose robust z-score over the last ``window`` norms exceeds
    ``threshold``. No spike is flagged before ``min_history`` norms have been observed.

    ``score(norm)`` gives z without changing the window; ``observe(norm)`` adds a finite
    norm to the window (the trainer leaves out the norms of updates it rejected).
    """

    def __init__(self, window=100, threshold=10.0, min_history=10):
        self.window = whole_number("window", window, low=3)
        self.min_history = whole_number("min_history", min_history, low=3)
        if min_history > window:
            raise ValueError(f"min_history ({min_history}) must not exceed window ({window})")
        self.threshold = positive("threshold", threshold)
        # the window as a ring buffer: the last n norms (in no particular order, which the
        # median and MAD do not need); the next one overwrites the entry at _next
        self._ring = np.empty(self.window)
        self._n = self._next = 0

    def score(self, norm):
        """Robust z-score of norm (0.0 while fewer than min_history norms were seen)."""
        if self._n < self.min_history:
            return 0.0
        median, mad = _reductions.median_and_mad(self._ring[:self._n])
        # A window of equal norms has MAD 0; the floor keeps z finite and makes only a
        # relative jump of more than threshold * 1e-3 a spike there.
        scale = max(_MAD_TO_STD * mad, 1e-3 * abs(median), 1e-300)
        return float((norm - median) / scale)

    def is_spike(self, norm):
        return self.score(norm) > self.threshold

    def observe(self, norm):
        if math.isfinite(norm):
            self._ring[self._next] = norm
            self._next = (self._next + 1) % self.window
            self._n = min(self._n + 1, self.window)

    def state_dict(self):
        """{"norms": the window, oldest first}."""
        return {"norms": np.roll(self._ring[:self._n], -self._next if self._n == self.window
                                 else 0)}

    def load_state_dict(self, state):
        norms = np.asarray(state["norms"], np.float64).reshape(-1)[-self.window:]
        self._ring[:len(norms)] = norms
        self._n = len(norms)
        self._next = self._n % self.window
