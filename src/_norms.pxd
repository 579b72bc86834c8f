# The 2-norm of a float32 or float64 vector without overflow, accumulated in float64: by BLAS
# (the gradient norms of training, src/_reductions.pyx) or in a fixed order (the backward
# signal of src/_core.pyx, whose bits must not depend on other threads).

from libc.math cimport sqrt, fabs, isfinite
from cython cimport floating

from _blas cimport blas_int, _dot

cdef extern from "_elementwise.h" nogil:
    double rnnx_sum_squares_d(const double *a, Py_ssize_t n)
    double rnnx_sum_squares_f(const float *a, Py_ssize_t n)


cdef inline double _careful_norm(Py_ssize_t n, const floating *v) noexcept nogil:
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


cdef inline double _delta_norm(Py_ssize_t n, const floating *v) noexcept nogil:
    """||v||_2 summed in a fixed order (rnnx_sum_squares), so that the backward pass gives
    the same bits whatever other threads do; the careful path where that overflowed."""
    cdef double s
    if floating is float:
        s = rnnx_sum_squares_f(v, n)
    else:
        s = rnnx_sum_squares_d(v, n)
    if s <= 1e300:                      # false for inf and NaN
        return sqrt(s)
    return _careful_norm(n, v)
