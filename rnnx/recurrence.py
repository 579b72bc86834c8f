"""The tanh recurrence, its backpropagation through time, and its Jacobian log-norms.

    h[t] = tanh(x[t] @ W_xh.T + h[t-1] @ W_hh.T + b_h),   h[-1] = h0

Time-major shapes, like PyTorch's default: x (T, B, D), h (T, B, H), W_xh (H, D),
W_hh (H, H), b_h (H,), h0 (B, H) or None for zeros. The work happens in rnnx._core; this
module checks the arguments and turns kernel statuses into exceptions.
"""
from __future__ import annotations

import numbers
import threading
from dataclasses import dataclass

import numpy as np

from . import _core
from ._checks import compute_dtype, float_array, positive_or_none
from ._blas_threads import blas_threads
from .errors import GradientOverflowError

__all__ = ["BackwardResult", "rnn_forward", "rnn_backward", "jacobian_log_norms"]


@dataclass(frozen=True)
class BackwardResult:
    """Gradients of BPTT, and the norm of the backward signal at every time step.

    dW_xh (H, D), dW_hh (H, H), db_h (H,), dx (T, B, D), dh0 (B, H) in the compute dtype;
    delta_norms (T,) float64: ||delta[t]||_2 over the whole batch, where
    delta[t] = dL/dh[t] in total (the direct part grad_h[t] plus what flows back through
    the recurrence); delta (T, B, H) itself when rnn_backward was asked for it
    (return_delta=True), else None.
    """

    dW_xh: np.ndarray
    dW_hh: np.ndarray
    db_h: np.ndarray
    dx: np.ndarray
    dh0: np.ndarray
    delta_norms: np.ndarray
    delta: np.ndarray | None = None


_scratch = threading.local()


def _work_buffer(n, dtype):
    """A flat scratch buffer of n entries, kept per thread and per dtype between calls.

    A fresh (T, B, H) buffer per call is returned to the OS on free and page-faulted back in
    on the next call; at (T, B, D, H) = (100, 32, 8, 64) in float64 that was 40% of a
    forward + backward (benchmarks/core_speed.py, with and without this buffer). The buffer
    only grows, so a thread keeps one buffer of the largest T*B*H it has seen.
    """
    key = np.dtype(dtype).char
    buf = getattr(_scratch, key, None)
    if buf is None or buf.size < n:
        buf = np.empty(n, dtype)
        setattr(_scratch, key, buf)
    return buf


# B*H*H from which a BLAS running several threads beats the core's single-threaded kernel
# for the per-step product: at (B, H) = (32, 128) the kernel was faster than 2 BLAS
# threads, at (64, 256) slower (../shared/bench/anchors.py, 2T rows).
_THREADED_PRODUCT = 1 << 21


def _own_kernel(B, H):
    """Whether the per-step product may use the core's own kernel rather than BLAS."""
    return B * H * H < _THREADED_PRODUCT or blas_threads() == 1


def _parameters(x, W_xh, W_hh, b_h, h0):
    """Checked, contiguous (x, W_xh, W_hh, b_h, h0) in the compute dtype set by x."""
    dtype = compute_dtype(x)
    x = float_array("x", x, dtype, ("T", "B", "D"))
    T, B, D = x.shape
    W_hh = float_array("W_hh", W_hh, dtype, ("H", "H"))
    H = W_hh.shape[0]
    if W_hh.shape[1] != H:
        raise ValueError(f"W_hh must be square with shape (H, H); got {W_hh.shape}")
    W_xh = float_array("W_xh", W_xh, dtype, (H, D))
    b_h = float_array("b_h", b_h, dtype, (H,))
    if h0 is not None:
        h0 = float_array("h0", h0, dtype, (B, H))
    return x, W_xh, W_hh, b_h, h0


def _forward(x, W_xh, W_hh, b_h, h0):
    """rnn_forward on arguments already checked."""
    h = _core.forward(x, W_xh, W_hh, b_h, h0, _own_kernel(x.shape[1], W_hh.shape[0]))
    if _core.first_nonfinite([h]) >= 0:
        raise FloatingPointError(
            "rnn_forward: the pre-activation x @ W_xh.T + h @ W_hh.T + b_h overflowed to "
            "NaN; the weights are too large for the dtype (use smaller weights or float64)")
    return h


