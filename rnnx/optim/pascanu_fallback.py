"""The last resort of Pascanu et al.'s published code for a gradient it cannot trust.

RNN.py (pascanur/trainingRNNs) computes the global norm ||g|| of the raw gradient (Omega's
term included, before clipping). When that norm is NaN, inf, negative or above 1e10 --
numbers float32 cannot be trusted with -- it throws the gradient away and uses

    g(W_hh) = 0.02 * W_hh,        g(every other parameter) = 0,

so that the SGD step W_hh <- W_hh - lr * 0.02 * W_hh shrinks the recurrent weights by the
factor (1 - 0.02 lr) and leaves the rest alone: a run that has blown up is pulled back
towards the contracting regime instead of being stopped. The replacement is not clipped
afterwards (the code applies it after the clipping switch). A reproduction of the paper's
SGD-C and SGD-CR runs needs it.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._checks import positive

__all__ = ["CUTOFF", "SHRINK", "untrustworthy", "pascanu_fallback"]

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
