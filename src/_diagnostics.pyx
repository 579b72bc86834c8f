# cython: language_level=3
"""rnnx._diagnostics: the compiled kernels of the diagnostics, along a trajectory h (T, B, H)
of the tanh recurrence with the per-step Jacobians J[t] = dh[t]/dh[t-1] = diag(1 - h[t]^2) W.

    jacobian_log_norms   ln ||J[T-1] J[T-2] ... J[T-k]|| for every lag k (Frobenius or spectral)
    lyapunov_sums        sums of ln |diag R| of the QR method (Benettin et al. 1980), per window

h is float32 or float64; everything is accumulated in float64 (W is passed as float64).
Each call works on the samples b0:b1 of the batch, so that Python can run disjoint blocks of
samples on threads (rnnx.diagnostics._threads). The loops run without the GIL; every so
often (a release point, about every 2^27 multiply-adds) the calling thread takes the GIL
briefly to let Python handle signals (Ctrl-C) and report progress; a flag shared by the
blocks stops the others. Failures come back as a status; Python raises.
"""
from libc.math cimport sqrt, log, fabs, INFINITY
from libc.string cimport memcpy, memset
from cpython.ref cimport PyObject
from cython cimport floating

import numpy as np

from scipy.linalg.cython_blas cimport ddot, dgemv, dsyrk, dsymv, dtrsm
from scipy.linalg.cython_lapack cimport dpotrf, dgeqrf, dorgqr, dstev, dsyevr
from _blas cimport blas_int, _gemm, _gemv

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1

cdef enum:
    OK = 0
    STOPPED = 1           # Ctrl-C, or the progress callback raised: the exception is in errors
    LAPACK_FAILED = 2     # a LAPACK routine reported info != 0
    LANCZOS_STEPS = 32    # Lanczos steps before a restart from the Ritz vector
    LANCZOS_RESTARTS = 2
    LANCZOS_BEFORE_GRAM = 8   # Lanczos steps by R before the Gram matrix is formed
    GRAM_STEPS = 12           # Lanczos steps by G before Cholesky decides
    GRAM_SCHMIDT_K = 16       # frames of up to this many directions: Gram-Schmidt QR

# the statuses, for Python
STATUS_OK, STATUS_STOPPED, STATUS_LAPACK_FAILED = OK, STOPPED, LAPACK_FAILED

cdef double RELEASE_WORK = 134217728.0      # multiply-adds between two release points (2^27)
# The spectral norm is certified to this relative accuracy of sigma_max^2, so sigma_max to
# half of it (see _top_singular_value).
cdef double CERT_MARGIN = 1.5e-9


cdef struct Halt:
    int *stop             # shared by the blocks of one call: set when one must stop
    PyObject *progress    # callable(units done since the last call) or None
    PyObject *errors      # list: the exception that stopped the call
    bint main             # the block that runs in the calling thread (checks signals)
    double work           # multiply-adds since the last release point


cdef int _release_point(Halt *halt, Py_ssize_t units) noexcept nogil:
    """1 if the call must stop (Ctrl-C, or another block stopped), else 0. In the calling
    thread's block: takes the GIL to run Python's signal handlers and the progress callback."""
    if halt.stop[0]:
        return 1
    if not halt.main:
        return 0
    halt.work = 0
    with gil:
        try:
            PyErr_CheckSignals()
            if <object> halt.progress is not None:
                (<object> halt.progress)(units)
        except BaseException as e:
            (<list> halt.errors).append(e)
            halt.stop[0] = 1
            return 1
    return 0


cdef double _fro(Py_ssize_t n, const double *a) noexcept nogil:
    """||a||_2 of n entries (n < 2^31; the entries here are bounded, see jacobian_log_norms)"""
    cdef blas_int m = <blas_int> n, one = 1
    return sqrt(ddot(&m, <double *> a, &one, <double *> a, &one))


cdef inline double _dot4(const double *x, const double *y, Py_ssize_t n) noexcept nogil:
    """x . y with four partial sums (independent chains the compiler can keep in flight)"""
    cdef Py_ssize_t i, n4 = n - n % 4
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    for i in range(0, n4, 4):
        s0 += x[i] * y[i]
        s1 += x[i + 1] * y[i + 1]
        s2 += x[i + 2] * y[i + 2]
        s3 += x[i + 3] * y[i + 3]
    for i in range(n4, n):
        s0 += x[i] * y[i]
    return (s0 + s1) + (s2 + s3)


