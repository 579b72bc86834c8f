"""What the Trainer finds out about a step that spiked or failed, for its record and event.

Forensics.examine runs once per such step, before any weight changes: the float64
second opinion (rnnx.training.shadow; float32 models, on by default) and the blame
(rnnx.diagnostics.blame: parameter, time step, batch elements). Its Findings fill the
step's record (shadow_verdict, shadow_norm, blame_param, blame_t, blame_rows), the
event's fields and one phrase of its message. forensics_summary counts the verdicts of a
History; the growth columns (growth, overflow_horizon) of every step come from
fill_growth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..diagnostics.blame import Blame
from ..diagnostics.forecast import growth_rate, overflow_horizon
from .shadow import VERDICTS, blame_step, second_opinion

__all__ = ["Forensics", "Findings", "forensics_summary", "fill_growth", "blame_of",
           "describe_blame"]

SHADOW_CHOICES = ("auto", True, False)


@dataclass(frozen=True)
class Findings:
    """blame: a Blame; verdict and norm64: the float64 second opinion ("" / NaN when it
    was not run)."""

    blame: Blame = field(default_factory=Blame)
    verdict: str = ""
    norm64: float = math.nan

    def describe(self):
        """One line for a message."""
        text = self.blame.describe()
        if self.verdict:
            text += f"; float64 says {self.verdict} (norm {self.norm64:.4g})"
        return text

    def info(self):
        """The event's fields."""
        out = self.blame.info()
        if self.verdict:
            out.update(shadow_verdict=self.verdict, shadow_norm=self.norm64)
        return out

    def to_record(self, record):
        self.blame.to_record(record)
        record["shadow_verdict"], record["shadow_norm"] = self.verdict, self.norm64


class Forensics:
    """shadow: "auto" (the float64 second opinion for float32 models), True or False."""

    def __init__(self, shadow="auto"):
        if not (isinstance(shadow, bool) or (isinstance(shadow, str) and shadow == "auto")):
            raise ValueError(f"shadow must be one of {SHADOW_CHOICES}; got {shadow!r}")
        self.shadow = shadow

    def shadows(self, model):
        return self.shadow is True or (self.shadow == "auto" and model.dtype == np.float32)

    def examine(self, trainer, kind, batch, record, grads=None, time_step=-1):
        """Findings on the step of trainer whose record is record, on batch (x, target,
        h0), flagged as kind ("spike", "overflow", "nonfinite", "forward"); written into
        the record too."""
        model = trainer.model
        with np.errstate(over="ignore", invalid="ignore"):    # overflow is what it examines
            found = self._examine(trainer, model, kind, batch, record, grads, time_step)
        found.to_record(record)
        return found

    def _examine(self, trainer, model, kind, batch, record, grads, time_step):
        if self.shadows(model) and model.dtype != np.float64:
            opinion = second_opinion(model, trainer.loss, batch, kind=kind,
                                     norm32=record["grad_norm"],
                                     too_large=_threshold(trainer, kind),
                                     time_step=time_step, grads=grads,
                                     clip_delta=trainer.clip_delta, omega=trainer.omega)
            return Findings(opinion.blame, opinion.verdict, opinion.norm64)
        return Findings(blame_step(model, trainer.loss, batch, grads=grads,
                                   time_step=time_step, clip_delta=trainer.clip_delta))


def _threshold(trainer, kind):
    """too_large(norm64, max_delta64) for the threshold that flagged a step of kind."""
    if kind == "spike":
        detector = trainer.detector
        return lambda norm, delta: detector.score(norm) > detector.threshold
    if kind == "overflow" and trainer.max_norm is not None:
        return lambda norm, delta: delta > trainer.max_norm
    # A float32 failure is real when the float64 gradient does not fit float32 either, or
    # is a spike against the run's recent norms; a backward signal that overflowed
    # float32 on its way yet left a gradient in range and in line with the run is
    # float32's limitation, not the model's.
    top = float(np.finfo(trainer.model.dtype).max)
    detector = trainer.detector
    return lambda norm, delta: norm >= top or detector.is_spike(norm)


def fill_growth(record, delta_norms, dtype):
    """The record's growth (nats per time step back in time) and overflow_horizon (time
    steps until the backward signal overflows dtype at that rate, from the norm at the
    last time step the step reached)."""
    if delta_norms is None or not len(delta_norms):
        return
    g = record["growth"] = growth_rate(delta_norms)
    if not g > 0:
        record["overflow_horizon"] = math.inf
        return
    start = float(delta_norms[-1])          # the last time step, where BPTT starts
    if not (start > 0 and math.isfinite(start)):
        d = np.asarray(delta_norms, np.float64)
        start = float(d[np.flatnonzero(np.isfinite(d) & (d > 0))[-1]])
    record["overflow_horizon"] = overflow_horizon(g, dtype, start)


def forensics_summary(history):
    """{"real": n, "disputed": n, "artefact": n, "warnings": n} of a History."""
    out = {v: 0 for v in VERDICTS}
    if "shadow_verdict" in history and len(history):
        verdicts = history["shadow_verdict"]
        out.update({v: int(np.count_nonzero(verdicts == v)) for v in VERDICTS})
    out["warnings"] = int(history["warning"].sum()) if "warning" in history and len(
        history) else 0
    return out


def blame_of(record):
    """The forensics of a step's record as GradientOverflowError's keyword arguments."""
    rows = tuple(int(b) for b in str(record["blame_rows"]).split())
    return {"parameter": record["blame_param"] or None, "batch_elements": rows,
            "verdict": record["shadow_verdict"] or None, "norm64": record["shadow_norm"]}


def describe_blame(record):
    """'; blame W_hh, time step t=3, batch elements [0]; float64 says real (norm inf)'
    from a step's record ("" when nothing was found)."""
    if not record["blame_param"]:
        return ""
    b = blame_of(record)
    return "; " + Findings(Blame(b["parameter"], record["blame_t"], b["batch_elements"]),
                           record["shadow_verdict"], record["shadow_norm"]).describe()
