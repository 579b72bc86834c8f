# The register-blocked kernel of src/_small_gemm.h as the extension modules see it: its
# interface, and the variant a call names. _core's time loops (through _step_products.pxd)
# and _diagnostics' products of the Jacobians (jacobian_log_norms) use it.

cdef extern from "_small_gemm.h" nogil:
    enum: RNNX_GEMM_NR
    enum: RNNX_GEMM_MIN_COLS
    ctypedef void (*rnnx_gemm_f_fn)(Py_ssize_t m, Py_ssize_t n, int beta, Py_ssize_t k,
                                    const float *A, const float *M, Py_ssize_t k2,
                                    const float *A2, const float *M2, float *C)
    ctypedef void (*rnnx_gemm_d_fn)(Py_ssize_t m, Py_ssize_t n, int beta, Py_ssize_t k,
                                    const double *A, const double *M, Py_ssize_t k2,
                                    const double *A2, const double *M2, double *C)
    ctypedef struct rnnx_gemm_kernels:
        rnnx_gemm_f_fn gemm_f
        rnnx_gemm_f_fn tn_f
        rnnx_gemm_d_fn gemm_d
        rnnx_gemm_d_fn tn_d
    const rnnx_gemm_kernels *rnnx_gemm_built(int id)
    bint rnnx_gemm_cpu_runs(int id)


cdef inline tuple _variants():
    """The variants' names in the order of _small_gemm.h's ids (fastest first)."""
    return ("avx512", "avx2", "generic")


cdef inline const rnnx_gemm_kernels *_kernel(str name) except? NULL:
    """The functions of the kernel variant name (one this build has and this CPU runs);
    NULL for None or "blas"."""
    cdef int i
    cdef list runs = []
    if name is None or name == "blas":
        return NULL
    names = _variants()
    for i in range(len(names)):
        if rnnx_gemm_cpu_runs(i):
            if names[i] == name:
                return rnnx_gemm_built(i)
            runs.append(names[i])
    raise ValueError(f"kernel must be 'blas' or a variant this CPU runs {tuple(runs)}; "
                     f"got {name!r}")
