# The Gram matrix G = alpha R R^T of a lag's product in float64 and its dense steps, for
# the spectral norm (src/_spectral_norm.pxd, src/_rounded_gram.pxd): forming it with its
# Frobenius norm, its top eigenpair by LAPACK, and whether mu I - G is positive definite.

from scipy.linalg.cython_blas cimport dsyrk
from scipy.linalg.cython_lapack cimport dpotrf, dsyevr
from _blas cimport blas_int
from _norms cimport rnnx_sum_squares_d as _sum_squares


cdef inline void _gram(const double *R, blas_int H, blas_int ld, double alpha, double *G,
                       double *frob_sq) noexcept nogil:
    """G := alpha R R^T (the upper triangle, column-major) and frob_sq := ||G||_F^2, for R
    column-major with leading dimension ld"""
    cdef blas_int c
    cdef double zero = 0.0, acc = 0
    cdef char *up = b'U'
    cdef char *nt = b'N'
    # G := alpha R R^T   (H, H) = (H, H) @ (H, H)^T, column-major, the upper triangle
    dsyrk(up, nt, &H, &H, &alpha, <double *> R, &ld, &zero, G, &H)
    # each entry above the diagonal twice (a vectorised sum: a plain loop here waits on
    # its one accumulator)
    for c in range(H):
        acc += 2 * _sum_squares(G + c * H, c) + G[c + c * H] * G[c + c * H]
    frob_sq[0] = acc


cdef inline int _top_eigenvalue_lapack(double *G, blas_int H, double *ev, double *vec,
                                       double *work, blas_int *iwork,
                                       double *out) noexcept nogil:
    """out := the largest eigenvalue of the symmetric G (upper triangle, column-major; G is
    overwritten) by LAPACK's dsyevr (bisection on its tridiagonal form: within a few
    rounding errors of ||G||), and vec (H) := its unit eigenvector unless vec is NULL.
    ev: H, work: 26 H, iwork: 10 H + 2. Returns LAPACK's info."""
    cdef blas_int info = 0, found = 0, one = 1, lwork = 26 * H, liwork = 10 * H
    cdef double unused = 0, abstol = 0
    cdef char *jobz = b'V' if vec != NULL else b'N'
    cdef char *index = b'I'
    cdef char *up = b'U'
    dsyevr(jobz, index, up, &H, G, &H, &unused, &unused, &H, &H, &abstol, &found, ev, vec,
           &H, iwork, work, &lwork, iwork + 2, &liwork, &info)
    out[0] = ev[0]
    return info


cdef inline bint _below(const double *G, double *C, blas_int H, double mu) noexcept nogil:
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
