"""Early warning: a callback that forecasts a gradient explosion and acts on it.

Every step, EarlyWarning feeds the step's global gradient norm and its growth rate back
in time (the record's growth column) to a TrendForecaster (rnnx.diagnostics.forecast),
and every ``rate_every`` steps the largest finite-time Lyapunov exponent lambda_1 along
the step's batch (rnnx.diagnostics.lyapunov.local_lyapunov_exponents: one direction,
the first RATE_ROWS sequences). The forecaster extrapolates ln ||grad|| over the
training steps, and exp(lambda_1 T) while lambda_1 rises, to the thresholds: the clip
threshold (when the clip has a max_norm), the user's ``threshold`` and the largest value
of the model's dtype. When the explosion threshold (the user's, else the dtype's range)
is predicted within ``lead`` steps, it emits a "warning" event -- the predicted steps to
each threshold, the evidence (trend per training step, growth per time step, lambda_1
and its trend, W_hh's sigma_max when the Diagnostics callback has recorded it) and the
overflow horizon -- names the blame (parameter, time step, batch elements of the step's
batch), sets the record's warning column and hands the warning to its policy: WarnLog
(the default: only the event), LowerLR (the optimizer's lr_scale times factor) or
TightenClip (a clip_by_global_norm's max_norm times factor). At most one warning every
``cooldown`` steps.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from .._checks import choice, open_unit_interval, positive, whole_number
from ..diagnostics.blame import FLOOR, Blame
from ..diagnostics.forecast import TrendForecaster, log_max, overflow_horizon
from ..diagnostics.lyapunov import local_lyapunov_exponents
from .callbacks import Callback
from .shadow import blame_step

__all__ = ["EarlyWarning", "WarningPolicy", "WarnLog", "LowerLR", "TightenClip",
           "WARNING_POLICIES"]

log = logging.getLogger("rnnx")

WARNING_POLICIES = ("log", "lower_lr", "tighten_clip")
RATE_ROWS = 4       # sequences of the batch that lambda_1 is sampled along


class WarningPolicy:
    """What a warning does; override __call__(trainer, event)."""

    name = None

    def __call__(self, trainer, event):
        pass

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class WarnLog(WarningPolicy):
    """Only the event and the log line."""

    name = "log"


class LowerLR(WarningPolicy):
    """Multiply the optimizer's lr_scale by factor."""

    name = "lower_lr"

    def __init__(self, factor=0.5):
        self.factor = open_unit_interval("factor", factor)

    def __call__(self, trainer, event):
        trainer.optimizer.lr_scale = trainer.optimizer.lr_scale * self.factor


class TightenClip(WarningPolicy):
    """Multiply the max_norm of the trainer's clip (a clip_by_global_norm or another
    transformation with a max_norm) by factor; without one, nothing changes (the event
    says so)."""

    name = "tighten_clip"

    def __init__(self, factor=0.5):
        self.factor = open_unit_interval("factor", factor)

    def __call__(self, trainer, event):
        clip = trainer.clip
        if clip is not None and hasattr(clip, "max_norm"):
            clip.max_norm = clip.max_norm * self.factor
            event["clip_max_norm"] = clip.max_norm
        else:
            log.warning("tighten_clip: the trainer has no clip with a max_norm to tighten")


_SHORTHANDS = {"log": WarnLog, "lower_lr": LowerLR, "tighten_clip": TightenClip}


