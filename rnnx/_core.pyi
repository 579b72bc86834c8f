"""Type stub of rnnx._core, the compiled kernels (src/_core.pyx).

Every array is C-contiguous, float32 or float64. The recurrence's kernels take arrays of
one dtype (the Cython fused type `floating`); rnnx.core.recurrence validates and converts before
calling.
"""

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

KERNELS: tuple[str, ...]

def kernel_runs(name: str) -> bool: ...
def small_gemm_fits(m: int, n: int) -> bool: ...
def panels(M: NDArray[_F]) -> NDArray[_F]: ...
def project(x: NDArray[_F], W_xh: NDArray[_F]) -> NDArray[_F]: ...

STOPPED: int

def recur(
    x: NDArray[_F],
    h: NDArray[_F],
    W_hh_T: NDArray[_F],
    b_h: NDArray[_F],
    *,
    r0: int,
    r1: int,
    h0: NDArray[_F] | None = None,
    W_xh_T: NDArray[_F] | None = None,
    W_hh_P: NDArray[_F] | None = None,
    W_xh_P: NDArray[_F] | None = None,
    kernel: str | None = None,
    cancel: NDArray[np.intc] | None = None,
) -> int: ...
def backward_steps(
    x: NDArray[_F],
    h: NDArray[_F],
    grad_h: NDArray[_F],
    W_xh: NDArray[_F],
    W_hh: NDArray[_F],
    *,
    r0: int,
    r1: int,
    max_norm: float,
    clip_delta: float,
    work: NDArray[_F],
    norms: NDArray[np.float64],
    db_h: NDArray[_F],
    h0: NDArray[_F] | None = None,
    kept: NDArray[_F] | None = None,
    dW_hh: NDArray[_F] | None = None,
    dW_xh: NDArray[_F] | None = None,
    dx: NDArray[_F] | None = None,
    dh0: NDArray[_F] | None = None,
    W_hh_P: NDArray[_F] | None = None,
    W_xh_P: NDArray[_F] | None = None,
    blas: bool = True,
    kernel: str | None = None,
    cancel: NDArray[np.intc] | None = None,
) -> int: ...
def backward_gemms(
    x: NDArray[_F],
    h: NDArray[_F],
    work: NDArray[_F],
    W_xh: NDArray[_F],
    W_hh: NDArray[_F],
    *,
    dx: NDArray[_F],
    dh0: NDArray[_F],
    with_dW_hh: bool,
    h0: NDArray[_F] | None = None,
) -> tuple[NDArray[_F], NDArray[_F] | None]: ...
