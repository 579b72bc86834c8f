"""rnnx.Trainer: the training loop -- one step, and fit over the data.

One step: loss and gradients by BPTT (model.objective: readout, loss, the compiled core),
their norms, the judgement, clipping and the optimizer update, one History record. A step
is judged before any weight changes: it fails (GradientOverflowError from BPTT, a forward
overflow, a non-finite loss, gradient or update) or is a gradient-norm spike (robust
z-score, rnnx.training.spikes). A rejected step goes to a policy object
(rnnx.training.policies), which returns the error to raise, if any, once the step is
logged. Everything else -- diagnostics, evaluation, the log file, checkpoints, the progress
bar -- is a callback (rnnx.training.callbacks). The weights always stay finite.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .._checks import choice, instance, positive, whole_number
from ..errors import GradientOverflowError
from ..model.losses import LOSSES
from ..model.rnn import RNN
from ..optim.clipping import Transform, clip_for_update
from ..optim.norms import array_norms, norm_of_norms
from ..optim.optimizers import Optimizer
from ..tasks import Task
from .callbacks import (EVENTS, Callback, EarlyStopping, ProgressBar, as_callbacks, evaluate,
                        hook_table, standard_callbacks)
from .checkpoint import save_checkpoint
from .data import FitPlan, pairs, steps_of, time_major
from .forensics import Forensics, fill_growth
from .history import History, blank_record, peak_delta
from .policies import POLICIES, SPIKE_POLICIES, Failure, Rollback, resolve
from .spikes import SpikeDetector
from .state import load_trainer_state, trainer_config, trainer_state
from .warnings import EarlyWarning

__all__ = ["Trainer", "Callback", "POLICIES", "SPIKE_POLICIES", "EVENTS"]

log = logging.getLogger("rnnx")


class Trainer:
    """Trains an rnnx.RNN with an optimizer, logging every step and guarding the weights.

    Parameters (keyword-only after optimizer)
    ----------
    loss : "mse" | "cross_entropy".
    clip : a clipping transformation from rnnx.optim.clipping (e.g.
        clip_by_global_norm(1.0)), or None.
    policy : what a failed step does: a Policy (rnnx.training.policies.Raise(), Skip(),
        Rollback(factor, max_retries, depth)) or "raise" | "skip" | "rollback".
    max_norm : overflow threshold on ||delta[t]|| for rnn_backward (None: only non-finite
        values fail). clip_delta : element-wise clip of delta[t] inside BPTT.
    omega : weight of Pascanu et al.'s regulariser (0 = off).
    spikes : what a gradient-norm spike does: "log" | "skip" | "rollback" | a Policy | None
        (no detection); spike_window, spike_threshold, spike_min_history configure the
        SpikeDetector.
    rollback_factor, max_retries, rollback_depth : the Rollback the shorthand "rollback"
        stands for (lr_scale multiplier per rollback in (0, 1), consecutive failed steps
        before DivergenceError, good states kept).
    log_path : .csv or .jsonl file streamed one row per step (and <stem>.delta_norms.npy
        next to it). diag_every : record W_hh's spectral radius and largest singular value
        every this many steps (None: never).
    checkpoint_path (.npz), checkpoint_every : periodic atomic checkpoints.
    callbacks : Callback objects or functions on_step_end(trainer, record).
    progress : show a tqdm progress bar. seed : seeds the trainer's numpy Generator, which
        draws the batches of a Task (so runs and resumed runs are reproducible).
    shadow : the float64 second opinion on a spiking or failing step ("auto": for float32
        models; True; False), see rnnx.training.forensics.
    warnings : the early-warning callback (rnnx.training.warnings.EarlyWarning(...);
        "log" for EarlyWarning(); None: off).
    """

    def __init__(self, model, optimizer, *, loss="mse", clip=None, policy="raise",
                 max_norm=None, clip_delta=None, omega=0.0, spikes="log", spike_window=100,
                 spike_threshold=10.0, spike_min_history=10, rollback_factor=0.5,
                 rollback_depth=3, max_retries=5, log_path=None, diag_every=50,
                 checkpoint_path=None, checkpoint_every=None, callbacks=(), progress=True,
                 seed=None, shadow="auto", warnings="log"):
        self.model = instance("model", model, RNN, "an rnnx.RNN")
        self.optimizer = instance("optimizer", optimizer, Optimizer,
                                  "an rnnx optimizer (rnnx.optim.optimizers)")
        self.clip = instance("clip", clip, Transform, "a transformation from "
                             "rnnx.optim.clipping (a Transform)", none=True)
        self.loss = choice("loss", loss, tuple(LOSSES))
        self.max_norm = positive("max_norm", max_norm, none=True)
        self.clip_delta = positive("clip_delta", clip_delta, none=True)
        self.omega = positive("omega", omega, zero=True)
        self._objective = model.objective(self.loss, max_norm=self.max_norm,
                                          clip_delta=self.clip_delta, omega=self.omega)
        given = [p for p in (policy, spikes) if isinstance(p, Rollback)]
        self.rollback = given[0] if given else Rollback(rollback_factor, max_retries,
                                                        rollback_depth)
        self.on_failure = resolve("policy", policy, POLICIES, self.rollback)
        self.on_spike = resolve("spikes", spikes, SPIKE_POLICIES, self.rollback)
        self.detector = SpikeDetector(spike_window, spike_threshold, spike_min_history)
        self.diag_every = whole_number("diag_every", diag_every, none=True)
        self.log_path = None if log_path is None else Path(log_path)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.early_stopping = EarlyStopping()
        self.forensics = Forensics(shadow)
        self.warnings = EarlyWarning() if isinstance(warnings, str) and warnings == "log" \
            else instance("warnings", warnings, EarlyWarning, "an EarlyWarning, 'log' or None",
                          none=True)
        self.batch = None              # the current step's (x, target, h0)
        self.callbacks = standard_callbacks(self.early_stopping, [self.warnings] * (
            self.warnings is not None) + as_callbacks(callbacks),
                                            self.diag_every, log_path, checkpoint_path,
                                            checkpoint_every)
        self.progress, self.seed = bool(progress), seed
        self.rng = np.random.default_rng(seed)
        self.history = History()
        self.step = 0                  # training steps taken (rejected ones included)
        self.carry = None              # hidden state carried between windows (TBPTT)
        self.stop_training = False
        self._blank = None             # (param keys, a blank record), see _blank_record
        self._hooks = hook_table(self.callbacks)

    @property
    def policy(self):
        """The name of the failure policy ("raise", "skip", "rollback")."""
        return self.on_failure.name

    @property
    def spikes(self):
        """The name of the spike policy ("log", "skip", "rollback"), None when off."""
        return None if self.on_spike is None else self.on_spike.name

    @property
    def config(self):
        """The settings a checkpoint must match (see rnnx.training.state)."""
        return trainer_config(self)

    # --- one step ------------------------------------------------------------------------

    def train_step(self, x, target, h0=None):
        """One training step on the time-major batch (x, target); its History record."""
        self.step += 1
        record = self._blank_record()
        record["step"], record["lr"] = self.step, self.optimizer.learning_rate
        self.batch = (x, target, h0)
        failure, deltas, g = self._judge(x, target, h0, record)
        error = None
        if failure is None:
            self.carry = g.h_last
            for policy in self._policies():
                policy.on_good_step(self)
        else:
            record["skipped"] = True
            self.carry = None      # the step's final hidden state is unknown or unusable
            if failure.kind != "spike":
                record["nonfinite"] = True
                found = self.forensics.examine(self, failure.kind, self.batch, record,
                                               g.grads if g is not None else None,
                                               failure.time_step)
                self.emit("nonfinite", f"step {self.step}: {failure} ({found.describe()})",
                          kind=failure.kind, **{"time_step": failure.time_step,
                                                **found.info()})
            error = (self.on_spike if failure.kind == "spike" else self.on_failure)(
                self, failure, record)
        for hook in self._hooks["on_record"]:
            hook(self, record)
        self.history.append(record, deltas)
        if error is not None:
            raise error
        return record

    def _judge(self, x, target, h0, record):
        """Compute the step into record and apply it unless it is rejected:
        (Failure or None, delta norms, Gradients or None)."""
        try:
            # Overflow is detected and handled explicitly, so numpy's warnings are noise.
            with np.errstate(over="ignore", invalid="ignore"):
                g = self._objective(x, target, h0)
        except GradientOverflowError as e:
            record["overflow_t"] = e.time_step
            record["max_delta_norm"], record["max_delta_t"] = peak_delta(e.delta_norms)
            fill_growth(record, e.delta_norms, self.model.dtype)
            return Failure("overflow", str(e), e, e.time_step), e.delta_norms, None
        except FloatingPointError as e:       # the forward pass overflowed
            return Failure("forward", str(e), e), None, None
        deltas = g.delta_norms
        record["loss"], record["omega"] = g.loss, g.omega
        norms = array_norms(g.grads.values())
        for k, n in zip(g.grads, norms):
            record["grad_norm_" + k] = n
        norm = record["grad_norm"] = norm_of_norms(norms)
        t = int(deltas.argmax())       # BPTT completed: every delta norm is finite
        record["max_delta_norm"], record["max_delta_t"] = float(deltas[t]), t
        fill_growth(record, deltas, self.model.dtype)
        if not (math.isfinite(g.loss) and math.isfinite(norm)):
            what = "loss" if not math.isfinite(g.loss) else "gradient norm"
            return Failure("nonfinite", f"the {what} is non-finite (loss {g.loss}, gradient "
                           f"norm {norm})", time_step=t), deltas, g
        if self.on_spike is not None:
            record["spike"] = self.detector.is_spike(norm)
            self.detector.observe(norm)
            if record["spike"]:
                found = self.forensics.examine(self, "spike", self.batch, record, g.grads)
                message = (f"gradient-norm spike at step {self.step}: norm {norm:.6g} "
                           f"(robust z-score above {self.detector.threshold:g}; "
                           f"{found.describe()})")
                log.warning(message)
                self.emit("spike", message, norm=norm, **found.info())
                if not self.on_spike.lets_through:
                    return Failure("spike", f"gradient norm {norm:.6g} is a spike (robust "
                                   f"z-score above {self.detector.threshold:g})"), deltas, g
        params = self.model.params
        grads, scale, record["clipped_norm"], record["clip_coef"] = clip_for_update(
            self.clip, self.optimizer, params, g.grads, norm)
        try:
            self.optimizer.update(params, grads, scale, record["lr"])
        except FloatingPointError as e:    # the update would make a weight non-finite;
            return Failure("nonfinite", str(e)), deltas, g     # it changed nothing
        return None, deltas, g

    def _blank_record(self):
        keys = tuple(self.model.params)
        if self._blank is None or self._blank[0] != keys:
            self._blank = keys, blank_record(keys)
        return dict(self._blank[1])

    def _policies(self):
        """The policies in use, each once (failures and spikes may share a Rollback)."""
        used = [p for p in (self.on_failure, self.on_spike) if p is not None]
        return used[:1] if len(used) == 2 and used[0] is used[1] else used

    def emit(self, name, message, **info):
        """Send the event {"event": name, "step", "message", **info} to the callbacks."""
        event = {"event": name, "step": self.step, "message": message, **info}
        for hook in self._hooks["on_event"]:
            hook(self, event)

    # --- evaluation and fitting ----------------------------------------------------------

    def evaluate(self, data, *, accuracy=None, batch_first=False):
        """{"loss": mean loss, "accuracy": mean accuracy(y, target) or NaN} over data: one
        (x, target) pair or an iterable of pairs (batch-first with batch_first=True),
        weighted by batch size. Omega is not included. A forward pass that overflows gives
        loss inf."""
        if batch_first:
            data = [time_major(x, t, self.model.readout == "all")
                    for x, t in pairs(data, "eval_data")]
        return evaluate(self.model, self.loss, data, accuracy)

    def fit(self, data, *, steps=None, epochs=None, batch_size=None, eval_data=None,
            eval_every=None, patience=None, tbptt=None, carry_state=False, batch_first=False):
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
        of every epoch after the first and after a failed step. batch_first=True: the
        batches and eval_data are (B, T, D) with per-step targets (B, T, ...), as PyTorch's
        batch_first. fit calls continue one another (the carried state and the step count
        persist), so a trainer restored by load_checkpoint continues the run it was saved
        from; what one fit is given (eval data, patience, ...) ends with it.
        """
        per_step = self.model.readout == "all"
        plan = FitPlan.make(data, steps=steps, epochs=epochs, batch_size=batch_size,
                            eval_data=eval_data, eval_every=eval_every, patience=patience,
                            tbptt=tbptt, per_step=per_step, batch_first=batch_first)
        self.early_stopping.start(plan.eval_data, plan.eval_every, plan.patience,
                                  data.accuracy if isinstance(data, Task) else None)
        self.stop_training = False
        bar = [ProgressBar(plan.steps)] if self.progress else []
        self._hooks = hook_table(self.callbacks + bar)
        try:
            for policy in self._policies():
                policy.on_fit_start(self)
            for hook in self._hooks["on_fit_start"]:
                hook(self)
            done = 0
            for x, target, h0 in steps_of(self, data, plan, per_step=per_step,
                                          carry_state=carry_state, batch_first=batch_first):
                record = self.train_step(x, target, h0)
                done += 1
                for hook in self._hooks["on_step_end"]:
                    hook(self, record)
                if self.stop_training or done == plan.steps:
                    return self.history
            if done == 0:
                raise ValueError("data yielded no batches")
            return self.history
        finally:
            for hook in self._hooks["on_fit_end"]:     # EarlyStopping forgets the fit's data
                hook(self)
            self._hooks = hook_table(self.callbacks)

    # --- checkpoints ---------------------------------------------------------------------

    def state_dict(self):
        """Everything a resumed run needs to continue bit-identically: the trainer's
        parts' state and its callbacks' (see rnnx.training.state)."""
        return trainer_state(self)

    def save_checkpoint(self, path=None):
        """Write state_dict() atomically to path (default: checkpoint_path)."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint needs a path (or the trainer's checkpoint_path)")
        save_checkpoint(path, self.state_dict())
        log.info("checkpoint at step %d written to %s", self.step, path)
        self.emit("checkpoint", f"checkpoint at step {self.step}: {path}", path=str(path))

    def load_checkpoint(self, path, *, weights_only=False, new_policy=False):
        """Restore the state saved by save_checkpoint into this trainer, its model,
        optimizer and clip (which must be configured as when it was saved); every array is
        checked against the model before anything changes (CheckpointError otherwise).

        weights_only=True: load the model's params only (the step count, optimizer, History
        and the rest start afresh). new_policy=True: accept a checkpoint saved under other
        failure or spike policies and continue under this trainer's."""
        load_trainer_state(self, path, weights_only=weights_only, new_policy=new_policy)
        return self

    @property
    def n_skipped(self):
        """Steps whose update was not applied (skipped or rolled back)."""
        return int(self.history["skipped"].sum()) if len(self.history) else 0
