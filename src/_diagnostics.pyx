# cython: language_level=3
"""rnnx._diagnostics: the compiled kernels of the diagnostics, along a trajectory h (T, B, H)
of the tanh recurrence with the per-step Jacobians J[t] = dh[t]/dh[t-1] = diag(1 - h[t]^2) W.

    jacobian_log_norms   ln ||J[T-1] J[T-2] ... J[T-k]|| for every lag k (Frobenius or spectral)
    lyapunov_sums        sums of ln |diag R| of the QR method (Benettin et al. 1980), per window

h is float32 or float64; everything is accumulated in float64 (W is passed as float64).
Each call works on the samples b0:b1 of the batch, so that Python can run disjoint blocks of
samples on threads (rnnx.diagnostics._threads). The loops run without the GIL; every so
often (about every 2^27 multiply-adds; src/_interrupts.pxd) the calling thread takes the GIL
briefly to let Python handle signals (Ctrl-C) and report progress; a flag shared by the
blocks stops the others. Failures come back as a status; Python raises.
"""
from libc.math cimport sqrt, log, fabs, INFINITY
from libc.string cimport memset
from cython cimport floating

import numpy as np

from scipy.linalg.cython_lapack cimport dgeqrf
from _blas cimport blas_int, _gemm, _singular_values
from _norms cimport rnnx_sum_squares_d as _sum_squares
from _diag_shared cimport OK, STOPPED, LAPACK_FAILED, RELEASE_WORK, _dsq
from _interrupts cimport Interrupt, _interrupt, _stop, _report_rest
from _small_gemm cimport RNNX_GEMM_NR, RNNX_GEMM_MIN_COLS, rnnx_gemm_kernels, _kernel
from _spectral_norm cimport LANCZOS_STEPS, _top_singular_value
from _qr_frames cimport (GRAM_SCHMIDT_K, CHECK_ERROR, FRAME_CARRIED, FRAME_SINGULAR,
                         _householder_qr, _cholesky_qr_error, _gram_schmidt_qr,
                         _spanned_cholesky_qr)

cdef enum:
    # the stack of samples' products (see jacobian_log_norms): at most STACK_ROWS rows (a
    # larger stack leaves the cache between its passes: the scaling, the GEMM, the norms;
    # measured slower at H = 128, as was no stack), and none below STACK_MIN_H, where one
    # square product was measured faster than the stack (OpenBLAS's small-matrix kernel).
    STACK_ROWS = 512
    STACK_MIN_H = 128
    # the register-blocked kernel makes the products up to this H: it does not block their
    # shared dimension (H), and from H = 512 BLAS's blocked GEMM was measured faster
    # (benchmarks/diagnostics.py --kernels)
    KERNEL_MAX_H = 384


# the statuses, for Python
STATUS_OK, STATUS_STOPPED, STATUS_LAPACK_FAILED = OK, STOPPED, LAPACK_FAILED


cdef double _fro(Py_ssize_t n, const double *a) noexcept nogil:
    """||a||_2 of n entries (the entries here are bounded, see jacobian_log_norms)"""
    return sqrt(_sum_squares(a, n))


cdef double _block_fro(Py_ssize_t H, Py_ssize_t ld, const double *R) noexcept nogil:
    """||R||_F of R (H, H) column-major with leading dimension ld"""
    cdef Py_ssize_t c
    cdef double acc = 0
    for c in range(H):
        acc += _sum_squares(R + c * ld, H)
    return sqrt(acc)


cdef double _step_cond(const floating *h, Py_ssize_t H, double w_cond) noexcept nogil:
    """A bound of cond(diag(1 - h^2) W) for h (H,): max/min of 1 - h^2 times cond(W)"""
    cdef Py_ssize_t i
    cdef double d, d_min = INFINITY, d_max = 0
    for i in range(H):
        d = _dsq(&h[i])
        d_min, d_max = min(d_min, d), max(d_max, d)
    return d_max / d_min * w_cond if d_min > 0 else INFINITY


