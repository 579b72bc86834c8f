"""The built-in demo: the same RNN trained twice, without and with gradient clipping.

Both runs start from the same seed: an orthogonal W_hh scaled to spectral radius 1.5, plain
SGD with a large learning rate on the adding problem, in float32. Without clipping, a few
large gradients throw the weights into a region where BPTT's backward signal overflows:
those steps fail, the "skip" policy leaves the weights as they were and counts them, and
training never recovers. With clipping by global norm (Pascanu et al. 2013, Algorithm 1)
every update has a bounded size and no step fails. The logs, a summary table and the
figures land in one folder.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..optim.clipping import clip_by_global_norm
from ..model.rnn import RNN
from ..optim.optimizers import SGD
from ..tasks import make
from ..training.loop import Trainer

__all__ = ["DEFAULTS", "DemoResult", "run_demo", "summarize", "format_table"]

# Chosen so that the contrast holds for every seed tried (see tests/test_demo.py): the
# unclipped run fails most of its steps, the clipped run none.
DEFAULTS = {"task": "adding", "length": 50, "hidden": 32, "spectral_radius": 1.5,
            "lr": 0.3, "clip": 0.5, "batch_size": 32, "steps": 300, "seed": 0,
            "dtype": "float32"}
EVAL_SEQUENCES = 10_000


@contextmanager
def quiet_training():
    """Silence the trainer's per-step warnings (the summary counts them) and numpy's
    overflow warnings (overflow is detected and handled explicitly)."""
    logger = logging.getLogger("rnnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            yield
    finally:
        logger.setLevel(level)


def _first(mask):
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def _evaluate(task, model, seed, n):
    """Fraction of n fresh sequences solved (0 when the weights make the forward fail)."""
    try:
        with np.errstate(all="ignore"):
            acc = task.evaluate(model, n=n, rng=seed)
    except FloatingPointError:
        return 0.0
    return acc if math.isfinite(acc) else 0.0


def summarize(name, trainer, task, *, seed=0, eval_sequences=EVAL_SEQUENCES):
    """A dict of plain values describing a finished run of trainer on task."""
    h = trainer.history
    steps = h["step"]
    loss, norm = h["loss"], h["grad_norm"]
    finite_loss = loss[np.isfinite(loss)]
    finite_norm = norm[np.isfinite(norm)]
    overflow = _first(h["overflow_t"] >= 0)
    nonfinite = _first(h["nonfinite"])
    acc = _evaluate(task, trainer.model, seed, eval_sequences)
    clip = trainer.clip
    return {
        "run": name,
        "steps": int(len(h)),
        "final_loss": float(loss[-1]) if len(h) else math.nan,
        "last_finite_loss": float(finite_loss[-1]) if finite_loss.size else math.nan,
        "accuracy": float(acc),
        "solved": bool(task.solved(acc)),
        "max_grad_norm": float(finite_norm.max()) if finite_norm.size else math.nan,
        "spikes": int(h["spike"].sum()),
        "nonfinite_steps": int(h["nonfinite"].sum()),
        "skipped_steps": int(h["skipped"].sum()),
        "rolled_back_steps": int(h["rolled_back"].sum()),
        "clipped_steps": int((h["clip_coef"] < 1).sum()),
        "first_nonfinite_step": None if nonfinite is None else int(steps[nonfinite]),
        "first_overflow_step": None if overflow is None else int(steps[overflow]),
        "first_overflow_t": None if overflow is None else int(h["overflow_t"][overflow]),
        "exploded": bool(h["nonfinite"].any()),
        "clip": None if clip is None else repr(clip),
        "policy": trainer.policy,
        "spike_policy": trainer.spikes,
        "task": task.name,
        "length": task.T,
    }


def _fmt(x, spec=".4g"):
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _handled(s, what):
    """How a run dealt with its spikes / non-finite steps, in words."""
    if what == "spikes":
        if not s["spikes"]:
            return "0"
        how = {"log": "logged, update applied", "skip": "skipped",
               "rollback": "rolled back"}.get(s["spike_policy"], "")
        if s["spike_policy"] == "log" and s["clip"]:
            how = "logged, update clipped"
        return f"{s['spikes']} ({how})"
    if not s["nonfinite_steps"]:
        return "0"
    how = {"skip": "skipped: weights unchanged", "rollback": "rolled back, lr lowered",
           "raise": "raised"}[s["policy"]]
    return f"{s['nonfinite_steps']} ({how})"


def format_table(summaries):
    """The summary table of one or more runs (one column each), as text."""
    rows = [
        ("training steps", lambda s: str(s["steps"])),
        ("final loss (last finite)", lambda s: f"{_fmt(s['final_loss'])} "
                                               f"({_fmt(s['last_finite_loss'])})"),
        ("task solved (error < 1%)", lambda s: f"{'yes' if s['solved'] else 'no'} "
                                              f"(accuracy {100 * s['accuracy']:.1f}%)"),
        ("largest gradient norm", lambda s: _fmt(s["max_grad_norm"], ".3g")),
        ("gradient spikes", lambda s: _handled(s, "spikes")),
        ("non-finite steps", lambda s: _handled(s, "nonfinite")),
        ("clipped steps", lambda s: str(s["clipped_steps"]) if s["clip"] else "-"),
        ("first backward overflow", lambda s: "none" if s["first_overflow_step"] is None
         else f"step {s['first_overflow_step']}, t={s['first_overflow_t']}"),
        ("exploded", lambda s: "YES" if s["exploded"] else "no"),
    ]
    header = [""] + [s["run"] for s in summaries]
    body = [[label] + [cell(s) for s in summaries] for label, cell in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(r) for r in body])


@dataclass
class DemoResult:
    summaries: list
    files: list = field(default_factory=list)
    seconds: float = 0.0
    figures_skipped: str | None = None     # why no figures were written, or None


def _jacobian(model, x):
    """(jacobian_log_norms (T+1, B), sigma_max) of model along the batch x."""
    return model.jacobian_log_norms(x), model.diagnostics()["sigma_max"]


def run_demo(out="rnnx-demo", *, steps=None, seed=None, task=None, plots=True,
             progress=True, stream=None, **overrides):
    """Train the unclipped and the clipped run, write logs, summary and figures into out,
    print the summary table to stream (default stdout); returns a DemoResult.

    overrides: any other key of DEFAULTS (length, hidden, spectral_radius, lr, clip,
    batch_size, dtype)."""
    stream = sys.stdout if stream is None else stream
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown demo settings {sorted(unknown)}; expected {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **overrides}
    for key, value in (("steps", steps), ("seed", seed), ("task", task)):
        if value is not None:
            cfg[key] = value
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    the_task = make(cfg["task"], cfg["length"], dtype=cfg["dtype"])
    model = RNN(the_task.input_size, cfg["hidden"], the_task.output_size,
                readout=the_task.readout, dtype=cfg["dtype"],
                spectral_radius=cfg["spectral_radius"], seed=cfg["seed"])
    x_probe, _ = the_task.sample(64, np.random.default_rng(cfg["seed"] + 1))
    jacobian = {"at initialisation": _jacobian(model, x_probe)}
    runs = {"unclipped": None,
            f"clipped (global norm {cfg['clip']:g})": clip_by_global_norm(cfg["clip"])}
    summaries, histories, files = [], {}, []
    print(f"rnnx demo: task {cfg['task']} (T={cfg['length']}), H={cfg['hidden']}, "
          f"spectral radius {cfg['spectral_radius']:g}, SGD lr={cfg['lr']:g}, "
          f"batch {cfg['batch_size']}, {cfg['steps']} steps, seed {cfg['seed']}, "
          f"{cfg['dtype']}", file=stream, flush=True)
    for i, (name, clip) in enumerate(runs.items()):
        stem = "unclipped" if clip is None else "clipped"
        print(f"[{i + 1}/{len(runs)}] {name}", file=stream, flush=True)
        trainer = Trainer(model.copy(), SGD(lr=cfg["lr"]), loss=the_task.loss, clip=clip,
                          policy="skip", spikes="log", log_path=out / f"{stem}.csv",
                          progress=progress, seed=cfg["seed"])
        with quiet_training():
            trainer.fit(the_task, steps=cfg["steps"], batch_size=cfg["batch_size"])
        files += [out / f"{stem}.csv", out / f"{stem}.delta_norms.npy"]
        summaries.append(summarize(name, trainer, the_task, seed=cfg["seed"] + 2))
        histories[name] = trainer.history
        if clip is not None:
            jacobian[f"{name}, after training"] = _jacobian(trainer.model, x_probe)
    with open(out / "summary.json", "w", encoding="utf-8") as f:
        json.dump({"settings": cfg, "runs": summaries}, f, indent=2)
    files.append(out / "summary.json")
    result = DemoResult(summaries, files)
    if plots:
        try:
            from .plots import save_run_figures
            result.files += save_run_figures(out, histories, jacobian)
        except ImportError as e:
            result.figures_skipped = str(e)
    else:
        result.figures_skipped = "--no-plots"
    result.seconds = time.perf_counter() - start
    print("\n" + format_table(summaries) + "\n", file=stream)
    if result.figures_skipped:
        print(f"figures skipped ({result.figures_skipped})", file=stream)
    print(f"logs, summary.json{' and figures' if not result.figures_skipped else ''} in "
          f"{out}/ ({result.seconds:.1f} s)", file=stream, flush=True)
    return result
