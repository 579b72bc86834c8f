"""What happened in a training run, as a summary table: ``summarize`` and ``format_table``
give the table of `rnnx demo` and `rnnx train` (the story in plain words is
rnnx.cli.story's).
"""
from __future__ import annotations

import math

import numpy as np

from .story import first_index

__all__ = ["evaluate_accuracy", "summarize", "format_table"]


def evaluate_accuracy(task, model, seed, n):
    """Fraction of n fresh sequences of task solved (0 when the forward pass fails)."""
    try:
        with np.errstate(all="ignore"):
            acc = task.evaluate(model, n=n, rng=seed)
    except FloatingPointError:
        return 0.0
    return acc if math.isfinite(acc) else 0.0


def summarize(name, trainer, task, *, seed=0, eval_sequences=10_000):
    """A dict of plain values describing a finished run of trainer on task."""
    h = trainer.history
    steps = h["step"]
    loss, norm = h["loss"], h["grad_norm"]
    finite_loss = loss[np.isfinite(loss)]
    finite_norm = norm[np.isfinite(norm)]
    overflow = first_index(h["overflow_t"] >= 0)
    nonfinite = first_index(h["nonfinite"])
    acc = evaluate_accuracy(task, trainer.model, seed, eval_sequences)
    clip = trainer.clip
    return {
        "run": name,
        "steps": int(len(h)),
        "final_loss": float(loss[-1]) if len(h) else math.nan,
        "last_finite_loss": float(finite_loss[-1]) if finite_loss.size else math.nan,
        "accuracy": float(acc),
        "eval_sequences": int(eval_sequences),
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
           "raise": "raised", "pascanu": "replaced by 0.02 W_hh"}[s["policy"]]
    return f"{s['nonfinite_steps']} ({how})"


def format_table(summaries):
    """The summary table of one or more runs (one column each), as text."""
    rows = [
        ("training steps", lambda s: str(s["steps"])),
        ("final loss (last finite)", lambda s: f"{_fmt(s['final_loss'])} "
                                               f"({_fmt(s['last_finite_loss'])})"),
        ("task solved (error < 1%)", lambda s: f"{'yes' if s['solved'] else 'no'} "
                                              f"(accuracy {100 * s['accuracy']:.2f}%)"),
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


# --- the story ------------------------------------------------------------------------------
