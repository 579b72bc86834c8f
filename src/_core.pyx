# cython: language_level=3
"""rnnx._core: the compiled kernels of the tanh recurrence, and the reductions that training
runs on its arrays every step (non-finite scans, norms, the median).

    h[t] = tanh(x[t] @ W_xh^T + h[t-1] @ W_hh^T + b_h),   h[-1] = h0

Shapes: x (T, B, D), h (T, B, H), W_xh (H, D), W_hh (H, H), b_h (H,), h0 (B, H).
Every array argument of the recurrence's kernels is C-contiguous and of one dtype (float32
or float64): the Python layer (rnnx.recurrence) validates and converts; they trust it.
Loops run without the GIL and report failures as a status (the time step where they
happened) so that Python can raise a clear exception once the GIL is back.
"""
from libc.math cimport sqrt, log, fabs, INFINITY, isfinite
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyBuffer_Release
from cython cimport floating

import numpy as np

from _blas cimport blas_int, _dot, _gemv, _gemm, _singular_values
from _buffers cimport take_floats

cdef extern from "_elementwise.h" nogil:
    void rnnx_tanh_bias_d(double *z, const double *b, Py_ssize_t rows, Py_ssize_t cols)
    void rnnx_tanh_bias_f(float *z, const float *b, Py_ssize_t rows, Py_ssize_t cols)
    void rnnx_dtanh_d(double *dz, const double *delta, const double *h, Py_ssize_t n)
    void rnnx_dtanh_f(float *dz, const float *delta, const float *h, Py_ssize_t n)
    Py_ssize_t rnnx_count_nonfinite_d(const double *a, Py_ssize_t n)
    Py_ssize_t rnnx_count_nonfinite_f(const float *a, Py_ssize_t n)

cdef extern from "_small_gemm.h" nogil:
    bint rnnx_small_gemm_fits(Py_ssize_t m, Py_ssize_t n)
    void rnnx_small_gemm_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double *A,
                           const double *M, double *C)
    void rnnx_small_gemm_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *A,
                           const float *M, float *C)


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


cdef inline void _recurrent_acc(const floating *a, const floating *M, floating *c,
                                blas_int B, blas_int H, bint own_kernel) noexcept nogil:
    """c := a @ M + c for a, c (B, H), M (H, H): the product every time step makes.

    GEMV for B = 1; the register-blocked kernel of _small_gemm.h where it fits and the
    caller allows it (it beats one BLAS thread, which repacks M every step, but not a BLAS
    running several threads on a large product); BLAS GEMM otherwise."""
    if B == 1:
        # c^T := M^T a^T + c^T   (H,) = (H, H) @ (H,)
        _gemv(True, H, H, <floating> 1, M, H, a, <floating> 1, c)
    elif own_kernel and rnnx_small_gemm_fits(B, H):
        if floating is float:
            rnnx_small_gemm_f(B, H, H, a, M, c)
        else:
            rnnx_small_gemm_d(B, H, H, a, M, c)
    else:
        # c := a @ M + c   (B, H) = (B, H) @ (H, H)
        _gemm(False, False, B, H, H, <floating> 1, a, H, M, H, <floating> 1, c, H)


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


def forward(const floating[:, :, ::1] x, const floating[:, ::1] W_xh,
            const floating[:, ::1] W_hh, const floating[::1] b_h, const floating[:, ::1] h0,
            bint own_kernel):
    """h (T, B, H) of the recurrence; h0 None means zeros. own_kernel: see _recurrent_acc."""
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = W_hh.shape[0], t
    cdef Py_ssize_t BH = B * H
    cdef floating[:, :, ::1] h = np.empty((T, B, H), dtype=_dtype_of(&x[0, 0, 0]))
    cdef floating *hp = &h[0, 0, 0]
    # W_hh^T, contiguous, so that each step is c += a @ M with M read row by row
    cdef floating[:, ::1] W_hh_T = np.ascontiguousarray(np.asarray(W_hh).T)
    with nogil:
        # the input projection for all steps at once, into h itself
        # h := x @ W_xh^T   (T*B, H) = (T*B, D) @ (D, H)
        _gemm(False, True, T * B, H, D, <floating> 1, &x[0, 0, 0], D, &W_xh[0, 0], D,
              <floating> 0, hp, H)
        for t in range(T):
            # h[t] += h[t-1] @ W_hh^T   (B, H) = (B, H) @ (H, H)
            if t > 0:
                _recurrent_acc(hp + (t - 1) * BH, &W_hh_T[0, 0], hp + t * BH, B, H, own_kernel)
            elif h0 is not None:
                _recurrent_acc(&h0[0, 0], &W_hh_T[0, 0], hp, B, H, own_kernel)
            # h[t] := tanh(h[t] + b_h)
            _tanh_bias(hp + t * BH, &b_h[0], B, H)
    return np.asarray(h)


