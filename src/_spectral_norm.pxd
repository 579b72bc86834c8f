# The spectral norm of each lag's product, certified without an SVD (src/_diagnostics.pyx,
# jacobian_log_norms): Lanczos steps on the normalised product's Gram matrix, the bounds
# that certify them, and the fallbacks (_top_singular_value explains why this is exact).

from libc.math cimport sqrt, fabs, INFINITY
from scipy.linalg.cython_blas cimport dgemv, dsymv, ssymv
from scipy.linalg.cython_lapack cimport dstein
from _blas cimport blas_int
from _gram_matrix cimport _gram, _top_eigenvalue_lapack, _below
from _rounded_gram cimport _rounded_gram, _basis_certifies

cdef extern from "_lanczos.h" nogil:
    double _dot "rnnx_dot"(const double *x, const double *y, Py_ssize_t n)
    void _gram_apply "rnnx_gram_apply"(const double *R, Py_ssize_t H, Py_ssize_t ld,
                                         double alpha, const double *v, double *w)
    double _lanczos_residual "rnnx_lanczos_residual"(const double *V, Py_ssize_t m,
                                                       Py_ssize_t H, double a, double b,
                                                       double *w, double *c)

cdef enum:
    LANCZOS_STEPS = 48    # Lanczos steps before Cholesky or LAPACK decides (measured best)
    LANCZOS_BEFORE_GRAM = 8   # Lanczos steps by R before the Gram matrix is formed
    NEWTON_STEPS = 30         # Newton steps for T_m's top eigenvalue before bisection
    # from this H the Gram matrix is formed in float32 and its Lanczos basis checked
    # against the exact product (src/_rounded_gram.pxd): below it the check's two products
    # of (H, H) by (H, m) cost more than float64's Gram matrix saves (measured at H = 128,
    # faster from 256; benchmarks/diagnostics.py --sizes 1 2)
    ROUNDED_GRAM_MIN_H = 256

cdef extern from *:
    """
    #define RNNX_CERT_MARGIN 1.5e-9
    """
    # The spectral norm is certified to this relative accuracy of sigma_max^2, so
    # sigma_max to half of it (see _top_singular_value).
    const double CERT_MARGIN "RNNX_CERT_MARGIN"


cdef inline Py_ssize_t _count_above(Py_ssize_t n, const double *a, const double *b,
                                    double last, double x) noexcept nogil:
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


cdef inline double _gershgorin_top(Py_ssize_t n, const double *a,
                                   const double *b) noexcept nogil:
    """Gershgorin's upper bound of the eigenvalues of the symmetric tridiagonal (a, b)"""
    cdef Py_ssize_t i
    cdef double hi = -INFINITY
    for i in range(n):
        hi = max(hi, a[i] + (fabs(b[i - 1]) if i > 0 else 0) + (fabs(b[i]) if i < n - 1 else 0))
    return hi


cdef inline double _top_eigenvalue(Py_ssize_t n, const double *a, const double *b,
                                   double lo, double *hi) noexcept nogil:
    """A lower bound within 1e-13 relative of the largest eigenvalue of the symmetric
    tridiagonal matrix T = (a[:n], b[:n-1]), from lo (a lower bound: the previous Lanczos
    step's, as they only grow). hi: in, an upper bound (or INFINITY); out, a tighter one.

    Newton's method on ln|det(T - x I)| from an upper bound x: for a polynomial with real
    roots it decreases monotonically to the largest root, quadratically once near. Each x
    whose LDL^T pivots of T - x I are all negative is above every eigenvalue (Sylvester's
    law of inertia): a certified upper bound. The lower bound just below it is checked by a
    Sturm count; where Newton stalls (a cluster at the top), bisection finishes."""
    cdef Py_ssize_t i, it
    cdef double x, q, dq, f, bb, mid
    cdef bint below
    hi[0] = min(hi[0], _gershgorin_top(n, a, b))
    lo = max(lo, a[0])                     # a Rayleigh quotient: a lower bound too
    x = hi[0]
    for it in range(NEWTON_STEPS):
        # the pivots q_i of T - x I and their derivatives dq_i in x; f := sum dq_i / q_i,
        # the derivative of ln|det(T - x I)|
        q, dq = a[0] - x, -1
        f = dq / q
        below = q < 0
        for i in range(1, n):
            bb = b[i - 1] * b[i - 1]
            dq = -1 + bb * dq / (q * q)
            q = a[i] - x - bb / q
            f += dq / q
            below = below and q < 0
        if not (below and f > 0):
            break
        hi[0] = min(hi[0], x)
        if 1 / f <= 1e-14 * fabs(x):
            break
        x -= 1 / f
    mid = hi[0] - 1e-13 * fabs(hi[0])
    if mid > lo and _count_above(n, a, b, -1, mid) > 0:
        return mid
    for i in range(200):
        mid = 0.5 * (lo + hi[0])
        if not (lo < mid < hi[0]) or hi[0] - lo <= 1e-13 * fabs(lo):
            break
        if _count_above(n, a, b, -1, mid) > 0:
            lo = mid
        else:
            hi[0] = mid
    return lo


