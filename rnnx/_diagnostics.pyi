"""Type stub of rnnx._diagnostics, the compiled kernels of the diagnostics
(src/_diagnostics.pyx, with src/_spectral_norm.pxd, src/_qr_frames.pxd and
src/_diag_shared.pxd): Jacobian log-norms and the QR method's sums for Lyapunov exponents.

h is C-contiguous float32 or float64; W and the outputs are float64. Both kernels work on
the samples b0:b1 and return (status, LAPACK info); rnnx.diagnostics raises from them.
"""

from typing import Callable, TypeVar

import numpy as np
from numpy.typing import NDArray

_F = TypeVar("_F", np.float32, np.float64)

STATUS_OK: int
STATUS_STOPPED: int
STATUS_LAPACK_FAILED: int

def jacobian_log_norms(
    h: NDArray[_F],
    W: NDArray[np.float64],
    frobenius: bool,
    L: NDArray[np.float64],
    b0: int,
    b1: int,
    stop: NDArray[np.int32],
    progress: Callable[[int], object] | None,
    errors: list[BaseException],
    main: bool,
    kernel: str | None = None,
) -> tuple[int, int]: ...
def lyapunov_sums(
    h: NDArray[_F],
    W: NDArray[np.float64],
    k: int,
    discard: int,
    window: int,
    sums: NDArray[np.float64],
    b0: int,
    b1: int,
    stop: NDArray[np.int32],
    progress: Callable[[int], object] | None,
    errors: list[BaseException],
    main: bool,
) -> tuple[int, int]: ...
