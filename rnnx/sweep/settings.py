"""The settings of one training run, and the run they describe: task, model, optimizer,
clipping and trainer, built through rnnx's public API only.

The names and defaults are those of ``rnnx train`` (flag ``--spectral-radius`` is setting
``spectral_radius``), so a sweep cell is the run ``rnnx train`` would do with the same
values. One addition: ``eval_sequences``, how many fresh sequences judge "solved" (10,000
as in ``rnnx train``'s summary and Pascanu et al. 2013). ``clip`` takes a clipping method of
``rnnx train`` ("global_norm", "value", ...; threshold ``clip_threshold``), "none", or a
number: a threshold of clipping by global norm, so that ``clip=none,1,0.1`` is a grid axis.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from ..optim import optimizers
from ..optim.named import CLIPS, make_clip, make_optimizer

__all__ = ["SETTINGS", "Setting", "defaults", "check_settings", "build_run"]

OPTIMIZERS = tuple(optimizers.OPTIMIZERS)
CLIP_METHODS = tuple(name for name in CLIPS if name != "none")


@dataclass(frozen=True)
class Setting:
    """One setting: kind "int" | "float" | "choice" | "clip"; bound "positive" |
    "nonnegative" | None; none: whether None ("none" on the command line) is allowed."""

    name: str
    kind: str
    default: object
    help: str
    bound: str | None = None
    none: bool = False
    choices: tuple = ()

    def parse(self, text):
        """The value written as text on the command line (ValueError naming the setting)."""
        text = text.strip()
        if self.none and text.lower() == "none":
            return None
        if self.kind == "choice" or (self.kind == "clip" and text in CLIP_METHODS):
            return self.check(text)
        number = int if self.kind == "int" else float
        try:
            value = number(text)
        except ValueError:
            raise ValueError(f"{self.name}: expected {self.expected()}; got {text!r}") from None
        return self.check(value)

    def check(self, value):
        """value as the run uses it, or ValueError naming the setting."""
        if value is None and self.none:
            return None
        if self.kind == "choice" or (self.kind == "clip" and isinstance(value, str)):
            choices = self.choices if self.kind == "choice" else CLIP_METHODS
            if value not in choices:
                raise ValueError(f"{self.name}: expected {self.expected()}; got {value!r}")
            return value
        whole = self.kind == "int"
        ok_type = numbers.Integral if whole else numbers.Real
        if isinstance(value, bool) or not isinstance(value, ok_type) or (
                not whole and not math.isfinite(value)):
            raise ValueError(f"{self.name}: expected {self.expected()}; got {value!r}")
        value = int(value) if whole else float(value)
        if (self.bound == "positive" and value <= 0) or (
                self.bound == "nonnegative" and value < 0):
            raise ValueError(f"{self.name}: expected {self.expected()}; got {value!r}")
        return value

    def expected(self):
        if self.kind == "choice":
            what = f"one of {', '.join(map(str, self.choices))}"
        elif self.kind == "clip":
            what = ("a positive number (threshold of clipping by global norm) or one of "
                    + ", ".join(CLIP_METHODS))
        else:
            what = {"int": "an int", "float": "a number"}[self.kind]
            what += {"positive": " > 0", "nonnegative": " >= 0", None: ""}[self.bound]
        return what + (" or none" if self.none else "")

    @property
    def numeric(self):
        return self.kind in ("int", "float", "clip")


def _table():
    from ..model.init import RECURRENT_INITS
    from ..tasks import TASKS
    from ..training.policies import POLICIES
    S = Setting
    rows = [
        S("task", "choice", "adding", "built-in task", choices=tuple(sorted(TASKS))),
        S("length", "int", 50, "sequence length T", "positive"),
        S("hidden", "int", 32, "hidden size H", "positive"),
        S("init", "choice", "orthogonal", "initialisation of W_hh",
          choices=tuple(RECURRENT_INITS)),
        S("spectral_radius", "float", None, "rescale W_hh to this spectral radius",
          "positive", none=True),
        S("std", "float", None, "std of the gaussian / smart_tanh inits", "positive",
          none=True),
        S("dtype", "choice", "float32", "float type", choices=("float32", "float64")),
        S("optimizer", "choice", "sgd", "optimizer", choices=OPTIMIZERS),
        S("lr", "float", 0.01, "learning rate", "positive"),
        S("momentum", "float", 0.0, "SGD momentum", "nonnegative"),
        S("clip", "clip", None, "clipping: none, a global-norm threshold or a method",
          "positive", none=True),
        S("clip_threshold", "float", None, "threshold of a clipping method (default: the "
          "method's own)", "positive", none=True),
        S("clip_delta", "float", None, "element-wise clip of dL/dh[t] inside BPTT",
          "positive", none=True),
        S("max_norm", "float", None, "fail a step whose ||dL/dh[t]|| passes this",
          "positive", none=True),
        S("omega", "float", 0.0, "weight of Pascanu et al.'s regulariser", "nonnegative"),
        S("policy", "choice", "skip", "what a non-finite step does (pascanu: step with "
          "0.02 W_hh, as Pascanu et al.'s code)", choices=POLICIES),
        S("spikes", "choice", "log", "what a gradient-norm spike does",
          choices=("log", "skip", "rollback", "off")),
        S("steps", "int", 500, "training steps", "positive"),
        S("batch_size", "int", 32, "sequences per batch", "positive"),
        S("seed", "int", 0, "seed of the init, the batches and the evaluation",
          "nonnegative"),
        S("eval_sequences", "int", 10_000, "fresh sequences that judge 'solved'",
          "positive"),
    ]
    return {s.name: s for s in rows}


SETTINGS = _table()


def defaults():
    """{name: default} of every setting."""
    return {name: s.default for name, s in SETTINGS.items()}


def check_settings(settings):
    """The complete, checked settings of one run: defaults filled in; ValueError naming the
    setting for an unknown name, a bad value or a bad combination."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}; expected one of "
                         f"{', '.join(SETTINGS)}")
    full = defaults()
    full.update({k: SETTINGS[k].check(v) for k, v in settings.items()})
    if full["momentum"] and full["optimizer"] != "sgd":
        raise ValueError(f"momentum: applies to optimizer sgd only; got optimizer "
                         f"{full['optimizer']!r} with momentum {full['momentum']}")
    return full


def _clip(settings):
    from ..optim import clipping
    clip, c = settings["clip"], settings["clip_threshold"]
    if clip is None:
        return None
    if not isinstance(clip, str):
        return clipping.clip_by_global_norm(clip)
    return make_clip(clip, c)


def build_run(settings, *, callbacks=()):
    """(task, model, trainer) of the checked settings, as ``rnnx train`` builds them: the
    model's init and the trainer's batches seeded with ``seed``; no progress bar, no log."""
    from ..model.rnn import RNN
    from ..tasks import make
    from ..training import Trainer
    s = check_settings(settings)
    task = make(s["task"], s["length"], dtype=s["dtype"])
    model = RNN(task.input_size, s["hidden"], task.output_size, readout=task.readout,
                dtype=s["dtype"], init=s["init"], spectral_radius=s["spectral_radius"],
                std=s["std"], seed=s["seed"])
    optimizer = make_optimizer(s["optimizer"], s["lr"], s["momentum"])
    trainer = Trainer(model, optimizer, loss=task.loss, clip=_clip(s),
                      policy=s["policy"], max_norm=s["max_norm"],
                      clip_delta=s["clip_delta"], omega=s["omega"],
                      spikes=None if s["spikes"] == "off" else s["spikes"],
                      callbacks=callbacks, progress=False, seed=s["seed"])
    return task, model, trainer
