"""Type stub of rnnx._core, the compiled kernels (src/_core.pyx).

Every array is C-contiguous, float32 or float64. The recurrence's kernels take arrays of
one dtype (the Cython fused type `floating`); rnnx.recurrence validates and converts before
calling. The reductions take lists of arrays of either dtype.
"""

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

def first_nonfinite(arrays: list[NDArray[np.float32] | NDArray[np.float64]]) -> int: ...
def l2_norms(arrays: list[NDArray[np.float32] | NDArray[np.float64]]) -> list[float]: ...
def median_and_mad(values: NDArray[np.float64]) -> tuple[float, float]: ...
def forward(
    x: NDArray[_F],
    W_xh: NDArray[_F],
    W_hh: NDArray[_F],
    b_h: NDArray[_F],
    h0: NDArray[_F] | None,
    own_kernel: bool,
) -> NDArray[_F]: ...
def backward(
    x: NDArray[_F],
    h: NDArray[_F],
    grad_h: NDArray[_F],
    W_xh: NDArray[_F],
    W_hh: NDArray[_F],
    h0: NDArray[_F] | None,
    max_norm: float,
    clip_delta: float,
    keep_delta: bool,
    work: NDArray[_F],
    own_kernel: bool,
) -> tuple[
    int,
    float,
    NDArray[np.float64],
    tuple[NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F], NDArray[_F] | None]
    | None,
]: ...
def jacobian_log_norms(
    h: NDArray[_F], W_hh: NDArray[_F], frobenius: bool
) -> NDArray[np.float64]: ...
