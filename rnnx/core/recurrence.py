"""The tanh recurrence and its backpropagation through time.

    h[t] = tanh(x[t] @ W_xh.T + h[t-1] @ W_hh.T + b_h),   h[-1] = h0

Time-major shapes, like PyTorch's default: x (T, B, D), h (T, B, H), W_xh (H, D),
W_hh (H, H), b_h (H,), h0 (B, H) or None for zeros. The work happens in rnnx._core; this
module checks the arguments and turns kernel statuses into exceptions.
"""
from __future__ import annotations

import functools
import threading
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from .. import _core
from .._checks import compute_dtype, float_array, positive_or_none
from ._blas_threads import blas_threads, serial_blas
from ._row_blocks import row_blocks, run_blocks
from ..errors import GradientOverflowError

__all__ = ["BackwardResult", "rnn_forward", "rnn_backward"]


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


def _own_kernel_alone(B, H):
    """Whether one block's per-step product may use the core's own kernel rather than
    BLAS (which wins once it runs several threads on a large product)."""
    return B * H * H < _THREADED_PRODUCT or blas_threads() == 1


def _plan(T, B, H, itemsize):
    """(own_kernel, blocks): whether the per-step product may use the core's own kernel
    rather than BLAS, and the blocks of batch rows whose time loops run on threads of
    their own (rnnx.core._row_blocks). With several blocks each uses the kernel, also where one
    block would use BLAS: with 2 threads at (T, B, D, H) = (100, 64, 64, 256) two blocks
    took 0.76 of the time of BLAS's threads on every step's whole product (both dtypes),
    at (50, 64, 128, 512) 0.89 (float32) and 0.98 (float64) (benchmarks/row_blocks.py)."""
    blocks = row_blocks(T, B, H, itemsize)
    return len(blocks) > 1 or _own_kernel_alone(B, H), blocks


def _kernel_fits(own, blocks, n):
    """Whether the own kernel makes every block's per-step products of n columns."""
    return own and _core.small_gemm_fits(min(r1 - r0 for r0, r1 in blocks), n)


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
    T, B, _ = x.shape
    H = W_hh.shape[0]
    own, blocks = _plan(T, B, H, x.dtype.itemsize)
    W_hh_T = np.ascontiguousarray(W_hh.T)
    if not _kernel_fits(own, blocks, H):
        h = _core.project(x, W_xh)                 # one GEMM, then the loop adds to it
        _core.recur(x, None, h, W_hh_T, b_h, h0, 0, B, None, None)
    else:
        # the own kernel makes both products of a step in one pass over h[t], which beat
        # the projection as one GEMM before the loop (benchmarks/core_phases.py)
        h = np.empty((T, B, H), x.dtype)
        W_xh_T = np.ascontiguousarray(W_xh.T)
        W_xh_P, W_hh_P = _core.panels(W_xh_T), _core.panels(W_hh_T)
        with serial_blas() if len(blocks) > 1 else nullcontext():
            run_blocks(lambda k, r0, r1: _core.recur(x, W_xh_T, h, W_hh_T, b_h, h0, r0, r1,
                                                     W_xh_P, W_hh_P), blocks)
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
    T, B, D = x.shape
    H = W_hh.shape[0]
    own, blocks = _plan(T, B, H, x.dtype.itemsize)
    with serial_blas() if len(blocks) > 1 else nullcontext():
        return _backward_blocks(x, h, grad_h, W_xh, W_hh, h0, max_norm, clip_delta,
                                return_delta, own, blocks)


def _backward_blocks(x, h, grad_h, W_xh, W_hh, h0, max_norm, clip_delta, return_delta, own,
                     blocks):
    T, B, D = x.shape
    H = W_hh.shape[0]
    limit = np.inf if max_norm is None else max_norm
    clip = 0.0 if clip_delta is None else clip_delta
    kept = np.empty((T, B, H), x.dtype) if return_delta else None
    n = len(blocks)
    norms = np.full((n, T), np.nan)               # each block's part of ||delta[t]||
    # Where the own kernel fits, the time loop adds up each block's share of the weight
    # gradients while dz[t] is in cache (db_h always): dW_hh, and where D fits too, dW_xh,
    # dx and dh0, so that no pass over every step's dz is left. Else GEMMs over every step
    # (backward_gemms) make the rest.
    in_loop = own and _core.small_gemm_fits(H, H)
    fused = in_loop and _core.small_gemm_fits(H, D)
    db_parts = np.zeros((n, H), x.dtype)
    dW_parts = np.zeros((n, H, H), x.dtype) if in_loop else [None] * n
    dW_xh_parts = np.zeros((n, H, D), x.dtype) if fused else [None] * n
    dx, dh0 = np.empty((T, B, D), x.dtype), np.empty((B, H), x.dtype)
    # dz of the last two steps per block, or of every step
    work = _work_buffer(2 * B * H if fused else T * B * H, x.dtype)
    W_hh_P = _core.panels(W_hh) if _kernel_fits(own, blocks, H) else None
    W_xh_P = _core.panels(W_xh) if fused and _kernel_fits(own, blocks, D) else None
    stops = run_blocks(lambda k, r0, r1: _core.backward_steps(
        x, h, grad_h, W_xh, W_hh, h0, r0, r1, limit, clip,
        work[2 * r0 * H:2 * r1 * H] if fused else work, kept, norms[k], db_parts[k],
        dW_parts[k], dW_xh_parts[k], dx if fused else None, dh0 if fused else None,
        W_hh_P, W_xh_P), blocks)
    if len(blocks) == 1:
        delta_norms, t_fail = norms[0], stops[0]
    else:
        # a block stops where its own part fails; the whole delta[t] fails at the first
        # such step in reverse time, or where only the parts together pass max_norm
        delta_norms = np.hypot.reduce(norms, axis=0)
        failed = np.flatnonzero(~(np.isfinite(delta_norms) & (delta_norms <= limit)))
        t_fail = int(failed[-1]) if failed.size else -1
    if t_fail >= 0:
        delta_norms[:t_fail] = np.nan              # steps the backward pass never reached
        raise GradientOverflowError(t_fail, delta_norms[t_fail], max_norm=max_norm,
                                    delta_norms=delta_norms)
    if not fused:
        # as many ranges of the T*B rows, each a partial sum of the gradients
        TB = T * B
        parts = run_blocks(lambda k, k0, k1: _core.backward_gemms(
            x, h, work, W_xh, W_hh, h0, k0, k1, dx, dh0 if k == 0 else None, not in_loop),
            [(TB * k // n, TB * (k + 1) // n) for k in range(n)])
        dW_xh_parts, dW_hh_parts = zip(*parts)
        if not in_loop:
            dW_parts = dW_hh_parts
    dW_xh = functools.reduce(np.add, dW_xh_parts)
    dW_hh = functools.reduce(np.add, dW_parts)
    db_h = functools.reduce(np.add, db_parts)
    return BackwardResult(dW_xh, dW_hh, db_h, dx, dh0, delta_norms, kept)

