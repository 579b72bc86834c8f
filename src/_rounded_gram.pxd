# The spectral norm's cheaper Gram matrix for large H (src/_spectral_norm.pxd): the Gram
# matrix of the normalised product rounded to float32 (a vector register holds twice as
# many float32 entries as float64), whose Lanczos basis is then checked against the exact
# product, and a rigorous bound of how far its Frobenius norm can be from the exact one's.

from libc.math cimport sqrt, ldexp
from scipy.linalg.cython_blas cimport dgemm, dsyrk, ssyrk
from _blas cimport blas_int
from _gram_matrix cimport _top_eigenvalue_lapack, _below
from _norms cimport rnnx_sum_squares_f as _sum_squares_f


cdef inline void _rounded_gram(const double *R, blas_int H, blas_int ld, double s, float *Rs,
                               float *Gs, double *frob_sq, double *frob_up) noexcept nogil:
    """Gs := Ghat, the Gram matrix (R/s)(R/s)^T computed in float32 from R/s rounded to
    float32 (the upper triangle, column-major (H, H)), for R (H, H) column-major with
    leading dimension ld and s = ||R||_F. frob_sq := ||Ghat||_F^2 and frob_up := an upper
    bound of ||(R/s)(R/s)^T||_F^2. Rs: H * H floats of scratch; Gs: H * H floats.

    Why frob_up bounds the exact Gram matrix's. With X = R/s (||X||_F = 1) and u = 2^-24,
    its rounding Xh = X + E has |E| <= u |X| entrywise, so ||X X^T - Xh Xh^T||_F <=
    2 ||E||_F ||X||_F + ||E||_F^2 <= 2 u + u^2; BLAS's float32 products of rows of length
    H, whatever their order of summation (with or without fused multiply-adds), are within
    gamma_H |Xh| |Xh|^T of exact, gamma_H = H u / (1 - H u) (Higham, Accuracy and
    Stability of Numerical Algorithms, 3.1), and || |Xh| |Xh|^T ||_F <= ||Xh||_F^2 <=
    (1 + u)^2. So ||X X^T - Ghat||_F <= delta = gamma_H (1 + u)^2 + 2 u + u^2, plus
    underflow: entries and products below float32's normal range are off by at most 2^-126
    each (even flushed to zero), H^3 2^-126 over all, bounded by the H^3 2^-120 added. And
    ||X X^T||_F <= ||Ghat||_F + delta, where ||Ghat||_F^2, a float64 sum of exact squares
    (H columns of at most H terms, 8 accumulators each, then one), is within 2 (H + 2)
    2^-53 relative of its value."""
    cdef blas_int i, c
    cdef double acc = 0, v, u = ldexp(1.0, -24), gamma, delta, inv_s = 1.0 / s
    cdef float one = 1.0, zero = 0.0
    cdef float *col
    cdef char *up = b'U'
    cdef char *nt = b'N'
    for c in range(H):
        col = Rs + c * H
        for i in range(H):
            col[i] = <float> (R[i + c * ld] * inv_s)
    # Gs := Xh Xh^T   (H, H) = (H, H) @ (H, H)^T, float32, column-major, the upper triangle
    ssyrk(up, nt, &H, &H, &one, Rs, &H, &zero, Gs, &H)
    # acc := ||Gs||_F^2 (each entry above the diagonal twice)
    for c in range(H):
        col = Gs + c * H
        acc += 2 * _sum_squares_f(col, c) + (<double> col[c]) * col[c]
    frob_sq[0] = acc
    gamma = H * u / (1 - H * u)
    # (1 + 1e-6): room for the float64 roundings of X = R / s and of delta itself
    delta = ((gamma * (1 + u) * (1 + u) + 2 * u + u * u) * (1 + 1e-6)
             + ldexp(<double> H * H * H, -120))
    v = sqrt(acc * (1 + 2 * (H + 2) * ldexp(1.0, -53))) + delta
    frob_up[0] = v * v


