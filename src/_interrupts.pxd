# How a long nogil loop stops (src/_core.pyx's time loops, src/_diagnostics.pyx's lag and
# step loops): every so often the block that runs in the calling thread takes the GIL for a
# moment, runs Python's signal handlers (Ctrl-C) and the progress callback, and a flag the
# blocks of one call share tells the others to stop.

from cpython.ref cimport PyObject

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1

cdef extern from "_elementwise.h" nogil:
    int rnnx_flag_get(const int *p)
    void rnnx_flag_set(int *p)


cdef struct Interrupt:
    int *cancel           # shared by the blocks of one call (NULL: no other block)
    PyObject *progress    # callable(units done since the last look), or None
    PyObject *errors      # list: the exception that stopped the call goes there
    bint main             # the block in the calling thread: it looks (signals, progress)
    double every          # multiply-adds between two looks
    double work           # multiply-adds since the last look
    Py_ssize_t units      # units of progress since the last report


cdef inline Interrupt _interrupt(int[::1] cancel, object progress, list errors, bint main,
                                 double every):
    """The interrupt state of one kernel call's block, made with the GIL. cancel: the
    one-entry flag the call's blocks share, or None for a call of one block."""
    cdef Interrupt it
    it.cancel = NULL if cancel is None else <int *> &cancel[0]
    it.progress, it.errors = <PyObject *> progress, <PyObject *> errors
    it.main, it.every, it.work, it.units = main, every, 0, 0
    return it


cdef inline bint _look(Interrupt *it) noexcept nogil:
    """Takes the GIL, runs Python's signal handlers and the progress callback; True where
    one raised (see _stop)."""
    it.work = 0
    with gil:
        try:
            PyErr_CheckSignals()
            if <object> it.progress is not None:
                (<object> it.progress)(it.units)
            it.units = 0
        except BaseException as e:
            (<list> it.errors).append(e)
            if it.cancel != NULL:
                rnnx_flag_set(it.cancel)
            return True
    return False


cdef inline bint _stop(Interrupt *it, double work, Py_ssize_t units) noexcept nogil:
    """Counts work multiply-adds and units of progress done; says whether the loop must
    stop: another block stopped, or (in the calling thread's block, once `every`
    multiply-adds are done since the last look) a signal handler or the progress callback
    raised, whose exception then goes to errors and stops the other blocks. Called once
    per time step or lag; the look is a function of its own (written into _stop, it made
    the core's time loop at B = 1 measurably slower in back-to-back runs)."""
    if it.cancel != NULL and rnnx_flag_get(it.cancel):
        return True
    it.work += work
    it.units += units
    if not it.main or it.work < it.every:
        return False
    return _look(it)


cdef inline void _report_rest(Interrupt *it):
    """The progress not reported yet, at the end of a call that finished (with the GIL)."""
    if it.main and <object> it.progress is not None and it.units:
        (<object> it.progress)(it.units)
        it.units = 0
