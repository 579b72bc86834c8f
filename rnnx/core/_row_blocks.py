"""The time loops of the recurrence on several threads, one block of batch rows each.

The B sequences of a batch are independent, so the forward and backward time loops of
disjoint blocks of rows can run at once (the core's loops release the GIL), and so can
the gradients' GEMMs over disjoint ranges of the T*B rows. The time loop is the part of
a call that BLAS cannot spread over cores: its per-step products are too small to split
well. benchmarks/row_blocks.py measures the effect: with 2 threads, forward + BPTT at
(T, B, D, H) = (200, 32, 32, 128) took 0.69 (float32) and 0.57 (float64) of the time of
one block, at (100, 64, 64, 256) 0.75 in both.

How many blocks: the thread budget is scipy's BLAS thread count (set by threadpoolctl or
OPENBLAS_NUM_THREADS, so a user who limits BLAS to one thread gets one). Blocks are used
only where the core's own kernel does each block's per-step product (AVX-512, H a
multiple of 32, at least 4 rows a block), where OpenBLAS can be put on one thread
quietly while they run (rnnx.core._blas_threads.serial_blas), and where the work is large
enough to pay for the hand-offs to the threads (_MIN_WORK).
"""
import os
from concurrent.futures import ThreadPoolExecutor, wait

from .. import _core
from ._blas_threads import blas_threads, can_serialise

__all__ = ["row_blocks", "run_blocks"]

_MIN_ROWS = 4               # the own kernel's tile height
# The work T * B * H * H (twice that in float64, whose multiply-adds take about twice as
# long) below which one block is faster: a forward + backward hands two or three jobs to
# the threads, and each hand-off costs. benchmarks/row_blocks.py with 2 threads, blocks
# against one block: at (T, B, H) = (50, 16, 64), 3.3e6, 1.7 times as long in float32 and
# 1.1 in float64; at (50, 32, 64) and (100, 16, 64), 6.6e6, 1.03-1.07 in float32 and
# 0.86-0.87 in float64; at (100, 32, 64), 1.3e7, 0.77-0.86 and 0.65-0.85 (two runs).
_MIN_WORK = 1 << 23

_pool, _pool_size = None, 0     # worker threads, made on first use


def _forget_pool():
    # a fork()ed child has none of the parent's threads: it must make its own pool
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def row_blocks(T, B, H, itemsize):
    """[(r0, r1), ...]: the blocks of batch rows whose time loops run on separate threads,
    each with the core's own kernel (one block covering every row when threads do not
    pay). itemsize: 4 for float32, 8 for float64."""
    if B < 2 * _MIN_ROWS or T * B * H * H * (itemsize // 4) < _MIN_WORK:
        return [(0, B)]
    n = min(blas_threads() or 1, B // _MIN_ROWS)
    if n < 2 or not _core.small_gemm_fits(B // n, H) or not can_serialise():
        return [(0, B)]
    # edges on multiples of the tile height, as even as that allows; rounding down keeps
    # every block at least B // n >= 4 rows high
    edges = [0] + [_MIN_ROWS * (B * k // (n * _MIN_ROWS)) for k in range(1, n)] + [B]
    return list(zip(edges[:-1], edges[1:]))


def run_blocks(fn, blocks):
    """[fn(k, r0, r1) for each block k]: the first block in this thread, the others on
    worker threads at the same time."""
    global _pool, _pool_size
    if len(blocks) == 1:
        return [fn(0, *blocks[0])]
    if _pool_size < len(blocks) - 1:
        _pool, _pool_size = ThreadPoolExecutor(len(blocks) - 1, "rnnx"), len(blocks) - 1
    others = [_pool.submit(fn, k, r0, r1) for k, (r0, r1) in enumerate(blocks) if k]
    try:
        first = fn(0, *blocks[0])
    finally:
        wait(others)        # they write into the caller's arrays: never return before them
    return [first] + [f.result() for f in others]