cdef inline bint _basis_certifies(const double *R, blas_int ld, double s, blas_int H,
                                  const double *V, blas_int m, double frob_up, double margin,
                                  double *Y, double *Z, double *sm, double *work,
                                  blas_int *iwork, double *theta, double *u) noexcept nogil:
    """Whether the Lanczos basis of Ghat certifies the top eigenvalue of the exact
    G = (R/s)(R/s)^T: V holds m orthonormal rows of H, the columns of Q = V^T (H, m).
    theta := the top eigenvalue of T = Q^T G Q (a Rayleigh-Ritz value: at most
    lambda_max(G)), u := its Ritz vector, and True when lambda_max(G) <= theta (1 + margin)
    is proved. frob_up: an upper bound of ||G||_F^2. Y, Z: H * m of scratch; sm:
    4 m * m + 2 m; work: 26 m; iwork: 10 m + 2.

    The proof. Complete Q to an orthonormal basis [Q, U]: G = [[T, C^T], [C, G_U]] with
    C = U^T G Q = U^T Res, Res = G Q - Q T; Q^T Res vanishes in exact arithmetic, and
    C^T C = Res^T Res - P^T P with P = Q^T Res holds whatever rounding leaves in Q's span.
    For a unit (y, z) the quadratic form of G is at most y^T T y + 2 ||z|| ||C y|| +
    g ||z||^2 for any g >= lambda_max(G_U), which is the form of M = [[T, K^T], [K, g I]]
    (K^T K = C^T C) at (y, ||z|| K y / ||K y||): so lambda_max(G) <= lambda_max(M), and
    mu I - M is positive definite (mu > g) exactly when its Schur complement
    mu I - T - C^T C / (mu - g) is, which Cholesky decides. g: the trace of G_U (G is
    positive semi-definite with trace 1), or its Frobenius norm,
    sqrt(||G||_F^2 - ||T||_F^2 - 2 ||C||_F^2). The products by G are exact (through R):
    the rounding of Ghat decides only how good Q is, never what is proved."""
    cdef blas_int i, j, one = 1
    cdef double alpha = 1.0 / (s * s), unit = 1.0, zero = 0.0, minus = -1.0
    cdef double tr = 0, t_sq = 0, c_sq = 0, g, g_sq, mu
    cdef double *T = sm                     # (m, m)
    cdef double *CC = sm + m * m            # C^T C
    cdef double *P = sm + 2 * m * m
    cdef double *S = sm + 3 * m * m         # scratch for LAPACK
    cdef double *ev = sm + 4 * m * m        # m
    cdef double *z = ev + m                 # m
    cdef char *up = b'U'
    cdef char *nt = b'N'
    cdef char *tn = b'T'
    # Y := R^T Q   (H, m) = (H, H)^T @ (H, m), column-major
    dgemm(tn, nt, &H, &m, &H, &unit, <double *> R, &ld, <double *> V, &H, &zero, Y, &H)
    # T := alpha Y^T Y = Q^T G Q   (m, m), the upper triangle, then mirrored
    dsyrk(up, tn, &m, &H, &alpha, Y, &H, &zero, T, &m)
    for j in range(m):
        for i in range(j):
            T[j + i * m] = T[i + j * m]
    # Z := alpha R Y = G Q   (H, m) = (H, H) @ (H, m)
    dgemm(nt, nt, &H, &m, &H, &alpha, <double *> R, &ld, Y, &H, &zero, Z, &H)
    # Z := Z - Q T = Res   (H, m) -= (H, m) @ (m, m)
    dgemm(nt, nt, &H, &m, &m, &minus, <double *> V, &H, T, &m, &unit, Z, &H)
    # P := Q^T Res   (m, m) = (m, H) @ (H, m);  CC := Res^T Res - P^T P (upper triangle)
    dgemm(tn, nt, &m, &m, &H, &unit, <double *> V, &H, Z, &H, &zero, P, &m)
    dsyrk(up, tn, &m, &H, &unit, Z, &H, &zero, CC, &m)
    dsyrk(up, tn, &m, &m, &minus, P, &m, &unit, CC, &m)
    for j in range(m):
        tr += T[j + j * m]
        c_sq += CC[j + j * m]
        for i in range(m):
            t_sq += T[i + j * m] * T[i + j * m]
    # theta, z := T's top eigenpair (S: T's copy, which LAPACK overwrites)
    for j in range(m * m):
        S[j] = T[j]
    if _top_eigenvalue_lapack(S, m, ev, z, work, iwork, theta) != 0:
        return False
    # u := Q z, the Ritz vector   (H,) = (H, m) @ (m,)
    dgemm(nt, nt, &H, &one, &m, &unit, <double *> V, &H, z, &m, &zero, u, &H)
    g = max(1 - tr, 0)
    g_sq = frob_up - t_sq - 2 * max(c_sq, 0)
    g = min(g, sqrt(g_sq) if g_sq > 0 else 0)
    mu = theta[0] * (1 + margin)
    if not (theta[0] > 0 and mu > g):
        return False
    # CC := T + CC / (mu - g) (upper triangle): mu I - CC is the Schur complement
    for j in range(m):
        for i in range(j + 1):
            CC[i + j * m] = T[i + j * m] + CC[i + j * m] / (mu - g)
    return _below(CC, S, m, mu)
