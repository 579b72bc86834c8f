# cython: language_level=3
"""rnnx._core: the compiled kernels of the tanh recurrence (the scans and reductions that
training runs every step are rnnx._reductions').

    h[t] = tanh(x[t] @ W_xh^T + h[t-1] @ W_hh^T + b_h),   h[-1] = h0

Shapes: x (T, B, D), h (T, B, H), W_xh (H, D), W_hh (H, H), b_h (H,), h0 (B, H).
Every array argument of the recurrence's kernels is C-contiguous and of one dtype (float32
or float64): the Python layer (rnnx.core.recurrence) validates and converts; they trust it.
Loops run without the GIL and report failures as a status (the time step where they
happened) so that Python can raise a clear exception once the GIL is back. Long loops take
the GIL for a moment every so often to let a signal handler run (Ctrl-C), see
src/_interrupts.pxd.
"""
from libc.math cimport isfinite
from libc.string cimport memcpy, memset
from cpython.pythread cimport PyThread_get_thread_ident
from cython cimport floating

import threading

import numpy as np

from _blas cimport blas_int, _gemm
from _norms cimport _delta_norm
from _interrupts cimport Interrupt, _interrupt, _stop
from _small_gemm cimport (RNNX_GEMM_NR, RNNX_GEMM_MIN_COLS, rnnx_gemm_kernels,
                          rnnx_gemm_built, rnnx_gemm_cpu_runs, _variants, _kernel)
from _step_products cimport (_fits, _tanh_bias, _dtanh, _add_rows, _weight_acc,
                             _plain_acc, _step_acc, _step_set)

# the variants of the register-blocked kernel, in the order of _small_gemm.h's ids
# (fastest first); KERNELS: those this build has
_VARIANTS = _variants()
KERNELS = tuple(name for i, name in enumerate(_VARIANTS) if rnnx_gemm_built(i) != NULL)


# Multiply-adds of work between two looks for a pending signal: tens of milliseconds at the
# speeds the kernels reach, so that Ctrl-C stops a long call within about a second while
# the GIL is taken rarely enough to cost nothing measurable.
cdef double _SIGNAL_WORK = <double> (1LL << 26)

# the status of a kernel stopped by an interrupt (time steps are >= 0, -1 is success)
cdef enum:
    _STOPPED = -2
STOPPED = _STOPPED


cdef Interrupt _interrupt_of(int[::1] cancel, list errors):
    """The interrupt state of one block of a kernel call (src/_interrupts.pxd): it looks
    for signals when it runs in Python's main thread, where their handlers run."""
    return _interrupt(cancel, None, errors,
                      PyThread_get_thread_ident() == threading.main_thread().ident,
                      _SIGNAL_WORK)


cdef inline object _dtype_of(const floating *tag):
    """The numpy dtype of a fused specialisation (tag only selects it)."""
    return np.float32 if floating is float else np.float64


cdef const floating *_start(const floating[:, :, ::1] a):
    """&a[0, 0, 0], or NULL for None"""
    return NULL if a is None else &a[0, 0, 0]


cdef int _check_panels(const floating[:, :, ::1] P, Py_ssize_t k, Py_ssize_t n,
                       const rnnx_gemm_kernels *g) except -1:
    """P, unless None, must be a (k, n) matrix in panels() for products that the
    register-blocked kernel g does (_fits)."""
    cdef Py_ssize_t count = (n + RNNX_GEMM_NR - 1) // RNNX_GEMM_NR
    if P is not None and not (P.shape[0] == count and P.shape[1] == k
                              and P.shape[2] == RNNX_GEMM_NR and _fits(g, 1, n)):
        raise ValueError(f"a ({k}, {n}) matrix in panels is ({count}, {k}, {RNNX_GEMM_NR}), "
                         f"for products of at least {RNNX_GEMM_MIN_COLS} columns by a "
                         f"register-blocked kernel (kernel=...)")
    return 0


def kernel_runs(str name):
    """Whether this build has the register-blocked kernel variant name ("avx512", "avx2",
    "generic") and this CPU runs it."""
    return name in KERNELS and bool(rnnx_gemm_cpu_runs(_VARIANTS.index(name)))


