"""Callbacks: everything the training loop does besides training, each owning its state.

A callback overrides any of these hooks (all optional; a plain function passed as a
callback is called as on_step_end(trainer, record)):

    on_fit_start(trainer)           fit begins (before its first step)
    on_record(trainer, record)      a step's record is complete, before it joins the
                                    History (every step, a failing one included); a
                                    callback may fill columns here
    on_step_end(trainer, record)    after a step of fit (not after one that raises)
    on_event(trainer, event)        event: {"event": one of EVENTS, "step", "message", ...}
    on_fit_end(trainer)             fit ends, also by an exception
    state_dict() / load_state_dict(state)   what a checkpoint keeps of it (under
                                    ``state_key``), so that a checkpoint is the sum of
                                    the trainer's parts and its callbacks

The Trainer builds the built-in ones from its arguments: Diagnostics (diag_every),
EarlyStopping (fit's eval_data / eval_every / patience), LogFile (log_path),
Checkpointing (checkpoint_path / checkpoint_every) and, for one fit, ProgressBar.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .._checks import whole_number
from ..model.losses import LOSSES
from .data import pairs
from .files import check_writable
from .history import LogWriter, save_delta_norms

__all__ = ["Callback", "EVENTS", "Diagnostics", "EarlyStopping", "LogFile", "Checkpointing",
           "ProgressBar", "as_callbacks", "hook_table", "evaluate", "standard_callbacks"]

log = logging.getLogger("rnnx")

EVENTS = ("spike", "skip", "rollback", "fallback", "nonfinite", "early_stop", "checkpoint",
          "warning")
HOOKS = ("on_fit_start", "on_record", "on_step_end", "on_event", "on_fit_end")


class Callback:
    """Base class for callbacks; override any hook (see the module docs). Set
    ``trainer.stop_training = True`` from a callback to end fit after the current step."""

    def on_step_end(self, trainer, record):
        pass

    def on_event(self, trainer, event):
        """event: dict with "event" (one of EVENTS), "step" and "message"."""


class FunctionCallback(Callback):
    """A plain function f(trainer, record) as an on_step_end callback."""

    def __init__(self, fn):
        self.on_step_end = fn


def as_callbacks(callbacks):
    """The Trainer's callbacks argument as a list of callbacks."""
    if callable(callbacks) or isinstance(callbacks, Callback):
        callbacks = [callbacks]
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback) or any(hasattr(cb, h) for h in HOOKS + ("state_dict",)):
            out.append(cb)
        elif callable(cb):
            out.append(FunctionCallback(cb))
        else:
            raise TypeError(f"each callback must be a Callback or a function "
                            f"on_step_end(trainer, record); got {cb!r}")
    return out


def standard_callbacks(early_stopping, user, diag_every, log_path, checkpoint_path,
                       checkpoint_every):
    """The Trainer's callbacks in the order they run: diagnostics and evaluation fill the
    record, then the user's callbacks see it, then it is checkpointed and logged."""
    checkpoint_every = whole_number("checkpoint_every", checkpoint_every, none=True)
    if checkpoint_every is not None and checkpoint_path is None:
        raise ValueError("checkpoint_every needs a checkpoint_path")
    return ([Diagnostics(diag_every)] if diag_every else []) + [early_stopping, *user] + (
        [Checkpointing(checkpoint_path, checkpoint_every)] if checkpoint_path else []) + (
        [LogFile(log_path)] if log_path is not None else [])


def hook_table(callbacks):
    """{hook name: the bound methods of the callbacks that have it, in order}."""
    return {h: [getattr(cb, h) for cb in callbacks if hasattr(cb, h)] for h in HOOKS}


def evaluate(model, loss, data, accuracy=None):
    """{"loss": mean loss, "accuracy": mean accuracy(y, target) or NaN} of model over data
    (one time-major (x, target) pair or an iterable of pairs), weighted by batch size.
    A forward pass that overflows gives loss inf."""
    total = acc = 0.0
    n = 0
    for x, target in pairs(data, "eval_data"):
        b = np.shape(x)[1]
        try:
            y = model.predict(x)
        except FloatingPointError:
            return {"loss": math.inf, "accuracy": math.nan}
        total += LOSSES[loss](y, target)[0] * b
        if accuracy is not None:
            acc += accuracy(y, target) * b
        n += b
    if n == 0:
        raise ValueError("eval_data holds no batches")
    return {"loss": total / n, "accuracy": acc / n if accuracy is not None else math.nan}


