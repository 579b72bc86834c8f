"""L2 norms of gradient arrays that neither overflow nor underflow.

Each array's norm comes from the compiled core, which rescales when a plain sum of squares
would overflow; math.hypot combines them the same way. The training loop measures every
gradient of every step with these; clipping builds its global norm on them.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _reductions

__all__ = ["array_norms", "array_norm", "norm_of_norms"]

_FLOATS = (np.float32, np.float64)


def norm_of_norms(norms):
    """The global norm from the arrays' norms: hypot, but NaN wins over inf."""
    return math.nan if any(n != n for n in norms) else math.hypot(*norms)


def array_norms(arrays):
    """[||g||_2 over all entries of g for g in arrays], in one call to the compiled core
    (NaN if g holds a NaN, else inf if it holds an inf)."""
    return _reductions.l2_norms([g if type(g) is np.ndarray and g.dtype in _FLOATS
                                 and g.flags.c_contiguous else _float_copy(g)
                                 for g in arrays])


def array_norm(g):
    """||g||_2 over all entries of one array (see array_norms)."""
    return array_norms([g])[0]


def _float_copy(g):
    g = np.asarray(g)
    return np.ascontiguousarray(g, dtype=np.float32 if g.dtype == np.float32 else np.float64)