cdef inline bint _lanczos(const double *R, blas_int ld, double s, blas_int H, double *G,
                          float *scratch, bint rounded, Py_ssize_t before_gram,
                          double *frob_sq, double *frob_up, double *u, double *V, double *lz,
                          double *y, blas_int *iwork, blas_int *steps, double *theta,
                          int *path) noexcept nogil:
    """Lanczos steps on G = (R/s)(R/s)^T from u until the bounds of _top_singular_value
    certify its top eigenvalue, at most LANCZOS_STEPS; the first before_gram steps by R,
    the others by G once formed (rounded: by Ghat, src/_rounded_gram.pxd, whose
    certificate only says that its basis is worth checking). Returns whether certified;
    steps := the steps taken (the basis: the first rows of V), theta := the top eigenvalue
    of the tridiagonal T_m, u := its Ritz vector (unchanged where inverse iteration
    fails), path := 0 where the trace bound certified, 1 where the Frobenius bound was
    needed. frob_sq: in, ||G||_F^2 if G is formed, else -1; out, the same. scratch:
    2 H * H floats for Ghat."""
    cdef blas_int one = 1, info = 0, i, j, m = 0, ldz
    cdef double zero = 0.0, unit = 1.0, alpha = 1.0 / (s * s)
    cdef double nrm, mu, t_sq, t_tr, g, g_sq, g_tr, top, corner
    cdef double *a = lz                              # Lanczos alphas
    cdef double *b = lz + LANCZOS_STEPS              # betas
    cdef double *z = lz + 2 * LANCZOS_STEPS          # T_m's top eigenvector (m)
    cdef double *zw = z + LANCZOS_STEPS              # dstein's work (5 m)
    cdef double *w
    cdef float unit_s = 1.0, zero_s = 0.0
    cdef float *Gs = scratch + H * H if scratch != NULL else NULL
    cdef float *vs = <float *> y
    cdef float *ws = vs + H
    cdef bint certified = False
    cdef char *up = b'U'
    cdef char *nt = b'N'
    path[0] = 0
    nrm = sqrt(_dot(u, u, H))
    for i in range(H):
        V[i] = u[i] / nrm
    t_sq = t_tr = 0                          # ||T_m||_F^2 and trace(T_m)
    theta[0] = -INFINITY
    top = -INFINITY                          # an upper bound of lambda_max(T_m)
    for j in range(LANCZOS_STEPS):
        m = j + 1
        w = V + (j + 1) * H
        if frob_sq[0] < 0 and j >= before_gram:
            if rounded:
                _rounded_gram(R, H, ld, s, scratch, Gs, frob_sq, frob_up)
            else:
                _gram(R, H, ld, alpha, G, frob_sq)
        if frob_sq[0] < 0:
            # w := (R/s) ((R/s)^T v_j)   (H,) = (H, H) @ ((H, H)^T @ (H,)), in one pass
            _gram_apply(R, H, ld, alpha, V + j * H, w)
        elif rounded:
            # w := Ghat v_j   (H,) = (H, H) @ (H,), Ghat's upper triangle, in float32 (vs
            # and ws in y, which the step uses only after)
            for i in range(H):
                vs[i] = <float> V[j * H + i]
            ssymv(up, &H, &unit_s, Gs, &H, vs, &one, &zero_s, ws, &one)
            for i in range(H):
                w[i] = ws[i]
        else:
            # w := G v_j   (H,) = (H, H) @ (H,), G's upper triangle
            dsymv(up, &H, &unit, G, &H, V + j * H, &one, &zero, w, &one)
        a[j] = _dot(V + j * H, w, H)
        b[j] = _lanczos_residual(V, m, H, a[j], b[j - 1] if j > 0 else 0, w, y)
        t_sq += a[j] * a[j] + (2 * b[j - 1] * b[j - 1] if j > 0 else 0)
        t_tr += a[j]
        g = g_tr = max(1 - t_tr, 0)
        if frob_sq[0] >= 0:
            g_sq = frob_sq[0] - t_sq - 2 * b[j] * b[j]
            g = min(g, sqrt(g_sq) if g_sq > 0 else 0)
        # lambda_max(T_m) <= max(lambda_max(T_{m-1}), a_m) + b_{m-1} (Weyl)
        top = max(top, a[j]) + (b[j - 1] if j > 0 else 0)
        # lambda_max(M) is at least that of any principal submatrix: g, and its last 2 x 2
        # [[a_m, beta], [beta, g]]. No certificate while either is above every eigenvalue
        # of T_m (above top, or Gershgorin's bound), and no eigenvalue to compute
        corner = 0.5 * (a[j] + g) + sqrt(0.25 * (a[j] - g) * (a[j] - g) + b[j] * b[j])
        if max(g, corner) <= min(top, _gershgorin_top(m, a, b)) * (1 + CERT_MARGIN):
            theta[0] = _top_eigenvalue(m, a, b, theta[0], &top)
            mu = theta[0] * (1 + CERT_MARGIN)
            if _count_above(m, a, b, g, mu) == 0:
                certified = True
                # the trace bound alone would have done: the next lag tries without G
                if frob_sq[0] >= 0 and (g_tr > g and _count_above(m, a, b, g_tr, mu) > 0):
                    path[0] = 1
                break
        if b[j] == 0 or m == H:
            break
        for i in range(H):
            w[i] /= b[j]
    # u := the top Ritz vector V_m^T z of T_m   (H,) = (H, m) @ (m,)
    if not certified:
        theta[0] = _top_eigenvalue(m, a, b, theta[0], &top)
    # z := the eigenvector of T_m for theta (inverse iteration, O(m): LAPACK's dstein;
    # iwork: its block numbers, split points and failures, then m of scratch). Where it
    # fails u keeps the old start: the next lag's Lanczos is exact from any start.
    ldz = m
    iwork[0], iwork[1] = 1, m
    dstein(&m, a, b, &one, theta, iwork, iwork + 1, z, &ldz, zw, iwork + 3, iwork + 2,
           &info)
    if info == 0:
        dgemv(nt, &H, &m, &unit, V, &H, z, &one, &zero, u, &one)
    steps[0] = m
    return certified


