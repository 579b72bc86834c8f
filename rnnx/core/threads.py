"""rnnx's threads: the thread budget, the worker threads that run blocks of batch rows, the
thread counts of the BLAS libraries rnnx calls, and the rule for products in the Python
layer.

The B sequences of a batch are independent, so the forward and backward time loops of
disjoint blocks of rows can run at once (the core's loops release the GIL). The time loop
is the part of a call that BLAS cannot spread over cores: its per-step products are too
small to split well. rnnx.core.plan decides the blocks; run_blocks runs them.

The budget is fixed per process (thread_budget), never read from BLAS at call time: the
plan, and so every bit of a result, must not depend on what other threads do to the BLAS
thread count (threadpoolctl.threadpool_limits, or blas_limit) while a call runs.

rnnx calls two BLAS libraries, each with its own pool of worker threads: scipy's (the
core, through scipy.linalg.cython_blas) and numpy's (numpy.dot and @ in the Python layer).
Handed a product, OpenBLAS wakes its workers and splits it, and afterwards they spin for
tens of milliseconds before they sleep. On small products the hand-off costs more than it
saves, and the spinning workers take a core from the next call's work (rnnx's own blocks,
or another process): threaded BLAS made a training step at Pascanu's sizes several times
slower than one thread (issue 14; benchmarks/threads.py measures it). So no rnnx call
hands small work to BLAS's threads, whatever the process's setting:
  * the core's calls run under blas_limit(plan.blas_threads): none where they make no BLAS
    call (the register-blocked kernel everywhere) or where blocks run (their time loops
    make none; the GEMMs after them run on the blocks' threads, one BLAS thread each), one
    thread for small BLAS products, BLAS's threads only where the plan chose them for
    large per-step products;
  * the model's calls (readout, loss, Omega) run under the same limit, one thread where
    the core makes no BLAS call, and make their large products with matmul: split over
    rnnx's own threads (which sleep when idle instead of spinning), one BLAS thread each.

After fork() the child has only the forking thread: the fork handler gives it a fresh
pool, fresh locks, and the BLAS thread counts the parent had before any blas_limit.
"""
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

__all__ = ["thread_budget", "set_thread_budget", "run_blocks", "blas_threads",
           "can_serialise", "blas_limit", "serial_blas", "product_blocks", "matmul",
           "SPLIT_WORK"]

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


def _package_dir(name):
    import importlib
    return Path(importlib.import_module(name).__file__).resolve().parent


@functools.cache
def _rnnx_blas():
    """threadpoolctl's controllers of the BLAS libraries rnnx calls, scipy's first: the one
    scipy's wheel ships (cython_blas, the core's) and the one numpy's ships (numpy.dot and
    @ in the Python layer) -- two different libraries, each with its own thread pool -- or
    a shared system BLAS that both link."""
    from threadpoolctl import ThreadpoolController
    homes = [_package_dir("scipy"), _package_dir("numpy")]
    site = homes[0].parent
    found = {}
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api != "blas" or not lib.filepath:
            continue
        path = Path(lib.filepath).resolve()
        # wheels keep their BLAS beside the package: scipy.libs/ or scipy/.dylibs/; a
        # library outside site-packages is a system one that numpy and scipy link
        for rank, home in enumerate(homes):
            if path.parent.name == home.name + ".libs" or home in path.parents:
                found.setdefault(path, (rank, lib))
        if site not in path.parents:
            found.setdefault(path, (0, lib))
    return [lib for _, lib in sorted(found.values(), key=lambda item: item[0])]


def _scipy_blas():
    """threadpoolctl's controller of the BLAS scipy ships (None: not found)."""
    libs = _rnnx_blas()
    return libs[0] if libs else None


def blas_threads():
    """Threads of scipy's BLAS now; None when it is not one threadpoolctl can find."""
    lib = _scipy_blas()
    return None if lib is None else lib.get_num_threads()


@functools.cache
def _setters():
    """([(get, set)] of every OpenBLAS in _rnnx_blas, whether every set is quiet).

    set is openblas_set_num_threads_local where the library has it (recent OpenBLAS; the
    wheels here ship 0.3.30 and 0.3.31), which changes the thread count like
    openblas_set_num_threads but leaves the idle worker threads asleep; else
    openblas_set_num_threads itself (threadpoolctl's).
    """
    import ctypes
    setters, quiet = [], True
    for lib in _rnnx_blas():
        if lib.internal_api != "openblas":
            continue
        dll = ctypes.CDLL(lib.filepath)
        fn = None
        for name in ("openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local"):
            fn = fn or getattr(dll, name, None)
        if fn is None:
            fn, quiet = lib.set_num_threads, False
        else:
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        setters.append((lib.get_num_threads, fn))
    return setters, quiet and bool(setters)


