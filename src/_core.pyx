# cython: language_level=3
"""rnnx._core: the compiled kernels of the tanh recurrence, and the reductions that training
runs on its arrays every step (non-finite scans, norms, the median).

    h[t] = tanh(x[t] @ W_xh^T + h[t-1] @ W_hh^T + b_h),   h[-1] = h0

Shapes: x (T, B, D), h (T, B, H), W_xh (H, D), W_hh (H, H), b_h (H,), h0 (B, H).
Every array argument of the recurrence's kernels is C-contiguous and of one dtype (float32
or float64): the Python layer (rnnx.core.recurrence) validates and converts; they trust it.
Loops run without the GIL and report failures as a status (the time step where they
happened) so that Python can raise a clear exception once the GIL is back.
"""
from libc.math cimport sqrt, fabs, isfinite
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyBuffer_Release
from cython cimport floating

import numpy as np

from _blas cimport blas_int, _dot, _gemv, _gemm
from _buffers cimport take_floats

cdef extern from "_elementwise.h" nogil:
    void rnnx_tanh_bias_d(double *z, const double *b, Py_ssize_t rows, Py_ssize_t cols)
    void rnnx_tanh_bias_f(float *z, const float *b, Py_ssize_t rows, Py_ssize_t cols)
    void rnnx_dtanh_d(double *dz, const double *delta, const double *h, Py_ssize_t n)
    void rnnx_dtanh_f(float *dz, const float *delta, const float *h, Py_ssize_t n)
    void rnnx_add_rows_d(double *acc, const double *a, Py_ssize_t rows, Py_ssize_t cols)
    void rnnx_add_rows_f(float *acc, const float *a, Py_ssize_t rows, Py_ssize_t cols)
    Py_ssize_t rnnx_count_nonfinite_d(const double *a, Py_ssize_t n)
    Py_ssize_t rnnx_count_nonfinite_f(const float *a, Py_ssize_t n)

cdef extern from "_small_gemm.h" nogil:
    enum: RNNX_GEMM_NR
    bint rnnx_small_gemm_fits(Py_ssize_t m, Py_ssize_t n)
    void rnnx_small_gemm_d(Py_ssize_t m, Py_ssize_t n, int beta, Py_ssize_t k,
                           const double *A, const double *M, Py_ssize_t k2,
                           const double *A2, const double *M2, double *C)
    void rnnx_small_gemm_f(Py_ssize_t m, Py_ssize_t n, int beta, Py_ssize_t k,
                           const float *A, const float *M, Py_ssize_t k2, const float *A2,
                           const float *M2, float *C)
    void rnnx_small_gemm_tn_d(Py_ssize_t m, Py_ssize_t n, int beta, Py_ssize_t k,
                              const double *A, const double *M, Py_ssize_t k2,
                              const double *A2, const double *M2, double *C)
    void rnnx_small_gemm_tn_f(Py_ssize_t m, Py_ssize_t n, int beta, Py_ssize_t k,
                              const float *A, const float *M, Py_ssize_t k2, const float *A2,
                              const float *M2, float *C)


cdef inline void _tanh_bias(floating *z, const floating *b, Py_ssize_t rows,
                            Py_ssize_t cols) noexcept nogil:
    """z[r, c] := tanh(z[r, c] + b[c])"""
    if floating is float:
        rnnx_tanh_bias_f(z, b, rows, cols)
    else:
        rnnx_tanh_bias_d(z, b, rows, cols)


cdef inline void _dtanh(floating *dz, const floating *delta, const floating *h,
                        Py_ssize_t n) noexcept nogil:
    """dz := delta * (1 - h^2)"""
    if floating is float:
        rnnx_dtanh_f(dz, delta, h, n)
    else:
        rnnx_dtanh_d(dz, delta, h, n)


cdef inline void _add_rows(floating *acc, const floating *a, Py_ssize_t rows,
                           Py_ssize_t cols) noexcept nogil:
    """acc[j] := acc[j] + sum over rows i of a[i, j]"""
    if floating is float:
        rnnx_add_rows_f(acc, a, rows, cols)
    else:
        rnnx_add_rows_d(acc, a, rows, cols)