def backward(const floating[:, :, ::1] x, const floating[:, :, ::1] h,
             const floating[:, :, ::1] grad_h, const floating[:, ::1] W_xh,
             const floating[:, ::1] W_hh, const floating[:, ::1] h0,
             double max_norm, double clip_delta, bint keep_delta, floating[::1] work,
             bint own_kernel):
    """BPTT. Returns (t_fail, norm, grads): t_fail = -1 on success, else the time step where
    delta[t] = dL/dh[t] became non-finite or its norm exceeded max_norm (grads is then None).

    grad_h is (T, B, H), or (1, B, H) for a loss that reads only the last hidden state
    (zero direct gradient at the other steps, with no (T, B, H) array of zeros).

    grads = (dW_xh, dW_hh, db_h, dx, dh0, delta) with delta (T, B, H) = dL/dh[t] when
    keep_delta, else None. clip_delta > 0 clips every entry of
    delta[t] to [-clip_delta, clip_delta] before it flows further back (Mikolov 2012);
    delta_norms[t] is then the norm after clipping.
    """
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], D = x.shape[2], H = W_hh.shape[0]
    cdef Py_ssize_t BH = B * H, TB = T * B, t, i, j
    cdef bint last_only = grad_h.shape[0] == 1
    cdef object dtype = _dtype_of(&x[0, 0, 0])
    cdef floating[:, ::1] delta = np.empty((B, H), dtype=dtype)
    cdef floating[:, :, ::1] kept = np.empty((T if keep_delta else 1, B, H), dtype=dtype)
    cdef double[::1] delta_norms = np.full(T, np.nan)
    cdef floating[:, ::1] dW_xh = np.empty((H, D), dtype=dtype)
    cdef floating[:, ::1] dW_hh = np.empty((H, H), dtype=dtype)
    cdef floating[::1] db_h = np.zeros(H, dtype=dtype)
    cdef floating[:, :, ::1] dx = np.empty((T, B, D), dtype=dtype)
    cdef floating[:, ::1] dh0 = np.empty((B, H), dtype=dtype)
    # dz[t] = delta[t] * (1 - h[t]^2) lives in work: the only (T, B, H) buffer; the weight
    # and input gradients are single GEMMs over it after the time loop
    cdef floating *dzp = &work[0]
    cdef floating *dp = &delta[0, 0]
    cdef floating c = <floating> clip_delta
    cdef double norm = 0
    cdef Py_ssize_t t_fail = -1
    if work.shape[0] < T * B * H:
        raise ValueError(f"work must hold T*B*H = {T * B * H} entries; got {work.shape[0]}")
    if grad_h.shape[0] not in (1, T) or grad_h.shape[1] != B or grad_h.shape[2] != H:
        raise ValueError(f"grad_h must have shape ({T}, {B}, {H}) or (1, {B}, {H}); got "
                         f"({grad_h.shape[0]}, {grad_h.shape[1]}, {grad_h.shape[2]})")
    with nogil:
        for t in range(T - 1, -1, -1):
            # delta[t] := grad_h[t] + dz[t+1] @ W_hh   (B, H) = (B, H) @ (H, H)
            if not last_only:
                memcpy(dp, &grad_h[t, 0, 0], BH * sizeof(floating))
            elif t == T - 1:
                memcpy(dp, &grad_h[0, 0, 0], BH * sizeof(floating))
            else:
                memset(dp, 0, BH * sizeof(floating))
            if t < T - 1:
                _recurrent_acc(dzp + (t + 1) * BH, &W_hh[0, 0], dp, B, H, own_kernel)
            norm = _norm(BH, dp)
            if not isfinite(norm):
                delta_norms[t] = norm
                t_fail = t
                break
            if c > 0:
                for i in range(BH):
                    dp[i] = c if dp[i] > c else (-c if dp[i] < -c else dp[i])
                norm = _norm(BH, dp)
            delta_norms[t] = norm
            if keep_delta:
                memcpy(&kept[t, 0, 0], dp, BH * sizeof(floating))
            if norm > max_norm:
                t_fail = t
                break
            # dz[t] := delta[t] * (1 - h[t]^2)
            _dtanh(dzp + t * BH, dp, &h[t, 0, 0], BH)
        if t_fail < 0:
            # dW_hh := sum_t dz[t]^T @ h[t-1]   (H, H) = (H, (T-1)*B) @ ((T-1)*B, H)
            _gemm(True, False, H, H, (T - 1) * B, <floating> 1, dzp + BH, H, &h[0, 0, 0], H,
                  <floating> 0, &dW_hh[0, 0], H)
            if h0 is not None:
                # dW_hh += dz[0]^T @ h0   (H, H) = (H, B) @ (B, H)
                _gemm(True, False, H, H, B, <floating> 1, dzp, H, &h0[0, 0], H,
                      <floating> 1, &dW_hh[0, 0], H)
            # dW_xh := dz^T @ x   (H, D) = (H, T*B) @ (T*B, D)
            _gemm(True, False, H, D, TB, <floating> 1, dzp, H, &x[0, 0, 0], D,
                  <floating> 0, &dW_xh[0, 0], D)
            # dx := dz @ W_xh   (T*B, D) = (T*B, H) @ (H, D)
            _gemm(False, False, TB, D, H, <floating> 1, dzp, H, &W_xh[0, 0], D,
                  <floating> 0, &dx[0, 0, 0], D)
            # dh0 := dz[0] @ W_hh   (B, H) = (B, H) @ (H, H)
            _gemm(False, False, B, H, H, <floating> 1, dzp, H, &W_hh[0, 0], H,
                  <floating> 0, &dh0[0, 0], H)
            # db_h := sum over (t, b) of dz[t, b]
            for i in range(TB):
                for j in range(H):
                    db_h[j] += dzp[i * H + j]
    if t_fail >= 0:
        return t_fail, norm, np.asarray(delta_norms), None
    return -1, norm, np.asarray(delta_norms), (
        np.asarray(dW_xh), np.asarray(dW_hh), np.asarray(db_h), np.asarray(dx), np.asarray(dh0),
        np.asarray(kept) if keep_delta else None)