def small_gemm_fits(Py_ssize_t m, Py_ssize_t n):
    """Whether the plans give a product of m rows and n columns to the register-blocked
    kernel, where one runs (kernel_runs): m >= 4 (of fewer rows, a product runs at the
    speed of a GEMV, and BLAS's was faster: benchmarks/kernels.py at B = 1) and
    n >= RNNX_GEMM_MIN_COLS, any multiple or not of the panel. The kernel itself takes
    any m >= 1 (the remainder tiles of every product)."""
    return m >= 4 and n >= RNNX_GEMM_MIN_COLS


def panels(const floating[:, ::1] M):
    """M (k, n) as the register-blocked kernel reads a weight matrix: its 32-column panels
    one after the other, (ceil(n / 32), k, 32) C-contiguous, the columns past n zeros. Made
    once per call, for every step's product."""
    cdef Py_ssize_t k = M.shape[0], n = M.shape[1]
    cdef Py_ssize_t count = (n + RNNX_GEMM_NR - 1) // RNNX_GEMM_NR
    cdef Py_ssize_t full = n // RNNX_GEMM_NR
    padded = np.zeros((count, k, RNNX_GEMM_NR), dtype=_dtype_of(&M[0, 0]))
    a = np.asarray(M)
    padded[:full] = a[:, :full * RNNX_GEMM_NR].reshape(k, full, RNNX_GEMM_NR).transpose(1, 0, 2)
    if full < count:
        padded[full, :, :n - full * RNNX_GEMM_NR] = a[:, full * RNNX_GEMM_NR:]
    return padded


# The recurrence runs in phases, so that Python can run the time loops of disjoint blocks
# of batch rows (independent sequences) on several threads (rnnx.core.threads); which
# phases a call runs, and with which kernel, is its Plan (rnnx.core.plan):
#   project         the input projection, one GEMM over all rows (where the
#                   register-blocked kernel does not make each step's products);
#   recur           the forward time loop of rows r0:r1 (projecting each step's inputs
#                   itself, or adding to project's output);
#   backward_steps  the backward time loop of rows r0:r1, adding up their share of db_h,
#                   and where the register-blocked kernel fits of dW_hh, and where it fits
#                   D too of dW_xh, dx and dh0, as it goes;
#   backward_gemms  the gradients the loop left: GEMMs over every step's rows.
# The time loops make no BLAS call where the plan has blocks, so that they never depend on,
# nor change, the thread count of scipy's BLAS.