cdef void _rt_r(const double *R, Py_ssize_t H, double inv_s, const double *v, double *y,
                double *w) noexcept nogil:
    """w := (R/s) ((R/s)^T v) for R (H, H) row-major, y: scratch."""
    _gemv(True, <blas_int> H, <blas_int> H, inv_s, R, <blas_int> H, v, 0.0, y)
    _gemv(False, <blas_int> H, <blas_int> H, inv_s, R, <blas_int> H, y, 0.0, w)


cdef void _reorthogonalise(const double *V, Py_ssize_t m, Py_ssize_t H, double *w,
                           double *c) noexcept nogil:
    """w := w - V^T (V w) for the m orthonormal rows of V (H each), twice (full
    reorthogonalisation; once can leave an error of the size of the rounding times the
    growth that Lanczos amplifies). c: m of scratch."""
    cdef Py_ssize_t p
    for p in range(2):
        # c := V w   (m,) = (m, H) @ (H,);  w := w - V^T c   (H,) = (H, m) @ (m,)
        _gemv(False, <blas_int> m, <blas_int> H, 1.0, V, <blas_int> H, w, 0.0, c)
        _gemv(True, <blas_int> m, <blas_int> H, -1.0, V, <blas_int> H, c, 1.0, w)


cdef inline double _dsq(const floating *h) noexcept nogil:
    """tanh' = 1 - h^2, in float64"""
    return 1.0 - (<double> h[0]) * h[0]


cdef Py_ssize_t _count_above(Py_ssize_t n, const double *a, const double *b, double last,
                             double x) noexcept nogil:
    """How many eigenvalues of the symmetric tridiagonal matrix with diagonal a[:n] (then
    `last` if last >= 0, one more row) and off-diagonal b exceed x (Sturm sequence: the
    pivots of the LDL^T factorisation of the matrix minus x I count them)."""
    cdef Py_ssize_t i, above = 0
    cdef double q = 1, bb
    for i in range(n + (1 if last >= 0 else 0)):
        bb = b[i - 1] * b[i - 1] if i > 0 else 0
        q = (a[i] if i < n else last) - x - (bb / q if bb != 0 else 0)
        if q == 0:
            q = -1e-300                  # a zero pivot counts as x being an eigenvalue
        if q > 0:
            above += 1
    return above


cdef double _gershgorin_top(Py_ssize_t n, const double *a, const double *b) noexcept nogil:
    """Gershgorin's upper bound of the eigenvalues of the symmetric tridiagonal (a, b)"""
    cdef Py_ssize_t i
    cdef double hi = -INFINITY
    for i in range(n):
        hi = max(hi, a[i] + (fabs(b[i - 1]) if i > 0 else 0) + (fabs(b[i]) if i < n - 1 else 0))
    return hi


cdef double _top_eigenvalue(Py_ssize_t n, const double *a, const double *b,
                            double lo) noexcept nogil:
    """A lower bound within 1e-13 relative of the largest eigenvalue of the symmetric
    tridiagonal matrix (a[:n], b[:n-1]), by bisection from lo (a lower bound: the previous
    Lanczos step's, as they only grow) and Gershgorin's upper bound."""
    cdef Py_ssize_t i
    cdef double hi = _gershgorin_top(n, a, b), mid
    lo = max(lo, a[0])                     # a Rayleigh quotient: a lower bound too
    for i in range(200):
        mid = 0.5 * (lo + hi)
        if not (lo < mid < hi) or hi - lo <= 1e-13 * fabs(lo):
            break
        if _count_above(n, a, b, -1, mid) > 0:
            lo = mid
        else:
            hi = mid
    return lo


