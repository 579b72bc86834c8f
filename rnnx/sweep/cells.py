"""What one cell of a sweep computes, in whatever process runs it.

``run_cell(cell)`` returns one row of plain values (str, int, float, bool, None): the
cell's key, kind and settings, its status ("ok" or "error", with the error's type and
message: a cell that raises is recorded, never fatal) and its measurements:

* train: a short run (rnnx.sweep.settings.build_run, then Trainer.fit) judged by its
  history -- whether and when it exploded (first non-finite step, first training step and
  time step where the backward signal overflowed), its outcome, the final loss and
  accuracy on ``eval_sequences`` fresh sequences, the largest gradient norm, the steps
  clipped, skipped and flagged as spikes, and the warning events (none until the trainer
  emits them). Outcome: "solved" when the task's criterion holds at the end (a run whose
  failed steps were skipped can still solve it), else "exploded" when any step was
  non-finite, else "did not learn". A run that raises under policy "raise" exploded.
* diagnose: no training; the initial weights only: sigma_max and spectral radius of W_hh,
  the largest Lyapunov exponent lambda_1 and the Jacobian log-norm growth per step along
  trajectories of the task's inputs, and the overflow horizon (the sequence length at which
  a backward signal growing by lambda_1 per step passes the dtype's largest value).

Every random draw comes from the cell's own ``seed`` (init, batches; evaluation and the
diagnosed inputs from seed + 2 and seed + 1, as ``rnnx train`` and ``rnnx diagnose`` do), and
every engine runs it with BLAS (and so rnnx's own threads) limited to one thread (the
parallelism is across cells), so a cell gives the same bits on any engine and any number
of workers.
"""
from __future__ import annotations

import math
import time

import numpy as np

from ..training.quiet import quiet_training

__all__ = ["run_cell", "OUTCOMES", "TRAIN_METRICS", "DIAGNOSE_METRICS"]

OUTCOMES = ("exploded", "did not learn", "solved")
TRAIN_METRICS = ("outcome", "exploded", "solved", "accuracy", "final_loss",
                 "last_finite_loss", "max_grad_norm", "clipped_steps", "nonfinite_steps",
                 "skipped_steps", "spike_steps", "warnings", "first_nonfinite_step",
                 "first_overflow_step", "first_overflow_t")
DIAGNOSE_METRICS = ("spectral_radius_measured", "sigma_max", "lambda_1", "log_norm_growth",
                    "overflow_horizon", "verdict")


def _first(mask, values):
    idx = np.flatnonzero(mask)
    return int(values[idx[0]]) if idx.size else None


def _finite_max(a):
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else math.nan


class _EventCounter:
    """Counts the trainer's events by name (a public Callback hook)."""

    def __init__(self):
        self.counts = {}

    def on_event(self, trainer, event):
        self.counts[event["event"]] = self.counts.get(event["event"], 0) + 1


def _train(settings):
    from .settings import build_run
    events = _EventCounter()
    task, model, trainer = build_run(settings, callbacks=[events])
    raised = None
    try:
        trainer.fit(task, steps=settings["steps"], batch_size=settings["batch_size"])
    except FloatingPointError as e:   # policy "raise"; DivergenceError is one too
        raised = f"{type(e).__name__}: {e}"
    h = trainer.history
    loss, step = h["loss"], h["step"]
    try:
        acc = task.evaluate(model, n=settings["eval_sequences"], rng=settings["seed"] + 2)
    except FloatingPointError:
        acc = 0.0
    acc = acc if math.isfinite(acc) else 0.0
    solved = bool(task.solved(acc))
    exploded = bool(h["nonfinite"].any()) or raised is not None
    finite_loss = loss[np.isfinite(loss)]
    row = {
        "outcome": "solved" if solved else "exploded" if exploded else "did not learn",
        "exploded": exploded, "solved": solved, "accuracy": float(acc),
        "final_loss": float(loss[-1]) if len(h) else math.nan,
        "last_finite_loss": float(finite_loss[-1]) if finite_loss.size else math.nan,
        "max_grad_norm": _finite_max(h["grad_norm"]),
        "clipped_steps": int((h["clip_coef"] < 1).sum()),
        "nonfinite_steps": int(h["nonfinite"].sum()),
        "skipped_steps": int(h["skipped"].sum()),
        "spike_steps": int(h["spike"].sum()),
        "warnings": events.counts.get("warning", 0),
        "first_nonfinite_step": _first(h["nonfinite"], step),
        "first_overflow_step": _first(h["overflow_t"] >= 0, step),
        "first_overflow_t": _first(h["overflow_t"] >= 0, h["overflow_t"]),
    }
    return row, raised


def _diagnose(settings):
    from ..diagnostics import diagnose
    from ..model.rnn import RNN
    from ..tasks import make
    s = settings
    task = make(s["task"], s["length"], dtype=s["dtype"])
    model = RNN(task.input_size, s["hidden"], task.output_size, readout=task.readout,
                dtype=s["dtype"], init=s["init"], spectral_radius=s["spectral_radius"],
                std=s["std"], seed=s["seed"])
    # the first T steps, as rnnx diagnose takes them (a task may draw longer sequences)
    x = task.sample(s["batch_size"], np.random.default_rng(s["seed"] + 1))[0][:s["length"]]
    d = diagnose(model, x)
    lam = d.lambda_max
    log_max = math.log(float(np.finfo(s["dtype"]).max))
    return {"spectral_radius_measured": float(d.spectral_radius),
            "sigma_max": d.sigma_max, "lambda_1": lam,
            "log_norm_growth": float(d.log_norms[-1] / d.T),
            "overflow_horizon": log_max / lam if lam > 0 else math.inf,
            "verdict": d.verdict}, None


def run_cell(cell):
    """The row of one cell (rnnx.sweep.grid.Cell); never raises for the cell's own errors.
    The engine limits BLAS to one thread around it (rnnx.sweep.engines)."""
    start = time.perf_counter()
    row = {"key": cell.key, "kind": cell.kind, "status": "ok", "error": None}
    row.update(cell.settings)
    try:
        with quiet_training():
            metrics, note = (_train if cell.kind == "train" else _diagnose)(cell.settings)
        row.update(metrics)
        row["error"] = note
    except Exception as e:  # noqa: BLE001 -- a failing cell is recorded, the sweep goes on
        row["status"] = "error"
        row["error"] = f"{type(e).__name__}: {e}"
    row["seconds"] = time.perf_counter() - start
    return row
