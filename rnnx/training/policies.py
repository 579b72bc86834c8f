"""What the Trainer does with a step it rejects: small policy objects that own their state.

The loop judges a step before any weight changes (see rnnx.training.loop). A rejected
step becomes a Failure -- a description, not an exception -- and is handed to one policy:

    error = policy(trainer, failure, record)

The policy sets the record's columns, may restore an earlier state, and returns the
exception the loop raises once the step is logged (None: training goes on). Failed steps
(overflow, non-finite) go to ``Trainer(policy=...)``: Raise, Skip, Rollback or
PascanuFallback; spikes go to ``Trainer(spikes=...)``: Log (the update is applied; only the
spike is reported), Skip or Rollback. The strings "raise", "skip", "rollback", "pascanu" and
"log" are shorthands for them.
A policy may also watch good steps (on_good_step) and keep state in a checkpoint
(state_dict / load_state_dict): Rollback's ring of good states and its failure count.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .._checks import choice, open_unit_interval, positive, whole_number
from ..errors import DivergenceError, GradientOverflowError
from ..optim.pascanu_fallback import SHRINK, pascanu_fallback
from .forensics import blame_of, describe_blame

__all__ = ["Failure", "Policy", "Raise", "Skip", "Rollback", "Log", "PascanuFallback",
           "POLICIES", "SPIKE_POLICIES", "resolve"]

log = logging.getLogger("rnnx")

POLICIES = ("raise", "skip", "rollback", "pascanu")
SPIKE_POLICIES = (None, "log", "skip", "rollback")


@dataclass(frozen=True)
class Failure:
    """Why a step was rejected. kind: "overflow" (rnn_backward's delta[t] passed
    max_norm or overflowed), "forward" (the forward pass overflowed), "nonfinite" (loss,
    gradient or update non-finite) or "spike"; cause: the exception behind it, if any;
    time_step: the time step t it concerns (-1: none)."""

    kind: str
    message: str
    cause: BaseException | None = None
    time_step: int = -1

    def __str__(self):
        return self.message


class Policy:
    """Base class: override __call__(trainer, failure, record) -> exception or None."""

    name = None
    #: a spike policy that lets the spike's update through (Log)
    lets_through = False

    def __call__(self, trainer, failure, record):
        raise NotImplementedError

    def on_fit_start(self, trainer):
        """Called as fit starts (before step 1 of the fit)."""

    def on_good_step(self, trainer):
        """Called after every accepted step."""

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        """Restore what state_dict() returned (validated by the caller)."""

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Raise(Policy):
    """Stop training: GradientOverflowError or FloatingPointError naming the training step
    (and the time step) of the failure."""

    name = "raise"

    def __call__(self, trainer, failure, record):
        cause, step = failure.cause, trainer.step
        if isinstance(cause, GradientOverflowError):
            error = GradientOverflowError(cause.time_step, cause.norm, max_norm=cause.max_norm,
                                          delta_norms=cause.delta_norms, step=step,
                                          **blame_of(record))
        else:
            error = FloatingPointError(
                f"training step {step}: {failure} (largest backward signal at time step "
                f"t={record['max_delta_t']}{describe_blame(record)}). Use clipping, a "
                f"smaller spectral radius or policy='skip'/'rollback'.")
            error.time_step = record["blame_t"]
            vars(error).update(blame_of(record))
        error.__cause__ = cause
        return error


class Skip(Policy):
    """Leave the weights as they are and go on with the next batch."""

    name = "skip"

    def __call__(self, trainer, failure, record):
        log.warning("step %d skipped: %s", trainer.step, failure)
        trainer.emit("skip", f"step {trainer.step} skipped: {failure}", kind=failure.kind)


class PascanuFallback(Policy):
    """(failures only) Pascanu et al.'s published code: step with the gradient
    g(W_hh) = shrink * W_hh (0.02), 0 for every other parameter, instead of the one that
    failed (rnnx.optim.pascanu_fallback), through the trainer's optimizer at this step's
    learning rate -- with plain SGD, W_hh shrinks by the factor 1 - shrink * lr and nothing
    else moves. The record keeps skipped = True (the step's own gradient was not applied);
    the "fallback" event says what was done instead. Together with the clipping
    pascanu_rescale (which replaces a finite gradient above 1e10 the same way) it is the
    code's SGD-C step."""

    name = "pascanu"

    def __init__(self, shrink=SHRINK):
        self.shrink = positive("shrink", shrink)

    def __call__(self, trainer, failure, record):
        params = trainer.model.params
        grads = pascanu_fallback(None, params, math.nan, shrink=self.shrink)
        trainer.optimizer.update(params, grads, 1.0, record["lr"])
        log.warning("step %d: %s; stepped with %g W_hh instead", trainer.step, failure,
                    self.shrink)
        trainer.emit("fallback", f"step {trainer.step}: {failure}; stepped with "
                     f"{self.shrink:g} W_hh instead (Pascanu et al.'s fallback)",
                     kind=failure.kind)


class Log(Policy):
    """(spikes only) Apply the update; the spike is only reported (the "spike" event and
    the record's spike column)."""

    name = "log"
    lets_through = True

    def __call__(self, trainer, failure, record):
        raise RuntimeError("Log lets every spike through; it never handles a failure")


class Rollback(Policy):
    """Restore params, optimizer and clip state from a ring of the last ``depth`` good
    states, multiply the optimizer's lr_scale by ``factor`` and go on; after
    ``max_retries`` consecutive rejected steps give up with DivergenceError (the weights
    are then those of the restored state). Each rollback walks one state further back
    while more than one is kept."""

    name = "rollback"

    def __init__(self, factor=0.5, max_retries=5, depth=3):
        self.factor = open_unit_interval("rollback_factor", factor)
        self.max_retries = whole_number("max_retries", max_retries)
        self.depth = whole_number("rollback_depth", depth)
        self.failures = 0                     # consecutive rejected steps
        self._ring = deque(maxlen=self.depth)

    def on_fit_start(self, trainer):
        if not self._ring:
            self._ring.append(snapshot(trainer))

    def on_good_step(self, trainer):
        self.failures = 0
        self._ring.append(snapshot(trainer))

    def __call__(self, trainer, failure, record):
        step = trainer.step
        self.failures += 1
        scale = trainer.optimizer.lr_scale * self.factor
        if self._ring:
            restore(trainer, self._ring[-1] if len(self._ring) == 1 else self._ring.pop())
        trainer.optimizer.lr_scale = scale
        record["rolled_back"] = True
        if self.failures >= self.max_retries:
            return DivergenceError(
                f"training diverged: {self.failures} consecutive failed steps up to step "
                f"{step} (last: {failure}); rolled back to the last good state with "
                f"lr_scale {scale:.3g}. Use gradient clipping, a lower learning rate or a "
                "W_hh with a smaller spectral radius.")
        log.warning("step %d rolled back (%s); lr_scale now %.3g", step, failure, scale)
        trainer.emit("rollback", f"step {step} rolled back: {failure}", kind=failure.kind,
                     lr_scale=scale)
        return None

    def state_dict(self):
        return {"failures": self.failures, "snapshots": [dict(s) for s in self._ring]}

    def load_state_dict(self, state):
        self.failures = int(state["failures"])
        self._ring.clear()
        for snap in state["snapshots"][-self.depth:]:
            self._ring.append(dict(snap))


def snapshot(trainer):
    """The trainer's params, optimizer and clip state, as copies (state_dict() returns
    copies and load_state_dict() copies again, so a snapshot stays intact however often
    it is restored)."""
    return {"params": {k: v.copy() for k, v in trainer.model.params.items()},
            "optimizer": trainer.optimizer.state_dict(),
            "clip": trainer.clip.state_dict() if trainer.clip is not None else {}}


def restore(trainer, snap):
    """Put a snapshot (or a checkpoint's validated state) back in place."""
    for k, v in snap["params"].items():
        np.copyto(trainer.model.params[k], v)
    trainer.optimizer.load_state_dict(snap["optimizer"])
    if trainer.clip is not None:
        trainer.clip.load_state_dict(snap["clip"])


_SHORTHANDS = {"raise": Raise, "skip": Skip, "log": Log, "pascanu": PascanuFallback}


def resolve(name, value, choices, rollback):
    """A policy object from value: a Policy, or one of the shorthand strings in choices
    ("rollback" gives the Rollback ``rollback``, so that the failure and the spike policy
    share one ring of good states). None (spikes off) stays None."""
    if isinstance(value, Policy):
        if name == "policy" and isinstance(value, Log):
            raise ValueError("policy=Log() applies to spikes only")
        if name == "spikes" and isinstance(value, PascanuFallback):
            raise ValueError("spikes=PascanuFallback() applies to failed steps only")
        return value
    if value is None and None in choices:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be one of {choices} or an rnnx.training.policies."
                         f"Policy; got {value!r}")
    choice(name, value, choices)
    return rollback if value == "rollback" else _SHORTHANDS[value]()