def rnn_forward(x, W_xh, W_hh, b_h, h0=None):
    """Hidden states h (T, B, H) of the tanh RNN.

    h[t] = tanh(x[t] @ W_xh.T + h[t-1] @ W_hh.T + b_h) with h[-1] = h0 (zeros if None).
    float32 and float64 x compute in their own dtype; any other real x in float64, and the
    other arrays are converted to that dtype. Raises TypeError/ValueError naming the
    argument for a wrong dtype, ndim or shape, an empty dimension, or NaN/inf in any input.
    """
    return _forward(*_parameters(x, W_xh, W_hh, b_h, h0))


def rnn_backward(x, h, grad_h, W_xh, W_hh, b_h, h0=None, *, max_norm=None, clip_delta=None,
                 return_delta=False):
    """Backpropagation through time for the tanh RNN.

    grad_h (T, B, H) is the loss's direct gradient dL/dh[t] (not through the recurrence);
    h is rnn_forward's output for the same arguments. Returns a BackwardResult.

    The backward signal delta[t] = grad_h[t] + (delta[t+1] * (1 - h[t+1]^2)) @ W_hh is
    checked at every step inside the kernel: if it becomes non-finite, or its norm exceeds
    max_norm (when given), the pass stops and GradientOverflowError is raised with that
    time step. clip_delta (when given) clips every entry of delta[t] to
    [-clip_delta, clip_delta] before it flows further back (Mikolov's clipping of the
    temporal components); delta_norms then holds the norms after clipping.
    return_delta=True also returns delta itself (one more (T, B, H) array), which
    regularisers of the gradient flow need.
    """
    x, W_xh, W_hh, b_h, h0 = _parameters(x, W_xh, W_hh, b_h, h0)
    T, B, _ = x.shape
    H = W_hh.shape[0]
    h = float_array("h", h, x.dtype, (T, B, H))
    grad_h = float_array("grad_h", grad_h, x.dtype, (T, B, H))
    return _backward(x, h, grad_h, W_xh, W_hh, h0, positive_or_none("max_norm", max_norm),
                     positive_or_none("clip_delta", clip_delta), return_delta)


def _backward(x, h, grad_h, W_xh, W_hh, h0, max_norm, clip_delta, return_delta):
    """rnn_backward on arguments already checked (the model checks its own once per step)."""
    T, B, _ = x.shape
    t_fail, norm, delta_norms, grads = _core.backward(
        x, h, grad_h, W_xh, W_hh, h0,
        np.inf if max_norm is None else max_norm, 0.0 if clip_delta is None else clip_delta,
        bool(return_delta), _work_buffer(T * B * W_hh.shape[0], x.dtype),
        _own_kernel(B, W_hh.shape[0]))
    if t_fail >= 0:
        raise GradientOverflowError(t_fail, norm, max_norm=max_norm, delta_norms=delta_norms)
    *grads, delta = grads
    return BackwardResult(*grads, delta_norms, delta)


def jacobian_log_norms(x, W_xh, W_hh, b_h, h0=None, *, ord=2):
    """L (T+1, B) float64 with L[k, b] = ln || dh[T-1] / dh[T-1-k] || for sample b.

    Lags k = 0..T: k = 0 is the identity (0 for ord=2; ln sqrt(H) for "fro"), k = T is the
    Jacobian with respect to h0. The product of the per-step Jacobians
    dh[i]/dh[i-1] = diag(1 - h[i]^2) W_hh is accumulated in float64 along the trajectory
    that rnn_forward computes, and renormalised after every factor, so it never overflows
    or underflows whatever T and W_hh. ord is 2 (spectral norm) or "fro". A product that
    is exactly zero (saturated units) gives -inf from that lag on.
    """
    if not (isinstance(ord, str) and ord == "fro") and not (
            isinstance(ord, numbers.Real) and not isinstance(ord, bool) and ord == 2):
        raise ValueError(f"ord must be 2 or 'fro'; got {ord!r}")
    x, W_xh, W_hh, b_h, h0 = _parameters(x, W_xh, W_hh, b_h, h0)
    h = _forward(x, W_xh, W_hh, b_h, h0)
    L = _core.jacobian_log_norms(h, W_hh, ord == "fro")
    if ord == "fro":
        L[0] = 0.5 * np.log(W_hh.shape[0])
    return L

