"""rnnx's threads: the thread budget, the worker threads that run blocks of batch rows, and
the thread count of the BLAS behind scipy.linalg.cython_blas.

The B sequences of a batch are independent, so the forward and backward time loops of
disjoint blocks of rows can run at once (the core's loops release the GIL). The time loop
is the part of a call that BLAS cannot spread over cores: its per-step products are too
small to split well. rnnx.core.plan decides the blocks; run_blocks runs them.

The budget is fixed per process (thread_budget), never read from BLAS at call time: the
plan, and so every bit of a result, must not depend on what other threads do to the BLAS
thread count (threadpoolctl.threadpool_limits, or serial_blas) while a call runs. The
core's time loops make no BLAS call where the plan has blocks, so the core itself never
changes the BLAS thread count; serial_blas is there for callers that run BLAS calls on
threads of their own.

After fork() the child has only the forking thread: the fork handler gives it a fresh
pool, fresh locks, and the BLAS thread count the parent had before any serial_blas.
"""
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

__all__ = ["thread_budget", "set_thread_budget", "run_blocks", "blas_threads",
           "can_serialise", "serial_blas"]

_ENV = ("RNNX_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
_budget = None


def _threads_from_environment():
    """The first of $RNNX_NUM_THREADS, $OPENBLAS_NUM_THREADS, $OMP_NUM_THREADS that is a
    positive int, else the CPUs this process may run on."""
    for name in _ENV:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_budget():
    """How many threads one rnnx call may use: set_thread_budget's, else read once per
    process from the environment (_threads_from_environment), like the BLAS's own count."""
    global _budget
    if _budget is None:
        _budget = _threads_from_environment()
    return _budget


def set_thread_budget(n):
    """Fix the thread budget of later calls to n >= 1 (None: from the environment again).
    Returns the budget it replaces. Calls already running keep their plan."""
    global _budget
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"the thread budget must be an int >= 1 or None; got {n!r}")
    old, _budget = thread_budget(), n
    return old


_pool_lock = threading.Lock()
_pool, _pool_size = None, 0     # worker threads, made on first use


def run_blocks(fn, blocks):
    """[fn(k, r0, r1) for each block k]: the first block in this thread, the others on
    worker threads at the same time."""
    global _pool, _pool_size
    if len(blocks) == 1:
        return [fn(0, *blocks[0])]
    with _pool_lock:
        if _pool_size < len(blocks) - 1:
            _pool, _pool_size = ThreadPoolExecutor(len(blocks) - 1, "rnnx"), len(blocks) - 1
        pool = _pool
    others = [pool.submit(fn, k, r0, r1) for k, (r0, r1) in enumerate(blocks) if k]
    try:
        first = fn(0, *blocks[0])
    finally:
        wait(others)        # they write into the caller's arrays: never return before them
    return [first] + [f.result() for f in others]


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
    """Threads of scipy's BLAS now; None when it is not one threadpoolctl can find."""
    lib = _scipy_blas()
    return None if lib is None else lib.get_num_threads()


@functools.cache
def _set_threads_quietly():
    """OpenBLAS's openblas_set_num_threads_local (recent OpenBLAS; scipy's wheels here ship
    0.3.30), None without it.

    It changes the thread count like openblas_set_num_threads but leaves the idle worker
    threads asleep, where openblas_set_num_threads wakes them to spin.
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
    """scipy's BLAS on one thread while the block runs (a no-op without can_serialise()).

    For threads of a caller's own that make BLAS calls, which must not start BLAS threads
    of their own. Nested and concurrent uses share one count, restored when the last one
    ends; meanwhile scipy's BLAS runs one thread for every caller in the process (a
    threadpool_limits entered in another thread meanwhile sees one thread as its
    original). The core's calls never use it (see the module's docstring).
    """
    global _serial_depth, _saved_threads
    set_threads = _set_threads_quietly()
    if set_threads is None:
        yield
        return
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


def _after_fork_in_child():
    """The child of fork() has none of the parent's other threads: a fresh pool and fresh
    locks (one held by a thread that does not exist here would never be released), and the
    BLAS thread count the parent had before a serial_blas that was running at the fork."""
    global _pool, _pool_size, _pool_lock, _lock, _serial_depth
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()
    if _serial_depth:
        _set_threads_quietly()(_saved_threads)
    _serial_depth, _lock = 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    # _lock held across fork(), so that the child never sees serial_blas half way through
    # changing the count and the depth; it is never held for long
    os.register_at_fork(before=lambda: _lock.acquire(),
                        after_in_parent=lambda: _lock.release(),
                        after_in_child=_after_fork_in_child)
