# cython: language_level=3
"""rnnx._reductions: the scans and reductions that training runs on its arrays every step
(non-finite scans, the tanh-output check, gradient norms, the spike detector's median and
MAD), on C-contiguous float32 or float64 arrays taken through the buffer protocol."""
from libc.math cimport fabs
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.buffer cimport PyBuffer_Release

from _buffers cimport take_floats
from _norms cimport _norm

cdef extern from "_elementwise.h" nogil:
    Py_ssize_t rnnx_count_nonfinite_d(const double *a, Py_ssize_t n)
    Py_ssize_t rnnx_count_nonfinite_f(const float *a, Py_ssize_t n)
    Py_ssize_t rnnx_first_outside_unit_d(const double *a, Py_ssize_t n)
    Py_ssize_t rnnx_first_outside_unit_f(const float *a, Py_ssize_t n)


ctypedef Py_ssize_t (*_scan_f)(const float *a, Py_ssize_t n) noexcept nogil
ctypedef Py_ssize_t (*_scan_d)(const double *a, Py_ssize_t n) noexcept nogil


cdef Py_ssize_t _scan(object array, _scan_f scan_f, _scan_d scan_d) except? -2:
    """scan_f or scan_d, by the dtype of array (C-contiguous float32 or float64, any
    shape), over all its entries, without the GIL."""
    cdef Py_buffer view
    cdef Py_ssize_t n, r
    take_floats(array, &view, False)
    n = view.len // view.itemsize
    with nogil:
        if view.itemsize == 4:
            r = scan_f(<const float *> view.buf, n)
        else:
            r = scan_d(<const double *> view.buf, n)
    PyBuffer_Release(&view)
    return r


def first_nonfinite(list arrays):
    """The index of the first of arrays (C-contiguous float32 or float64, any shape) with a
    NaN or infinite entry; -1 when every entry of every array is finite."""
    cdef Py_ssize_t k
    for k in range(len(arrays)):
        if _scan(arrays[k], rnnx_count_nonfinite_f, rnnx_count_nonfinite_d):
            return k
    return -1


def first_outside_unit(array):
    """The flat index of the first entry of array (C-contiguous float32 or float64) outside
    [-1, 1] or NaN, -1 when there is none: whether it can be a tanh output."""
    return _scan(array, rnnx_first_outside_unit_f, rnnx_first_outside_unit_d)


cdef double _select(double *a, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """The k-th smallest of a[:n] (from 0), reordering a so that a[:k] <= a[k] <= a[k+1:]
    (Hoare's selection: linear time on average)."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j
    cdef double pivot
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


cdef double _median(double *a, Py_ssize_t n) noexcept nogil:
    """Median of a[:n] (n >= 1), reordering a."""
    cdef Py_ssize_t k = n // 2, i
    cdef double upper = _select(a, n, k), lower
    if n % 2:
        return upper
    lower = a[0]                  # the (k-1)-th smallest: the largest of a[:k]
    for i in range(1, k):
        if a[i] > lower:
            lower = a[i]
    return 0.5 * (lower + upper)


def median_and_mad(const double[::1] values):
    """(median, median absolute deviation) of a non-empty array of finite values: the
    robust location and scale of the spike detector, every training step."""
    cdef Py_ssize_t n = values.shape[0], i
    cdef double median, mad
    cdef double *scratch
    if n == 0:
        raise ValueError("median_and_mad needs at least one value")
    scratch = <double *> malloc(n * sizeof(double))
    if scratch == NULL:
        raise MemoryError()
    with nogil:
        memcpy(scratch, &values[0], n * sizeof(double))
        median = _median(scratch, n)
        for i in range(n):
            scratch[i] = fabs(values[i] - median)
        mad = _median(scratch, n)
    free(scratch)
    return median, mad


def l2_norms(list arrays):
    """[||a||_2 for a in arrays], C-contiguous float32 or float64 arrays of any shape: each
    without overflow; inf or NaN for an array with a non-finite entry."""
    cdef Py_buffer view
    cdef Py_ssize_t n
    cdef double r
    norms = []
    for a in arrays:
        take_floats(a, &view, False)
        n = view.len // view.itemsize
        with nogil:
            if n == 0:
                r = 0
            elif view.itemsize == 4:
                r = _norm(n, <const float *> view.buf)
            else:
                r = _norm(n, <const double *> view.buf)
        PyBuffer_Release(&view)
        norms.append(r)
    return norms