cdef inline void _weight_acc(const floating *a, const floating *M, floating *C, Py_ssize_t m,
                             Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """C := a^T @ M + C for a (k, m), M (k, n), C (m, n), with the own kernel (the caller
    checked rnnx_small_gemm_fits(m, n))."""
    if floating is float:
        rnnx_small_gemm_tn_f(m, n, 1, k, a, M, 0, NULL, NULL, C)
    else:
        rnnx_small_gemm_tn_d(m, n, 1, k, a, M, 0, NULL, NULL, C)


cdef inline void _step_acc(const floating *a, const floating *M, const floating *Mp,
                           floating *c, blas_int m, blas_int k, blas_int n) noexcept nogil:
    """c := a @ M + c for a (m, k), M (k, n), c (m, n): the products every time step makes.

    Mp, M in panels (panels()), selects the register-blocked kernel of _small_gemm.h: the
    caller passes it where the kernel fits and may be used (it beats one BLAS thread, which
    repacks M every step, but not a BLAS running several threads on a large product).
    Without it, GEMV for m = 1 and BLAS GEMM otherwise."""
    if Mp != NULL:
        if floating is float:
            rnnx_small_gemm_f(m, n, 1, k, a, Mp, 0, NULL, NULL, c)
        else:
            rnnx_small_gemm_d(m, n, 1, k, a, Mp, 0, NULL, NULL, c)
    elif m == 1:
        # c^T := M^T a^T + c^T   (n,) = (n, k) @ (k,)
        _gemv(True, k, n, <floating> 1, M, n, a, <floating> 1, c)
    else:
        # c := a @ M + c   (m, n) = (m, k) @ (k, n)
        _gemm(False, False, m, n, k, <floating> 1, a, k, M, n, <floating> 1, c, n)


cdef inline void _step_set(const floating *a, const floating *M, const floating *Mp,
                           blas_int ka, const floating *b, const floating *N,
                           const floating *Np, blas_int kb, floating *c, blas_int m,
                           blas_int n) noexcept nogil:
    """c := a @ M + b @ N for a (m, ka), M (ka, n), b (m, kb), N (kb, n), c (m, n); b NULL
    for c := a @ M. With Mp (and Np), M and N in panels, the own kernel makes both
    products in one pass over c; else c is zeroed and each product added (_step_acc)."""
    if Mp != NULL:
        if floating is float:
            rnnx_small_gemm_f(m, n, 0, ka, a, Mp, kb if b != NULL else 0, b, Np, c)
        else:
            rnnx_small_gemm_d(m, n, 0, ka, a, Mp, kb if b != NULL else 0, b, Np, c)
        return
    memset(c, 0, m * n * sizeof(floating))
    _step_acc(a, M, NULL, c, m, ka, n)
    if b != NULL:
        _step_acc(b, N, NULL, c, m, kb, n)


cdef double _careful_norm(Py_ssize_t n, const floating *v) noexcept nogil:
    """||v||_2 without overflow (scaled by max |v|); inf or NaN if v has a non-finite entry."""
    cdef Py_ssize_t i
    cdef double scale = 0, s = 0, a
    for i in range(n):
        a = fabs(<double> v[i])
        if not isfinite(a):
            return a
        if a > scale:
            scale = a
    if scale == 0:
        return 0
    for i in range(n):
        a = v[i] / scale
        s += a * a
    return scale * sqrt(s)


cdef inline double _norm(Py_ssize_t n, const floating *v) noexcept nogil:
    """||v||_2 by one BLAS dot; the careful path only when that overflowed or v is not finite."""
    cdef double s = _dot(<blas_int> n, v, v)
    if s <= 1e300:                      # false for inf and NaN
        return sqrt(s)
    return _careful_norm(n, v)


cdef inline object _dtype_of(const floating *tag):
    """The numpy dtype of a fused specialisation (tag only selects it)."""
    return np.float32 if floating is float else np.float64


def first_nonfinite(list arrays):
    """The index of the first of arrays (C-contiguous float32 or float64, any shape) with a
    NaN or infinite entry; -1 when every entry of every array is finite."""
    cdef Py_buffer view
    cdef Py_ssize_t k, n, bad = 0
    for k in range(len(arrays)):
        take_floats(arrays[k], &view, False)
        n = view.len // view.itemsize
        with nogil:
            if view.itemsize == 4:
                bad = rnnx_count_nonfinite_f(<const float *> view.buf, n)
            else:
                bad = rnnx_count_nonfinite_d(<const double *> view.buf, n)
        PyBuffer_Release(&view)
        if bad:
            return k
    return -1


cdef double _select(double *a, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """The k-th smallest of a[:n] (from 0), reordering a so that a[:k] <= a[k] <= a[k+1:]
    (Hoare's selection: linear time on average)."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j
    cdef double pivot
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


cdef double _median(double *a, Py_ssize_t n) noexcept nogil:
    """Median of a[:n] (n >= 1), reordering a."""
    cdef Py_ssize_t k = n // 2, i
    cdef double upper = _select(a, n, k), lower
    if n % 2:
        return upper
    lower = a[0]                  # the (k-1)-th smallest: the largest of a[:k]
    for i in range(1, k):
        if a[i] > lower:
            lower = a[i]
    return 0.5 * (lower + upper)


def median_and_mad(const double[::1] values):
    """(median, median absolute deviation) of a non-empty array of finite values: the
    robust location and scale of the spike detector, every training step."""
    cdef Py_ssize_t n = values.shape[0], i
    cdef double median, mad
    cdef double *scratch
    if n == 0:
        raise ValueError("median_and_mad needs at least one value")
    scratch = <double *> malloc(n * sizeof(double))
    if scratch == NULL:
        raise MemoryError()
    with nogil:
        memcpy(scratch, &values[0], n * sizeof(double))
        median = _median(scratch, n)
        for i in range(n):
            scratch[i] = fabs(values[i] - median)
        mad = _median(scratch, n)
    free(scratch)
    return median, mad


def l2_norms(list arrays):
    """[||a||_2 for a in arrays], C-contiguous float32 or float64 arrays of any shape: each
    without overflow; inf or NaN for an array with a non-finite entry."""
    cdef Py_buffer view
    cdef Py_ssize_t n
    cdef double r
    norms = []
    for a in arrays:
        take_floats(a, &view, False)
        n = view.len // view.itemsize
        with nogil:
            if n == 0:
                r = 0
            elif view.itemsize == 4:
                r = _norm(n, <const float *> view.buf)
            else:
                r = _norm(n, <const double *> view.buf)
        PyBuffer_Release(&view)
        norms.append(r)
    return norms


cdef const floating *_start(const floating[:, :, ::1] a):
    """&a[0, 0, 0], or NULL for None"""
    return NULL if a is None else &a[0, 0, 0]


cdef int _check_panels(const floating[:, :, ::1] P, Py_ssize_t k, Py_ssize_t n,
                       Py_ssize_t m) except -1:
    """P, unless None, must be a (k, n) matrix in panels() for products of m rows that the
    own kernel does (rnnx_small_gemm_fits(m, n))."""
    if P is not None and not (P.shape[0] * RNNX_GEMM_NR == n and P.shape[1] == k
                              and P.shape[2] == RNNX_GEMM_NR and rnnx_small_gemm_fits(m, n)):
        raise ValueError(f"a ({k}, {n}) matrix in panels is ({n // RNNX_GEMM_NR}, {k}, "
                         f"{RNNX_GEMM_NR}), for products of {m} rows the own kernel fits")
    return 0


def small_gemm_fits(Py_ssize_t m, Py_ssize_t n):
    """Whether the own kernel of _small_gemm.h does a per-step product of m rows and n
    columns (AVX-512 at run time, m >= 4, n a multiple of 32); elsewhere BLAS does."""
    return bool(rnnx_small_gemm_fits(m, n))


def panels(const floating[:, ::1] M):
    """M (k, n), n a multiple of 32, as the own kernel reads a weight matrix: its 32-column
    panels one after the other, (n / 32, k, 32) C-contiguous. Made once per call, for
    every step's product."""
    cdef Py_ssize_t k = M.shape[0], n = M.shape[1]
    if n % RNNX_GEMM_NR:
        raise ValueError(f"panels of {RNNX_GEMM_NR} columns need n a multiple of "
                         f"{RNNX_GEMM_NR}; got ({k}, {n})")
    return np.ascontiguousarray(
        np.asarray(M).reshape(k, n // RNNX_GEMM_NR, RNNX_GEMM_NR).transpose(1, 0, 2))


# The recurrence runs in phases, so that Python can run the time loops of disjoint blocks
# of batch rows (independent sequences) on several threads (rnnx.core._row_blocks):
#   project         the input projection, one GEMM over all rows (for a single block
#                   where the own kernel does not fit);
#   recur           the forward time loop of rows r0:r1 (projecting each step's inputs
#                   itself, or adding to project's output);
#   backward_steps  the backward time loop of rows r0:r1, adding up their share of db_h,
#                   and where the own kernel fits of dW_hh, and where it fits D too of
#                   dW_xh, dx and dh0, as it goes;
#   backward_gemms  the gradients the loop left: GEMMs over a range of the T*B flattened
#                   rows (partial sums when there are several ranges).

def project(const floating[:, :, ::1] x, const floating[:, ::1] W_xh):
    """h (T, B, H) := x @ W_xh^T: the input projection of every step, one GEMM."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = W_xh.shape[0]
    cdef floating[:, :, ::1] h = np.empty((T, B, H), dtype=_dtype_of(&x[0, 0, 0]))
    with nogil:
        # h := x @ W_xh^T   (T*B, H) = (T*B, D) @ (D, H)
        _gemm(False, True, T * B, H, D, <floating> 1, &x[0, 0, 0], D, &W_xh[0, 0], D,
              <floating> 0, &h[0, 0, 0], H)
    return np.asarray(h)


def recur(const floating[:, :, ::1] x, const floating[:, ::1] W_xh_T,
          floating[:, :, ::1] h, const floating[:, ::1] W_hh_T, const floating[::1] b_h,
          const floating[:, ::1] h0, Py_ssize_t r0, Py_ssize_t r1,
          const floating[:, :, ::1] W_xh_P, const floating[:, :, ::1] W_hh_P):
    """The forward time loop of batch rows r0:r1, in place in h (T, B, H):
    h[t] = tanh(x[t] @ W_xh^T + h[t-1] @ W_hh^T + b_h), h[-1] = h0 (None: zeros).

    With W_xh_T None h already holds the input projection x @ W_xh^T (project()); else
    each step computes its rows' share. The transposes W_xh_T (D, H) and W_hh_T (H, H)
    are contiguous, so that each product is c += a @ M with M read row by row. W_xh_P and
    W_hh_P, the same in panels(), select the own kernel (see _step_acc); None for BLAS.
    """
    cdef Py_ssize_t T = h.shape[0], B = h.shape[1], H = h.shape[2], D = x.shape[2], t
    cdef Py_ssize_t BH = B * H, m = r1 - r0
    cdef bint projected = W_xh_T is None
    cdef floating *hp = &h[0, 0, 0] + r0 * H             # row r0 of step 0
    cdef const floating *prev                            # h[t-1, r0:r1], NULL for zeros
    cdef const floating *whp = _start(W_hh_P)
    cdef const floating *wxp = _start(W_xh_P)
    if not 0 <= r0 < r1 <= B:
        raise ValueError(f"rows {r0}:{r1} are not a block of the batch's {B}")
    _check_panels(W_hh_P, H, H, m)
    if not projected:
        _check_panels(W_xh_P, D, H, m)
        if (whp == NULL) != (wxp == NULL):
            raise ValueError("W_xh_P and W_hh_P go together")
    with nogil:
        for t in range(T):
            if t > 0:
                prev = hp + (t - 1) * BH
            elif h0 is not None:
                prev = &h0[r0, 0]
            else:
                prev = NULL
            if projected:
                # h[t, r0:r1] += h[t-1, r0:r1] @ W_hh^T   (m, H) = (m, H) @ (H, H)
                if prev != NULL:
                    _step_acc(prev, &W_hh_T[0, 0], whp, hp + t * BH, m, H, H)
            else:
                # h[t, r0:r1] := x[t, r0:r1] @ W_xh^T + h[t-1, r0:r1] @ W_hh^T
                #   (m, H) = (m, D) @ (D, H) + (m, H) @ (H, H)
                _step_set(&x[t, r0, 0], &W_xh_T[0, 0], wxp, D, prev, &W_hh_T[0, 0], whp, H,
                          hp + t * BH, m, H)
            # h[t, r0:r1] := tanh(h[t, r0:r1] + b_h)
            _tanh_bias(hp + t * BH, &b_h[0], m, H)


def backward_steps(const floating[:, :, ::1] x, const floating[:, :, ::1] h,
                   const floating[:, :, ::1] grad_h, const floating[:, ::1] W_xh,
                   const floating[:, ::1] W_hh, const floating[:, ::1] h0, Py_ssize_t r0,
                   Py_ssize_t r1, double max_norm, double clip_delta, floating[::1] work,
                   floating[:, :, ::1] kept, double[::1] norms, floating[::1] db_h,
                   floating[:, ::1] dW_hh, floating[:, ::1] dW_xh, floating[:, :, ::1] dx,
                   floating[:, ::1] dh0, const floating[:, :, ::1] W_hh_P,
                   const floating[:, :, ::1] W_xh_P):
    """The backward time loop of BPTT for batch rows r0:r1.

    delta[t] = grad_h[t] + dz[t+1] @ W_hh is the total dL/dh[t] of those rows and
    dz[t] = delta[t] * (1 - h[t]^2). norms[t] := the L2 norm of the rows' delta[t] (after
    clip_delta > 0 clips every entry to [-clip_delta, clip_delta] before it flows further
    back, Mikolov 2012); kept (T, B, H), unless None, gets delta itself. Returns -1, or
    the step where the loop stopped: the rows' delta[t] became non-finite or its norm
    passed max_norm.

    The rows' share of the gradients is added up as the loop goes, while dz[t] is in
    cache: db_h (H,) += sum of dz[t], and, unless dW_hh is None, dW_hh (H, H) +=
    dz[t]^T @ h[t-1] (h[-1] = h0). Pass dW_hh only where the own kernel fits (H, H).
    Unless dW_xh is None (pass it only with dW_hh, where the own kernel fits (H, D)),
    also dW_xh (H, D) += dz[t]^T @ x[t], the rows of dx[t] := dz[t] @ W_xh and of
    dh0 := dz[0] @ W_hh: then no other pass is needed and work (2 * (r1 - r0) * H
    entries) holds only the dz of the last two steps. Otherwise work (T * B * H entries,
    laid out (T, B, H)) keeps the dz of every step for backward_gemms.

    grad_h is (T, B, H), or (1, B, H) for a loss that reads only the last hidden state
    (zero direct gradient at the other steps, with no (T, B, H) array of zeros).
    W_hh_P and W_xh_P, W_hh and W_xh in panels(), select the own kernel for the products
    by them (see _step_acc); None for BLAS.
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
    cdef Py_ssize_t t_stop = -1
    cdef const floating *whp = _start(W_hh_P)
    cdef const floating *wxp = _start(W_xh_P)
    if not 0 <= r0 < r1 <= B:
        raise ValueError(f"rows {r0}:{r1} are not a block of the batch's {B}")
    _check_panels(W_hh_P, H, H, m)
    _check_panels(W_xh_P, H, D, m)
    if work.shape[0] < slots * stride or norms.shape[0] != T or (
            kept is not None and (kept.shape[0] != T or kept.shape[1] != B
                                  or kept.shape[2] != H)):
        raise ValueError(f"work must hold {slots * stride} entries, norms {T}, kept "
                         f"({T}, {B}, {H})")
    if grad_h.shape[0] not in (1, T) or grad_h.shape[1] != B or grad_h.shape[2] != H:
        raise ValueError(f"grad_h must have shape ({T}, {B}, {H}) or (1, {B}, {H}); got "
                         f"({grad_h.shape[0]}, {grad_h.shape[1]}, {grad_h.shape[2]})")
    if db_h.shape[0] != H or (dW_hh is not None and not (
            dW_hh.shape[0] == H and dW_hh.shape[1] == H and rnnx_small_gemm_fits(H, H))):
        raise ValueError(f"db_h must be ({H},) and dW_hh ({H}, {H}), where the own kernel "
                         "fits")
    if fused and (dW_hh is None or dx is None or dh0 is None
                  or dW_xh.shape[0] != H or dW_xh.shape[1] != D
                  or not rnnx_small_gemm_fits(H, D)
                  or dx.shape[0] != T or dx.shape[1] != B or dx.shape[2] != D
                  or dh0.shape[0] != B or dh0.shape[1] != H):
        raise ValueError(f"dW_xh ({H}, {D}) goes with dW_hh, dx ({T}, {B}, {D}) and dh0 "
                         f"({B}, {H}), where the own kernel fits")
    with nogil:
        for t in range(T - 1, -1, -1):
            # delta := grad_h[t, r0:r1] + dz[t+1, r0:r1] @ W_hh   (m, H) = (m, H) @ (H, H)
            if not last_only:
                memcpy(dp, &grad_h[t, r0, 0], mH * sizeof(floating))
            elif t == T - 1:
                memcpy(dp, &grad_h[0, r0, 0], mH * sizeof(floating))
            else:
                memset(dp, 0, mH * sizeof(floating))
            if t < T - 1:
                _step_acc(dz0 + ((t + 1) % slots) * stride, &W_hh[0, 0], whp, dp, m, H, H)
            norm = _norm(mH, dp)
            if isfinite(norm) and c > 0:
                for i in range(mH):
                    dp[i] = c if dp[i] > c else (-c if dp[i] < -c else dp[i])
                norm = _norm(mH, dp)
            norms[t] = norm
            if not (isfinite(norm) and norm <= max_norm):
                t_stop = t
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
                    _weight_acc(dz, &h[t - 1, r0, 0], &dW_hh[0, 0], H, m, H)
                elif h0 is not None:
                    _weight_acc(dz, &h0[r0, 0], &dW_hh[0, 0], H, m, H)
            if fused:
                # dW_xh += dz[t, r0:r1]^T @ x[t, r0:r1]   (H, D) = (H, m) @ (m, D)
                _weight_acc(dz, &x[t, r0, 0], &dW_xh[0, 0], H, m, D)
                # dx[t, r0:r1] := dz[t, r0:r1] @ W_xh   (m, D) = (m, H) @ (H, D)
                _step_set(dz, &W_xh[0, 0], wxp, H, NULL, NULL, NULL, 0, &dx[t, r0, 0], m, D)
        if fused and t_stop < 0:
            # dh0[r0:r1] := dz[0, r0:r1] @ W_hh   (m, H) = (m, H) @ (H, H)
            _step_set(dz0, &W_hh[0, 0], whp, H, NULL, NULL, NULL, 0, &dh0[r0, 0], m, H)
    return t_stop


def backward_gemms(const floating[:, :, ::1] x, const floating[:, :, ::1] h,
                   const floating[::1] work, const floating[:, ::1] W_xh,
                   const floating[:, ::1] W_hh, const floating[:, ::1] h0,
                   Py_ssize_t k0, Py_ssize_t k1, floating[:, :, ::1] dx,
                   floating[:, ::1] dh0, bint with_dW_hh):
    """The gradients from dz (in work, (T, B, H), every row done) over the rows k0:k1 of
    the T*B flattened (t, b) rows: returns their sums (dW_xh, dW_hh or None unless
    with_dW_hh), writes those rows of dx (T, B, D), and dh0 (B, H) unless None. Each is a
    GEMM over the range; several ranges give partial sums that add up to the whole."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = W_hh.shape[0]
    cdef Py_ssize_t n = k1 - k0, s = max(k0, B), n_h0
    cdef object dtype = _dtype_of(&x[0, 0, 0])
    cdef floating[:, ::1] dW_xh = np.empty((H, D), dtype=dtype)
    cdef floating[:, ::1] dW_hh = np.zeros((H, H), dtype=dtype) if with_dW_hh else None
    cdef const floating *dzp = &work[0]
    cdef const floating *xp = &x[0, 0, 0]
    cdef const floating *hp = &h[0, 0, 0]
    if not 0 <= k0 < k1 <= T * B or work.shape[0] < T * B * H:
        raise ValueError(f"rows {k0}:{k1} are not a range of the {T * B} rows, or work "
                         f"holds fewer than T*B*H = {T * B * H} entries")
    n_h0 = min(k1, B) - k0 if h0 is not None and k0 < B else 0
    with nogil:
        if with_dW_hh and s < k1:
            # dW_hh := sum over rows i >= B of dz[i]^T @ h[i - B] (h of the step before)
            #   (H, H) = (H, k1-s) @ (k1-s, H)
            _gemm(True, False, H, H, k1 - s, <floating> 1, dzp + s * H, H, hp + (s - B) * H,
                  H, <floating> 0, &dW_hh[0, 0], H)
        if with_dW_hh and n_h0 > 0:
            # dW_hh += dz[k0:B]^T @ h0[k0:B]   (H, H) = (H, n_h0) @ (n_h0, H)
            _gemm(True, False, H, H, n_h0, <floating> 1, dzp + k0 * H, H, &h0[k0, 0], H,
                  <floating> 1, &dW_hh[0, 0], H)
        # dW_xh := dz[k0:k1]^T @ x[k0:k1]   (H, D) = (H, n) @ (n, D)
        _gemm(True, False, H, D, n, <floating> 1, dzp + k0 * H, H, xp + k0 * D, D,
              <floating> 0, &dW_xh[0, 0], D)
        # dx[k0:k1] := dz[k0:k1] @ W_xh   (n, D) = (n, H) @ (H, D)
        _gemm(False, False, n, D, H, <floating> 1, dzp + k0 * H, H, &W_xh[0, 0], D,
              <floating> 0, &dx[0, 0, 0] + k0 * D, D)
        if dh0 is not None:
            # dh0 := dz[0] @ W_hh   (B, H) = (B, H) @ (H, H)
            _gemm(False, False, B, H, H, <floating> 1, dzp, H, &W_hh[0, 0], H,
                  <floating> 0, &dh0[0, 0], H)
    return np.asarray(dW_xh), (np.asarray(dW_hh) if with_dW_hh else None)

