"""The kernel plan of one call: which kernel makes the per-step products, which gradients
the backward time loop adds up itself, and which blocks of batch rows run on threads.

Decided in one place, make_plan, from the shape, the dtype, the CPU (which variant of the
register-blocked kernel of src/_small_gemm.h runs here, rnnx.core.kernels, and the shapes
it takes) and the thread budget (rnnx.core.threads.thread_budget, fixed per process).
The wrappers of rnnx.core.recurrence and the benchmarks both run what a Plan says;
nothing in the plan depends on what other threads do, so neither does any bit of a
result.

The figures behind the thresholds are measured by benchmarks/row_blocks.py (blocks
against one block, BLAS against the register-blocked kernel) and quoted in the README.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .. import _core
from .kernels import kernel_in_force
from .threads import thread_budget

__all__ = ["Plan", "make_plan", "MIN_ROWS", "MIN_ROWS_FLOAT64", "MIN_WORK",
           "THREADED_PRODUCT", "HOIST_BYTES_PER_ROW"]

MIN_ROWS = 4                # the smallest block of rows (the AVX-512 tile height)
# The smallest block of float64 rows: two tiles of the float64 kernel (6 rows). A block of
# 8 float64 rows is a full tile and a third of one, and 2 such blocks took longer than
# one block of 16 or 20 rows (benchmarks/row_blocks.py, README).
MIN_ROWS_FLOAT64 = 12
# The work T * B * H * H (twice that in float64, whose multiply-adds take about twice as
# long) below which one block is faster than several: a forward + backward hands two or
# three jobs to the threads, and each hand-off costs -- on a virtual machine whose idle
# CPU must first be woken, up to milliseconds (benchmarks/row_blocks.py), so the
# threshold keeps a wide margin: a second thread must never make a call slower.
MIN_WORK = 1 << 25
# B*H*H from which a BLAS running several threads beats the register-blocked kernel (one
# thread) for one block's per-step product.
THREADED_PRODUCT = 1 << 21
# Bytes of dW_hh (H*H*itemsize) per row of a block above which dW_hh is one GEMM after the
# backward loop rather than added up in it. Inside the loop every step reads and writes
# all of dW_hh for 2*rows*H*H flops: once dW_hh outgrows the core's cache next to W_hh,
# a block of few rows waits on memory, while the GEMM after the loop (over every step's
# rows at once) runs at BLAS's full rate (benchmarks/kernels.py --hoist compares both).
HOIST_BYTES_PER_ROW = 1 << 14


@dataclass(frozen=True)
class Plan:
    """How one forward + backward of a (T, B, D, H) problem runs.

    blocks: ((r0, r1), ...) the blocks of batch rows whose time loops run at once, one per
        thread (rnnx.core.threads.run_blocks); a single (0, B) for one thread.
    step_kernel: the register-blocked kernel makes each step's products by W_hh (and, in
        the forward pass, by W_xh: each step projects its own inputs); else BLAS, after one
        GEMM that projects every step's inputs.
    dW_hh_in_loop: the backward time loop adds up dW_hh while dz[t] is in cache, unless
        dW_hh is too large for the rows of a block (HOIST_BYTES_PER_ROW): then it is one
        GEMM after the loop, like the gradients below.
    all_in_loop: with dW_hh_in_loop, the loop also makes dW_xh, dx and dh0, so no pass
        over every step's dz is left (backward_gemms makes them otherwise, split over the
        blocks' threads with one BLAS thread each): where the register-blocked kernel fits
        D, and always with blocks, whose loops make no BLAS call (plain loops make the
        products by W_xh the kernel does not tile).
    dx_kernel: dx's per-step product is the register-blocked kernel's (else BLAS).
    blas_threads: the threads the call's BLAS calls may use (rnnx.core.threads.blas_limit):
        None where it makes none (the register-blocked kernel for every product), or
        where blocks run (their loops make none, and the GEMMs after them run on the
        blocks' threads under a limit of their own), the budget where the per-step
        products are BLAS's on its threads, else 1 -- small products on one thread,
        whatever the process's BLAS setting.
    kernel: the variant of the register-blocked kernel ("avx512", "avx2", "generic"), or
        "blas" where none runs (rnnx.core.kernels).
    """

    blocks: tuple[tuple[int, int], ...]
    step_kernel: bool
    dW_hh_in_loop: bool
    all_in_loop: bool
    dx_kernel: bool
    blas_threads: int | None = 1
    kernel: str = "blas"


def _row_blocks(T, B, H, itemsize, threads, min_work, least, fits):
    """The blocks of batch rows for a budget of threads: as many as the threads and the
    rows allow, each at least `least` (>= MIN_ROWS) high and with the register-blocked
    kernel, where the work pays for the hand-offs; else one block of every row."""
    one = ((0, B),)
    if B < 2 * least or T * B * H * H * (itemsize // 4) < min_work:
        return one
    n = min(threads, B // least)
    if n < 2 or not fits(B // n, H):
        return one
    # edges on multiples of MIN_ROWS, as even as that allows; rounding down keeps every
    # block at least MIN_ROWS * (B // (n * MIN_ROWS)) >= least rows high
    edges = [0] + [MIN_ROWS * (B * k // (n * MIN_ROWS)) for k in range(1, n)] + [B]
    return tuple(zip(edges[:-1], edges[1:]))


def make_plan(T, B, D, H, dtype, *, threads=None, min_work=None, kernel=None,
              hoist_bytes=None):
    """The Plan of a (T, B, D, H) forward + backward in dtype (float32 or float64).

    threads: the thread budget (default rnnx.core.threads.thread_budget()); min_work: the
    work from which blocks are used (default MIN_WORK; benchmarks/row_blocks.py passes 0
    to time blocks everywhere they can run); kernel: the variant of the register-blocked
    kernel, one this CPU runs, or "blas" (default rnnx.core.kernels.kernel_in_force());
    hoist_bytes: the bytes of dW_hh per row of a block above which dW_hh is made after the
    backward loop (default HOIST_BYTES_PER_ROW; 0 always after it, inf always in it where
    the kernel fits: benchmarks/kernels.py --hoist times both).
    """
    itemsize = np.dtype(dtype).itemsize
    return _plan(T, B, D, H, itemsize,
                 thread_budget() if threads is None else threads,
                 MIN_WORK if min_work is None else min_work,
                 MIN_ROWS if itemsize == 4 else MIN_ROWS_FLOAT64, _core,
                 kernel_in_force() if kernel is None else kernel,
                 HOIST_BYTES_PER_ROW if hoist_bytes is None else hoist_bytes)


@functools.lru_cache(maxsize=256)
def _plan(T, B, D, H, itemsize, threads, min_work, least, core, kernel, hoist_bytes):
    """make_plan's Plan, kept for the next call of the same shape (a training loop makes
    two per step). core: the compiled module, whose small_gemm_fits says which shapes the
    register-blocked kernel takes (tests stand in another CPU's)."""

    def fits(m, n):
        return kernel != "blas" and core.small_gemm_fits(m, n)

    blocks = _row_blocks(T, B, H, itemsize, threads, min_work, least, fits)
    rows = min(r1 - r0 for r0, r1 in blocks)
    # With several blocks each uses the register-blocked kernel, also where one block would
    # use BLAS's threads on every step's whole product.
    step = len(blocks) > 1 or B * H * H < THREADED_PRODUCT or threads == 1
    step_kernel = step and fits(rows, H)
    # the weight gradients in the loop add rows-long products: of fewer rows than a
    # tile (benchmarks/kernels.py at B = 1), or of too few for dW_hh's size, one GEMM
    # after the loop is faster
    in_loop = (step_kernel and fits(H, H)
               and H * H * itemsize <= rows * hoist_bytes)
    all_in_loop = in_loop and (fits(H, D) or len(blocks) > 1)
    dx_kernel = all_in_loop and fits(rows, D)
    no_blas = len(blocks) > 1 or (step_kernel and dx_kernel)
    return Plan(blocks=blocks,
                step_kernel=step_kernel,
                dW_hh_in_loop=in_loop,
                all_in_loop=all_in_loop,
                dx_kernel=dx_kernel,
                blas_threads=None if no_blas else 1 if step else threads,
                kernel=kernel if step_kernel else "blas")