cdef inline int _top_singular_value(const double *R, blas_int ld, double s, blas_int H,
                                    double *G, double *C, double *u, double *V, double *lz,
                                    double *y, double *sm, double *ev, double *work,
                                    blas_int *iwork, int *path, double *out) noexcept nogil:
    """out := sigma_max(R / s) for R (H, H) column-major with leading dimension ld (one
    sample's block of the stack of src/_diagnostics.pyx), s = ||R||_F; u (H) holds the
    previous lag's top left singular vector and gets this one's. V: LANCZOS_STEPS + 1 rows
    of H; lz: 8 LANCZOS_STEPS for the small tridiagonal problems; y: H of scratch; G, C:
    H * H; sm: 4 LANCZOS_STEPS^2 + 2 LANCZOS_STEPS; ev, work, iwork: see
    _top_eigenvalue_lapack. path: in, how the previous lag was certified; out, this
    lag's (0: from R alone, 1: with the Gram matrix, 2: Cholesky or LAPACK directly, 3:
    LAPACK after the others failed; the caller starts with 3). Returns LAPACK's info.

    Why it is exact. With G = (R/s)(R/s)^T, sigma_max^2 = lambda_max(G). m Lanczos steps on
    G (with full reorthogonalisation) from the previous lag's top left singular vector
    (the left side is the fixed end h[T-1], whose dominant direction changes slowly from
    lag to lag) give an orthonormal V_m with G V_m = V_m T_m + beta v_{m+1} e_m^T, T_m
    tridiagonal. A lower bound: the top eigenvalue theta of T_m (a Rayleigh quotient of G;
    _top_eigenvalue returns a value below it that a Sturm count confirms).
    An upper bound: in a basis [V_m, U], G = [[T_m, B^T], [B, G_U]] where B has the single
    non-zero column beta U^T v_{m+1}, so for a unit (y, z) the quadratic form is at most
    that of the tridiagonal M = [[T_m, beta e_m], [beta e_m^T, g]] at (y, ||z||), for any
    g >= lambda_max(G_U): trace(G_U) = 1 - trace(T_m) (G is positive semi-definite with
    trace ||R/s||_F^2 = 1), or ||G_U||_F = sqrt(||G||_F^2 - ||T_m||_F^2 - 2 beta^2) once G
    is formed. So lambda_max(G) <= lambda_max(M), and once M has no eigenvalue above
    theta (1 + CERT_MARGIN) (a Sturm count), sqrt(theta) is within CERT_MARGIN / 2 of
    sigma_max. The trace bound holds once a few directions carry most of the product's
    Frobenius mass (the later lags: cost a few Lanczos steps of one pass over R each,
    2 H^2 multiply-adds, against the lag's H^3); the Frobenius bound once a few dozen
    directions do (most lags: the Gram matrix, H^3 / 2 multiply-adds in one BLAS-3 call,
    then steps of one O(H^2) product by G). A lag that needed G is followed by one that
    forms it first. From ROUNDED_GRAM_MIN_H the Gram matrix is formed in float32 (a
    vector register holds twice as many entries) and the steps run on it; its Lanczos
    basis is then checked against the exact G, through two products by R
    (_basis_certifies: the same bound for any orthonormal basis, with a rigorous upper
    bound of ||G||_F from the rounded one's), and where the check fails the steps start
    again on the exact G from the Ritz vector found.
    The rounding decides which basis is checked, never what is proved.
    Else, after LANCZOS_STEPS steps (by G they are cheap against a factorisation, and more
    of them let the Frobenius bound pass more often), a third certificate: mu I - G with
    mu = theta (1 + CERT_MARGIN) is positive definite exactly when lambda_max < mu, which
    Cholesky decides (its backward error, about H * 1e-16, is far below the margin). Where
    all fail (the first lags, whose singular values are nearly equal), LAPACK's largest
    eigenvalue of G gives the value; the first lag, and a lag after one where all failed,
    go to LAPACK directly (its eigenvector starts the next lag). Which certificate is tried
    when and after how many steps decides only the cost: every value returned has passed
    one.
    """
    cdef blas_int info = 0, m = 0
    cdef double theta = 0, frob_sq = -1, frob_up = 0
    cdef Py_ssize_t before_gram = LANCZOS_BEFORE_GRAM if path[0] == 0 else 0
    cdef bint rounded = H >= ROUNDED_GRAM_MIN_H and path[0] != 2
    cdef bint certified
    if path[0] == 3:
        # the previous lag needed LAPACK (or this is the first): so does this one, likely;
        # its eigenvector warm-starts the next lag, which forms G first
        _gram(R, H, ld, 1.0 / (s * s), G, &frob_sq)
        path[0] = 2
        info = _top_eigenvalue_lapack(G, H, ev, u, work, iwork, &theta)
        out[0] = sqrt(max(theta, 0))
        return info
    certified = _lanczos(R, ld, s, H, G, <float *> C, rounded, before_gram, &frob_sq,
                         &frob_up, u, V, lz, y, iwork, &m, &theta, path)
    if rounded and frob_sq >= 0:
        # the steps ran on the rounded Gram matrix: check their basis against the exact
        # G (C is free again: it holds the check's two products), else start again on G
        if certified and _basis_certifies(R, ld, s, H, V, m, frob_up, CERT_MARGIN, C,
                                          C + H * m, sm, work, iwork, &theta, u):
            out[0] = sqrt(theta)
            return 0
        frob_sq = -1
        certified = _lanczos(R, ld, s, H, G, NULL, False, 0, &frob_sq, &frob_up, u, V,
                             lz, y, iwork, &m, &theta, path)
    if certified:
        out[0] = sqrt(theta)
        return 0
    if frob_sq >= 0 and theta > 0 and _below(G, C, H, theta * (1 + CERT_MARGIN)):
        path[0] = 2
        out[0] = sqrt(theta)
        return 0
    if frob_sq < 0:
        _gram(R, H, ld, 1.0 / (s * s), G, &frob_sq)
    path[0] = 3
    info = _top_eigenvalue_lapack(G, H, ev, NULL, work, iwork, &theta)
    out[0] = sqrt(max(theta, 0))
    return info