cdef void _gram(const double *R, blas_int H, double alpha, double *G,
                double *frob_sq) noexcept nogil:
    """G := alpha R R^T (the upper triangle, column-major) and frob_sq := ||G||_F^2"""
    cdef blas_int i, c
    cdef double zero = 0.0, acc = 0
    cdef char *up = b'U'
    cdef char *tr = b'T'
    # G := alpha R R^T   (H, H) = (H, H) @ (H, H)^T. R row-major is R^T column-major:
    # X^T X for the column-major X = R^T, the upper triangle
    dsyrk(up, tr, &H, &H, &alpha, <double *> R, &H, &zero, G, &H)
    for c in range(H):
        for i in range(c):
            acc += 2 * G[i + c * H] * G[i + c * H]
        acc += G[c + c * H] * G[c + c * H]
    frob_sq[0] = acc


cdef int _top_eigenvalue_lapack(double *G, blas_int H, double *ev, double *work,
                                blas_int *iwork, double *out) noexcept nogil:
    """out := the largest eigenvalue of the symmetric G (upper triangle, column-major; G is
    overwritten) by LAPACK's dsyevr (bisection on its tridiagonal form: within a few
    rounding errors of ||G||). ev: H, work: 26 H, iwork: 10 H. Returns LAPACK's info."""
    cdef blas_int info = 0, found = 0, one = 1, lwork = 26 * H, liwork = 10 * H
    cdef double unused = 0, abstol = 0
    cdef char *no = b'N'
    cdef char *index = b'I'
    cdef char *up = b'U'
    dsyevr(no, index, up, &H, G, &H, &unused, &unused, &H, &H, &abstol, &found, ev, NULL,
           &one, iwork, work, &lwork, iwork + 2 * H, &liwork, &info)
    out[0] = ev[0]
    return info


cdef bint _below(const double *G, double *C, blas_int H, double mu) noexcept nogil:
    """Whether every eigenvalue of the symmetric G (H, H) (upper triangle, column-major) is
    below mu: exactly when mu I - G is positive definite, which its Cholesky factorisation
    (into C) decides."""
    cdef blas_int i, j, info = 0
    cdef char *up = b'U'
    for j in range(H):
        for i in range(j + 1):
            C[i + j * H] = -G[i + j * H]
        C[j + j * H] += mu
    dpotrf(up, &H, C, &H, &info)
    return info == 0


