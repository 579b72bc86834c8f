"""Learning-rate schedules: callables step -> learning rate, step = 0, 1, 2, ...

An optimizer's step k (counting from 0) uses schedule(k), so every schedule starts at lr.
"""
from __future__ import annotations

import math
import numbers

from .._checks import positive

__all__ = ["constant", "step_decay", "cosine"]


def _step(step):
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be an int >= 0; got {step!r}")
    return int(step)


def constant(lr):
    """lr at every step."""
    lr = positive("lr", lr)

    def schedule(step):
        _step(step)
        return lr
    return schedule


def step_decay(lr, step_size, gamma=0.1):
    """lr * gamma ** (step // step_size), like torch.optim.lr_scheduler.StepLR."""
    lr = positive("lr", lr)
    gamma = positive("gamma", gamma)
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or (
            step_size < 1):
        raise ValueError(f"step_size must be a positive int; got {step_size!r}")

    def schedule(step):
        return lr * gamma ** (_step(step) // step_size)
    return schedule


def cosine(lr, total_steps, min_lr=0.0):
    """Cosine annealing from lr at step 0 to min_lr at total_steps, min_lr after it.

    min_lr + (lr - min_lr) * (1 + cos(pi * step / total_steps)) / 2, like
    torch.optim.lr_scheduler.CosineAnnealingLR with T_max = total_steps (no restarts).
    """
    lr = positive("lr", lr)
    min_lr = positive("min_lr", min_lr, zero=True)
    if min_lr > lr:
        raise ValueError(f"min_lr must be <= lr = {lr}; got {min_lr}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or (
            total_steps < 1):
        raise ValueError(f"total_steps must be a positive int; got {total_steps!r}")

    def schedule(step):
        frac = min(_step(step), total_steps) / total_steps
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * frac))
    return schedule