class EarlyWarning(Callback):
    """Forecasts the gradient norm and warns ``lead`` steps ahead (see the module docs).

    threshold: the user's explosion threshold on the global gradient norm (None: only the
    dtype's range); lead: warn when the crossing is predicted within this many steps
    (a line fitted over ``window`` steps and extrapolated much further than about two
    and a half windows mostly foretells climbs of stable runs that turn back -- see
    benchmarks/early_warning.py for the suites this default was chosen on);
    window, rise, baseline, agree, rate_samples: the TrendForecaster's; rate_every: sample
    lambda_1 every this many steps (None: never); cooldown: steps between two warnings;
    policy: "log" | "lower_lr" | "tighten_clip" | a WarningPolicy; blame: name the batch
    elements too (one float64 recomputation of the step's batch per warning, with the
    weights after the step's update: on_record runs once the step is applied).
    """

    state_key = "early_warning"

    def __init__(self, threshold=None, *, lead=20, window=8, rise=5.0, baseline=50,
                 agree=0.6, rate_every=10, rate_samples=4, cooldown=20, policy="log",
                 blame=True):
        self.threshold = positive("threshold", threshold, none=True)
        self.lead = positive("lead", lead)
        self.cooldown = whole_number("cooldown", cooldown, low=0)
        self.rate_every = whole_number("rate_every", rate_every, none=True)
        if isinstance(policy, WarningPolicy):
            self.policy = policy
        else:
            self.policy = _SHORTHANDS[choice("policy", policy, WARNING_POLICIES)]()
        self.blame = bool(blame)
        self.forecaster = TrendForecaster(window, rise, baseline, agree, rate_samples)
        self.last_warning = -math.inf
        self.sigma_max = math.nan

    def thresholds(self, trainer):
        clip = getattr(trainer.clip, "max_norm", None)
        return {"clip": clip, "threshold": self.threshold,
                "range": math.exp(log_max(trainer.model.dtype))}

    def sample_rate(self, trainer):
        """lambda_1 along the first RATE_ROWS sequences of the step's batch into the
        forecaster."""
        p = trainer.model.params
        x, h0 = trainer.model.checked_inputs(trainer.batch[0], trainer.batch[2])
        x, h0 = x[:, :RATE_ROWS], None if h0 is None else h0[:RATE_ROWS]
        try:
            lam = local_lyapunov_exponents(x, p["W_xh"], p["W_hh"], p["b_h"], h0,
                                           window=len(x), k=1)
        except FloatingPointError:             # the forward pass overflows: no sample
            return
        with np.errstate(invalid="ignore"):
            self.forecaster.observe_rate(trainer.step, float(np.mean(lam)), len(x))

    def on_record(self, trainer, record):
        if (self.rate_every and trainer.step % self.rate_every == 0 and not record["skipped"]
                and trainer.batch is not None):
            self.sample_rate(trainer)
        if math.isfinite(record["sigma_max"]):
            self.sigma_max = record["sigma_max"]
        self.forecaster.observe(trainer.step, record["grad_norm"], record["growth"])
        forecast = self.forecaster.forecast(self.thresholds(trainer))
        target = "threshold" if self.threshold is not None else "range"
        steps = forecast.steps[target]
        record["warn_steps"] = steps
        if record["skipped"] or not 0 < steps <= self.lead or (
                trainer.step - self.last_warning < self.cooldown):
            return
        self.last_warning = trainer.step
        record["warning"] = True
        horizon = overflow_horizon(forecast.growth, trainer.model.dtype)
        event = {"predicted_steps": dict(forecast.steps), "trend": forecast.trend,
                 "growth": forecast.growth, "lambda_1": forecast.rate,
                 "lambda_1_trend": forecast.rate_trend, "sigma_max": self.sigma_max,
                 "overflow_horizon": horizon}
        evidence = (f"ln||grad|| rises {forecast.trend:+.3g} per training step" if
                    math.isfinite(forecast.trend) else "ln||grad|| not rising yet")
        evidence += f", the backward signal grows {forecast.growth:+.3g} nats per time step"
        if math.isfinite(forecast.rate):
            evidence += f", lambda_1 = {forecast.rate:+.3g}"
            if math.isfinite(forecast.rate_trend):
                evidence += f" rising {forecast.rate_trend:+.3g} per training step"
        if math.isfinite(self.sigma_max):
            evidence += f", sigma_max(W_hh) = {self.sigma_max:.4g}"
        where = ""
        if self.blame and trainer.batch is not None:
            grads = {k: record["grad_norm_" + k] for k in trainer.model.params}
            b = blame_step(trainer.model, trainer.loss, trainer.batch,
                           clip_delta=trainer.clip_delta)
            b = Blame(_largest_relative(grads, trainer.model.params), b.time_step, b.rows)
            b.to_record(record)
            event.update(b.info())
            where = "; " + b.describe()
        message = (f"step {trainer.step}: gradient norm {record['grad_norm']:.4g} predicted "
                   f"to cross the {target} in {steps:.0f} steps ({evidence}; overflow "
                   f"horizon {horizon:.0f} time steps){where}")
        log.warning(message)
        self.policy(trainer, event)
        trainer.emit("warning", message, policy=self.policy.name, **event)

    def state_dict(self):
        return {"forecaster": self.forecaster.state_dict(), "last_warning": self.last_warning}

    def load_state_dict(self, state):
        self.forecaster.load_state_dict(state["forecaster"])
        self.last_warning = float(state["last_warning"])


def _largest_relative(norms, params):
    """The parameter with the largest ||grad|| / max(||weight||, FLOOR) from the record's
    per-parameter gradient norms (rnnx.diagnostics.blame's rule)."""
    ratios = {k: n / max(float(np.linalg.norm(np.ravel(params[k]).astype(np.float64))), FLOOR)
              for k, n in norms.items()}
    return max(ratios, key=ratios.get)