cdef int _top_singular_value(const double *R, double s, blas_int H, double *G, double *C,
                             double *u, double *V, double *lz, double *y, double *ev,
                             double *work, blas_int *iwork, int *path,
                             double *out) noexcept nogil:
    """out := sigma_max(R / s) for R (H, H), s = ||R||_F; u (H) holds the previous lag's top
    left singular vector and gets this one's. V: LANCZOS_STEPS + 1 rows of H; lz: room for
    the small tridiagonal problems; y: H of scratch; G, C: H * H; ev, work, iwork: see
    _top_eigenvalue_lapack. path: in, how the previous lag was certified; out, this lag's
    (0: from R alone, 1: with the Gram matrix, 2: Cholesky, 3: LAPACK). Returns LAPACK's
    info.

    Why it is exact. With G = (R/s)(R/s)^T, sigma_max^2 = lambda_max(G). m Lanczos steps on
    G (with full reorthogonalisation) from the previous lag's top left singular vector
    (the left side is the fixed end h[T-1], whose dominant direction changes slowly from
    lag to lag) give an orthonormal V_m with G V_m = V_m T_m + beta v_{m+1} e_m^T, T_m
    tridiagonal. A lower bound: the top eigenvalue theta of T_m (a Rayleigh quotient of G).
    An upper bound: in a basis [V_m, U], G = [[T_m, B^T], [B, G_U]] where B has the single
    non-zero column beta U^T v_{m+1}, so for a unit (y, z) the quadratic form is at most
    that of the tridiagonal M = [[T_m, beta e_m], [beta e_m^T, g]] at (y, ||z||), for any
    g >= lambda_max(G_U): trace(G_U) = 1 - trace(T_m) (G is positive semi-definite with
    trace ||R/s||_F^2 = 1), or ||G_U||_F = sqrt(||G||_F^2 - ||T_m||_F^2 - 2 beta^2) once G
    is formed. So lambda_max(G) <= lambda_max(M), and once M has no eigenvalue above
    theta (1 + CERT_MARGIN) (a Sturm count), sqrt(theta) is within CERT_MARGIN / 2 of
    sigma_max. The trace bound holds once a few directions carry most of the product's
    Frobenius mass (the later lags: cost a few Lanczos steps of two O(H^2) products by R,
    against the lag's H^3 multiply-adds); the Frobenius bound once a few dozen directions
    do (most lags: the Gram matrix, H^3 / 2 multiply-adds in one BLAS-3 call, then steps of
    one O(H^2) product by G). A lag that needed G is followed by one that forms it first.
    Else a third certificate: mu I - G with mu = theta (1 + CERT_MARGIN) is positive
    definite exactly when lambda_max < mu, which Cholesky decides (its backward error,
    about H * 1e-16, is far below the margin). Where all fail (the first lags, whose
    singular values are nearly equal), LAPACK's largest eigenvalue of G gives the value.
    """
    cdef blas_int one = 1, info = 0, i, j, m = 0, restart, ld
    cdef double zero = 0.0, unit = 1.0, alpha = 1.0 / (s * s), inv_s = 1.0 / s
    cdef double theta = 0, nrm, mu, frob_sq = -1, t_sq, t_tr, g, g_sq, g_tr
    cdef double *a = lz                              # Lanczos alphas
    cdef double *b = lz + LANCZOS_STEPS              # betas
    cdef double *d = lz + 2 * LANCZOS_STEPS          # scratch of dstev
    cdef double *e = lz + 3 * LANCZOS_STEPS + 1
    cdef double *z = lz + 4 * LANCZOS_STEPS + 2      # T_m's eigenvectors, (m, m)
    cdef double *zw = z + LANCZOS_STEPS * LANCZOS_STEPS
    cdef double *w
    cdef Py_ssize_t before_gram = LANCZOS_BEFORE_GRAM if path[0] == 0 else 0
    cdef bint certified = False
    cdef char *up = b'U'
    cdef char *nt = b'N'
    cdef char *vec = b'V'
    path[0] = 0
    for restart in range(LANCZOS_RESTARTS):
        nrm = sqrt(ddot(&H, u, &one, u, &one))
        for i in range(H):
            V[i] = u[i] / nrm
        t_sq = t_tr = 0                          # ||T_m||_F^2 and trace(T_m)
        theta = -INFINITY
        for j in range(LANCZOS_STEPS):
            m = j + 1
            w = V + (j + 1) * H
            if frob_sq < 0 and j >= before_gram:
                _gram(R, H, alpha, G, &frob_sq)
            if frob_sq < 0:
                # w := (R/s) ((R/s)^T v_j)   (H,) = (H, H) @ ((H, H)^T @ (H,))
                _rt_r(R, H, inv_s, V + j * H, y, w)
            else:
                # w := G v_j   (H,) = (H, H) @ (H,)
                dsymv(up, &H, &unit, G, &H, V + j * H, &one, &zero, w, &one)
            a[j] = ddot(&H, V + j * H, &one, w, &one)
            # w := w - V_{0..j}^T (V_{0..j} w)   (H,) = (H, m) @ ((m, H) @ (H,))
            _reorthogonalise(V, m, H, w, y)
            b[j] = sqrt(ddot(&H, w, &one, w, &one))
            t_sq += a[j] * a[j] + (2 * b[j - 1] * b[j - 1] if j > 0 else 0)
            t_tr += a[j]
            g = g_tr = max(1 - t_tr, 0)
            if frob_sq >= 0:
                g_sq = frob_sq - t_sq - 2 * b[j] * b[j]
                g = min(g, sqrt(g_sq) if g_sq > 0 else 0)
            # M has g on its diagonal, so lambda_max(M) >= g: no certificate while g is above
            # every eigenvalue of T_m (Gershgorin's bound), and no eigenvalue to compute
            if g <= _gershgorin_top(m, a, b) * (1 + CERT_MARGIN):
                theta = _top_eigenvalue(m, a, b, theta)
                mu = theta * (1 + CERT_MARGIN)
                if _count_above(m, a, b, g, mu) == 0:
                    certified = True
                    # the trace bound alone would have done: the next lag tries without G
                    if frob_sq >= 0 and (g_tr > g and _count_above(m, a, b, g_tr, mu) > 0):
                        path[0] = 1
                    break
            if b[j] == 0 or m == H or (frob_sq >= 0 and restart == 0 and m >= GRAM_STEPS):
                break
            for i in range(H):
                w[i] /= b[j]
        # u := the top Ritz vector V_m^T z of T_m   (H,) = (H, m) @ (m,)
        memcpy(d, a, m * sizeof(double))
        memcpy(e, b, m * sizeof(double))
        ld = m
        dstev(vec, &m, d, e, z, &ld, zw, &info)
        if info != 0:
            return info
        dgemv(nt, &H, &m, &unit, V, &H, z + (m - 1) * m, &one, &zero, u, &one)
        if certified:
            out[0] = sqrt(theta)
            return 0
        theta = d[m - 1]
        before_gram = 0
        if frob_sq >= 0 and theta > 0:
            if _below(G, C, H, theta * (1 + CERT_MARGIN)):
                path[0] = 2
                out[0] = sqrt(theta)
                return 0
    if frob_sq < 0:
        _gram(R, H, alpha, G, &frob_sq)
    path[0] = 3
    info = _top_eigenvalue_lapack(G, H, ev, work, iwork, &theta)
    out[0] = sqrt(max(theta, 0))
    return info


