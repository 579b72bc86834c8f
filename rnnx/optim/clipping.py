"""Gradient clipping as composable transformations, in the style of optax.

Each transformation t is called as ``new_grads, report = t(grads, params)`` and never
modifies its input dicts or arrays; the ClipReport gives the global L2 norm (over all
arrays of grads) before and after. If the global norm of the incoming grads is NaN or
inf, every transformation returns them unchanged with norm_before = norm_after = that
value: clipping would turn a non-finite gradient into finite garbage (np.clip(inf) is a
plausible-looking number), and the caller's non-finite policy must see it instead.
t.state_dict() / t.load_state_dict(d) save and restore the state (AutoClip's history of
norms; {} for the stateless ones).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .._checks import number_in, positive, whole_number
from .norms import array_norm, array_norms, norm_of_norms

__all__ = ["ClipReport", "Transform", "global_norm", "array_norm", "array_norms",
           "norm_of_norms", "clip_by_global_norm", "clip_by_value", "clip_by_parameter_norm",
           "adaptive_clip", "autoclip", "chain", "clip_for_update"]


@dataclass(frozen=True)
class ClipReport:
    """Global L2 norms of the grads before and after a transformation.

    coefficient = norm_after / norm_before (1.0 when nothing changed or norm_before is 0
    or non-finite).
    """

    norm_before: float
    norm_after: float
    coefficient: float


def _arrays(grads):
    if not hasattr(grads, "items"):
        raise TypeError(f"grads must be a dict of arrays; got {type(grads).__name__}")
    return {k: np.asarray(g) for k, g in grads.items()}


def global_norm(grads):
    """sqrt(sum of squares of every entry of every array), as a float.

    Neither overflows nor underflows (a float64 gradient of 1e200 has a finite norm; see
    rnnx.optim.norms). NaN if any entry is NaN, else inf if any is inf.
    """
    return norm_of_norms(array_norms(_arrays(grads).values()))


def _scaled(g, scale):
    return g * g.dtype.type(scale) if g.dtype.kind == "f" else g * scale


class Transform:
    """A gradient transformation: __call__(grads, params=None) -> (new_grads, report)."""

    def __call__(self, grads, params=None, *, norm=None):
        """norm: global_norm(grads) when the caller has it already (the Trainer does)."""
        grads = _arrays(grads)
        before = global_norm(grads) if norm is None else norm
        if not math.isfinite(before):
            return dict(grads), ClipReport(before, before, 1.0)
        new, after = self._transform(grads, params, before)
        if after is None:
            unchanged = all(new[k] is g for k, g in grads.items())   # the usual case
            after = before if unchanged else global_norm(new)
        return new, ClipReport(before, after, after / before if before > 0 else 1.0)

    def _transform(self, grads, params, norm):
        """(new grads, their global norm, or None to have it measured)."""
        raise NotImplementedError

    def coefficient(self, norm):
        """The one factor by which this transformation multiplies every gradient, given
        their finite global norm; None if it does more than rescale them all alike.

        A caller that has the norm can then fold the factor into the update rather than
        build scaled copies (the Trainer hands it to the optimizer's compiled update). A
        stateful transformation updates its state as a call would.
        """
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        if d:
            raise KeyError(f"{type(self).__name__} is stateless; got state keys {sorted(d)}")

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class _Rescale(Transform):
    """A transformation that multiplies every gradient by coefficient(norm)."""

    def _transform(self, grads, params, norm):
        c = self.coefficient(norm)
        if c == 1.0:
            return dict(grads), norm
        # the norm after is c * norm, up to rounding: no need to measure it again
        return {k: _scaled(g, c) for k, g in grads.items()}, c * norm


def _down_to(norm, max_norm):
    """The factor that scales a global norm down to max_norm (1 if it is not above)."""
    return 1.0 if norm <= max_norm else max_norm / norm


class clip_by_global_norm(_Rescale):
    """Pascanu et al. 2013, Algorithm 1: if ||g|| > max_norm, g <- g * max_norm / ||g||.

    ||g|| is the global norm over all arrays, so the update keeps its direction.
    """

    def __init__(self, max_norm):
        self.max_norm = positive("max_norm", max_norm)

    def coefficient(self, norm):
        return _down_to(norm, self.max_norm)


class clip_by_value(Transform):
    """Every entry clipped to [-limit, limit] (changes the direction of the update)."""

    def __init__(self, limit):
        self.limit = positive("limit", limit)

    def _transform(self, grads, params, norm):
        return {k: np.clip(g, -self.limit, self.limit).astype(g.dtype, copy=False)
                for k, g in grads.items()}, None


class clip_by_parameter_norm(Transform):
    """Each array rescaled separately to L2 norm <= max_norm."""

    def __init__(self, max_norm):
        self.max_norm = positive("max_norm", max_norm)

    def _transform(self, grads, params, norm):
        out = {}
        for k, g in grads.items():
            n = array_norm(g)
            out[k] = _scaled(g, self.max_norm / n) if n > self.max_norm else g
        return out, None


def _unit_norms(a):
    """L2 norm of every unit: rows of a matrix (a unit's incoming weights), entries of a
    vector (a bias entry per unit), as an array that broadcasts against a."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim <= 1:
        return np.abs(a)
    return np.sqrt(np.sum(np.square(a), axis=tuple(range(1, a.ndim)), keepdims=True))


class adaptive_clip(Transform):
    """Adaptive gradient clipping, unit-wise (Brock et al. 2021, "NFNets").

    For every unit i (row of a weight matrix, entry of a bias vector):
    if ||G_i|| > clipping * max(||W_i||, eps), G_i <- G_i * clipping * max(||W_i||, eps)
    / ||G_i||. Needs params (the current weights) with the same keys and shapes.
    """

    def __init__(self, clipping=0.01, eps=1e-3):
        self.clipping = positive("clipping", clipping)
        self.eps = positive("eps", eps)

    def _transform(self, grads, params, norm):
        if params is None:
            raise ValueError("adaptive_clip needs params: call it as t(grads, params)")
        out = {}
        for k, g in grads.items():
            if k not in params or np.shape(params[k]) != g.shape:
                raise ValueError(f"adaptive_clip: params[{k!r}] must exist with the shape "
                                 f"{g.shape} of grads[{k!r}]")
            limit = self.clipping * np.maximum(_unit_norms(params[k]), self.eps)
            gnorm = _unit_norms(g)
            # limit > 0, so where gnorm > limit the division is safe.
            scale = np.where(gnorm > limit, limit / np.maximum(gnorm, limit), 1.0)
            out[k] = g if np.all(scale == 1.0) else (g * scale).astype(g.dtype, copy=False)
        return out, None


class autoclip(_Rescale):
    """AutoClip (Seetharaman et al. 2020): clip to a percentile of the norms seen so far.

    Every call appends the current (finite) global norm to the history, then clips by
    global norm to the given percentile (numpy's linear interpolation) of the history,
    the current norm included. window keeps only the last `window` norms (None: all).
    Non-finite norms are not recorded (the grads pass through unchanged).
    """

    def __init__(self, percentile=10.0, window=None):
        self.percentile = number_in("percentile", percentile, 0, 100, closed="both")
        self.window = whole_number("window", window, none=True)
        self._history = deque(maxlen=self.window)

    @property
    def history(self):
        """The recorded global norms, oldest first (float64 array)."""
        return np.array(self._history, dtype=np.float64)

    def coefficient(self, norm):
        self._history.append(norm)
        return _down_to(norm, float(np.percentile(self.history, self.percentile)))

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, d):
        if set(d) != {"history"}:
            raise KeyError(f"autoclip state must have exactly the key 'history'; "
                           f"got {sorted(d)}")
        h = np.asarray(d["history"], dtype=np.float64).reshape(-1)
        self._history = deque(h.tolist(), maxlen=self.window)


class chain(Transform):
    """Apply transforms in order; the report spans the whole chain."""

    def __init__(self, *transforms):
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"chain argument {i} must be a clipping transformation; "
                                f"got {type(t).__name__}")
        self.transforms = transforms

    def __call__(self, grads, params=None, *, norm=None):
        grads = _arrays(grads)
        before = after = global_norm(grads) if norm is None else norm
        new = dict(grads)
        for t in self.transforms:
            new, report = t(new, params, norm=after)   # each input's norm is known
            after = report.norm_after
        coefficient = after / before if np.isfinite(before) and before > 0 else 1.0
        return new, ClipReport(before, after, coefficient)

    def state_dict(self):
        return {f"{i}.{k}": v for i, t in enumerate(self.transforms)
                for k, v in t.state_dict().items()}

    def load_state_dict(self, d):
        parts = [{} for _ in self.transforms]
        for full, v in d.items():
            i, _, key = full.partition(".")
            if not i.isdigit() or int(i) >= len(parts) or not key:
                raise KeyError(f"unexpected key {full!r} in a chain state_dict")
            parts[int(i)][key] = v
        for t, part in zip(self.transforms, parts):
            t.load_state_dict(part)


def clip_for_update(clip, optimizer, params, grads, norm):
    """grads clipped by clip (a Transform or None) for optimizer.update: (grads, scale,
    global norm after clipping, coefficient), the update's gradient being grads * scale.

    grads are the model's (its keys, shapes and dtype) and finite, norm their global norm.
    A clip that only rescales is folded into the optimizer's compiled update as scale (no
    scaled copies); what any other transformation returns is checked by the optimizer.
    """
    if clip is None:
        return grads, 1.0, norm, 1.0
    c = clip.coefficient(norm)
    if c is not None:
        return grads, c, c * norm, c
    grads, report = clip(grads, params, norm=norm)
    optimizer.check(params, grads)
    return grads, 1.0, report.norm_after, report.coefficient
