"""The tanh recurrence and its backpropagation through time.

    h[t] = tanh(x[t] @ W_xh.T + h[t-1] @ W_hh.T + b_h),   h[-1] = h0

Time-major shapes, like PyTorch's default: x (T, B, D), h (T, B, H), W_xh (H, D),
W_hh (H, H), b_h (H,), h0 (B, H) or None for zeros; batch_first=True takes and gives x, h,
grad_h, dx and delta as (B, T, ...) instead. The work happens in rnnx._core, as a Plan
(rnnx.core.plan) says; this module checks the arguments, runs the plan and turns kernel
statuses into exceptions.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from .. import _core, _reductions
from .._checks import compute_dtype, float_array, positive_or_none, tanh_output
from ..errors import GradientOverflowError
from .plan import make_plan
from .threads import blas_limit, run_blocks

__all__ = ["BackwardResult", "rnn_forward", "rnn_backward"]


@dataclass(frozen=True)
class BackwardResult:
    """Gradients of BPTT, and the norm of the backward signal at every time step.

    dW_xh (H, D), dW_hh (H, H), db_h (H,), dx (T, B, D), dh0 (B, H) in the compute dtype;
    delta_norms (T,) float64: ||delta[t]||_2 over the whole batch, where
    delta[t] = dL/dh[t] in total (the direct part grad_h[t] plus what flows back through
    the recurrence); delta (T, B, H) itself when rnn_backward was asked for it
    (return_delta=True), else None. With batch_first=True, dx and delta are (B, T, ...).
    """

    dW_xh: np.ndarray
    dW_hh: np.ndarray
    db_h: np.ndarray
    dx: np.ndarray
    dh0: np.ndarray
    delta_norms: np.ndarray
    delta: np.ndarray | None = None


_scratch = threading.local()
# The largest scratch buffer a thread keeps between calls. A fresh buffer per call is given
# back to the OS on free and page-faulted in again on the next call, which costs most at
# small shapes (benchmarks/core_speed.py measures it); a larger buffer is made per call,
# so that no thread holds a (T, B, H) array of a long call after it returns.
_KEEP_BYTES = 4 << 20


def _work_buffer(n, dtype):
    """A flat scratch buffer of n entries: kept per thread and per dtype between calls up
    to _KEEP_BYTES, made for the call above that."""
    dtype = np.dtype(dtype)
    if n * dtype.itemsize > _KEEP_BYTES:
        return np.empty(n, dtype)
    buf = getattr(_scratch, dtype.char, None)
    if buf is None or buf.size < n:
        buf = np.empty(n, dtype)
        setattr(_scratch, dtype.char, buf)
    return buf


def _time_major(a, batch_first):
    """a (B, T, ...) as a contiguous (T, B, ...) array when batch_first, else a."""
    return np.ascontiguousarray(a.swapaxes(0, 1)) if batch_first else a


def _parameters(x, W_xh, W_hh, b_h, h0, batch_first=False):
    """Checked, contiguous, time-major (x, W_xh, W_hh, b_h, h0) in the compute dtype set
    by x."""
    dtype = compute_dtype(x)
    x = float_array("x", x, dtype, ("B", "T", "D") if batch_first else ("T", "B", "D"))
    x = _time_major(x, batch_first)
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


def forward_checked(x, W_xh, W_hh, b_h, h0, plan=None):
    """rnn_forward on arguments already checked, time-major, run as plan says (default:
    make_plan's for the shape)."""
    T, B, D = x.shape
    H = W_hh.shape[0]
    plan = plan or make_plan(T, B, D, H, x.dtype)
    W_hh_T = np.ascontiguousarray(W_hh.T)
    if plan.step_kernel:
        # the register-blocked kernel makes both products of a step in one pass over h[t]
        h = np.empty((T, B, H), x.dtype)
        W_xh_T = np.ascontiguousarray(W_xh.T)
        W_xh_P, W_hh_P = _core.panels(W_xh_T), _core.panels(W_hh_T)
        cancel = np.zeros(1, np.intc) if len(plan.blocks) > 1 else None
        statuses = run_blocks(lambda k, r0, r1: _core.recur(
            x, h, W_hh_T, b_h, r0=r0, r1=r1, h0=h0, W_xh_T=W_xh_T, W_hh_P=W_hh_P,
            W_xh_P=W_xh_P, kernel=plan.kernel, cancel=cancel), plan.blocks)
    else:
        h = _core.project(x, W_xh)                 # one GEMM, then the loop adds to it
        statuses = [_core.recur(x, h, W_hh_T, b_h, r0=0, r1=B, h0=h0)]
    failed = [t for t in statuses if t >= 0]
    if failed:
        raise FloatingPointError(
            f"rnn_forward: the pre-activation x[t] @ W_xh.T + h[t-1] @ W_hh.T + b_h is not "
            f"finite at time step t={min(failed)}: a product overflowed {x.dtype.name} "
            "(tanh would have rounded it to +-1 silently). Use smaller inputs or weights, "
            "or float64.")
    return h


def rnn_forward(x, W_xh, W_hh, b_h, h0=None, *, batch_first=False):
    """Hidden states h (T, B, H) of the tanh RNN ((B, T, H) with batch_first=True, for x
    given as (B, T, D), as PyTorch's batch_first).

    h[t] = tanh(x[t] @ W_xh.T + h[t-1] @ W_hh.T + b_h) with h[-1] = h0 (zeros if None).
    float32 and float64 x compute in their own dtype; any other real x in float64, and the
    other arrays are converted to that dtype. Raises TypeError/ValueError naming the
    argument for a wrong dtype, ndim or shape, an empty dimension, or NaN/inf in any input,
    and FloatingPointError when a pre-activation overflows the dtype (in float32, at
    about 3.4e38).
    """
    x, W_xh, W_hh, b_h, h0 = _parameters(x, W_xh, W_hh, b_h, h0, batch_first)
    plan = make_plan(*x.shape, W_hh.shape[0], x.dtype)
    with blas_limit(plan.blas_threads):
        h = forward_checked(x, W_xh, W_hh, b_h, h0, plan)
    return _time_major(h, batch_first)


def rnn_backward(x, h, grad_h, W_xh, W_hh, b_h, h0=None, *, max_norm=None, clip_delta=None,
                 return_delta=False, batch_first=False):
    """Backpropagation through time for the tanh RNN.

    grad_h (T, B, H) is the loss's direct gradient dL/dh[t] (not through the recurrence);
    h is rnn_forward's output for the same arguments (every entry in [-1, 1]). Returns a
    BackwardResult. With batch_first=True, x, h and grad_h are (B, T, ...), and so are the
    result's dx and delta.

    The backward signal delta[t] = grad_h[t] + (delta[t+1] * (1 - h[t+1]^2)) @ W_hh is
    checked at every step inside the kernel: if it becomes non-finite, or its norm exceeds
    max_norm (when given), the pass stops and GradientOverflowError is raised with that
    time step. Every gradient returned is checked too: one with a non-finite entry raises
    GradientOverflowError naming it (its output attribute). clip_delta (when given) clips
    every entry of delta[t] to [-clip_delta, clip_delta] before it flows further back
    (Mikolov's clipping of the temporal components); delta_norms then holds the norms after
    clipping. return_delta=True also returns delta itself (one more (T, B, H) array),
    which regularisers of the gradient flow need.
    """
    x, W_xh, W_hh, b_h, h0 = _parameters(x, W_xh, W_hh, b_h, h0, batch_first)
    T, B, _ = x.shape
    H = W_hh.shape[0]
    shape = (B, T, H) if batch_first else (T, B, H)
    h = _time_major(tanh_output("h", h, x.dtype, shape), batch_first)
    grad_h = _time_major(float_array("grad_h", grad_h, x.dtype, shape),
                         batch_first)
    plan = make_plan(T, B, x.shape[2], H, x.dtype)
    with blas_limit(plan.blas_threads):
        return backward_checked(x, h, grad_h, W_xh, W_hh, h0,
                                positive_or_none("max_norm", max_norm),
                                positive_or_none("clip_delta", clip_delta), return_delta,
                                plan, batch_first=batch_first)


def backward_checked(x, h, grad_h, W_xh, W_hh, h0, max_norm, clip_delta, return_delta,
                     plan=None, *, batch_first=False):
    """rnn_backward on arguments already checked, time-major (the model checks its own once
    per step), run as plan says (default: make_plan's for the shape); batch_first: dx and
    delta are returned (B, T, ...)."""
    T, B, D = x.shape
    H = W_hh.shape[0]
    plan = plan or make_plan(T, B, D, H, x.dtype)
    blocks, fused, n = plan.blocks, plan.all_in_loop, len(plan.blocks)
    limit = np.inf if max_norm is None else max_norm
    kept = np.empty((T, B, H), x.dtype) if return_delta else None
    norms = np.full((n, T), np.nan)               # each block's part of ||delta[t]||
    # The time loop adds up each block's share of db_h, and as the plan says of dW_hh, and
    # of dW_xh, dx and dh0; backward_gemms makes the rest from every step's dz.
    db_parts = np.zeros((n, H), x.dtype)
    dW_parts = np.zeros((n, H, H), x.dtype) if plan.dW_hh_in_loop else [None] * n
    dW_xh_parts = np.zeros((n, H, D), x.dtype) if fused else [None] * n
    dx, dh0 = np.empty((T, B, D), x.dtype), np.empty((B, H), x.dtype)
    outputs = {"dx": dx, "dh0": dh0} if fused else {}
    # dz of the last two steps per block, or of every step
    work = _work_buffer(2 * B * H if fused else T * B * H, x.dtype)
    W_hh_P = _core.panels(W_hh) if plan.step_kernel else None
    W_xh_P = _core.panels(W_xh) if plan.dx_kernel else None
    cancel = np.zeros(1, np.intc) if n > 1 else None
    stops = run_blocks(lambda k, r0, r1: _core.backward_steps(
        x, h, grad_h, W_xh, W_hh, r0=r0, r1=r1, max_norm=limit,
        clip_delta=0.0 if clip_delta is None else clip_delta,
        work=work[2 * r0 * H:2 * r1 * H] if fused else work, norms=norms[k],
        db_h=db_parts[k], h0=h0, kept=kept, dW_hh=dW_parts[k], dW_xh=dW_xh_parts[k],
        W_hh_P=W_hh_P, W_xh_P=W_xh_P, blas=n == 1, kernel=plan.kernel, cancel=cancel,
        **outputs), blocks)
    if n == 1:
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
    if fused:
        dW_xh = functools.reduce(np.add, dW_xh_parts)
    else:
        dW_xh = np.empty((H, D), x.dtype)
        dW_hh = None if plan.dW_hh_in_loop else np.empty((H, H), x.dtype)
        # the GEMMs over every step's dz: with blocks, a share of each on each block's
        # thread, one BLAS thread each (no BLAS worker left spinning)
        with blas_limit(1 if n > 1 else None):
            run_blocks(lambda k, r0, r1: _core.backward_gemms(
                x, h, work, W_xh, W_hh, dW_xh=dW_xh, dx=dx, dh0=dh0, dW_hh=dW_hh, h0=h0,
                part=k, parts=n), blocks)
    if plan.dW_hh_in_loop:
        dW_hh = functools.reduce(np.add, dW_parts)
    db_h = functools.reduce(np.add, db_parts)
    gradients = {"dW_xh": dW_xh, "dW_hh": dW_hh, "db_h": db_h, "dx": dx, "dh0": dh0}
    _check_gradients(gradients, delta_norms, batch_first)
    if batch_first:
        dx = np.ascontiguousarray(dx.swapaxes(0, 1))
        kept = None if kept is None else np.ascontiguousarray(kept.swapaxes(0, 1))
    return BackwardResult(dW_xh, dW_hh, db_h, dx, dh0, delta_norms, kept)


def _check_gradients(gradients, delta_norms, batch_first):
    """GradientOverflowError naming the first of the gradients (time-major) with a
    non-finite entry, and where (dx's index as the caller's layout has it): the kernel
    scans them with the GIL released."""
    k = _reductions.first_nonfinite(list(gradients.values()))
    if k < 0:
        return
    name, a = list(gradients.items())[k]
    index = np.unravel_index(int(np.flatnonzero(~np.isfinite(a))[0]), a.shape)
    t = index[0] if name == "dx" else 0 if name == "dh0" else -1
    value = a[index]
    if batch_first and name == "dx":
        index = (index[1], index[0], index[2])
    raise GradientOverflowError(t, value, delta_norms=delta_norms, output=name, index=index)