def can_serialise():
    """Whether blas_limit (and serial_blas) can set the thread count of every OpenBLAS
    rnnx calls without waking it."""
    return _setters()[1]


_lock = threading.Lock()
_sections = []          # the blas_limit sections running now, oldest first
_saved = _current = None   # each BLAS's count before the first of them; the count set now


def _apply():
    """Set every BLAS to the newest section's limit (never above its count before the
    first section), or back to that count when no section runs; only where it changes."""
    global _current
    setters = _setters()[0]
    want = [min(s, _sections[-1].limit) if _sections else s for s in _saved]
    for k, ((_, set_threads), n) in enumerate(zip(setters, want)):
        if _current[k] != n:
            set_threads(n)
    _current = want


class blas_limit:
    """The BLAS libraries rnnx calls (numpy's and scipy's) on at most `threads` threads
    while the block runs (None: the count is left alone; a no-op where rnnx calls no
    OpenBLAS).

    Sections nest: the newest one running sets the count, and the count before the first
    one is restored when the last one ends. The count is process-wide, so meanwhile it
    holds for every thread of the process, and a threadpool_limits entered in another
    thread sees it as its original. A class rather than a generator: training enters one
    per step, and this keeps the section's own cost to a few microseconds.
    """

    __slots__ = ("limit",)

    def __init__(self, threads):
        self.limit = threads

    def __enter__(self):
        global _saved, _current
        if self.limit is None or not _setters()[0]:
            return self
        with _lock:
            if not _sections:
                _saved = [get() for get, _ in _setters()[0]]
                _current = list(_saved)
            _sections.append(self)
            _apply()
        return self

    def __exit__(self, *exc):
        if self.limit is None or not _setters()[0]:
            return
        with _lock:
            # by identity, from the newest: sections of another thread may have begun since
            for i in range(len(_sections) - 1, -1, -1):
                if _sections[i] is self:
                    del _sections[i]
                    break
            _apply()


def serial_blas():
    """blas_limit(1): the BLAS libraries rnnx calls on one thread while the block runs."""
    return blas_limit(1)


# The multiply-adds of one product from which rnnx splits it over its own threads, each
# block on one BLAS thread, rather than make it on one thread: below it the hand-off to a
# thread costs about what it saves (benchmarks/threads.py measures the products around it).
SPLIT_WORK = 1 << 24
MIN_SPLIT_ROWS = 32         # each block at least this many rows (or columns) of the output


def product_blocks(rows, work, threads=None):
    """The rule for a product of `work` multiply-adds done in the Python layer: the blocks
    ((i0, i1), ...) of its `rows` (the output dimension it is split along) that run at
    once, one per thread of the budget (threads, default thread_budget()); a single
    ((0, rows),) on one thread for small work."""
    n = min(thread_budget() if threads is None else threads, rows // MIN_SPLIT_ROWS)
    if n < 2 or work < SPLIT_WORK:
        return ((0, rows),)
    edges = [rows * k // n for k in range(n + 1)]
    return tuple(zip(edges[:-1], edges[1:]))


def matmul(a, b):
    """a @ b for 2-D a (m, k) and b (k, n) as product_blocks says: split along the longer
    of m and n over rnnx's threads where the work is large, on one thread otherwise; every
    block on one BLAS thread, so no BLAS worker is left spinning after it."""
    m, k = a.shape
    n = b.shape[1]
    out = np.empty((m, n), np.result_type(a, b))
    if m >= n:
        blocks = product_blocks(m, m * k * n)
        # out[i0:i1] := a[i0:i1] @ b   (i1 - i0, n) = (i1 - i0, k) @ (k, n)
        part = lambda j, i0, i1: np.matmul(a[i0:i1], b, out=out[i0:i1])   # noqa: E731
    else:
        blocks = product_blocks(n, m * k * n)
        # out[:, i0:i1] := a @ b[:, i0:i1]   (m, i1 - i0) = (m, k) @ (k, i1 - i0)
        part = lambda j, i0, i1: np.matmul(a, b[:, i0:i1], out=out[:, i0:i1])  # noqa: E731
    with serial_blas():
        run_blocks(part, blocks)
    return out


def _after_fork_in_child():
    """The child of fork() has none of the parent's other threads: a fresh pool and fresh
    locks (one held by a thread that does not exist here would never be released), and the
    BLAS thread counts the parent had before the blas_limit sections running at the fork."""
    global _pool, _pool_size, _pool_lock, _lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()
    if _sections:
        _sections.clear()
        _apply()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    # _lock held across fork(), so that the child never sees a blas_limit half way
    # through changing the counts and the sections; it is never held for long
    os.register_at_fork(before=lambda: _lock.acquire(),
                        after_in_parent=lambda: _lock.release(),
                        after_in_child=_after_fork_in_child)
