"""The last resort of Pascanu et al.'s published code for a gradient it cannot trust.

RNN.py (pascanur/trainingRNNs) computes the global norm ||g|| of the raw gradient (Omega's
term included, before clipping). When that norm is NaN, inf, negative or above 1e10 --
numbers float32 cannot be trusted with -- it throws the gradient away and uses

    g(W_hh) = 0.02 * W_hh,        g(every other parameter) = 0,

so that the SGD step W_hh <- W_hh - lr * 0.02 * W_hh shrinks the recurrent weights by the
factor (1 - 0.02 lr) and leaves the rest alone: a run that has blown up is pulled back
towards the contracting regime instead of being stopped. The replacement is not clipped
afterwards (the code applies it after the clipping switch). The code has it only with
clipping on (clipstyle "rescale"), so a reproduction of the paper's SGD-C and SGD-CR runs
needs it and one of its SGD runs does not.

rnnx's Trainer meets the two halves of the code's switch at two different points, and each
half goes where rnnx already handles that kind of gradient:

* a FINITE gradient goes through the clipping transformation: ``pascanu_rescale(max_norm)``
  (a Transform, ``clip="pascanu"`` by name) is the code's clipstyle "rescale" whole --
  clipping by global norm to max_norm, and the replacement for a norm above the cutoff;
* a NON-FINITE gradient (or an aborted backward pass) never reaches clipping: the Trainer
  rejects the step and hands it to its failure policy, and
  ``rnnx.training.policies.PascanuFallback`` (``policy="pascanu"``) steps with the
  replacement instead of skipping or stopping.

``Trainer(clip=pascanu_rescale(1.0), policy="pascanu")`` is then the code's SGD-C step.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._checks import positive
from .clipping import Transform, clip_by_global_norm

__all__ = ["CUTOFF", "SHRINK", "untrustworthy", "pascanu_fallback", "pascanu_rescale"]

CUTOFF = 1e10      # the code's largest trusted gradient norm
SHRINK = 0.02      # the code's factor of W_hh in the replacement gradient


def untrustworthy(norm, *, cutoff=CUTOFF):
    """True when the code would replace a gradient of global norm `norm`: NaN, inf,
    negative or above cutoff."""
    if isinstance(norm, bool) or not isinstance(norm, numbers.Real):
        raise TypeError(f"norm must be a real number (the gradient's global norm); "
                        f"got {norm!r}")
    cutoff = positive("cutoff", cutoff)
    norm = float(norm)
    return not (math.isfinite(norm) and 0.0 <= norm <= cutoff)


def pascanu_fallback(grads, params, norm, *, cutoff=CUTOFF, shrink=SHRINK):
    """The gradients the published code steps with, given the raw grads, the params and
    the raw gradient's global norm.

    grads: dict of arrays keyed like params, or None when there is no usable gradient
    (BPTT aborted on an overflow); params: the model's dict, which must hold "W_hh".
    Returns grads itself when the norm is trusted (0 <= norm <= cutoff), else a new dict
    with shrink * params["W_hh"] for "W_hh" and zeros for every other key, each in the
    dtype of the gradient it replaces (of the parameter when grads is None). Neither dict
    is modified.
    """
    if not untrustworthy(norm, cutoff=cutoff):
        if grads is None:
            raise ValueError(f"grads is None but norm {norm!r} is trusted: there is no "
                             "gradient to return")
        return grads
    shrink = positive("shrink", shrink)
    if not hasattr(params, "items"):
        raise TypeError(f"params must be a dict of arrays; got {type(params).__name__}")
    if "W_hh" not in params:
        raise KeyError(f"params must hold 'W_hh'; got keys {sorted(params)}")
    like = params if grads is None else grads
    if not hasattr(like, "items"):
        raise TypeError(f"grads must be a dict of arrays or None; got {type(grads).__name__}")
    missing = set(like) ^ set(params)
    if missing:
        raise KeyError(f"grads and params must have the same keys; they differ in "
                       f"{sorted(missing)}")
    out = {}
    for k, g in like.items():
        dtype = np.asarray(g).dtype
        if k == "W_hh":
            # in the gradient's dtype, as the code does (float32(.02) * W_hh)
            out[k] = dtype.type(shrink) * np.asarray(params[k], dtype=dtype)
        else:
            out[k] = np.zeros(np.shape(g), dtype)
    return out


class pascanu_rescale(Transform):
    """The published code's clipstyle "rescale": a gradient of global norm ||g|| above
    ``cutoff`` (1e10) is replaced by pascanu_fallback's (shrink * W_hh for W_hh, 0
    elsewhere; needs params), else one above max_norm is rescaled to max_norm (Algorithm 1,
    as clip_by_global_norm), else it passes unchanged.

    Like every Transform it returns a non-finite gradient unchanged: in a Trainer such a
    step is rejected before clipping and the replacement is the failure policy's job
    (policy="pascanu", rnnx.training.policies.PascanuFallback).
    """

    def __init__(self, max_norm=1.0, cutoff=CUTOFF, shrink=SHRINK):
        self.max_norm = positive("max_norm", max_norm)
        self.cutoff = positive("cutoff", cutoff)
        self.shrink = positive("shrink", shrink)
        self._clip = clip_by_global_norm(self.max_norm)

    def coefficient(self, norm):
        # the replacement is no rescaling of the gradient: it goes through _transform
        return None if norm > self.cutoff else self._clip.coefficient(norm)

    def _transform(self, grads, params, norm):
        if norm > self.cutoff:
            if params is None:
                raise ValueError("pascanu_rescale needs params to replace a gradient of norm "
                                 f"{norm:.6g} > cutoff {self.cutoff:g}: call it as "
                                 "t(grads, params)")
            return pascanu_fallback(grads, params, norm, cutoff=self.cutoff,
                                    shrink=self.shrink), None
        new, report = self._clip(grads, params, norm=norm)
        return new, report.norm_after
