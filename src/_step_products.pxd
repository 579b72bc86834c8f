# The per-step work of the time loops of src/_core.pyx, for either dtype: the products by
# the weights (the register-blocked kernel of _small_gemm.h, BLAS, or plain loops) and the
# elementwise steps (tanh with the bias, its derivative, the column sums) of
# src/_elementwise.h.

from libc.string cimport memset
from cython cimport floating

from _blas cimport blas_int, _gemv, _gemm
from _small_gemm cimport RNNX_GEMM_MIN_COLS, rnnx_gemm_kernels

cdef extern from "_elementwise.h" nogil:
    Py_ssize_t rnnx_tanh_bias_d(double *z, const double *b, Py_ssize_t rows,
                                Py_ssize_t cols)
    Py_ssize_t rnnx_tanh_bias_f(float *z, const float *b, Py_ssize_t rows, Py_ssize_t cols)
    void rnnx_dtanh_d(double *dz, const double *delta, const double *h, Py_ssize_t n)
    void rnnx_dtanh_f(float *dz, const float *delta, const float *h, Py_ssize_t n)
    void rnnx_add_rows_d(double *acc, const double *a, Py_ssize_t rows, Py_ssize_t cols)
    void rnnx_add_rows_f(float *acc, const float *a, Py_ssize_t rows, Py_ssize_t cols)
    void rnnx_plain_gemm_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, int a_trans,
                           const double *A, const double *M, double *C)
    void rnnx_plain_gemm_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, int a_trans,
                           const float *A, const float *M, float *C)


cdef inline bint _fits(const rnnx_gemm_kernels *g, Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """Whether the register-blocked kernel g (NULL: none) makes products of m rows, n
    columns."""
    return g != NULL and m >= 1 and n >= RNNX_GEMM_MIN_COLS


cdef inline Py_ssize_t _tanh_bias(floating *z, const floating *b, Py_ssize_t rows,
                                  Py_ssize_t cols) noexcept nogil:
    """z[r, c] := tanh(z[r, c] + b[c]); the number of pre-activations z + b that were not
    finite."""
    if floating is float:
        return rnnx_tanh_bias_f(z, b, rows, cols)
    else:
        return rnnx_tanh_bias_d(z, b, rows, cols)


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


cdef inline void _weight_acc(const rnnx_gemm_kernels *g, const floating *a, const floating *M,
                             floating *C, Py_ssize_t m, Py_ssize_t k,
                             Py_ssize_t n) noexcept nogil:
    """C := a^T @ M + C for a (k, m), M (k, n), C (m, n), with the register-blocked kernel
    g (the caller checked that it fits: _fits(g, m, n))."""
    if floating is float:
        g.tn_f(m, n, 1, k, a, M, 0, NULL, NULL, C)
    else:
        g.tn_d(m, n, 1, k, a, M, 0, NULL, NULL, C)


cdef inline void _plain_acc(bint a_trans, const floating *a, const floating *M, floating *C,
                            Py_ssize_t m, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """C := op(a) @ M + C for op(a) (m, k) (a (k, m) with a_trans), M (k, n), C (m, n),
    by plain loops: no BLAS call, and any n."""
    if floating is float:
        rnnx_plain_gemm_f(m, n, k, a_trans, a, M, C)
    else:
        rnnx_plain_gemm_d(m, n, k, a_trans, a, M, C)


cdef inline void _step_acc(const rnnx_gemm_kernels *g, const floating *a, const floating *M,
                           const floating *Mp, floating *c, blas_int m, blas_int k,
                           blas_int n) noexcept nogil:
    """c := a @ M + c for a (m, k), M (k, n), c (m, n): the products every time step makes.

    Mp, M in panels (panels()), selects the register-blocked kernel g of _small_gemm.h:
    the caller passes it where the kernel fits and may be used (it beats one BLAS thread,
    which repacks M every step, but not a BLAS running several threads on a large
    product). Without it, GEMV for m = 1 and BLAS GEMM otherwise."""
    if Mp != NULL:
        if floating is float:
            g.gemm_f(m, n, 1, k, a, Mp, 0, NULL, NULL, c)
        else:
            g.gemm_d(m, n, 1, k, a, Mp, 0, NULL, NULL, c)
    elif m == 1:
        # c^T := M^T a^T + c^T   (n,) = (n, k) @ (k,)
        _gemv(True, k, n, <floating> 1, M, n, a, <floating> 1, c)
    else:
        # c := a @ M + c   (m, n) = (m, k) @ (k, n)
        _gemm(False, False, m, n, k, <floating> 1, a, k, M, n, <floating> 1, c, n)


cdef inline void _step_set(const rnnx_gemm_kernels *g, const floating *a, const floating *M,
                           const floating *Mp, blas_int ka, const floating *b,
                           const floating *N, const floating *Np, blas_int kb, floating *c,
                           blas_int m, blas_int n) noexcept nogil:
    """c := a @ M + b @ N for a (m, ka), M (ka, n), b (m, kb), N (kb, n), c (m, n); b NULL
    for c := a @ M. With Mp (and Np), M and N in panels, the register-blocked kernel g makes
    both products in one pass over c; else c is zeroed and each product added (_step_acc)."""
    if Mp != NULL:
        if floating is float:
            g.gemm_f(m, n, 0, ka, a, Mp, kb if b != NULL else 0, b, Np, c)
        else:
            g.gemm_d(m, n, 0, ka, a, Mp, kb if b != NULL else 0, b, Np, c)
        return
    memset(c, 0, m * n * sizeof(floating))
    _step_acc(g, a, M, NULL, c, m, ka, n)
    if b != NULL:
        _step_acc(g, b, N, NULL, c, m, kb, n)
