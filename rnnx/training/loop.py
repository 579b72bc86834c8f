"""rnnx.Trainer: the training loop, and what it does when gradients explode.

One training step: loss and gradients by BPTT (the compiled core), checks, clipping, the
optimizer update, one History record. Before any weight changes the step is judged:

* failed -- rnn_backward raised GradientOverflowError (delta[t] non-finite or above
  max_norm), the forward pass overflowed, or the loss or a gradient is non-finite; an
  update that would make a weight non-finite is undone and counts as failed too;
* spike -- the robust z-score of the global gradient norm over a rolling window
  (rnnx.training.spikes.SpikeDetector) passes the threshold, although everything is finite.

A failed step is handled by ``policy``: "raise" (GradientOverflowError / FloatingPointError
naming the training step and time step), "skip" (no update), "rollback" (restore params,
optimizer and clip state from an in-memory ring buffer of good states, multiply the
optimizer's lr_scale by rollback_factor, continue; after max_retries consecutive failures
give up with DivergenceError). A spike is handled by ``spikes``: "log", "skip" or
"rollback" (None turns detection off). Whatever happens, the weights stay finite and the
step is logged before any error is raised.
"""
from __future__ import annotations

import json
import logging
import math
import numbers
from collections import deque
from pathlib import Path

import numpy as np

from .._checks import positive, whole_number
from .checkpoint import load_checkpoint, save_checkpoint
from ..optim.clipping import Transform, array_norms, norm_of_norms
from ..errors import DivergenceError, GradientOverflowError
from .history import History, LogWriter, save_delta_norms
from ..model.losses import mse, softmax_cross_entropy
from ..model.rnn import RNN
from ..optim.optimizers import Optimizer
from .spikes import SpikeDetector
from ..tasks import Task

__all__ = ["Trainer", "Callback", "POLICIES", "SPIKE_POLICIES", "EVENTS"]

log = logging.getLogger("rnnx")

POLICIES = ("raise", "skip", "rollback")
SPIKE_POLICIES = (None, "log", "skip", "rollback")
EVENTS = ("spike", "skip", "rollback", "nonfinite", "early_stop", "checkpoint")
_LOSSES = {"mse": mse, "cross_entropy": softmax_cross_entropy}
_CHECKPOINT_VERSION = 1


class Callback:
    """Base class for callbacks; override either method. A plain function passed as a
    callback is called as on_step_end(trainer, record). Set ``trainer.stop_training =
    True`` from a callback to end fit after the current step."""

    def on_step_end(self, trainer, record):
        pass

    def on_event(self, trainer, event):
        """event: dict with "event" (one of EVENTS), "step" and "message"."""


class _FunctionCallback(Callback):
    def __init__(self, fn):
        self.on_step_end = fn


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


def _peak(delta_norms):
    """(largest delta norm, its time step), (nan, -1) when there is none."""
    if delta_norms is None or not len(delta_norms):
        return math.nan, -1
    d = np.where(np.isnan(delta_norms), -np.inf, delta_norms)
    t = int(np.argmax(d))
    return (float(d[t]), t) if d[t] > -np.inf else (math.nan, -1)


class _Failure(Exception):
    """Why a step was rejected (internal; turned into the policy's action)."""

    def __init__(self, kind, message, cause=None, time_step=-1):
        super().__init__(message)
        self.kind, self.cause, self.time_step = kind, cause, time_step