def jacobian_log_norms(const floating[:, :, ::1] h, const double[:, ::1] W, bint frobenius,
                       double[:, ::1] L, Py_ssize_t b0, Py_ssize_t b1, int[::1] stop,
                       object progress, list errors, bint main):
    """L[k, b] := ln ||J[T-1] ... J[T-k]|| for lags k = 1..K (L is (K+1, B), K <= T) and the
    samples b0:b1, spectral norm or (frobenius) Frobenius norm. L[0] is left to the caller.

    The product is carried renormalised: R_1 = diag(d[T-1]) W', R_k = (R_{k-1} / s_{k-1})
    diag(d[T-k]) W' with s_k = ||R_k||_F and W' = W / max|W| (so no product of unit-norm
    matrices overflows), and the logs of the scales are added back. An exactly zero
    product (saturated units) gives -inf from that lag on. progress(n) is called at the
    release points with the lags done since the last call (main block only).
    Returns (status, info): OK, STOPPED (the exception is errors[0]) or LAPACK_FAILED.
    """
    cdef Py_ssize_t T = h.shape[0], H = h.shape[2], K = L.shape[0] - 1, b, k, i, r, c
    cdef double w_scale = np.max(np.abs(W)), log_w, log_c, s, val, sig, dr
    cdef Py_ssize_t nsv = 0 if frobenius else H
    cdef double[:, ::1] Wn
    cdef double[:, ::1] R = np.empty((H, H))
    cdef double[:, ::1] Rn = np.empty((H, H))
    cdef double[:, ::1] DW = np.empty((H, H))
    cdef double[:, ::1] G = np.empty((nsv, H))
    cdef double[:, ::1] C = np.empty((nsv, H))
    cdef double[::1] u = np.empty(H)
    cdef double[::1] y = np.empty(H)
    cdef double[::1] V = np.empty((LANCZOS_STEPS + 1) * nsv)
    cdef double[::1] lz = np.empty(LANCZOS_STEPS * (LANCZOS_STEPS + 6) + 2)
    cdef double[::1] ev = np.empty(nsv)
    cdef double[::1] work = np.empty(26 * nsv)
    cdef int[::1] iwork = np.empty(10 * nsv, np.intc)
    cdef double *Rp
    cdef double *Rnp
    cdef double *tmp
    cdef blas_int info = 0
    cdef int status = OK, path
    cdef Halt halt
    cdef Py_ssize_t done = 0
    if K > T or L.shape[1] != h.shape[1] or W.shape[0] != H or W.shape[1] != H or not (
            0 <= b0 < b1 <= h.shape[1]):
        raise ValueError(f"L must be (K+1, B) with K <= T, W ({H}, {H}), rows b0:b1 of B")
    halt.stop, halt.main, halt.work = &stop[0], main, 0
    halt.progress, halt.errors = <PyObject *> progress, <PyObject *> errors
    if w_scale == 0:
        L[1:, b0:b1] = -INFINITY
        return OK, 0
    log_w = log(w_scale)
    Wn = np.divide(W, w_scale)
    with nogil:
        for b in range(b0, b1):
            Rp, Rnp = &R[0, 0], &Rn[0, 0]
            # the first power vector: deterministic, not orthogonal to any simple direction
            for i in range(H):
                u[i] = (1.0 + 0.5 * ((i * 7919) % 13)) / sqrt(<double> H * 21)
            path = 0
            log_c = 0
            s = 1
            for k in range(1, K + 1):
                i = T - k
                # DW := diag(1 - h[i, b]^2) W': the factor dh[i]/dh[i-1] (rows scaled)
                for r in range(H):
                    dr = _dsq(&h[i, b, r])
                    for c in range(H):
                        DW[r, c] = dr * Wn[r, c]
                if k == 1:
                    memcpy(Rp, &DW[0, 0], H * H * sizeof(double))
                else:
                    # R_k := (R_{k-1} / s_{k-1}) @ DW   (H, H) = (H, H) @ (H, H)
                    _gemm(False, False, H, H, H, 1.0 / s, Rp, H, &DW[0, 0], H, 0.0, Rnp, H)
                    tmp = Rp
                    Rp = Rnp
                    Rnp = tmp
                s = _fro(H * H, Rp)
                if s == 0:
                    for r in range(k, K + 1):
                        L[r, b] = -INFINITY
                    break
                val = log(s)
                if not frobenius:
                    info = _top_singular_value(Rp, s, <blas_int> H, &G[0, 0], &C[0, 0], &u[0],
                                               &V[0], &lz[0], &y[0], &ev[0], &work[0],
                                               &iwork[0], &path, &sig)
                    if info != 0:
                        status = LAPACK_FAILED
                        break
                    val += log(sig)
                L[k, b] = log_c + val + k * log_w
                log_c += log(s)
                done += 1
                halt.work += (<double> H) * H * H * (1.0 if frobenius else 2.4)
                if halt.work >= RELEASE_WORK or halt.stop[0]:
                    if _release_point(&halt, done):
                        status = STOPPED
                        break
                    done = 0
            if status != OK:
                break
    if status == OK and main and progress is not None and done:
        progress(done)
    return status, info


