"""How a diagnostics call uses threads, decided once per call from its shape.

The samples of a batch are independent, so with a thread budget of two or more and B >= 2
the kernels of rnnx._diagnostics run on disjoint blocks of samples at once, each on one
BLAS thread (the kernels call scipy's BLAS only: numpy's has worker threads of its own,
and a numpy SVD in each block made two blocks 200x slower than one). With one block, a product large enough to gain runs on the BLAS threads; a smaller
one runs on one thread, whatever the process's BLAS setting: threaded BLAS on small
per-lag products, its idle workers spinning against a busy machine, was up to 900x slower
(issue 14). The trajectory the kernels follow is computed on one BLAS thread too: its
products are H times smaller than the kernels', and BLAS's workers, once woken, spin for
tens of milliseconds, taking a core from the kernels that follow. benchmarks/diagnostics.py
measures both.
"""
from contextlib import nullcontext

import numpy as np

from .. import _diagnostics
from ..core.kernels import kernel_in_force
from ..core.threads import SPLIT_WORK, can_serialise, run_blocks, serial_blas, thread_budget

__all__ = ["run_samples", "one_blas_thread", "sample_blocks", "product_kernel"]

# multiply-adds of one product from which it runs on the BLAS threads: (H, H) @ (H, H) at
# H = 1024. Below that, 2 BLAS threads were slower than one on a busy machine (their
# workers spin against other work; benchmarks/diagnostics.py measures it), so smaller
# products stay on one thread.
_THREADED_PRODUCT = 1 << 30


def one_blas_thread():
    """A context with scipy's BLAS on one thread (without waking its workers), where that
    can be done; else the BLAS setting as it is."""
    return serial_blas() if can_serialise() else nullcontext()


def sample_blocks(B, product, work):
    """(blocks, context): the blocks of samples and the BLAS setting they run under, from
    the batch size B, the multiply-adds of one per-step product, those of the whole call
    (work) and the thread budget. Samples are split only where the work pays for the
    hand-off to a thread (core.threads.SPLIT_WORK, the rule of the Python layer's
    products): a finite-time exponent along a few short sequences, as EarlyWarning samples
    every few training steps, stays on the calling thread."""
    threads = thread_budget()
    quiet = can_serialise()
    if threads >= 2 and B >= 2 and quiet and work >= SPLIT_WORK:
        n = min(threads, B)
        edges = [B * i // n for i in range(n + 1)]
        return list(zip(edges[:-1], edges[1:])), serial_blas
    if threads >= 2 and product >= _THREADED_PRODUCT:
        return [(0, B)], nullcontext
    return [(0, B)], serial_blas if quiet else nullcontext


def product_kernel(B, product, work):
    """The kernel that makes the call's per-lag products (rnnx.core.kernels: the
    register-blocked kernel in force, one thread), or "blas" where sample_blocks leaves
    products large enough to gain to BLAS's threads."""
    _, context = sample_blocks(B, product, work)
    if context is nullcontext and product >= _THREADED_PRODUCT:
        return "blas"
    return kernel_in_force()


def run_samples(kernel, B, product, work, progress=None):
    """Run kernel(b0, b1, stop, progress, errors, main) -> (status, info) over blocks of the
    B samples; product is the multiply-adds of one of its per-step products, work those of
    the whole call. progress(n)
    gets the units done by all samples (estimated from the first block's). Raises the
    exception that stopped a block (KeyboardInterrupt on Ctrl-C) or, for a LAPACK failure,
    FloatingPointError."""
    blocks, context = sample_blocks(B, product, work)
    stop, errors = np.zeros(1, np.int32), []
    share = B / (blocks[0][1] - blocks[0][0])
    report = None if progress is None else (lambda n: progress(n * share))
    with context():
        results = run_blocks(lambda i, b0, b1: kernel(b0, b1, stop, report if i == 0 else None,
                                                      errors, i == 0), blocks)
    if errors:
        raise errors[0]
    for status, info in results:
        if status == _diagnostics.STATUS_LAPACK_FAILED:
            raise FloatingPointError(f"LAPACK reported info={info} in a diagnostics kernel")
        if status != _diagnostics.STATUS_OK:       # a block stopped by another one
            raise KeyboardInterrupt