def project(const floating[:, :, ::1] x, const floating[:, ::1] W_xh):
    """h (T, B, H) := x @ W_xh^T: the input projection of every step, one GEMM."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = W_xh.shape[0]
    cdef floating[:, :, ::1] h = np.empty((T, B, H), dtype=_dtype_of(&x[0, 0, 0]))
    with nogil:
        # h := x @ W_xh^T   (T*B, H) = (T*B, D) @ (D, H)
        _gemm(False, True, T * B, H, D, <floating> 1, &x[0, 0, 0], D, &W_xh[0, 0], D,
              <floating> 0, &h[0, 0, 0], H)
    return np.asarray(h)


def recur(const floating[:, :, ::1] x, floating[:, :, ::1] h, const floating[:, ::1] W_hh_T,
          const floating[::1] b_h, *, Py_ssize_t r0, Py_ssize_t r1,
          const floating[:, ::1] h0=None, const floating[:, ::1] W_xh_T=None,
          const floating[:, :, ::1] W_hh_P=None, const floating[:, :, ::1] W_xh_P=None,
          str kernel=None, int[::1] cancel=None):
    """The forward time loop of batch rows r0:r1, in place in h (T, B, H):
    h[t] = tanh(x[t] @ W_xh^T + h[t-1] @ W_hh^T + b_h), h[-1] = h0 (None: zeros).

    With W_xh_T (D, H) each step computes its rows' input projection; without it h already
    holds x @ W_xh^T (project()). The transposes W_xh_T and W_hh_T (H, H) are contiguous,
    so that each product is c += a @ M with M read row by row. W_hh_P and W_xh_P, the same
    in panels(), select the register-blocked kernel (see _step_acc), the variant kernel
    (one of KERNELS that kernel_runs); None for BLAS. cancel: the one-entry flag the blocks
    of one call share (src/_interrupts.pxd).

    Returns -1; the time step t where a pre-activation was not finite (the loop stops
    there: tanh would round an overflow to +-1); or STOPPED when another block of the
    call was interrupted. Raises the exception of a signal handler (Ctrl-C).
    """
    cdef Py_ssize_t T = h.shape[0], B = h.shape[1], H = h.shape[2], D = x.shape[2], t
    cdef Py_ssize_t BH = B * H, m = r1 - r0, status = -1
    cdef bint projected = W_xh_T is None
    cdef floating *hp                                    # row r0 of step 0
    cdef const floating *prev                            # h[t-1, r0:r1], NULL for zeros
    cdef const floating *whp = _start(W_hh_P)
    cdef const floating *wxp = _start(W_xh_P)
    cdef list errors = []
    cdef Interrupt it = _interrupt_of(cancel, errors)
    cdef double step_work = m * H * (H + (0 if projected else D))
    cdef const rnnx_gemm_kernels *g = _kernel(kernel)
    if not 0 <= r0 < r1 <= B:
        raise ValueError(f"rows {r0}:{r1} are not a block of the batch's {B}")
    _check_panels(W_hh_P, H, H, g)
    if not projected:
        _check_panels(W_xh_P, D, H, g)
        if (whp == NULL) != (wxp == NULL):
            raise ValueError("W_xh_P and W_hh_P go together")
    hp = &h[0, 0, 0] + r0 * H
    with nogil:
        for t in range(T):
            if _stop(&it, step_work, 0):
                status = _STOPPED
                break
            if t > 0:
                prev = hp + (t - 1) * BH
            elif h0 is not None:
                prev = &h0[r0, 0]
            else:
                prev = NULL
            if projected:
                # h[t, r0:r1] += h[t-1, r0:r1] @ W_hh^T   (m, H) = (m, H) @ (H, H)
                if prev != NULL:
                    _step_acc(g, prev, &W_hh_T[0, 0], whp, hp + t * BH, m, H, H)
            else:
                # h[t, r0:r1] := x[t, r0:r1] @ W_xh^T + h[t-1, r0:r1] @ W_hh^T
                #   (m, H) = (m, D) @ (D, H) + (m, H) @ (H, H)
                _step_set(g, &x[t, r0, 0], &W_xh_T[0, 0], wxp, D, prev, &W_hh_T[0, 0], whp,
                          H, hp + t * BH, m, H)
            # h[t, r0:r1] := tanh(h[t, r0:r1] + b_h)
            if _tanh_bias(hp + t * BH, &b_h[0], m, H):
                status = t
                break
    if errors:
        raise errors[0]
    return status


def backward_steps(const floating[:, :, ::1] x, const floating[:, :, ::1] h,
                   const floating[:, :, ::1] grad_h, const floating[:, ::1] W_xh,
                   const floating[:, ::1] W_hh, *, Py_ssize_t r0, Py_ssize_t r1,
                   double max_norm, double clip_delta, floating[::1] work,
                   double[::1] norms, floating[::1] db_h, const floating[:, ::1] h0=None,
                   floating[:, :, ::1] kept=None, floating[:, ::1] dW_hh=None,
                   floating[:, ::1] dW_xh=None, floating[:, :, ::1] dx=None,
                   floating[:, ::1] dh0=None, const floating[:, :, ::1] W_hh_P=None,
                   const floating[:, :, ::1] W_xh_P=None, bint blas=True,
                   str kernel=None, int[::1] cancel=None):
    """The backward time loop of BPTT for batch rows r0:r1.

    delta[t] = grad_h[t] + dz[t+1] @ W_hh is the total dL/dh[t] of those rows and
    dz[t] = delta[t] * (1 - h[t]^2). norms[t] := the L2 norm of the rows' delta[t] (after
    clip_delta > 0 clips every entry to [-clip_delta, clip_delta] before it flows further
    back, Mikolov 2012); kept (T, B, H), unless None, gets delta itself. Returns -1; the
    step where the loop stopped because the rows' delta[t] became non-finite or its norm
    passed max_norm; or STOPPED when another block of the call was interrupted. Raises
    the exception of a signal handler (Ctrl-C).

    The rows' share of the gradients is added up as the loop goes, while dz[t] is in
    cache: db_h (H,) += sum of dz[t], and with dW_hh (H, H), dW_hh += dz[t]^T @ h[t-1]
    (h[-1] = h0); pass dW_hh only where the register-blocked kernel fits (H, H). With
    dW_xh (H, D) (pass it only with dW_hh), also dW_xh += dz[t]^T @ x[t] (by the kernel
    where it fits (H, D), else by plain loops), the rows of dx[t] := dz[t] @ W_xh and of
    dh0 := dz[0] @ W_hh: then no other pass is needed and work (2 * (r1 - r0) * H
    entries) holds only the dz of the last two steps. Otherwise work (T * B * H entries,
    laid out (T, B, H)) keeps the dz of every step for backward_gemms.

    grad_h is (T, B, H), or (1, B, H) for a loss that reads only the last hidden state
    (zero direct gradient at the other steps, with no (T, B, H) array of zeros).
    W_hh_P and W_xh_P, W_hh and W_xh in panels(), select the register-blocked kernel for
    the products by them (see _step_acc); None for BLAS, or with blas=False (the loops
    of blocks, which must not start BLAS's threads) for plain loops. kernel: the variant
    (as in recur) of those products and of the weight gradients; cancel: as in recur.
    """
    cdef Py_ssize_t T = h.shape[0], B = h.shape[1], H = h.shape[2], D = x.shape[2], t, i
    cdef Py_ssize_t BH = B * H, m = r1 - r0, mH = (r1 - r0) * H
    cdef bint last_only = grad_h.shape[0] == 1, fused = dW_xh is not None
    cdef floating[:, ::1] delta = np.empty((max(m, 1), H), dtype=_dtype_of(&h[0, 0, 0]))
    cdef floating *dp = &delta[0, 0]
    # dz[t] of the rows is at dz0 + (t % slots) * stride: every step's in place in the
    # (T, B, H) layout, or the last two steps' in turn
    cdef floating *dz0 = &work[0] if fused else &work[0] + r0 * H
    cdef Py_ssize_t slots = 2 if fused else T, stride = mH if fused else BH
    cdef floating *dz
    cdef floating c = <floating> clip_delta
    cdef double norm
    cdef Py_ssize_t status = -1
    cdef const floating *whp = _start(W_hh_P)
    cdef const floating *wxp = _start(W_xh_P)
    cdef list errors = []
    cdef Interrupt it = _interrupt_of(cancel, errors)
    cdef double step_work = mH * (H + (H if dW_hh is not None else 0)
                                  + (2 * D if fused else 0))
    cdef const rnnx_gemm_kernels *g = _kernel(kernel)
    cdef bint x_kernel = _fits(g, H, D)
    cdef floating[:, ::1] dW_xh_T = (None if x_kernel or not fused else
                                     np.zeros((D, H), dtype=_dtype_of(&h[0, 0, 0])))
    if not 0 <= r0 < r1 <= B:
        raise ValueError(f"rows {r0}:{r1} are not a block of the batch's {B}")
    _check_panels(W_hh_P, H, H, g)
    _check_panels(W_xh_P, H, D, g)
    if work.shape[0] < slots * stride or norms.shape[0] != T or (
            kept is not None and (kept.shape[0] != T or kept.shape[1] != B
                                  or kept.shape[2] != H)):
        raise ValueError(f"work must hold {slots * stride} entries, norms {T}, kept "
                         f"({T}, {B}, {H})")
    if grad_h.shape[0] not in (1, T) or grad_h.shape[1] != B or grad_h.shape[2] != H:
        raise ValueError(f"grad_h must have shape ({T}, {B}, {H}) or (1, {B}, {H}); got "
                         f"({grad_h.shape[0]}, {grad_h.shape[1]}, {grad_h.shape[2]})")
    if db_h.shape[0] != H or (dW_hh is not None and not (
            dW_hh.shape[0] == H and dW_hh.shape[1] == H and _fits(g, H, H))):
        raise ValueError(f"db_h must be ({H},) and dW_hh ({H}, {H}), where the "
                         "register-blocked kernel fits")
    if not blas and whp == NULL:
        raise ValueError("without BLAS the loop needs W_hh_P")
    if fused and (dW_hh is None or dx is None or dh0 is None
                  or dW_xh.shape[0] != H or dW_xh.shape[1] != D
                  or dx.shape[0] != T or dx.shape[1] != B or dx.shape[2] != D
                  or dh0.shape[0] != B or dh0.shape[1] != H):
        raise ValueError(f"dW_xh ({H}, {D}) goes with dW_hh, dx ({T}, {B}, {D}) and dh0 "
                         f"({B}, {H})")
    with nogil:
        for t in range(T - 1, -1, -1):
            if _stop(&it, step_work, 0):
                status = _STOPPED
                break
            # delta := grad_h[t, r0:r1] + dz[t+1, r0:r1] @ W_hh   (m, H) = (m, H) @ (H, H)
            if not last_only:
                memcpy(dp, &grad_h[t, r0, 0], mH * sizeof(floating))
            elif t == T - 1:
                memcpy(dp, &grad_h[0, r0, 0], mH * sizeof(floating))
            else:
                memset(dp, 0, mH * sizeof(floating))
            if t < T - 1:
                _step_acc(g, dz0 + ((t + 1) % slots) * stride, &W_hh[0, 0], whp, dp, m, H,
                          H)
            norm = _delta_norm(mH, dp)
            if isfinite(norm) and c > 0:
                for i in range(mH):
                    dp[i] = c if dp[i] > c else (-c if dp[i] < -c else dp[i])
                norm = _delta_norm(mH, dp)
            norms[t] = norm
            if not (isfinite(norm) and norm <= max_norm):
                status = t
                break
            if kept is not None:
                memcpy(&kept[t, r0, 0], dp, mH * sizeof(floating))
            # dz[t, r0:r1] := delta * (1 - h[t, r0:r1]^2)
            dz = dz0 + (t % slots) * stride
            _dtanh(dz, dp, &h[t, r0, 0], mH)
            # db_h += sum over the rows of dz[t, r0:r1]
            _add_rows(&db_h[0], dz, m, H)
            if dW_hh is not None:
                # dW_hh += dz[t, r0:r1]^T @ h[t-1, r0:r1]   (H, H) = (H, m) @ (m, H)
                if t > 0:
                    _weight_acc(g, dz, &h[t - 1, r0, 0], &dW_hh[0, 0], H, m, H)
                elif h0 is not None:
                    _weight_acc(g, dz, &h0[r0, 0], &dW_hh[0, 0], H, m, H)
            if fused:
                # dW_xh += dz[t, r0:r1]^T @ x[t, r0:r1]   (H, D) = (H, m) @ (m, D)
                if x_kernel:
                    _weight_acc(g, dz, &x[t, r0, 0], &dW_xh[0, 0], H, m, D)
                else:
                    # dW_xh^T += x[t, r0:r1]^T @ dz[t, r0:r1]   (D, H) = (D, m) @ (m, H):
                    # the plain loops run along H, not along a short D
                    _plain_acc(True, &x[t, r0, 0], dz, &dW_xh_T[0, 0], D, m, H)
                # dx[t, r0:r1] := dz[t, r0:r1] @ W_xh   (m, D) = (m, H) @ (H, D)
                if wxp != NULL or blas:
                    _step_set(g, dz, &W_xh[0, 0], wxp, H, NULL, NULL, NULL, 0,
                              &dx[t, r0, 0], m, D)
                else:
                    memset(&dx[t, r0, 0], 0, m * D * sizeof(floating))
                    _plain_acc(False, dz, &W_xh[0, 0], &dx[t, r0, 0], m, H, D)
        if fused and status == -1:
            # dh0[r0:r1] := dz[0, r0:r1] @ W_hh   (m, H) = (m, H) @ (H, H)
            _step_set(g, dz0, &W_hh[0, 0], whp, H, NULL, NULL, NULL, 0, &dh0[r0, 0], m,
                      H)
    if errors:
        raise errors[0]
    if dW_xh_T is not None:
        np.asarray(dW_xh)[...] += np.asarray(dW_xh_T).T
    return status


def backward_gemms(const floating[:, :, ::1] x, const floating[:, :, ::1] h,
                   const floating[::1] work, const floating[:, ::1] W_xh,
                   const floating[:, ::1] W_hh, *, floating[:, ::1] dW_xh,
                   floating[:, :, ::1] dx, floating[:, ::1] dh0,
                   floating[:, ::1] dW_hh=None, const floating[:, ::1] h0=None,
                   Py_ssize_t part=0, Py_ssize_t parts=1):
    """The gradients from dz (in work, (T, B, H), every row done), each one GEMM over every
    step's rows: writes dW_xh (H, D), dx (T, B, D), dh0 (B, H), and dW_hh (H, H) unless
    None (the backward loop added it up).

    part of parts: only that share of each output, the rows H*part//parts to
    H*(part+1)//parts of dW_xh and dW_hh and the same share of dx's T*B rows and dh0's B,
    so that parts threads can make the gradients at once (each with one BLAS thread).
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = W_hh.shape[0]
    cdef Py_ssize_t TB = T * B
    cdef Py_ssize_t i0 = H * part // parts, i1 = H * (part + 1) // parts
    cdef Py_ssize_t j0 = TB * part // parts, j1 = TB * (part + 1) // parts
    cdef Py_ssize_t b0 = B * part // parts, b1 = B * (part + 1) // parts
    cdef bint with_dW_hh = dW_hh is not None
    cdef const floating *dzp = &work[0]
    if work.shape[0] < T * B * H:
        raise ValueError(f"work holds fewer than T*B*H = {T * B * H} entries")
    if not 0 <= part < parts:
        raise ValueError(f"part must be in [0, parts = {parts}); got {part}")
    if (dW_xh.shape[0] != H or dW_xh.shape[1] != D or dx.shape[0] != T or dx.shape[1] != B
            or dx.shape[2] != D or dh0.shape[0] != B or dh0.shape[1] != H or (
                with_dW_hh and (dW_hh.shape[0] != H or dW_hh.shape[1] != H))):
        raise ValueError(f"dW_xh must be ({H}, {D}), dx ({T}, {B}, {D}), dh0 ({B}, {H}) "
                         f"and dW_hh ({H}, {H})")
    with nogil:
        if with_dW_hh and i1 > i0:
            if T > 1:
                # dW_hh[i0:i1] := sum over steps t >= 1 of dz[t][:, i0:i1]^T @ h[t-1]
                #   (i1-i0, H) = (i1-i0, (T-1)*B) @ ((T-1)*B, H)
                _gemm(True, False, i1 - i0, H, (T - 1) * B, <floating> 1, dzp + B * H + i0,
                      H, &h[0, 0, 0], H, <floating> 0, &dW_hh[i0, 0], H)
            else:
                memset(&dW_hh[i0, 0], 0, (i1 - i0) * H * sizeof(floating))
            if h0 is not None:
                # dW_hh[i0:i1] += dz[0][:, i0:i1]^T @ h0   (i1-i0, H) = (i1-i0, B) @ (B, H)
                _gemm(True, False, i1 - i0, H, B, <floating> 1, dzp + i0, H, &h0[0, 0], H,
                      <floating> 1, &dW_hh[i0, 0], H)
        if i1 > i0:
            # dW_xh[i0:i1] := dz[:, i0:i1]^T @ x   (i1-i0, D) = (i1-i0, T*B) @ (T*B, D)
            _gemm(True, False, i1 - i0, D, TB, <floating> 1, dzp + i0, H, &x[0, 0, 0], D,
                  <floating> 0, &dW_xh[i0, 0], D)
        if j1 > j0:
            # dx[j0:j1] := dz[j0:j1] @ W_xh   (j1-j0, D) = (j1-j0, H) @ (H, D), rows of T*B
            _gemm(False, False, j1 - j0, D, H, <floating> 1, dzp + j0 * H, H, &W_xh[0, 0],
                  D, <floating> 0, &dx[0, 0, 0] + j0 * D, D)
        if b1 > b0:
            # dh0[b0:b1] := dz[0][b0:b1] @ W_hh   (b1-b0, H) = (b1-b0, H) @ (H, H)
            _gemm(False, False, b1 - b0, H, H, <floating> 1, dzp + b0 * H, H, &W_hh[0, 0],
                  H, <floating> 0, &dh0[b0, 0], H)
