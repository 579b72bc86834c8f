"""Type stub of rnnx._updates, the optimizers' compiled update rules (src/_updates.pyx).

Each group is a tuple (param, grad, *state) of C-contiguous arrays of one dtype, float32 or
float64, and one size; params and state are updated in place. Every function returns -1,
or the index of the first group whose update would be non-finite (nothing is written then).
"""

from numpy.typing import NDArray

_Group = tuple[NDArray, ...]

def sgd(groups: list[_Group], scale: float, lr: float, momentum: float,
        nesterov: bool) -> int: ...
def adam(groups: list[_Group], scale: float, step_size: float, beta1: float, beta2: float,
         bias2: float, eps: float) -> int: ...
def rmsprop(groups: list[_Group], scale: float, lr: float, alpha: float, eps: float) -> int: ...
def adagrad(groups: list[_Group], scale: float, lr: float, eps: float) -> int: ...