class Diagnostics(Callback):
    """W_hh's spectral radius and largest singular value into the record every ``every``
    steps (NaN in the other rows)."""

    def __init__(self, every):
        self.every = every

    def on_record(self, trainer, record):
        if trainer.step % self.every == 0:
            d = trainer.model.diagnostics()
            record["spectral_radius"], record["sigma_max"] = d["spectral_radius"], d["sigma_max"]


class EarlyStopping(Callback):
    """Evaluation on held-out data every ``every`` steps (the record's eval_loss and
    eval_accuracy), and stopping after ``patience`` evaluations without a lower loss.

    What to evaluate is set for one fit (start ... stop); the best loss and the count of
    evaluations since are kept across fits and in checkpoints.
    """

    state_key = "early_stopping"

    def __init__(self):
        self.best, self.bad = math.inf, 0
        self.stop()

    def start(self, data, every, patience, accuracy):
        self.data, self.every, self.patience, self.accuracy = data, every, patience, accuracy

    def stop(self):
        self.start(None, None, None, None)

    def on_fit_end(self, trainer):
        self.stop()

    def on_record(self, trainer, record):
        if self.every is None or trainer.step % self.every:
            return
        result = trainer.evaluate(self.data, accuracy=self.accuracy)
        record["eval_loss"], record["eval_accuracy"] = result["loss"], result["accuracy"]
        if result["loss"] < self.best:
            self.best, self.bad = result["loss"], 0
            return
        self.bad += 1
        if self.patience is not None and self.bad >= self.patience:
            trainer.stop_training = True
            message = (f"early stop at step {trainer.step}: eval loss did not improve on "
                       f"{self.best:.6g} for {self.bad} evaluations")
            log.info(message)
            trainer.emit("early_stop", message, best_eval_loss=self.best)

    def state_dict(self):
        return {"best_eval": float(self.best), "bad_evals": int(self.bad)}

    def load_state_dict(self, state):
        self.best, self.bad = float(state["best_eval"]), int(state["bad_evals"])


class LogFile(Callback):
    """Streams every record to a .csv / .jsonl log during fit, and keeps the delta_norms
    matrix beside it (<stem>.delta_norms.npy) current at the end and at every checkpoint.

    A fit that continues a run (the History is not empty) first rewrites the log from the
    History, atomically, so rows a killed run wrote after its last checkpoint are not
    duplicated and a kill during the rewrite leaves the old log whole.
    """

    def __init__(self, path):
        self.path = Path(path)
        LogWriter.check_path(self.path)
        self._writer = None

    def on_fit_start(self, trainer):
        check_writable("log_path", self.path)
        if len(trainer.history):
            trainer.history.save(self.path)
            self._writer = LogWriter(self.path, "a")
        else:
            self._writer = LogWriter(self.path, "w")

    def on_record(self, trainer, record):
        if self._writer is not None:
            self._writer.write(record)

    def on_event(self, trainer, event):
        if event["event"] == "checkpoint" and self._writer is not None:
            save_delta_norms(self.path, trainer.history.delta_norms)

    def on_fit_end(self, trainer):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            save_delta_norms(self.path, trainer.history.delta_norms)


class Checkpointing(Callback):
    """trainer.save_checkpoint(path) every ``every`` steps of fit (None: only when called);
    the location is checked to be writable before step 1."""

    def __init__(self, path, every=None):
        self.path, self.every = Path(path), every
        if self.path.suffix != ".npz":
            raise ValueError(f"checkpoint_path must end in .npz; got {str(path)!r}")

    def on_fit_start(self, trainer):
        check_writable("checkpoint_path", self.path)

    def on_step_end(self, trainer, record):
        if self.every and trainer.step % self.every == 0:
            trainer.save_checkpoint(self.path)


class ProgressBar(Callback):
    """A tqdm bar over one fit's steps, with the loss and gradient norm of the latest step
    (refreshed every 20 steps, and at the end so that the last figures are the run's)."""

    def __init__(self, total):
        self.total, self._bar, self._done, self._last = total, None, 0, None

    def on_fit_start(self, trainer):
        from tqdm.auto import tqdm
        self._bar = tqdm(total=self.total, unit="step", dynamic_ncols=True)

    def on_step_end(self, trainer, record):
        self._bar.update(1)
        self._done += 1
        self._last = record
        if self._done % 20 == 1:
            self._show(record, refresh=False)

    def _show(self, record, refresh):
        self._bar.set_postfix(loss=f"{record['loss']:.4g}",
                              norm=f"{record['grad_norm']:.3g}", refresh=refresh)

    def on_fit_end(self, trainer):
        if self._bar is None:
            return
        if self._last is not None:
            self._show(self._last, refresh=True)
        self._bar.close()
