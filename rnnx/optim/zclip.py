"""ZClip: clip the global gradient norm when its z-score says it is a spike.

Kumar, Owen, Roy Chowdhury and Güra 2025, "ZClip: Adaptive Spike Mitigation for LLM
Pre-Training" (arXiv:2504.02507). With g_t the global L2 norm of step t's gradients:

* warm-up: the first ``warmup`` norms pass through (only max_norm applies) and are
  recorded; then mu = their mean and var = their population variance (divide by N).
* every later step: sigma = sqrt(var) and z = (g_t - mu) / (sigma + eps), from the
  statistics of the steps before. If z > z_threshold the norm is a spike and is brought
  down to g* by ``mode``:

  - "reciprocal" (the paper's method): g* = mu + (z_threshold^2 / z) sigma. At
    z = z_threshold this is g_t itself, and the larger the spike, the closer g* gets
    to mu: a bigger outlier is trusted less.
  - "threshold": g* = mu + z_threshold sigma, the edge of the band.
  - "mean": g* = mu.

  Otherwise g* = g_t. The gradients are rescaled by g* / g_t (then by max_norm / g_t if
  that is smaller), and the statistics are updated with g*, the clipped norm -- a spike
  would otherwise inflate the mean and variance that are meant to catch the next one:
  mu <- alpha mu + (1 - alpha) g*, var <- alpha var + (1 - alpha) (g* - mu)^2 with the
  new mu.

A non-finite norm is passed through unchanged and not recorded (see rnnx.optim.clipping).
While every norm seen so far is 0 (mu = sigma = 0) nothing is clipped: there is no scale
to clip to, and clipping to 0 would stop training for good.
"""
from __future__ import annotations

import math

import numpy as np

from .._checks import positive, whole_number
from .clipping import Transform, clip_by_global_norm

__all__ = ["zclip", "ZCLIP_MODES"]

ZCLIP_MODES = ("reciprocal", "threshold", "mean")


class zclip(Transform):
    """ZClip (Kumar et al. 2025): z-score adaptive clipping by global norm (module docs).

    z_threshold: z-score above which a norm is a spike (the paper uses 2.5); alpha: EMA
    decay of the norm's mean and variance, in (0, 1) (0.97); warmup: steps that only
    record the norm before the statistics start (25); mode: one of ZCLIP_MODES;
    max_norm: an optional fixed cap on the norm, also during warm-up; eps: added to
    sigma in the z-score.
    """

    def __init__(self, z_threshold=2.5, alpha=0.97, warmup=25, mode="reciprocal", *,
                 max_norm=None, eps=1e-6):
        self.z_threshold = positive("z_threshold", z_threshold)
        self.alpha = positive("alpha", alpha)
        if not self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
        self.warmup = whole_number("warmup", warmup)
        if mode not in ZCLIP_MODES:
            raise ValueError(f"mode must be one of {ZCLIP_MODES}; got {mode!r}")
        self.mode = mode
        self.max_norm = positive("max_norm", max_norm, none=True)
        self.eps = positive("eps", eps)
        self._warmup_norms = []
        self._mean = self._var = None           # None until the warm-up is over

    @property
    def mean(self):
        """The EMA of the (clipped) norm; None during the warm-up."""
        return self._mean

    @property
    def std(self):
        """sqrt of the EMA of its variance; None during the warm-up."""
        return None if self._var is None else math.sqrt(self._var)

    def _target(self, norm):
        """g*: the norm this step is brought down to by the z-score rule (norm if none)."""
        sigma = math.sqrt(self._var)
        z = (norm - self._mean) / (sigma + self.eps)
        if not z > self.z_threshold:
            return norm
        target = {"reciprocal": lambda: self._mean + self.z_threshold ** 2 / z * sigma,
                  "threshold": lambda: self._mean + self.z_threshold * sigma,
                  "mean": lambda: self._mean}[self.mode]()
        return target if target > 0 else norm

    def _record(self, norm):
        """Update the statistics with this step's norm (clipped); returns the target."""
        if self._mean is None:
            self._warmup_norms.append(norm)
            if len(self._warmup_norms) >= self.warmup:
                w = np.array(self._warmup_norms)
                self._mean, self._var = float(w.mean()), float(np.mean((w - w.mean()) ** 2))
                self._warmup_norms = []
            return norm
        target = self._target(norm)
        a = self.alpha
        self._mean = a * self._mean + (1 - a) * target
        self._var = a * self._var + (1 - a) * (target - self._mean) ** 2
        return target

    def coefficient(self, norm):
        if not math.isfinite(norm):
            return 1.0                  # left to the caller's non-finite policy
        target = self._record(norm)
        if self.max_norm is not None:
            target = min(target, self.max_norm)
        return 1.0 if target >= norm else target / norm

    def _transform(self, grads, params, norm):
        c = self.coefficient(norm)
        if c == 1.0:
            return dict(grads), norm
        # a global-norm clip to c * norm (> 0: the target is) rescales every array by c
        new, report = clip_by_global_norm(c * norm)(grads, norm=norm)
        return new, report.norm_after

    def state_dict(self):
        return {"warmup_norms": np.array(self._warmup_norms, dtype=np.float64),
                "mean": self._mean, "var": self._var}

    def load_state_dict(self, d):
        if set(d) != {"warmup_norms", "mean", "var"}:
            raise KeyError(f"zclip state must have exactly the keys 'mean', 'var' and "
                           f"'warmup_norms'; got {sorted(d)}")
        if (d["mean"] is None) != (d["var"] is None):
            raise ValueError("zclip state: 'mean' and 'var' must both be None (warm-up) or "
                             f"both numbers; got {d['mean']!r} and {d['var']!r}")
        self._warmup_norms = np.asarray(d["warmup_norms"], np.float64).reshape(-1).tolist()
        self._mean = None if d["mean"] is None else float(d["mean"])
        self._var = None if d["var"] is None else float(d["var"])