cdef int _householder_qr(double *Z, blas_int H, blas_int k, double *tau, double *work,
                         blas_int lwork, double *logs) noexcept nogil:
    """Z (H, k) column-major := Q of Z = Q R, logs[j] += ln |R_jj|, by LAPACK's Householder
    QR. Returns LAPACK's info."""
    cdef blas_int info = 0, j
    dgeqrf(&H, &k, Z, &H, tau, work, &lwork, &info)
    if info != 0:
        return info
    for j in range(k):
        logs[j] += log(fabs(Z[j + j * H]))
    dorgqr(&H, &k, &k, Z, &H, tau, work, &lwork, &info)
    return info


cdef double _frame_gram(const double *Z, blas_int H, blas_int k, double *S) noexcept nogil:
    """S := Z^T Z (upper triangle, column-major (k, k)) for Z (H, k) column-major; returns
    ||Z^T Z - I||_F."""
    cdef blas_int i, j
    cdef double zero = 0.0, unit = 1.0, sq = 0, e
    cdef char *up = b'U'
    cdef char *tr = b'T'
    # S := Z^T Z   (k, k) = (k, H) @ (H, k)
    dsyrk(up, tr, &k, &H, &unit, <double *> Z, &H, &zero, S, &k)
    for j in range(k):
        for i in range(j + 1):
            e = S[i + j * k] - (1.0 if i == j else 0.0)
            sq += e * e * (1 if i == j else 2)
    return sqrt(sq)


cdef bint _cholesky_qr_finish(double *Z, blas_int H, blas_int k, double *S,
                              double *logs) noexcept nogil:
    """The rest of a Cholesky QR pass on Z (H, k) column-major, given S = Z^T Z (upper
    triangle): S = U^T U, Z := Z U^-1, logs[j] += ln U_jj. False (Z untouched) where the
    factorisation breaks down."""
    cdef blas_int info = 0, j
    cdef double unit = 1.0
    cdef char *up = b'U'
    cdef char *nt = b'N'
    cdef char *right = b'R'
    dpotrf(up, &k, S, &k, &info)
    if info != 0:
        return False
    # Z := Z U^-1   (H, k) = (H, k) @ (k, k)
    dtrsm(right, up, nt, nt, &H, &k, &unit, S, &k, Z, &H)
    for j in range(k):
        logs[j] += log(S[j + j * k])
    return True


