"""What the training loop iterates over: batches, (x, target) pairs, truncated-BPTT windows.

Everything here is time-major, (T, B, ...), as the core computes; time_major turns a
batch given batch-first, (B, T, ...), into views of that layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import whole_number
from ..tasks import Task

__all__ = ["pairs", "pair", "batches", "windows", "time_major", "FitPlan", "steps_of"]


@dataclass(frozen=True)
class FitPlan:
    """fit's arguments about the data, checked together (see Trainer.fit)."""

    steps: int | None
    epochs: int | None
    batch_size: int | None
    tbptt: int | None
    eval_data: list | None
    eval_every: int | None
    patience: int | None

    @classmethod
    def make(cls, data, *, steps, epochs, batch_size, eval_data, eval_every, patience,
             tbptt, per_step, batch_first):
        steps = whole_number("steps", steps, none=True)
        epochs = whole_number("epochs", epochs, none=True)
        tbptt = whole_number("tbptt", tbptt, none=True)
        eval_every = whole_number("eval_every", eval_every, none=True)
        patience = whole_number("patience", patience, none=True)
        if isinstance(data, Task):
            if steps is None or epochs is not None:
                raise ValueError("fit(task) draws endless fresh batches: give steps=, not "
                                 "epochs=")
            whole_number("batch_size", batch_size)
            if batch_first:
                raise ValueError("batch_first applies to batches you pass; a Task's batches "
                                 "are time-major already")
        elif batch_size is not None:
            raise ValueError("batch_size applies to a Task only; an iterable already yields "
                             "its batches")
        if (eval_every is None) != (eval_data is None):
            raise ValueError("eval_data and eval_every go together")
        if patience is not None and eval_every is None:
            raise ValueError("patience (early stopping) needs eval_data and eval_every")
        if tbptt is not None and not per_step:
            raise ValueError("tbptt needs per-step targets: a model with readout='all'")
        if eval_data is not None:
            eval_data = pairs(eval_data, "eval_data")
            if batch_first:
                eval_data = [time_major(x, t, per_step) for x, t in eval_data]
        return cls(steps, epochs, batch_size, tbptt, eval_data, eval_every, patience)


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


def steps_of(trainer, data, plan, *, per_step, carry_state, batch_first):
    """(x, target, h0) of every training step of a fit, time-major. h0 is the hidden state
    the trainer carries (trainer.carry, read when the step comes): across the windows of
    a batch with tbptt, and across batches with carry_state, which is reset at the start
    of every epoch after the first."""
    tbptt = plan.tbptt
    for new_epoch, x, target in batches(data, plan.batch_size, plan.epochs, trainer.rng):
        if batch_first:
            x, target = time_major(x, target, per_step)
        if new_epoch or not carry_state:
            trainer.carry = None
        for xw, tw in (windows(x, target, tbptt) if tbptt else ((x, target),)):
            h0 = trainer.carry if (tbptt or carry_state) else None
            if h0 is not None and h0.shape[0] != np.shape(xw)[1]:
                raise ValueError(f"carry_state needs batches of equal size; the carried "
                                 f"state has {h0.shape[0]} rows, the batch "
                                 f"{np.shape(xw)[1]}")
            yield xw, tw, h0