def jacobian_log_norms(const floating[:, :, ::1] h, const double[:, ::1] W, bint frobenius,
                       double[:, ::1] L, Py_ssize_t b0, Py_ssize_t b1, int[::1] stop,
                       object progress, list errors, bint main, str kernel=None):
    """L[k, b] := ln ||J[T-1] ... J[T-k]|| for lags k = 1..K (L is (K+1, B), K <= T) and the
    samples b0:b1, spectral norm or (frobenius) Frobenius norm. L[0] is left to the caller.

    The product is carried renormalised: R_1 = diag(d[T-1]) W', R_k = (R_{k-1} / s_{k-1})
    diag(d[T-k]) W' with s_k = ||R_k||_F and W' = W / max|W| (so no product of unit-norm
    matrices overflows), and the logs of the scales are added back.
    kernel: the register-blocked kernel variant that makes the products from
    H = RNNX_GEMM_MIN_COLS to KERNEL_MAX_H (src/_small_gemm.h; rnnx.core.kernels), or None
    or "blas" for BLAS's GEMM. The kernel takes one sample at a time: it reads W'^T as it
    is and (R_{k-1} / s_{k-1}) diag(d[T-k]) transposed in its 32-column panels, which the
    pass that scales the columns writes: no copy of either operand per lag and no pass
    that zeroes the output first (a BLAS GEMM makes both). BLAS's GEMM runs closer to its
    rate on a tall product, and the samples share W': a chunk of them is carried as one
    stack, their scaled products the row blocks of one column-major (n H, H) matrix, times
    W' in one GEMM per lag; STACK_ROWS bounds its rows. An exactly zero product (saturated
    units) gives -inf from that lag on.
    progress(n) is called every so often with the lags done (summed over the
    samples) since the last call (main block only).
    Returns (status, info): OK, STOPPED (the exception is errors[0]) or LAPACK_FAILED.
    """
    cdef Py_ssize_t T = h.shape[0], H = h.shape[2], K = L.shape[0] - 1, b, k, i, r, c, j
    cdef const rnnx_gemm_kernels *g = _kernel(kernel)
    cdef bint packed = g != NULL and RNNX_GEMM_MIN_COLS <= H <= KERNEL_MAX_H
    # samples carried at once: a stack for BLAS's GEMM; one for the kernel (as fast on one
    # sample's product as on a stack's, and one sample's matrices stay in L2 between the
    # passes over them)
    cdef Py_ssize_t nc = (max(1, min(b1 - b0, STACK_ROWS // H))
                          if H >= STACK_MIN_H and not packed else 1)
    # the leading dimension (set per chunk of samples): H for one sample's product by the
    # kernel; a stack's one cache line over its rows, as a column stride of a multiple of
    # 4 KiB (H = 512, or 4 samples of 128) maps every column to the same cache sets
    cdef Py_ssize_t ld = H if packed else nc * H + 8
    cdef Py_ssize_t chunk, c0, m, r0
    # X^T (H, H) in the kernel's panels, (ceil(H / NR), H, NR), the columns past H zeros
    cdef double[::1] Xt = np.zeros(
        ((H + RNNX_GEMM_NR - 1) // RNNX_GEMM_NR) * RNNX_GEMM_NR * H if packed else 1)
    cdef double *Xp = &Xt[0]
    cdef double *dst
    cdef double w_scale = np.max(np.abs(W)), log_w, val, sig, f
    cdef Py_ssize_t nsv = 0 if frobenius else H
    cdef double[:, ::1] Wt                      # W'^T row-major: W' column-major
    cdef double[:, ::1] R = np.empty((H, ld))   # the stack (or sample), column-major
    cdef double[:, ::1] Rn = np.empty((H, ld))
    cdef double[:, ::1] U = np.empty((nc, H))   # each sample's top left singular vector
    cdef double[::1] s = np.empty(nc)           # each sample's ||R_k||_F
    cdef double[::1] log_c = np.empty(nc)       # the sum of the logs of its earlier scales
    cdef int[::1] path = np.empty(nc, np.intc)  # how its previous lag was certified
    cdef double[:, ::1] G = np.empty((nsv, H))
    cdef double[:, ::1] C = np.empty((nsv, H))
    cdef double[::1] y = np.empty(H)
    cdef double[::1] V = np.empty((LANCZOS_STEPS + 1) * nsv)
    cdef double[::1] lz = np.empty(LANCZOS_STEPS * 8)
    cdef double[::1] sm = np.empty(4 * LANCZOS_STEPS * LANCZOS_STEPS + 2 * LANCZOS_STEPS)
    cdef double[::1] ev = np.empty(nsv)
    cdef double[::1] work = np.empty(26 * nsv)
    cdef int[::1] iwork = np.empty(10 * nsv + 2, np.intc)
    cdef double *Rp
    cdef double *Rnp
    cdef double *Rb
    cdef double *tmp
    cdef blas_int info = 0
    cdef int status = OK
    cdef Interrupt it = _interrupt(stop, progress, errors, main, RELEASE_WORK)
    if K > T or L.shape[1] != h.shape[1] or W.shape[0] != H or W.shape[1] != H or not (
            0 <= b0 < b1 <= h.shape[1]):
        raise ValueError(f"L must be (K+1, B) with K <= T, W ({H}, {H}), rows b0:b1 of B")
    if w_scale == 0:
        L[1:, b0:b1] = -INFINITY
        return OK, 0
    log_w = log(w_scale)
    Wt = np.ascontiguousarray(np.divide(W, w_scale).T)
    with nogil:
        for chunk in range((b1 - b0 + nc - 1) // nc):
            c0 = b0 + chunk * nc
            m = min(nc, b1 - c0)
            ld = H if packed else m * H + 8
            Rp, Rnp = &R[0, 0], &Rn[0, 0]
            for j in range(m):
                # the first power vector: deterministic, not orthogonal to any simple
                # direction
                for i in range(H):
                    U[j, i] = (1.0 + 0.5 * ((i * 7919) % 13)) / sqrt(<double> H * 21)
                path[j] = 3                    # the first lag: straight to LAPACK
                log_c[j] = 0
                s[j] = 1
            for k in range(1, K + 1):
                i = T - k
                if k == 1:
                    # R_1 := diag(1 - h[T-1]^2) W' for each sample (rows scaled)
                    for j in range(m):
                        for c in range(H):
                            for r in range(H):
                                Rp[c * ld + j * H + r] = _dsq(&h[i, c0 + j, r]) * Wt[c, r]
                else:
                    if packed:
                        # X := (R_{k-1} / s_{k-1}) diag(1 - h[T-k]^2) of the one sample
                        # (m = 1), written as X^T in panels: column c of X is row c of every
                        # panel, its rows r0:r0+NR in panel r0 // NR (a zero product stays
                        # zero)
                        for c in range(H):
                            f = _dsq(&h[i, c0, c]) / s[0] if s[0] != 0 else 0
                            for j in range((H + RNNX_GEMM_NR - 1) // RNNX_GEMM_NR):
                                r0 = j * RNNX_GEMM_NR
                                dst = Xp + r0 * H + c * RNNX_GEMM_NR
                                for r in range(r0, min(r0 + RNNX_GEMM_NR, H)):
                                    dst[r - r0] = Rp[c * ld + r] * f
                        # R_k^T := W'^T @ X^T   (H, H) = (H, H) @ (H, H), row-major: R_k
                        # column-major
                        g.gemm_d(H, H, 0, H, &Wt[0, 0], Xp, 0, NULL, NULL, Rnp)
                    else:
                        # each block := (R_{k-1} / s_{k-1}) diag(1 - h[T-k]^2) (columns
                        # scaled; a zero product's block stays zero)
                        for j in range(m):
                            if s[j] == 0:
                                continue
                            for c in range(H):
                                f = _dsq(&h[i, c0 + j, c]) / s[j]
                                Rb = Rp + c * ld + j * H
                                for r in range(H):
                                    Rb[r] *= f
                        # the stack R_k := X @ W'   (m H, H) = (m H, H) @ (H, H),
                        # column-major; in the shim's row-major terms R_k^T := W'^T @ X^T
                        # (H, m H)
                        _gemm(False, False, H, m * H, H, 1.0, &Wt[0, 0], H, Rp, ld, 0.0,
                              Rnp, ld)
                    tmp = Rp
                    Rp = Rnp
                    Rnp = tmp
                for j in range(m):
                    if s[j] == 0:
                        continue
                    b = c0 + j
                    Rb = Rp + j * H
                    s[j] = _block_fro(H, ld, Rb)
                    if s[j] == 0:
                        for r in range(k, K + 1):
                            L[r, b] = -INFINITY
                        continue
                    val = log(s[j])
                    if not frobenius:
                        info = _top_singular_value(Rb, <blas_int> ld, s[j], <blas_int> H,
                                                   &G[0, 0], &C[0, 0], &U[j, 0], &V[0],
                                                   &lz[0], &y[0], &sm[0], &ev[0],
                                                   &work[0], &iwork[0], &path[j], &sig)
                        if info != 0:
                            status = LAPACK_FAILED
                            break
                        val += log(sig)
                    L[k, b] = log_c[j] + val + k * log_w
                    log_c[j] += log(s[j])
                if status != OK:
                    break
                if _stop(&it, m * (<double> H) * H * H * (1.0 if frobenius else 2.4), m):
                    status = STOPPED
                    break
            if status != OK:
                break
    if status == OK:
        _report_rest(&it)
    return status, info


def lyapunov_sums(const floating[:, :, ::1] h, const double[:, ::1] W, Py_ssize_t k,
                  Py_ssize_t discard, Py_ssize_t window, double[:, :, ::1] sums,
                  Py_ssize_t b0, Py_ssize_t b1, int[::1] stop, object progress, list errors,
                  bint main):
    """sums[w, b, j] += sum over the steps t of window w of ln |R_t[j, j]| for the samples
    b0:b1, where J[t] Q[t-1] = Q[t] R[t] (QR, Q[-1] = the first k columns of I) carries an
    orthonormal frame of k directions along the trajectory; window w holds the steps
    discard + w * window .. discard + (w+1) * window - 1 (steps past the last window of
    sums are carried, not counted).

    The frames of the block's samples sit side by side in one column-major (H, nb * k)
    matrix (each sample's frame contiguous), so that W @ frames is one GEMM per step for
    every sample; each sample's frame is then scaled by its tanh' (row-wise) and
    re-orthonormalised in place: small frames (k <= 16) by Gram-Schmidt with
    reorthogonalisation in plain loops, larger ones by one pass of Cholesky QR (BLAS-3:
    Z^T Z = U^T U, Z := Z U^-1) every step or every few steps (_qr_frames'
    _spanned_cholesky_qr), and by Householder QR where these break down (a nearly
    rank-deficient frame: saturated units).

    Why one pass of Cholesky QR is exact here. Its Q_t = Z_t U_t^-1 is orthonormal only to
    about cond(Z_t)^2 * 1e-16, and its U_t differs from the R factor of Z_t as much. Write
    Q_t = Qo_t P_t (Qo_t orthonormal, P_t upper triangular: the QR of Q_t). The exact
    method's frame is Qo_t (it spans the same nested subspaces), so its step-t factor is
    the R of J[t] Qo_{t-1} = Z_t P_{t-1}^-1 = Qo_t P_t U_t P_{t-1}^-1: its diagonal is
    diag(U_t) diag(P_t) / diag(P_{t-1}). Over the steps a..b of a window the P's
    telescope: sum of ln R_jj = sum of ln U_t,jj + ln P_b,jj - ln P_{a-1},jj. A second pass
    at the steps b and a-1 (the steps that end a window, or precede the first) makes
    P_b and P_{a-1} the identity to rounding, so the sums of ln U_t are the exact method's;
    what remains is the triangular solve's rounding (about cond(Z_t) * H * 1e-16 relative
    on each U_t,jj), as for Householder QR.

    Why several steps between two passes are exact too. A large frame's pass is skipped
    where its product stays well conditioned: Z = J[t] ... J[s] Q[s-1] is carried through
    the steps s..t and factored once. In exact arithmetic the R of that product is the
    product R_t ... R_s of the step-by-step method's factors (each J Q_{u-1} = Q_u R_u, so
    J[t] ... J[s] Q[s-1] = Q_t R_t ... R_s, and the QR of a full-rank matrix is unique), and
    the diagonal of a product of upper triangular matrices is the product of their
    diagonals: ln U_jj of the pass is the sum of the steps' ln R_jj. A pass is forced at
    every step that ends a window (or precedes the first), so no product straddles two
    windows and the window sums are the step-by-step method's. What changes is only the
    rounding of the pass, which grows with cond(Z): the number of steps between passes
    (at most MAX_SPAN) grows while the measured distance of the passed frame from
    orthonormal stays below SPAN_GROW_ERROR and shrinks above SPAN_SHRINK_ERROR (that
    distance is about 1e-16 cond(Z)^2, so cond(Z) stays below about 1e4, where the sums
    still match the step-by-step method's as closely as its own passes do:
    tests/test_lyapunov.py); a step whose bound of cond(J[t]) is large is factored on its
    own, from an orthonormal frame, as in the step-by-step method.
    Returns (status, info) like jacobian_log_norms; progress(n) counts steps.
    """
    cdef Py_ssize_t T = h.shape[0], H = h.shape[2], nb = b1 - b0, nw = sums.shape[0]
    cdef Py_ssize_t t, b, i, j, w, m = nb * k
    cdef double[:, ::1] Q = np.zeros((max(m, 1), H))       # column-major (H, m)
    cdef double[:, ::1] Z = np.empty((max(m, 1), H))
    cdef double[::1] S = np.empty(k * k)
    cdef double[::1] d = np.empty(H)
    cdef double[:, ::1] Wsv
    cdef double[:, ::1] Wt = np.ascontiguousarray(np.asarray(W).T)
    cdef double[::1] q_cond = np.ones(nb)       # bounds of cond(Q[t-1]) per sample
    # per sample, between two QR passes of a large frame: a bound of the condition number
    # of the product carried since the last pass, the steps in it, and how many steps the
    # next pass may wait for (adapted to the measured loss of orthogonality)
    cdef double[::1] z_cond = np.ones(nb)
    cdef Py_ssize_t[::1] steps = np.zeros(nb, np.intp)
    cdef Py_ssize_t[::1] span = np.ones(nb, np.intp)
    cdef double log_w_scale = 0     # max |ln sigma(W)|: Z's growth or decay per step
    cdef double[::1] tau = np.empty(k)
    cdef double[::1] logs = np.empty(k)
    cdef double[::1] work = np.empty(1)
    cdef double *tmp
    cdef double *Qp = &Q[0, 0]
    cdef double *Zp = &Z[0, 0]
    cdef double *zb
    cdef double nrm, w_cond
    cdef double step_cond
    cdef bint edge, due, done_qr, skipped = False
    cdef int outcome
    cdef blas_int lwork, info = 0, Hb = <blas_int> H, kb = <blas_int> k
    cdef int status = OK
    cdef Interrupt it = _interrupt(stop, progress, errors, main, RELEASE_WORK)
    if not (1 <= k <= H and 0 <= b0 < b1 <= h.shape[1] and W.shape[0] == H
            and W.shape[1] == H and sums.shape[1] == h.shape[1] and sums.shape[2] == k
            and window >= 1 and discard >= 0):
        raise ValueError(f"k in [1, {H}], rows b0:b1 of the batch, W ({H}, {H}), "
                         f"sums (n_windows, B, k), window >= 1, discard >= 0")
    # workspace of dgeqrf and dorgqr (query both, keep the larger)
    lwork = -1
    dgeqrf(&Hb, &kb, &Z[0, 0], &Hb, &tau[0], &work[0], &lwork, &info)
    lwork = max(1, <blas_int> work[0], <blas_int> (H * k))
    work = np.empty(lwork)
    for b in range(nb):
        for j in range(k):
            Q[b * k + j, j] = 1
    if k > GRAM_SCHMIDT_K:
        # cond(W) for the Cholesky QR's bounds, by LAPACK's SVD (on a copy, which dgesvd
        # overwrites; scipy's BLAS, like the loop's, not numpy's, whose threads would wake)
        Wsv = np.array(W)
        _singular_values(Hb, &Wsv[0, 0], &d[0], &work[0], -1)
        work = np.empty(max(lwork, <blas_int> work[0]))
        info = _singular_values(Hb, &Wsv[0, 0], &d[0], &work[0], <blas_int> work.shape[0])
        if info != 0:
            return LAPACK_FAILED, info
        w_cond = d[0] / d[H - 1] if d[H - 1] > 0 else INFINITY
        log_w_scale = max(fabs(log(d[0])), fabs(log(d[H - 1]))) if d[H - 1] > 0 else 0
    info = 0
    with nogil:
        for t in range(T):
            # Z := W @ frames   (H, nb k) = (H, H) @ (H, nb k), column-major: row-major
            # Z^T = frames^T @ W^T, with W^T stored (a transposed operand made this GEMM
            # twice as slow)
            _gemm(False, False, m, H, H, 1.0, Qp, H, &Wt[0, 0], H, 0.0, Zp, H)
            w = (t - discard) // window if t >= discard else -1
            for b in range(nb):
                zb = Zp + b * k * H              # sample b's (H, k) frame, column-major
                # Z_b := diag(1 - h[t, b]^2) Z_b: J[t] Q[t-1] of sample b
                for i in range(H):
                    d[i] = _dsq(&h[t, b0 + b, i])
                for j in range(k):
                    for i in range(H):
                        zb[j * H + i] *= d[i]
                memset(&logs[0], 0, k * sizeof(double))
                if k == 1:
                    nrm = _fro(H, zb)
                    logs[0] = log(nrm)
                    for i in range(H):           # a vanished direction keeps the old one
                        zb[i] = zb[i] / nrm if nrm > 0 else Qp[b * H + i]
                    done_qr = True
                elif k <= GRAM_SCHMIDT_K:
                    done_qr = _gram_schmidt_qr(zb, H, k, &logs[0])
                else:
                    # a pass is due at the steps that end a window (or precede the
                    # first), at the last, and where this step or the next alone could
                    # take the frame past what one pass repairs (so that such a step
                    # starts from an orthonormal frame, as in the step-by-step method)
                    step_cond = _step_cond(&h[t, b0 + b, 0], H, w_cond)
                    edge = t >= discard - 1 and (t - discard + 1) % window == 0
                    due = (edge or t == T - 1
                           or _cholesky_qr_error(step_cond, H, k) > CHECK_ERROR
                           or _cholesky_qr_error(_step_cond(&h[t + 1, b0 + b, 0], H,
                                                            w_cond), H, k) > CHECK_ERROR)
                    outcome = _spanned_cholesky_qr(zb, Hb, kb, &S[0], &logs[0], step_cond,
                                                   due, edge, t, log_w_scale, &q_cond[b],
                                                   &z_cond[b], &steps[b], &span[b])
                    done_qr = outcome != FRAME_SINGULAR
                    skipped = outcome == FRAME_CARRIED
                if not done_qr:
                    q_cond[b] = 1
                    z_cond[b] = 1
                    info = _householder_qr(zb, Hb, kb, &tau[0], &work[0], lwork, &logs[0])
                    if info != 0:
                        status = LAPACK_FAILED
                        break
                if skipped:
                    skipped = False
                elif 0 <= w < nw:
                    for j in range(k):
                        sums[w, b0 + b, j] += logs[j]
            if status != OK:
                break
            tmp = Qp
            Qp = Zp
            Zp = tmp
            if _stop(&it, (<double> H) * m * (H + 2 * k), 1):
                status = STOPPED
                break
    if status == OK:
        _report_rest(&it)
    return status, info
