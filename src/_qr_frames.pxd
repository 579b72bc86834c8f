# The QR factorisations of the Lyapunov frames (src/_diagnostics.pyx, lyapunov_sums):
# Gram-Schmidt for small frames, Cholesky QR with the bounds that say when to measure its
# error, Householder QR where they break down.

from libc.math cimport sqrt, log, fabs, INFINITY
from scipy.linalg.cython_blas cimport dsyrk, dtrsm
from scipy.linalg.cython_lapack cimport dpotrf, dgeqrf, dorgqr
from _blas cimport blas_int

cdef enum:
    GRAM_SCHMIDT_K = 16       # frames of up to this many directions: Gram-Schmidt QR


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
