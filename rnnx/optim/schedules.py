"""Learning-rate schedules: callables step -> learning rate, step = 0, 1, 2, ...

An optimizer's step k (counting from 0) uses schedule(k), so every schedule starts at lr.
"""
from __future__ import annotations

import math

from .._checks import positive, whole_number

__all__ = ["constant", "step_decay", "cosine"]


def _step(step):
    return whole_number("step", step, low=0)


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
    step_size = whole_number("step_size", step_size)

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
    total_steps = whole_number("total_steps", total_steps)

    def schedule(step):
        frac = min(_step(step), total_steps) / total_steps
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * frac))
    return schedule
