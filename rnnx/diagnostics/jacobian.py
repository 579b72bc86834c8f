"""Jacobian log-norms along a real trajectory: how much the backward signal of BPTT can be
scaled over k steps.

    L[k, b] = ln || dh[T-1] / dh[T-1-k] ||,   dh[T-1]/dh[T-1-k] = J[T-1] ... J[T-k],
    J[i] = dh[i]/dh[i-1] = diag(1 - h[i]^2) W_hh

The products need T * B GEMMs of (H, H) @ (H, H); the Frobenius norm costs one pass over
each, and the spectral norm a few certified Lanczos steps warm-started from the previous
lag (src/_spectral_norm.pxd says why it is exact) instead of an SVD per lag.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import _diagnostics
from ..core.recurrence import rnn_forward
from ._threads import one_blas_thread, product_kernel, run_samples

__all__ = ["jacobian_log_norms", "log_norms_along", "trajectory", "time_major", "checked_lags"]


def time_major(x, batch_first):
    """x as (T, B, D): swapped from (B, T, D) when batch_first (then left to the checks)."""
    if not isinstance(batch_first, (bool, np.bool_)):
        raise TypeError(f"batch_first must be True or False; got {batch_first!r}")
    if batch_first:
        x = np.asarray(x)
        if x.ndim == 3:
            return np.swapaxes(x, 0, 1)
    return x


def checked_lags(lags, T):
    """lags as an int in [1, T]; None means T."""
    if lags is None:
        return T
    if isinstance(lags, bool) or not isinstance(lags, numbers.Integral) or not 1 <= lags <= T:
        raise ValueError(f"lags must be an int in [1, T={T}] or None; got {lags!r}")
    return int(lags)


def trajectory(x, W_xh, W_hh, b_h, h0=None):
    """h = rnn_forward(x, W_xh, W_hh, b_h, h0) (checked there), with BLAS on one thread
    (rnnx.diagnostics._threads says why)."""
    with one_blas_thread():
        return rnn_forward(x, W_xh, W_hh, b_h, h0)


def _frobenius(ord):
    if isinstance(ord, str) and ord == "fro":
        return True
    if isinstance(ord, numbers.Real) and not isinstance(ord, bool) and ord == 2:
        return False
    raise ValueError(f"ord must be 2 or 'fro'; got {ord!r}")


def log_norms_along(h, W_hh, ord=2, lags=None, progress=None):
    """L (lags+1, B) float64 along the trajectory h (T, B, H) (float32 or float64, checked by
    the caller) with the recurrent weights W_hh (H, H) of its dtype. progress(n), if
    given, is called with the multiply-adds done since its last call."""
    frobenius = _frobenius(ord)
    T, B, H = h.shape
    K = checked_lags(lags, T)
    L = np.empty((K + 1, B))
    L[0] = 0.5 * np.log(H) if frobenius else 0.0
    W = np.ascontiguousarray(np.asarray(W_hh, h.dtype), dtype=np.float64)
    per_lag = H ** 3 * (1.0 if frobenius else 2.4)
    kernel = product_kernel(B, H ** 3, K * B * per_lag)
    run_samples(lambda b0, b1, stop, report, errors, main: _diagnostics.jacobian_log_norms(
        h, W, frobenius, L, b0, b1, stop,
        None if report is None else (lambda n: report(n * per_lag)), errors, main, kernel),
        B, H ** 3, K * B * per_lag, progress)
    return L


def jacobian_log_norms(x, W_xh, W_hh, b_h, h0=None, *, ord=2, lags=None, batch_first=False):
    """L (lags+1, B) float64 with L[k, b] = ln || dh[T-1] / dh[T-1-k] || for sample b.

    Lags k = 0..lags (default T): k = 0 is the identity (0 for ord=2; ln sqrt(H) for
    "fro"), k = T is the Jacobian with respect to h0. The product of the per-step Jacobians
    diag(1 - h[i]^2) W_hh is accumulated in float64 along the trajectory that rnn_forward
    computes, and renormalised after every factor, so it never overflows or underflows
    whatever T and W_hh. ord is 2 (spectral norm, certified to 1e-9 relative) or "fro". A
    product that is exactly zero (saturated units) gives -inf from that lag on.
    batch_first=True takes x as (B, T, D) and returns L as (B, lags+1).
    """
    frobenius = _frobenius(ord)
    x = time_major(x, batch_first)
    h = trajectory(x, W_xh, W_hh, b_h, h0)
    L = log_norms_along(h, W_hh, "fro" if frobenius else 2, lags)
    return np.ascontiguousarray(L.T) if batch_first else L