def jacobian_log_norms(const floating[:, :, ::1] h, const floating[:, ::1] W_hh,
                       bint frobenius):
    """L (T+1, B): L[k, b] = ln || dh[T-1]/dh[T-1-k] || for sample b, in float64.

    The product of Jacobians diag(1 - h[i]^2) W_hh is renormalised to norm 1 after every
    factor and the logs of the factors are summed, so it never overflows or underflows.
    W_hh is first divided by its largest |entry| (added back as k ln scale) so even its
    product with a unit-norm matrix stays finite. A product that is exactly zero (saturated
    units) gives -inf from that lag on.
    """
    cdef Py_ssize_t T = h.shape[0], B = h.shape[1], H = h.shape[2], b, k, i, r, col
    cdef double[:, ::1] L = np.zeros((T + 1, B))
    cdef double[:, ::1] W = np.array(W_hh, dtype=np.float64)
    cdef double[:, ::1] M = np.empty((H, H))
    cdef double[:, ::1] M2 = np.empty((H, H))
    cdef double[:, ::1] A = np.empty((H, H))
    cdef double[::1] d = np.empty(H)
    cdef double[::1] s = np.empty(H)
    cdef double[::1] work = np.empty(1)
    cdef double w_scale = np.max(np.abs(W_hh)) if H else 0.0, log_w, log_m, nrm
    cdef blas_int lwork, info = 0
    if w_scale == 0:
        L[1:, :] = -INFINITY
        return np.asarray(L)
    log_w = log(w_scale)
    np.asarray(W)[...] /= w_scale
    if not frobenius:
        _singular_values(<blas_int> H, &A[0, 0], &s[0], &work[0], -1)
        work = np.empty(max(1, int(work[0])))
    lwork = <blas_int> work.shape[0]
    with nogil:
        for b in range(B):
            memset(&M[0, 0], 0, H * H * sizeof(double))
            for r in range(H):
                M[r, r] = 1
            log_m = 0
            for k in range(1, T + 1):
                i = T - k
                # M := M @ diag(1 - h[i, b]^2): tanh' of step i scales column c
                for col in range(H):
                    d[col] = 1 - (<double> h[i, b, col]) * h[i, b, col]
                for r in range(H):
                    for col in range(H):
                        M[r, col] *= d[col]
                # M2 := M @ W   (H, H) = (H, H) @ (H, H): one more factor dh[i]/dh[i-1]
                _gemm(False, False, H, H, H, 1.0, &M[0, 0], H, &W[0, 0], H, 0.0, &M2[0, 0], H)
                if frobenius:
                    nrm = _careful_norm(H * H, &M2[0, 0])
                else:
                    memcpy(&A[0, 0], &M2[0, 0], H * H * sizeof(double))
                    info = _singular_values(<blas_int> H, &A[0, 0], &s[0], &work[0], lwork)
                    if info != 0:
                        break
                    nrm = s[0]
                if nrm == 0:
                    for r in range(k, T + 1):
                        L[r, b] = -INFINITY
                    break
                log_m += log(nrm) + log_w
                L[k, b] = log_m
                # M := M2 / ||M2||
                for r in range(H):
                    for col in range(H):
                        M[r, col] = M2[r, col] / nrm
            if info != 0:
                break
    if info != 0:
        raise FloatingPointError(
            f"LAPACK dgesvd did not converge (info={info}) for a {H}x{H} Jacobian product; "
            "use ord='fro'")
    return np.asarray(L)
