"""Which build of the register-blocked kernel (src/_small_gemm.h) makes the per-step
products: the fastest this CPU runs ("auto"), or one forced for tests and benchmarks.

    rnnx.set_kernel("avx2")         # this process, from the next call on
    RNNX_KERNEL=generic python ...  # the same, read when no set_kernel is in force

The variants: "avx512" (x86-64 with AVX-512), "avx2" (x86-64-v3), "generic" (the baseline
of the architecture: SSE2 on x86-64, NEON on arm64), each built where the compiler can
(not with MSVC), and "blas" (scipy's BLAS makes every product: what a build without the
kernel runs). Every variant gives the same results up to rounding; a call runs one
variant from start to end (its Plan names it), so setting another one while calls run
changes only later calls.
"""
from __future__ import annotations

import functools
import os

from .. import _core

__all__ = ["KERNEL_NAMES", "available_kernels", "kernel_in_force", "set_kernel"]

KERNEL_NAMES = ("auto", "avx512", "avx2", "generic", "blas")
_ENVIRONMENT = "RNNX_KERNEL"
_forced = None          # set_kernel's choice, resolved; None: the environment's, else auto


def available_kernels():
    """The kernels this build of rnnx runs on this CPU, fastest first; "blas" last (it
    runs everywhere)."""
    return tuple(k for k in _core.KERNELS if _core.kernel_runs(k)) + ("blas",)


@functools.lru_cache(maxsize=None)
def _resolve(name, source):
    """The variant that name (one of KERNEL_NAMES) makes run here; ValueError naming
    source for any other name, or for a variant this build or CPU cannot run."""
    if not isinstance(name, str) or name not in KERNEL_NAMES:
        raise ValueError(f"{source} must be one of {KERNEL_NAMES}; got {name!r}")
    runs = available_kernels()
    if name == "auto":
        return runs[0]
    if name not in runs:
        why = ("needs instructions this CPU lacks" if name in _core.KERNELS
               else "was not built into this rnnx (a compiler without vector extensions, "
                    "or another architecture)")
        raise ValueError(f"{source}={name!r} cannot run here: that kernel {why}; this "
                         f"machine runs {runs} (or 'auto')")
    return name


def set_kernel(name):
    """Force the kernel of the per-step products for this process: one of
    "auto" | "avx512" | "avx2" | "generic" | "blas", or None to go back to the
    RNNX_KERNEL environment variable (else "auto"). Returns the previous setting (a
    name, or None), so that `old = set_kernel("blas"); ...; set_kernel(old)` restores
    it. Raises ValueError for an unknown name or a variant this CPU cannot run."""
    global _forced
    old = _forced
    _forced = None if name is None else _resolve(name, "kernel")
    return old


def kernel_in_force():
    """The variant the next call's plan uses: set_kernel's, else RNNX_KERNEL's, else the
    fastest this CPU runs ("blas" when none)."""
    if _forced is not None:
        return _forced
    return _resolve(os.environ.get(_ENVIRONMENT) or "auto", _ENVIRONMENT)
