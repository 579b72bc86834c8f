"""A float64 second opinion on a float32 step that spiked or failed, and its blame.

The step is recomputed once on a float64 copy of the model (same weights, batch and h0,
through the public API: RNN.copy, RNN.forward, rnn_backward with delta; RNN.objective
once more only with Pascanu's regulariser, whose gradient needs it) and judged:

* "real": the float64 gradient is non-finite or also too large (above the threshold that
  flagged the float32 step: max_norm for an overflow, the spike detector's for a spike,
  float32's largest value or a spike against the run's recent norms, for the gradient,
  after a non-finite float32 step), and the float32 norm, where
  finite, agrees with it within AGREE;
* "disputed": too large in float64 too, but the finite float32 norm differs by more;
* "artefact": the float64 gradient is finite and moderate -- float32 ran out of range or
  precision, the mathematics did not explode.

The blame (rnnx.diagnostics.blame) needs delta = dL/dh itself, which a training step does
not keep: the same float64 pass returns it. When that pass overflows, BPTT being linear
in the readout's gradient grad_h for a fixed forward pass, delta is recomputed from
grad_h scaled down until it stays finite: the time step and the rows to blame do not
depend on that scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..core.recurrence import rnn_backward
from ..diagnostics.blame import Blame, blame_parameter, blame_rows, blame_time_step
from ..model.losses import LOSSES

__all__ = ["SecondOpinion", "second_opinion", "blame_step", "VERDICTS"]

VERDICTS = ("real", "disputed", "artefact")
AGREE = 0.5                       # relative difference of the norms that still agrees
_SCALES = (1.0, 1e-150, 1e-300)   # grad_h scales tried for the float64 delta


@dataclass(frozen=True)
class SecondOpinion:
    """verdict: one of VERDICTS; norm64: the float64 global gradient norm (inf when the
    float64 step failed too); max_delta64: its largest ||delta[t]||; blame: a Blame."""

    verdict: str
    norm64: float
    max_delta64: float
    blame: Blame = field(default_factory=Blame)


def float64_copy(model):
    """An RNN like model computing in float64 (its own float64 copies of the params)."""
    m = model.copy()
    m.dtype = np.dtype(np.float64)
    m.params = {k: np.asarray(v, np.float64).copy() for k, v in m.params.items()}
    return m


def _batch64(x, h0):
    return (np.asarray(x, np.float64),
            None if h0 is None else np.asarray(h0, np.float64))


@dataclass(frozen=True)
class _Pass:
    """One float64 forward pass and BPTT of a step: r, rnn_backward's BackwardResult
    with delta, from the readout's gradient grad_h times scale; h: the hidden states;
    loss, dy: the loss and its gradient with respect to the readout y."""

    r: object
    scale: float
    h: np.ndarray
    loss: float
    dy: np.ndarray


def _backward(model64, loss, x, target, h0, clip_delta):
    """The step's _Pass, up to a positive scale (the same for every array of r), or None
    when even the smallest scale overflows (or the forward pass does)."""
    try:
        y, h = model64.forward(x, h0)
    except FloatingPointError:
        return None
    p = model64.params
    value, dy = LOSSES[loss](y, target)
    # clipping delta element-wise is not linear: with clip_delta only the unscaled pass
    for scale in _SCALES if clip_delta is None else _SCALES[:1]:
        grad_h = np.zeros_like(h)
        with np.errstate(all="ignore"):
            if model64.readout == "last":
                grad_h[-1] = (dy * scale) @ p["W_hy"]
            else:
                grad_h[:] = (dy * scale) @ p["W_hy"]
        if not np.all(np.isfinite(grad_h)):
            continue
        try:
            with np.errstate(all="ignore"):
                r = rnn_backward(x, h, grad_h, p["W_xh"], p["W_hh"], p["b_h"], h0,
                                 clip_delta=clip_delta, return_delta=True)
            return _Pass(r, scale, h, float(value), dy)
        except FloatingPointError:
            continue
    return None


def blame_step(model, loss, batch, *, grads=None, time_step=-1, clip_delta=None,
               step=None):
    """The Blame of one step: the parameter from grads (the step's gradients, when it
    has them), the time step (time_step when the caller knows where BPTT failed, else
    from the float64 delta), and the rows of the float64 delta at that step. step: the
    float64 _Pass when the caller has made it (second_opinion), else it is made here."""
    if step is None:
        x, target, h0 = batch
        x, h0 = _batch64(x, h0)
        step = _backward(float64_copy(model), loss, x, target, h0, clip_delta)
    r = None if step is None else step.r
    if grads is None and r is not None:
        # the ranking of ||grad|| / max(||weight||, 1) does not depend on the common scale
        grads = {"W_xh": r.dW_xh, "W_hh": r.dW_hh, "b_h": r.db_h}
    parameter = blame_parameter(grads, model.params) if grads is not None else None
    if r is None:
        return Blame(parameter, time_step, ())
    # the core's norms of a finite delta are finite (it scales its sums of squares)
    t = time_step if time_step >= 0 else blame_time_step(r.delta_norms)
    return Blame(parameter, t, blame_rows(r.delta[t]) if t >= 0 else ())


def second_opinion(model, loss, batch, *, kind, norm32, too_large, time_step=-1,
                   grads=None, clip_delta=None, omega=0.0):
    """The SecondOpinion of a float32 step that spiked or failed.

    batch: the step's (x, target, h0); kind: the Failure kind ("spike", "overflow",
    "nonfinite", "forward"); norm32: its float32 gradient norm (NaN if none);
    too_large(norm64, max_delta64) -> bool: whether float64 figures are above the
    threshold that flagged the step; grads: the float32 gradients when the step has them;
    time_step: where float32 BPTT failed (-1: it did not).
    """
    x, target, h0 = batch
    model64 = float64_copy(model)
    x64, h064 = _batch64(x, h0)
    step = _backward(model64, loss, x64, target, h064, clip_delta)
    norm64 = max_delta64 = math.inf      # BPTT or the forward pass failed in float64 too
    grads64 = None
    # a scaled-down pass (or a non-finite loss) means float64 overflowed too: blame only
    unscaled = step is not None and step.scale == 1.0 and math.isfinite(step.loss)
    if unscaled and omega > 0:
        # Omega's gradient needs the regulariser: the model's own objective, once more
        with np.errstate(all="ignore"):
            g = model64.objective(loss, clip_delta=clip_delta, omega=omega)(x64, target, h064)
        grads64, max_delta64 = g.grads, float(np.max(g.delta_norms))
    elif unscaled:
        # the unscaled pass is the step itself: its gradients, and the readout's
        r = step.r
        grads64 = {"W_xh": r.dW_xh, "W_hh": r.dW_hh, "b_h": r.db_h,
                   **_readout_gradients(model64, step)}
        max_delta64 = float(np.max(r.delta_norms))
    if grads64 is not None:
        norm64 = math.sqrt(sum(float(np.sum(np.square(v))) for v in grads64.values()))
    if not (math.isfinite(norm64) and math.isfinite(max_delta64)) or too_large(
            norm64, max_delta64):
        agree = not math.isfinite(norm32) or not math.isfinite(norm64) or (
            abs(norm32 - norm64) <= AGREE * norm64)
        verdict = "real" if agree else "disputed"
    else:
        verdict = "artefact"
    finite32 = grads is not None and all(np.all(np.isfinite(v)) for v in grads.values())
    blame = blame_step(model, loss, batch, time_step=time_step, clip_delta=clip_delta,
                       grads=grads if grads is not None and (not finite32 or grads64 is None)
                       else grads64, step=step)
    return SecondOpinion(verdict, norm64, max_delta64, blame)


def _readout_gradients(model64, step):
    """dL/dW_hy (O, H) = dy^T h and dL/db_y (O,) = the sum of dy, of the readout
    y = h W_hy^T + b_y (at the last time step for readout "last", at every one for "all";
    dy (B, O) or (T, B, O)), from the pass's dy and h."""
    H, O = model64.hidden_size, model64.output_size
    h = step.h[-1] if model64.readout == "last" else step.h.reshape(-1, H)
    dy = step.dy.reshape(-1, O)
    return {"W_hy": dy.T @ h, "b_y": dy.sum(axis=0)}
