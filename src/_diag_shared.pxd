# What the diagnostics' kernels (src/_diagnostics.pyx) share: their statuses, how often
# they look for Ctrl-C and report progress (src/_interrupts.pxd), and tanh'.

from cython cimport floating

cdef enum:
    OK = 0
    STOPPED = 1           # Ctrl-C, or the progress callback raised: the exception is in errors
    LAPACK_FAILED = 2     # a LAPACK routine reported info != 0
    RELEASE_WORK = 134217728  # multiply-adds between two looks (2^27)


cdef inline double _dsq(const floating *h) noexcept nogil:
    """tanh' = 1 - h^2, in float64"""
    return 1.0 - (<double> h[0]) * h[0]
