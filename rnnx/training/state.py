"""What a Trainer's checkpoint holds, and its validation before anything is restored.

A checkpoint is the sum of the parts' state: the model's params, the optimizer's and the
clip's state_dict, the batch Generator, the spike detector, the History, the carried
hidden state, the policies' state (Rollback's ring of good states) and each callback's
state_dict (under its state_key), plus the settings it must be resumed with (config).
Every array is checked against the model -- shape and dtype, also in the optimizer state
and the ring of good states -- before the trainer changes, so a damaged or tampered file
is refused with a CheckpointError naming the file and the entry, never half-loaded.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import numbers

import numpy as np

from .checkpoint import CheckpointError, expect_array, load_checkpoint
from .history import History
from .policies import Rollback, restore

__all__ = ["trainer_config", "trainer_state", "load_trainer_state", "POLICY_SETTINGS",
           "VERSION"]

log = logging.getLogger("rnnx")

VERSION = 2
#: settings that only decide what future failures do: a checkpoint may be resumed under
#: others with load_checkpoint(..., new_policy=True)
POLICY_SETTINGS = ("policy", "spikes", "rollback_factor", "rollback_depth", "max_retries")


def trainer_config(trainer):
    m, r = trainer.model, trainer.rollback
    return {
        "model": {"input_size": m.input_size, "hidden_size": m.hidden_size,
                  "output_size": m.output_size, "readout": m.readout,
                  "dtype": np.dtype(m.dtype).name},
        "optimizer": type(trainer.optimizer).__name__,
        "clip": repr(trainer.clip),
        "loss": trainer.loss, "policy": trainer.policy, "spikes": trainer.spikes,
        "max_norm": trainer.max_norm, "clip_delta": trainer.clip_delta,
        "omega": trainer.omega, "spike_window": trainer.detector.window,
        "spike_threshold": trainer.detector.threshold,
        "spike_min_history": trainer.detector.min_history,
        "rollback_factor": r.factor, "rollback_depth": r.depth,
        "max_retries": r.max_retries, "diag_every": trainer.diag_every,
    }


def _policies(trainer):
    """The policies by the argument that set them; a Rollback shared by both is saved and
    restored once, as "policy"."""
    policies = {"policy": trainer.on_failure, "spikes": trainer.on_spike}
    if trainer.on_spike is trainer.on_failure:
        del policies["spikes"]
    return policies


def trainer_state(trainer):
    return {
        "version": VERSION, "config": trainer.config, "step": trainer.step,
        "params": {k: np.array(v) for k, v in trainer.model.params.items()},
        "optimizer": trainer.optimizer.state_dict(),
        "clip": trainer.clip.state_dict() if trainer.clip is not None else {},
        "rng": trainer.rng.bit_generator.state, "spikes": trainer.detector.state_dict(),
        "history": trainer.history.state_dict(), "carry": trainer.carry,
        "policies": {k: p.state_dict() for k, p in _policies(trainer).items()
                     if p is not None},
        "callbacks": {_key(cb): cb.state_dict() for cb in trainer.callbacks
                      if hasattr(cb, "state_dict")},
    }


def _key(callback):
    return getattr(callback, "state_key", type(callback).__name__)


def load_trainer_state(trainer, path, *, weights_only=False, new_policy=False):
    state = load_checkpoint(path)
    bad = _Checker(path)
    if not isinstance(state, dict):
        bad.fail("it holds no settings document")
    state = _upgrade(state)
    model = trainer.model
    if weights_only:
        _restore_params(trainer, bad.params("params", bad.get(state, "params"), model))
        return
    if bad.get(state, "version") != VERSION:
        bad.fail(f"unsupported checkpoint version {state.get('version')!r} (this rnnx "
                 f"reads version {VERSION})")
    _compare_config(trainer, path, bad.get(state, "config"), new_policy)
    params = bad.params("params", bad.get(state, "params"), model)
    step = bad.integer("step", bad.get(state, "step"))
    optimizer = bad.optimizer("optimizer", bad.get(state, "optimizer"), trainer, params)
    clip = bad.clip("clip", bad.get(state, "clip"), trainer)
    rng = copy.deepcopy(trainer.rng)
    try:
        rng.bit_generator.state = bad.get(state, "rng")
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        bad.fail(f"rng is not a state of {type(rng.bit_generator).__name__} ({e})")
    norms = bad.array("spikes/norms", bad.get(bad.get(state, "spikes"), "norms"), None,
                      np.float64, ndim=1)
    history = bad.history(bad.get(state, "history"))
    carry = bad.get(state, "carry")
    if carry is not None:
        expect_array(path, "carry", carry, (len(carry), model.hidden_size), model.dtype)
    saved_policies = bad.get(state, "policies")
    policies = {}
    for name, policy in _policies(trainer).items():
        if isinstance(policy, Rollback) and name in saved_policies:
            saved = saved_policies[name]
            if "snapshots" not in saved:     # saved by another policy: start a fresh ring
                continue
            for i, snap in enumerate(bad.get(saved, "snapshots")):
                where = f"policies/{name}/snapshots/{i}"
                p = bad.params(where + "/params", bad.get(snap, "params"), model)
                bad.optimizer(where + "/optimizer", bad.get(snap, "optimizer"), trainer, p)
                bad.clip(where + "/clip", bad.get(snap, "clip"), trainer)
            bad.integer(f"policies/{name}/failures", bad.get(saved, "failures"))
            policies[name] = saved
    callbacks = bad.get(state, "callbacks")
    saved_callbacks = {}
    for cb in trainer.callbacks:
        if hasattr(cb, "load_state_dict") and _key(cb) in callbacks:
            try:
                copy.copy(cb).load_state_dict(callbacks[_key(cb)])
            except (KeyError, TypeError, ValueError) as e:
                bad.fail(f"callbacks/{_key(cb)}: {e}")
            saved_callbacks[_key(cb)] = cb
    # everything checked: now change the trainer
    _restore_params(trainer, params)
    trainer.optimizer.load_state_dict(optimizer)
    if trainer.clip is not None:
        trainer.clip.load_state_dict(clip)
    trainer.rng.bit_generator.state = rng.bit_generator.state
    trainer.detector.load_state_dict({"norms": norms})
    trainer.history, trainer.step, trainer.carry = history, step, carry
    for name, policy in _policies(trainer).items():
        if name in policies:
            policy.load_state_dict(policies[name])
    for key, cb in saved_callbacks.items():
        cb.load_state_dict(callbacks[key])


def _upgrade(state):
    """A version-1 checkpoint (written when the Trainer was one class) in this layout."""
    if state.get("version") != 1:
        return state
    ring = {"failures": state.pop("failures", 0), "snapshots": state.pop("snapshots", [])}
    state["policies"] = {"policy": ring, "spikes": ring}
    state["callbacks"] = {"early_stopping": {"best_eval": state.pop("best_eval", math.inf),
                                             "bad_evals": state.pop("bad_evals", 0)}}
    state.pop("lr_scale", None)            # the optimizer's state holds it too
    return {**state, "version": VERSION}


def _restore_params(trainer, params):
    restore(trainer, {"params": params, "optimizer": trainer.optimizer.state_dict(),
                      "clip": trainer.clip.state_dict() if trainer.clip is not None else {}})


def _compare_config(trainer, path, saved, new_policy):
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: config is not a settings dict")
    mine = json.loads(json.dumps(trainer.config))
    diff = sorted(k for k in mine.keys() | saved.keys() if mine.get(k) != saved.get(k))
    changed_policy = [k for k in diff if k in POLICY_SETTINGS]
    if new_policy:
        diff = [k for k in diff if k not in POLICY_SETTINGS]
    if diff:
        hint = (" To continue under the new policies pass new_policy=True."
                if set(diff) <= set(POLICY_SETTINGS) else "")
        raise ValueError(f"checkpoint {str(path)!r} was saved by a differently configured "
                         "trainer; differing settings: " + ", ".join(
                             f"{k} (saved {saved.get(k)!r}, now {mine.get(k)!r})"
                             for k in diff) + "." + hint)
    if changed_policy:
        log.warning("resuming %s under new policies: %s", path, ", ".join(
            f"{k} {saved.get(k)!r} -> {mine.get(k)!r}" for k in changed_policy))


class _Checker:
    """Validation of a loaded state: each method returns the value or raises
    CheckpointError naming the file and the entry."""

    def __init__(self, path):
        self.path = path

    def fail(self, what):
        raise CheckpointError(f"checkpoint {str(self.path)!r}: {what}")

    def get(self, tree, key):
        if not isinstance(tree, dict):
            self.fail(f"expected a dict holding {key!r}; got {type(tree).__name__}")
        if key not in tree:
            self.fail(f"missing entry {key!r}")
        return tree[key]

    def integer(self, key, value):
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            self.fail(f"{key} must be an int >= 0; got {value!r}")
        return int(value)

    def array(self, key, value, shape, dtype, ndim=None):
        if ndim is not None and isinstance(value, np.ndarray) and value.ndim == ndim:
            shape = value.shape
        return expect_array(self.path, key, value, shape if shape is not None else (), dtype)

    def params(self, key, params, model):
        shapes = {k: np.shape(v) for k, v in model.params.items()}
        if not isinstance(params, dict) or set(params) != set(shapes):
            self.fail(f"{key} must hold exactly {sorted(shapes)}; got "
                      f"{sorted(params) if isinstance(params, dict) else type(params).__name__}")
        for k, shape in shapes.items():
            expect_array(self.path, f"{key}/{k}", params[k], shape, model.dtype)
            if not np.isfinite(params[k]).all():
                self.fail(f"{key}/{k} holds NaN or inf")
        return params

    def optimizer(self, key, state, trainer, params):
        opt = trainer.optimizer
        if not isinstance(state, dict):
            self.fail(f"{key} must be a dict; got {type(state).__name__}")
        for full, value in state.items():
            if full in ("t", "lr_scale"):
                continue
            buffer, _, name = full.partition(".")
            if buffer not in opt.buffers or name not in params:
                self.fail(f"{key} has an unexpected entry {full!r} for "
                          f"{type(opt).__name__}")
            expect_array(self.path, f"{key}/{full}", value, params[name].shape,
                         params[name].dtype)
        try:
            copy.deepcopy(opt).load_state_dict(state)
        except (KeyError, TypeError, ValueError) as e:
            self.fail(f"{key}: {e}")
        return state

    def clip(self, key, state, trainer):
        if trainer.clip is None:
            return state
        try:
            copy.deepcopy(trainer.clip).load_state_dict(state)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self.fail(f"{key}: {e}")
        return state

    def history(self, state):
        try:
            columns = state["columns"]
            n = len(state["delta_lengths"])
            if not all(isinstance(c, str) for c in columns) or any(
                    np.shape(state["data"][c]) != (n,) for c in columns):
                raise ValueError("columns of unequal length")
            deltas = np.asarray(state["delta_norms"])
            if deltas.ndim != 2 or len(deltas) != n or (
                    n and np.max(state["delta_lengths"]) > deltas.shape[1]):
                raise ValueError("delta_norms does not match the rows")
            return History.from_state_dict(state)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            self.fail(f"history is damaged ({e})")