class Trainer:
    """Trains an rnnx.RNN with an optimizer, logging every step and guarding the weights.

    Parameters (keyword-only after optimizer)
    ----------
    loss : "mse" | "cross_entropy".
    clip : a clipping transformation from rnnx.clipping (e.g. clip_by_global_norm(1.0)),
        or None.
    policy : what a failed step does: "raise" | "skip" | "rollback" (see module docs).
    max_norm : overflow threshold on ||delta[t]|| for rnn_backward (None: only non-finite
        values fail). clip_delta : element-wise clip of delta[t] inside BPTT.
    omega : weight of Pascanu et al.'s regulariser (0 = off).
    spikes : "log" | "skip" | "rollback" | None; spike_window, spike_threshold,
        spike_min_history configure the SpikeDetector.
    rollback_factor : lr_scale multiplier per rollback, in (0, 1). rollback_depth : good
        states kept. max_retries : consecutive failed steps before DivergenceError.
    log_path : .csv or .jsonl file streamed one row per step (and <stem>.delta_norms.npy
        next to it). diag_every : record W_hh's spectral radius and largest singular value
        every this many steps (None: never).
    checkpoint_path (.npz), checkpoint_every : periodic atomic checkpoints.
    callbacks : Callback objects or functions on_step_end(trainer, record).
    progress : show a tqdm progress bar. seed : seeds the trainer's numpy Generator, which
        draws the batches of a Task (so runs and resumed runs are reproducible).
    """

    def __init__(self, model, optimizer, *, loss="mse", clip=None, policy="raise",
                 max_norm=None, clip_delta=None, omega=0.0, spikes="log", spike_window=100,
                 spike_threshold=10.0, spike_min_history=10, rollback_factor=0.5,
                 rollback_depth=3, max_retries=5, log_path=None, diag_every=50,
                 checkpoint_path=None, checkpoint_every=None, callbacks=(), progress=True,
                 seed=None):
        if not isinstance(model, RNN):
            raise TypeError(f"model must be an rnnx.RNN; got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an rnnx optimizer (rnnx.optim.optimizers); got "
                            f"{type(optimizer).__name__}")
        if clip is not None and not isinstance(clip, Transform):
            raise TypeError(f"clip must be a transformation from rnnx.clipping (or a "
                            f"subclass of rnnx.optim.clipping.Transform) or None; got {clip!r}")
        self.model, self.optimizer, self.clip = model, optimizer, clip
        self.loss = _check_choice("loss", loss, tuple(_LOSSES))
        self.policy = _check_choice("policy", policy, POLICIES)
        self.spikes = _check_choice("spikes", spikes, SPIKE_POLICIES)
        self.max_norm = positive("max_norm", max_norm, none=True)
        self.clip_delta = positive("clip_delta", clip_delta, none=True)
        self.omega = positive("omega", omega, zero=True)
        if isinstance(rollback_factor, bool) or not isinstance(
                rollback_factor, numbers.Real) or not 0 < rollback_factor < 1:
            raise ValueError(f"rollback_factor must be in (0, 1); got {rollback_factor!r}")
        self.rollback_factor = float(rollback_factor)
        self.rollback_depth = whole_number("rollback_depth", rollback_depth)
        self.max_retries = whole_number("max_retries", max_retries)
        self.diag_every = whole_number("diag_every", diag_every, none=True)
        self.detector = SpikeDetector(spike_window, spike_threshold, spike_min_history)
        self.log_path = None if log_path is None else Path(log_path)
        if self.log_path is not None:
            LogWriter.check_path(self.log_path)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        if self.checkpoint_path is not None and self.checkpoint_path.suffix != ".npz":
            raise ValueError(f"checkpoint_path must end in .npz; got {str(checkpoint_path)!r}")
        self.checkpoint_every = whole_number("checkpoint_every", checkpoint_every, none=True)
        if self.checkpoint_every is not None and self.checkpoint_path is None:
            raise ValueError("checkpoint_every needs a checkpoint_path")
        if callable(callbacks) or isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.callbacks = []
        for cb in callbacks:
            if isinstance(cb, Callback) or hasattr(cb, "on_step_end") or hasattr(cb, "on_event"):
                self.callbacks.append(cb)
            elif callable(cb):
                self.callbacks.append(_FunctionCallback(cb))
            else:
                raise TypeError(f"each callback must be a Callback or a function "
                                f"on_step_end(trainer, record); got {cb!r}")
        self.progress = bool(progress)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.history = History()
        self.step = 0                  # training steps taken (skipped ones included)
        self.stop_training = False
        self._failures = 0             # consecutive failed steps
        self._snapshots = deque(maxlen=self.rollback_depth)
        self._carry = None             # hidden state carried between windows (TBPTT)
        self._best_eval, self._bad_evals = math.inf, 0
        self._writer = None
        self._blank = None             # (param keys, a blank record), see _blank_record
        self._eval_data = self._eval_every = self._patience = self._accuracy = None

    # --- configuration that a checkpoint must match --------------------------------------

    @property
    def config(self):
        m = self.model
        return {
            "model": {"input_size": m.input_size, "hidden_size": m.hidden_size,
                      "output_size": m.output_size, "readout": m.readout,
                      "dtype": np.dtype(m.dtype).name},
            "optimizer": type(self.optimizer).__name__,
            "clip": repr(self.clip),
            "loss": self.loss, "policy": self.policy, "spikes": self.spikes,
            "max_norm": self.max_norm, "clip_delta": self.clip_delta, "omega": self.omega,
            "spike_window": self.detector.window, "spike_threshold": self.detector.threshold,
            "spike_min_history": self.detector.min_history,
            "rollback_factor": self.rollback_factor, "rollback_depth": self.rollback_depth,
            "max_retries": self.max_retries, "diag_every": self.diag_every,
        }

    # --- one step ------------------------------------------------------------------------

    def train_step(self, x, target, h0=None):
        """One training step on the batch (x, target); returns its History record."""
        self.step += 1
        record = self._blank_record()
        record["step"], record["lr"] = self.step, self.optimizer.learning_rate
        deltas = None
        try:
            try:
                g = self._loss_and_gradients(x, target, h0)
            except GradientOverflowError as e:
                deltas = e.delta_norms
                record["overflow_t"] = e.time_step
                raise _Failure("overflow", str(e), e, e.time_step) from None
            except FloatingPointError as e:       # the forward pass overflowed
                raise _Failure("forward", str(e), e) from None
            deltas = g.delta_norms
            record["loss"], record["omega"] = g.loss, g.omega
            norms = array_norms(g.grads.values())
            for k, n in zip(g.grads, norms):
                record["grad_norm_" + k] = n
            norm = record["grad_norm"] = norm_of_norms(norms)
            t = int(deltas.argmax())       # BPTT completed: every delta norm is finite
            record["max_delta_norm"], record["max_delta_t"] = float(deltas[t]), t
            if not (math.isfinite(g.loss) and math.isfinite(norm)):
                what = "loss" if not math.isfinite(g.loss) else "gradient norm"
                raise _Failure("nonfinite", f"the {what} is non-finite "
                               f"(loss {g.loss}, gradient norm {norm})",
                               time_step=record["max_delta_t"])
            if self.spikes is not None:
                record["spike"] = self.detector.is_spike(norm)
                self.detector.observe(norm)
                if record["spike"]:
                    self._spike(record)
            self._update(g, norm, record)
        except _Failure as failure:
            if deltas is not None:
                record["max_delta_norm"], record["max_delta_t"] = _peak(deltas)
            self._fail(failure, record, deltas)
        else:
            self._failures = 0
            self._carry = g.h_last
            if self.policy == "rollback" or self.spikes == "rollback":
                self._snapshots.append(self._snapshot())
        self._finish(record, deltas)
        return record

    def _blank_record(self):
        """A record with every column at its "not measured" value (NaN, -1, False)."""
        keys = tuple(self.model.params)
        if self._blank is None or self._blank[0] != keys:
            record = {"step": self.step, "loss": math.nan, "grad_norm": math.nan,
                      "clipped_norm": math.nan, "clip_coef": math.nan, "lr": math.nan,
                      "max_delta_norm": math.nan, "max_delta_t": -1, "overflow_t": -1,
                      "nonfinite": False, "spike": False, "skipped": False,
                      "rolled_back": False, "omega": math.nan}
            record.update(("grad_norm_" + k, math.nan) for k in keys)
            record.update(spectral_radius=math.nan, sigma_max=math.nan, eval_loss=math.nan,
                          eval_accuracy=math.nan)
            self._blank = keys, record
        return dict(self._blank[1])

    def _loss_and_gradients(self, x, target, h0):
        # Overflow is detected and handled explicitly, so numpy's warnings are noise.
        with np.errstate(over="ignore", invalid="ignore"):
            return self.model._gradients(x, target, self.loss, h0, self.max_norm,
                                         self.clip_delta, self.omega)

    def _update(self, g, norm, record):
        """Clip and apply the update, or raise _Failure leaving every weight as it was."""
        if record["spike"] and self.spikes in ("skip", "rollback"):
            raise _Failure("spike", f"gradient norm {norm:.6g} is a spike (robust z-score "
                           f"above {self.detector.threshold:g})")
        params, grads, scale = self.model.params, g.grads, 1.0
        if self.clip is not None:
            c = self.clip.coefficient(norm)
            if c is None:
                grads, report = self.clip(grads, params, norm=norm)
                self.optimizer._check(params, grads)   # what a transformation returned
                record["clipped_norm"], record["clip_coef"] = (report.norm_after,
                                                               report.coefficient)
            else:      # a pure rescale: the optimizer multiplies as it updates
                scale = c
                record["clipped_norm"], record["clip_coef"] = c * norm, c
        else:
            record["clipped_norm"], record["clip_coef"] = norm, 1.0
        try:
            # the grads are the model's (its keys, shapes and dtype) and finite (their
            # global norm is), or were checked above: no need for step()'s checks
            self.optimizer._apply(params, grads, scale, record["lr"])
        except FloatingPointError as e:      # the optimizer changed nothing
            raise _Failure("nonfinite", str(e)) from None

    def _restore(self, params, opt_state, clip_state=None):
        for k, v in params.items():
            np.copyto(self.model.params[k], v)
        self.optimizer.load_state_dict(opt_state)
        if clip_state is not None and self.clip is not None:
            self.clip.load_state_dict(clip_state)

    def _snapshot(self):
        # state_dict() returns copies and load_state_dict() copies again, so a snapshot
        # stays intact however often it is restored
        return ({k: v.copy() for k, v in self.model.params.items()},
                self.optimizer.state_dict(),
                self.clip.state_dict() if self.clip is not None else {})

    def _spike(self, record):
        message = (f"gradient-norm spike at step {self.step}: norm {record['grad_norm']:.6g}"
                   f" (robust z-score above {self.detector.threshold:g})")
        log.warning(message)
        self._emit("spike", message, norm=record["grad_norm"])

    def _fail(self, failure, record, deltas):
        """Apply the policy to a rejected step (the weights are unchanged here)."""
        step = self.step
        record["skipped"] = True
        self._carry = None      # the step's final hidden state is unknown or unusable
        if failure.kind != "spike":
            record["nonfinite"] = True
            self._emit("nonfinite", f"step {step}: {failure}", kind=failure.kind,
                       time_step=failure.time_step)
        policy = self.spikes if failure.kind == "spike" else self.policy
        if policy == "raise":
            self._finish(record, deltas)
            cause = failure.cause
            if isinstance(cause, GradientOverflowError):
                raise GradientOverflowError(cause.time_step, cause.norm,
                                            max_norm=cause.max_norm,
                                            delta_norms=cause.delta_norms, step=step) from cause
            raise FloatingPointError(
                f"training step {step}: {failure} (largest backward signal at time step "
                f"t={record['max_delta_t']}). Use clipping, a smaller spectral radius or "
                f"policy='skip'/'rollback'.") from cause
        if policy == "skip":
            log.warning("step %d skipped: %s", step, failure)
            self._emit("skip", f"step {step} skipped: {failure}", kind=failure.kind)
            return
        # rollback
        self._failures += 1
        scale = self.optimizer.lr_scale * self.rollback_factor
        if self._snapshots:
            snap = self._snapshots[-1] if len(self._snapshots) == 1 else self._snapshots.pop()
            self._restore(*snap)
        self.optimizer.lr_scale = scale
        record["rolled_back"] = True
        if self._failures >= self.max_retries:
            self._finish(record, deltas)
            raise DivergenceError(
                f"training diverged: {self._failures} consecutive failed steps up to step "
                f"{step} (last: {failure}); rolled back to the last good state with "
                f"lr_scale {scale:.3g}. Use gradient clipping, a lower learning rate or a "
                "W_hh with a smaller spectral radius.")
        log.warning("step %d rolled back (%s); lr_scale now %.3g", step, failure, scale)
        self._emit("rollback", f"step {step} rolled back: {failure}", kind=failure.kind,
                   lr_scale=scale)

    def _finish(self, record, deltas):
        """Diagnostics and evaluation, then the record into the History and the log."""
        step = self.step
        if self.diag_every is not None and step % self.diag_every == 0:
            d = self.model.diagnostics()
            record["spectral_radius"], record["sigma_max"] = d["spectral_radius"], d["sigma_max"]
        stop = False
        if self._eval_every is not None and step % self._eval_every == 0:
            result = self.evaluate(self._eval_data, accuracy=self._accuracy)
            record["eval_loss"], record["eval_accuracy"] = result["loss"], result["accuracy"]
            if result["loss"] < self._best_eval:
                self._best_eval, self._bad_evals = result["loss"], 0
            else:
                self._bad_evals += 1
                stop = self._patience is not None and self._bad_evals >= self._patience
        self.history.append(record, deltas)
        if self._writer is not None:
            self._writer.write(record)
        if stop:
            self.stop_training = True
            message = (f"early stop at step {step}: eval loss did not improve on "
                       f"{self._best_eval:.6g} for {self._bad_evals} evaluations")
            log.info(message)
            self._emit("early_stop", message, best_eval_loss=self._best_eval)

    # --- events and callbacks ------------------------------------------------------------

    def _emit(self, name, message, **info):
        event = {"event": name, "step": self.step, "message": message, **info}
        for cb in self.callbacks:
            if hasattr(cb, "on_event"):
                cb.on_event(self, event)

    def _step_end(self, record):
        for cb in self.callbacks:
            if hasattr(cb, "on_step_end"):
                cb.on_step_end(self, record)

    # --- evaluation ----------------------------------------------------------------------

    def evaluate(self, data, *, accuracy=None):
        """{"loss": mean loss, "accuracy": mean accuracy(y, target) or NaN} over data: one
        (x, target) pair or an iterable of pairs, weighted by batch size. Omega is not
        included. A forward pass that overflows gives loss inf."""
        total = acc = 0.0
        n = 0
        for x, target in _pairs(data, "eval_data"):
            b = np.shape(x)[1]
            try:
                y = self.model.predict(x)
            except FloatingPointError:
                return {"loss": math.inf, "accuracy": math.nan}
            total += _LOSSES[self.loss](y, target)[0] * b
            if accuracy is not None:
                acc += accuracy(y, target) * b
            n += b
        if n == 0:
            raise ValueError("eval_data holds no batches")
        return {"loss": total / n, "accuracy": acc / n if accuracy is not None else math.nan}

    # --- fitting -------------------------------------------------------------------------

    def fit(self, data, *, steps=None, epochs=None, batch_size=None, eval_data=None,
            eval_every=None, patience=None, tbptt=None, carry_state=False):
        """Train on data and return the History.

        data: an rnnx.tasks.Task (batches of batch_size drawn from the trainer's seeded
        Generator; needs steps), or an iterable of (x, target) batches (one pass, or
        ``epochs`` passes if it can be iterated again; ``steps`` caps the total).
        eval_data (a pair or an iterable of pairs) is evaluated every eval_every steps
        (eval_loss, and eval_accuracy by the task's criterion when data is a Task);
        patience: stop after that many evaluations without a lower eval loss.
        tbptt=k: truncated BPTT -- each batch (per-step targets, readout "all") is cut into
        windows of k steps, one training step each, the final hidden state of a window
        being the h0 of the next (as data: no gradient flows across windows).
        carry_state: also carry the hidden state from one batch to the next (consecutive
        windows of a stream such as rnnx.tasks.CharText.stream); it is reset at the start
        of every epoch after the first and after a failed step. fit calls continue one
        another (the carried state and the step count persist), so a trainer restored by
        load_checkpoint continues the run it was saved from.
        """
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
        elif batch_size is not None:
            raise ValueError("batch_size applies to a Task only; an iterable already yields "
                             "its batches")
        if (eval_every is None) != (eval_data is None):
            raise ValueError("eval_data and eval_every go together")
        if patience is not None and eval_every is None:
            raise ValueError("patience (early stopping) needs eval_data and eval_every")
        if tbptt is not None and self.model.readout != "all":
            raise ValueError("tbptt needs per-step targets: a model with readout='all'")
        self._eval_data = None if eval_data is None else list(_pairs(eval_data, "eval_data"))
        self._eval_every, self._patience = eval_every, patience
        self._accuracy = data.accuracy if isinstance(data, Task) else None
        self.stop_training = False
        if self.policy == "rollback" or self.spikes == "rollback":
            if not self._snapshots:
                self._snapshots.append(self._snapshot())
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps, unit="step", dynamic_ncols=True)
        self._open_log()
        done = 0
        try:
            for new_epoch, x, target in _batches(data, batch_size, epochs, self.rng):
                if new_epoch or not carry_state:
                    self._carry = None
                for xw, tw in (_windows(x, target, tbptt) if tbptt else ((x, target),)):
                    h0 = self._carry if (tbptt or carry_state) else None
                    if h0 is not None and h0.shape[0] != np.shape(xw)[1]:
                        raise ValueError(f"carry_state needs batches of equal size; the carried "
                                         f"state has {h0.shape[0]} rows, the batch "
                                         f"{np.shape(xw)[1]}")
                    record = self.train_step(xw, tw, h0)
                    done += 1
                    self._step_end(record)
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                        self.save_checkpoint()
                    if bar is not None:
                        bar.update(1)
                        if done % 20 == 1:
                            bar.set_postfix(loss=f"{record['loss']:.4g}",
                                            norm=f"{record['grad_norm']:.3g}", refresh=False)
                    if self.stop_training or done == steps:
                        return self.history
            if done == 0:
                raise ValueError("data yielded no batches")
            return self.history
        finally:
            if bar is not None:
                bar.close()
            self._close_log()

    def _open_log(self):
        if self.log_path is None:
            return
        if len(self.history):
            # Continue a run: rewrite the log from the history first, so rows a killed run
            # wrote after its last checkpoint are not duplicated.
            self.history.save(self.log_path)
            self._writer = LogWriter(self.log_path, "a")
        else:
            self._writer = LogWriter(self.log_path, "w")

    def _close_log(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            save_delta_norms(self.log_path, self.history.delta_norms)

    # --- checkpoints ---------------------------------------------------------------------

    def state_dict(self):
        """Everything a resumed run needs to continue bit-identically."""
        return {
            "version": _CHECKPOINT_VERSION, "config": self.config, "step": self.step,
            "params": {k: np.array(v) for k, v in self.model.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "lr_scale": float(self.optimizer.lr_scale),
            "clip": self.clip.state_dict() if self.clip is not None else {},
            "rng": self.rng.bit_generator.state, "spikes": self.detector.state_dict(),
            "history": self.history.state_dict(), "carry": self._carry,
            "failures": self._failures, "best_eval": self._best_eval,
            "bad_evals": self._bad_evals,
            "snapshots": [{"params": p, "optimizer": o, "clip": c}
                          for p, o, c in self._snapshots],
        }

    def save_checkpoint(self, path=None):
        """Write state_dict() atomically to path (default: checkpoint_path); the delta
        matrix next to the log is refreshed too."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint needs a path (or the trainer's checkpoint_path)")
        save_checkpoint(path, self.state_dict())
        if self._writer is not None:
            save_delta_norms(self.log_path, self.history.delta_norms)
        log.info("checkpoint at step %d written to %s", self.step, path)
        self._emit("checkpoint", f"checkpoint at step {self.step}: {path}", path=str(path))

    def load_checkpoint(self, path):
        """Restore the state saved by save_checkpoint into this trainer, its model,
        optimizer and clip (which must be configured as when it was saved)."""
        state = load_checkpoint(path)
        if state.get("version") != _CHECKPOINT_VERSION:
            raise ValueError(f"{str(path)!r}: unsupported checkpoint version "
                             f"{state.get('version')!r}")
        mine = json.loads(json.dumps(self.config))
        diff = sorted(k for k in mine.keys() | state["config"].keys()
                      if mine.get(k) != state["config"].get(k))
        if diff:
            raise ValueError(f"checkpoint {str(path)!r} was saved by a differently configured "
                             "trainer; differing settings: " + ", ".join(
                                 f"{k} (saved {state['config'].get(k)!r}, now "
                                 f"{mine.get(k)!r})" for k in diff))
        self._restore(state["params"], state["optimizer"], state["clip"])
        self.optimizer.lr_scale = state["lr_scale"]
        self.rng.bit_generator.state = state["rng"]
        self.detector.load_state_dict(state["spikes"])
        self.history = History.from_state_dict(state["history"])
        self.step, self._carry = int(state["step"]), state["carry"]
        self._failures, self._bad_evals = int(state["failures"]), int(state["bad_evals"])
        self._best_eval = float(state["best_eval"])
        self._snapshots.clear()
        for snap in state["snapshots"]:
            self._snapshots.append((snap["params"], snap["optimizer"], snap["clip"]))
        return self

    @property
    def n_skipped(self):
        """Steps whose update was not applied (skipped or rolled back)."""
        return int(self.history["skipped"].sum()) if len(self.history) else 0


def _pairs(data, name):
    """data as a list-like of (x, target) pairs: one pair, or an iterable of pairs."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        return [data]
    try:
        items = list(data)
    except TypeError:
        raise TypeError(f"{name} must be an (x, target) pair or an iterable of pairs; got "
                        f"{type(data).__name__}") from None
    for item in items:
        _pair(item, name)
    return items


def _pair(item, name="data"):
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise TypeError(f"each batch of {name} must be an (x, target) pair; got "
                        f"{type(item).__name__}")
    return item


def _batches(data, batch_size, epochs, rng):
    """(new_epoch, x, target): endless for a Task, else epochs passes over data."""
    if isinstance(data, Task):
        while True:
            yield (False, *data.generate(batch_size, rng))
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        raise TypeError("data must be an iterable of (x, target) batches; for a single batch "
                        "pass [(x, target)]")
    for epoch in range(epochs or 1):
        it = iter(data)
        if epoch > 0 and it is data:
            raise ValueError("epochs > 1 needs data that can be iterated again (a list, "
                             "not a one-shot iterator or generator)")
        first = True
        for item in it:
            x, target = _pair(item)
            yield epoch > 0 and first, x, target
            first = False


def _windows(x, target, k):
    """Consecutive windows of k steps of a batch with per-step targets."""
    T = np.shape(x)[0]
    if np.ndim(target) < 2 or np.shape(target)[0] != T:
        raise ValueError(f"tbptt needs per-step targets with the same T as x ({T}); got "
                         f"target shape {np.shape(target)}")
    for t in range(0, T, k):
        yield x[t:t + k], target[t:t + k]
