"""How many threads the BLAS behind scipy.linalg.cython_blas runs, asked at call time.

The core's per-step product has its own single-threaded kernel that beats one BLAS thread;
a BLAS that runs several threads beats it once the product is large, and rnnx's own
threads (rnnx.core._row_blocks) take their budget from it. threadpoolctl finds scipy's BLAS
among the loaded libraries once (a scan, done only when a call large enough to care
first asks); after that each question is one C call, so thread limits set later
(threadpoolctl.threadpool_limits, OPENBLAS_NUM_THREADS) are followed.
"""
import functools
import threading
from contextlib import contextmanager
from pathlib import Path

__all__ = ["blas_threads", "can_serialise", "serial_blas"]


@functools.cache
def _scipy_blas():
    """threadpoolctl's controller of the BLAS scipy ships (None: not found)."""
    import scipy
    from threadpoolctl import ThreadpoolController
    scipy_dir = Path(scipy.__file__).resolve().parent
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api != "blas" or not lib.filepath:
            continue
        path = Path(lib.filepath).resolve()
        # scipy's wheels keep their BLAS beside the package: scipy.libs/ or scipy/.dylibs/
        if path.parent.name == scipy_dir.name + ".libs" or scipy_dir in path.parents:
            return lib
    return None


def blas_threads():
    """Threads of scipy's BLAS; None when it is not one threadpoolctl can find."""
    lib = _scipy_blas()
    return None if lib is None else lib.get_num_threads()


@functools.cache
def _set_threads_quietly():
    """OpenBLAS's openblas_set_num_threads_local (recent OpenBLAS; scipy's wheels here ship
    0.3.30), None without it.

    It changes the thread count like openblas_set_num_threads but leaves the idle worker
    threads asleep, where openblas_set_num_threads wakes them to spin: setting the count
    back with it after every call left the next call's blocks as slow as one block.
    """
    lib = _scipy_blas()
    if lib is None or lib.internal_api != "openblas":
        return None
    import ctypes
    dll = ctypes.CDLL(lib.filepath)
    for name in ("openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local"):
        fn = getattr(dll, name, None)
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            return fn
    return None


def can_serialise():
    """Whether serial_blas() can put scipy's BLAS on one thread without waking it."""
    return _set_threads_quietly() is not None


_lock = threading.Lock()
_serial_depth, _saved_threads = 0, None


@contextmanager
def serial_blas():
    """scipy's BLAS on one thread while the block runs (needs can_serialise()).

    For rnnx's own threads (rnnx.core._row_blocks): they make BLAS calls of their own, which
    must not start BLAS threads, and an OpenBLAS worker spinning after a threaded call
    takes the core one of them needs (right after a 2-thread GEMM two blocks were no
    faster than one). Nested and concurrent uses share one count, restored when the last
    one ends; meanwhile scipy's BLAS runs one thread for every caller in the process.
    """
    global _serial_depth, _saved_threads
    set_threads = _set_threads_quietly()
    with _lock:
        if _serial_depth == 0:
            _saved_threads = set_threads(1)
        _serial_depth += 1
    try:
        yield
    finally:
        with _lock:
            _serial_depth -= 1
            if _serial_depth == 0:
                set_threads(_saved_threads)
