"""What the training loop iterates over: batches, (x, target) pairs, truncated-BPTT windows.

Everything here is time-major, (T, B, ...), as the core computes; time_major turns a
batch given batch-first, (B, T, ...), into views of that layout.
"""
from __future__ import annotations

import numpy as np

from ..tasks import Task

__all__ = ["pairs", "pair", "batches", "windows", "time_major"]


def _is_single_pair(data):
    return isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray)


def pairs(data, name):
    """data as a list of (x, target) pairs: one pair, or an iterable of pairs."""
    if _is_single_pair(data):
        return [data]
    try:
        items = list(data)
    except TypeError:
        raise TypeError(f"{name} must be an (x, target) pair or an iterable of pairs; got "
                        f"{type(data).__name__}") from None
    for item in items:
        pair(item, name)
    return items


def pair(item, name="data"):
    """item, checked to be an (x, target) pair."""
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise TypeError(f"each batch of {name} must be an (x, target) pair; got "
                        f"{type(item).__name__}")
    return item


def time_major(x, target, per_step):
    """A batch-first (x, target) as time-major views: x (B, T, D) -> (T, B, D), and a
    per-step target (B, T, ...) -> (T, B, ...) (a per-sequence one stays as it is)."""
    x, target = np.asarray(x), np.asarray(target)
    if x.ndim != 3:
        raise ValueError(f"x must be 3-D, batch-first (B, T, D) with batch_first=True; got "
                         f"shape {x.shape}")
    if per_step:
        if target.ndim < 2:
            raise ValueError(f"a per-step target must be batch-first (B, T, ...) with "
                             f"batch_first=True; got shape {target.shape}")
        target = target.swapaxes(0, 1)
    return x.swapaxes(0, 1), target


def batches(data, batch_size, epochs, rng):
    """(new_epoch, x, target): endless for a Task, else epochs passes over data."""
    if isinstance(data, Task):
        while True:
            yield (False, *data.generate(batch_size, rng))
    if _is_single_pair(data):
        raise TypeError("data must be an iterable of (x, target) batches; for a single batch "
                        "pass [(x, target)]")
    for epoch in range(epochs or 1):
        it = iter(data)
        if epoch > 0 and it is data:
            raise ValueError("epochs > 1 needs data that can be iterated again (a list, "
                             "not a one-shot iterator or generator)")
        first = True
        for item in it:
            x, target = pair(item)
            yield epoch > 0 and first, x, target
            first = False


def windows(x, target, k):
    """Consecutive windows of k steps of a batch with per-step targets."""
    T = np.shape(x)[0]
    if np.ndim(target) < 2 or np.shape(target)[0] != T:
        raise ValueError(f"tbptt needs per-step targets with the same T as x ({T}); got "
                         f"target shape {np.shape(target)}")
    for t in range(0, T, k):
        yield x[t:t + k], target[t:t + k]
