# What the diagnostics' kernels (src/_diagnostics.pyx) share: their statuses, the release
# points where a long loop lets Python handle Ctrl-C and report progress, and tanh'.

from cpython.ref cimport PyObject
from cython cimport floating

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1

cdef enum:
    OK = 0
    STOPPED = 1           # Ctrl-C, or the progress callback raised: the exception is in errors
    LAPACK_FAILED = 2     # a LAPACK routine reported info != 0
    RELEASE_WORK = 134217728  # multiply-adds between two release points (2^27)


cdef struct Halt:
    int *stop             # shared by the blocks of one call: set when one must stop
    PyObject *progress    # callable(units done since the last call) or None
    PyObject *errors      # list: the exception that stopped the call
    bint main             # the block that runs in the calling thread (checks signals)
    double work           # multiply-adds since the last release point


cdef inline int _release_point(Halt *halt, Py_ssize_t units) noexcept nogil:
    """1 if the call must stop (Ctrl-C, or another block stopped), else 0. In the calling
    thread's block: takes the GIL to run Python's signal handlers and the progress callback."""
    if halt.stop[0]:
        return 1
    if not halt.main:
        return 0
    halt.work = 0
    with gil:
        try:
            PyErr_CheckSignals()
            if <object> halt.progress is not None:
                (<object> halt.progress)(units)
        except BaseException as e:
            (<list> halt.errors).append(e)
            halt.stop[0] = 1
            return 1
    return 0


cdef inline double _dsq(const floating *h) noexcept nogil:
    """tanh' = 1 - h^2, in float64"""
    return 1.0 - (<double> h[0]) * h[0]
