# The data of float32 and float64 arrays, through the buffer protocol.
#
# Taking typed memoryviews of a handful of small arrays costs more than the arithmetic on
# them; the kernels that run on such arrays every training step (the optimizers' updates,
# the gradient norms, the non-finite scans) take the buffers directly instead.

from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS,
                             PyBUF_FORMAT, PyBUF_WRITABLE)


cdef inline int take_floats(object array, Py_buffer *view, bint writable) except -1:
    """view := the buffer of a C-contiguous float32 ('f') or float64 ('d') array, to be
    given back with PyBuffer_Release; ValueError (holding nothing) for any other array."""
    PyObject_GetBuffer(array, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT
                       | (PyBUF_WRITABLE if writable else 0))
    if view.format[0] in b"fd" and view.format[1] == 0:
        return 0
    PyBuffer_Release(view)
    raise ValueError(f"expected a C-contiguous float32 or float64 array; got "
                     f"{type(array).__name__} with buffer format {view.format!r}")
