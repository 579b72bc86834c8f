# The QR factorisations of the Lyapunov frames (src/_diagnostics.pyx, lyapunov_sums):
# Gram-Schmidt for small frames, Cholesky QR with the bounds that say when to measure its
# error (every step, or every few steps where the product stays well conditioned),
# Householder QR where they break down.

from libc.math cimport sqrt, log, fabs, INFINITY
from scipy.linalg.cython_blas cimport dsyrk, dtrsm
from scipy.linalg.cython_lapack cimport dpotrf, dgeqrf, dorgqr
from _blas cimport blas_int

cdef enum:
    GRAM_SCHMIDT_K = 16       # frames of up to this many directions: Gram-Schmidt QR
    # at most this many steps between two Cholesky QR passes of a large frame, and how
    # often a frame passed every step is measured to see whether it may wait
    MAX_SPAN = 8
    SPAN_PROBE = 16
    # what _spanned_cholesky_qr did: carried the product on, factored it, or found it
    # too ill-conditioned for Cholesky QR (Householder's turn)
    FRAME_CARRIED = 0
    FRAME_PASSED = 1
    FRAME_SINGULAR = 2

# the measured (or bounded) distance of a large frame from orthonormal after one pass of
# Cholesky QR: above CHECK_ERROR a second pass; the span between passes grows below
# SPAN_GROW_ERROR and shrinks above SPAN_SHRINK_ERROR; and the |log| of the bounds of the
# product's largest and smallest singular values stays below MAX_LOG_GROWTH (its Gram
# matrix squares them)
cdef extern from *:
    """
    #define RNNX_CHECK_ERROR 0.1
    #define RNNX_SPAN_GROW_ERROR 1e-11
    #define RNNX_SPAN_SHRINK_ERROR 1e-8
    #define RNNX_MAX_LOG_GROWTH 150.0
    """
    const double CHECK_ERROR "RNNX_CHECK_ERROR"
    const double SPAN_GROW_ERROR "RNNX_SPAN_GROW_ERROR"
    const double SPAN_SHRINK_ERROR "RNNX_SPAN_SHRINK_ERROR"
    const double MAX_LOG_GROWTH "RNNX_MAX_LOG_GROWTH"


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


cdef inline int _householder_qr(double *Z, blas_int H, blas_int k, double *tau,
                                double *work, blas_int lwork,
                                double *logs) noexcept nogil:
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


cdef inline double _frame_gram(const double *Z, blas_int H, blas_int k,
                               double *S) noexcept nogil:
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


cdef inline bint _cholesky_qr_finish(double *Z, blas_int H, blas_int k, double *S,
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


cdef inline double _cholesky_qr_error(double cond, Py_ssize_t H,
                                      Py_ssize_t k) noexcept nogil:
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


cdef inline bint _gram_schmidt_qr(double *Z, Py_ssize_t H, Py_ssize_t k,
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


cdef inline int _spanned_cholesky_qr(double *Z, blas_int H, blas_int k, double *S,
                                     double *logs, double step_cond, bint due, bint edge,
                                     Py_ssize_t t, double log_w_scale, double *q_cond,
                                     double *z_cond, Py_ssize_t *steps,
                                     Py_ssize_t *span) noexcept nogil:
    """One step of a large frame Z (H, k) column-major (lyapunov_sums says why this is
    exact): carry the product on (FRAME_CARRIED), or factor it by Cholesky QR (Z := Q,
    logs[j] += ln R_jj; FRAME_PASSED), or leave it to Householder QR (FRAME_SINGULAR).
    The product carried since the last pass has cond <= z_cond, which starts at cond(Q)
    <= q_cond and gains step_cond (cond(diag(d)) cond(W)) per step. A pass is made where
    due (a window's end, an ill-conditioned step), after span steps, or where the bounds
    sigma_max(W)^steps and sigma_min(W)^steps (log_w_scale: the larger |ln| of the two)
    near over- or underflow in Z^T Z (a singular W makes every step due: step_cond).
    Where the bound of the passed frame's distance from orthonormal passes CHECK_ERROR, at
    a window's end, and after a product of several steps (or now and then, to learn
    whether it may wait), that distance is measured (the frame's Gram matrix, which
    starts a second pass): a second pass where it is above CHECK_ERROR or at a window's
    end, Householder where it is 0.5 or more. After a pass Z = Z1 U1, so the diagonal of
    R of Z is diag(R of Z1) diag(U1): the logs add up. The span grows while the measured
    distance stays below SPAN_GROW_ERROR, shrinks above SPAN_SHRINK_ERROR."""
    cdef double bound, err
    cdef bint check, passed
    z_cond[0] *= step_cond
    steps[0] += 1
    if not (due or steps[0] >= span[0] or (steps[0] + 1) * log_w_scale > MAX_LOG_GROWTH):
        return FRAME_CARRIED
    bound = _cholesky_qr_error(z_cond[0], H, k)
    check = (bound > CHECK_ERROR or steps[0] > 1
             or (bound > SPAN_GROW_ERROR and span[0] < MAX_SPAN and t % SPAN_PROBE == 0))
    _frame_gram(Z, H, k, S)       # S := Z^T Z
    passed = _cholesky_qr_finish(Z, H, k, S, logs)
    q_cond[0] = _cond_bound(bound)
    err = bound
    if passed and (check or edge):
        err = _frame_gram(Z, H, k, S)
        q_cond[0] = _cond_bound(err)
        if err >= 0.5:
            passed = False
        elif err > CHECK_ERROR or edge:
            passed = _cholesky_qr_finish(Z, H, k, S, logs)
            q_cond[0] = _cond_bound(_cholesky_qr_error(q_cond[0], H, k))
    if err > SPAN_SHRINK_ERROR:
        span[0] = max(1, steps[0] // 2)
    elif err < SPAN_GROW_ERROR and steps[0] == span[0]:
        span[0] = min(MAX_SPAN, span[0] + 1)
    steps[0] = 0
    z_cond[0] = q_cond[0]
    return FRAME_PASSED if passed else FRAME_SINGULAR