cdef inline double _cholesky_qr_error(double cond, Py_ssize_t H, Py_ssize_t k) noexcept nogil:
    """A bound of ||Q^T Q - I||_2 after one pass of Cholesky QR on Z (H, k) with
    cond(Z) <= cond: the rounding of Z^T Z and of its Cholesky factorisation, at most
    (H + k + 1) eps ||Z||_F^2 <= (H + k + 1) k eps ||Z||_2^2, seen through U^-1 (whose
    norm is 1 / sigma_min(Z)), and of the triangular solve, about 2 k eps cond(Z)
    (Higham 2002, ch. 8 and 10), with a margin."""
    cdef double eps = 1.2e-16
    return (H + k + 1) * k * eps * cond * cond + 2 * k * eps * cond


cdef inline double _cond_bound(double e) noexcept nogil:
    """cond(Q) <= sqrt((1 + e) / (1 - e)) where ||Q^T Q - I||_2 <= e < 1"""
    return sqrt((1 + e) / (1 - e)) if e < 1 else INFINITY


cdef bint _gram_schmidt_qr(double *Z, Py_ssize_t H, Py_ssize_t k,
                           double *logs) noexcept nogil:
    """Z (H, k) column-major := Q of Z = Q R, logs[j] += ln R_jj, by classical Gram-Schmidt
    with reorthogonalisation (two projections per column: orthogonal to about 1e-16 for a
    numerically full-rank Z, Giraud et al. 2005), in plain loops: for small frames a BLAS
    or LAPACK call's fixed cost exceeds the arithmetic. False where a column nearly
    vanishes (a nearly rank-deficient frame): Z is then Z0 T for an upper triangular T
    whose diagonal's logs are in logs (the columns done), so the QR can go on from it."""
    cdef Py_ssize_t i, j, c, p
    cdef double r, nrm, first = 0
    for j in range(k):
        for p in range(2):
            for c in range(j):
                r = _dot4(Z + c * H, Z + j * H, H)
                for i in range(H):
                    Z[j * H + i] -= r * Z[c * H + i]
        nrm = sqrt(_dot4(Z + j * H, Z + j * H, H))
        if j == 0:
            first = nrm
        if not nrm > 1e-8 * first:
            return False
        for i in range(H):
            Z[j * H + i] /= nrm
        logs[j] += log(nrm)
    return True


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
    Z^T Z = U^T U, Z := Z U^-1), and by Householder QR where these break down (a nearly
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
    Returns (status, info) like jacobian_log_norms; progress(n) counts steps.
    """
    cdef Py_ssize_t T = h.shape[0], H = h.shape[2], nb = b1 - b0, nw = sums.shape[0]
    cdef Py_ssize_t t, b, i, j, w, m = nb * k, done = 0
    cdef double[:, ::1] Q = np.zeros((max(m, 1), H))       # column-major (H, m)
    cdef double[:, ::1] Z = np.empty((max(m, 1), H))
    cdef double[::1] S = np.empty(k * k)
    cdef double[::1] d = np.empty(H)
    cdef double[::1] q_cond = np.ones(nb)       # bounds of cond(Q[t-1]) per sample
    cdef double[::1] tau = np.empty(k)
    cdef double[::1] logs = np.empty(k)
    cdef double[::1] work = np.empty(1)
    cdef double *tmp
    cdef double *Qp = &Q[0, 0]
    cdef double *Zp = &Z[0, 0]
    cdef double *zb
    cdef double nrm, err, w_cond, z_cond, d_min, d_max
    cdef bint check, edge
    cdef bint done_qr
    cdef blas_int lwork, info = 0, Hb = <blas_int> H, kb = <blas_int> k
    cdef int status = OK
    cdef Halt halt
    if not (1 <= k <= H and 0 <= b0 < b1 <= h.shape[1] and W.shape[0] == H
            and W.shape[1] == H and sums.shape[1] == h.shape[1] and sums.shape[2] == k
            and window >= 1 and discard >= 0):
        raise ValueError(f"k in [1, {H}], rows b0:b1 of the batch, W ({H}, {H}), "
                         f"sums (n_windows, B, k), window >= 1, discard >= 0")
    halt.stop, halt.main, halt.work = &stop[0], main, 0
    halt.progress, halt.errors = <PyObject *> progress, <PyObject *> errors
    # workspace of dgeqrf and dorgqr (query both, keep the larger)
    lwork = -1
    dgeqrf(&Hb, &kb, &Z[0, 0], &Hb, &tau[0], &work[0], &lwork, &info)
    lwork = max(1, <blas_int> work[0], <blas_int> (H * k))
    work = np.empty(lwork)
    for b in range(nb):
        for j in range(k):
            Q[b * k + j, j] = 1
    sv = np.linalg.svd(W, compute_uv=False)
    w_cond = sv[0] / sv[H - 1] if sv[H - 1] > 0 else INFINITY
    info = 0
    with nogil:
        for t in range(T):
            # Z := W @ frames   (H, nb k) = (H, H) @ (H, nb k), column-major; W row-major
            # is W^T column-major
            _gemm(False, True, m, H, H, 1.0, Qp, H, &W[0, 0], H, 0.0, Zp, H)
            w = (t - discard) // window if t >= discard else -1
            for b in range(nb):
                zb = Zp + b * k * H              # sample b's (H, k) frame, column-major
                # Z_b := diag(1 - h[t, b]^2) Z_b: J[t] Q[t-1] of sample b
                d_min, d_max = INFINITY, 0
                for i in range(H):
                    d[i] = _dsq(&h[t, b0 + b, i])
                    d_min, d_max = min(d_min, d[i]), max(d_max, d[i])
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
                    # One pass of Cholesky QR. Its frame's distance from orthonormal has a
                    # bound from cond(Z) <= cond(diag(d)) cond(W) cond(Q[t-1]); where the
                    # bound passes 0.1, and at the steps that end a window (or precede the
                    # first), it is measured (the frame's Gram matrix, which starts a
                    # second pass): a second pass where it is above 0.1 or at a window's
                    # end, Householder where it is 0.5 or more (the docstring says why that
                    # is exact). After a pass Z = Z1 U1, so the diagonal of R of Z is
                    # diag(R of Z1) diag(U1): the logs add up.
                    z_cond = d_max / d_min * w_cond * q_cond[b] if d_min > 0 else INFINITY
                    edge = t >= discard - 1 and (t - discard + 1) % window == 0
                    check = _cholesky_qr_error(z_cond, H, k) > 0.1
                    _frame_gram(zb, Hb, kb, &S[0])       # S := Z^T Z
                    done_qr = _cholesky_qr_finish(zb, Hb, kb, &S[0], &logs[0])
                    q_cond[b] = _cond_bound(_cholesky_qr_error(z_cond, H, k))
                    if done_qr and (check or edge):
                        err = _frame_gram(zb, Hb, kb, &S[0])
                        q_cond[b] = _cond_bound(err)
                        if err >= 0.5:
                            done_qr = False
                        elif err > 0.1 or edge:
                            done_qr = _cholesky_qr_finish(zb, Hb, kb, &S[0], &logs[0])
                            q_cond[b] = _cond_bound(_cholesky_qr_error(q_cond[b], H, k))
                if not done_qr:
                    q_cond[b] = 1
                    info = _householder_qr(zb, Hb, kb, &tau[0], &work[0], lwork, &logs[0])
                    if info != 0:
                        status = LAPACK_FAILED
                        break
                if 0 <= w < nw:
                    for j in range(k):
                        sums[w, b0 + b, j] += logs[j]
            if status != OK:
                break
            tmp = Qp
            Qp = Zp
            Zp = tmp
            done += 1
            halt.work += (<double> H) * m * (H + 2 * k)
            if halt.work >= RELEASE_WORK or halt.stop[0]:
                if _release_point(&halt, done):
                    status = STOPPED
                    break
                done = 0
    if status == OK and main and progress is not None and done:
        progress(done)
    return status, info
