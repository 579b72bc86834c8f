"""The figures of `rnnx demo`: one PNG per panel and an overview for the README, titles
that state the finding (matplotlib, an optional extra: rnnx[plot])."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import (label_axes, new_axes, plot_delta_heatmap, plot_grad_norms,
                    require_matplotlib, save_figure)

__all__ = ["DEMO_PANELS", "plot_backward_signal", "plot_loss_accuracy", "save_demo_figures"]


DEMO_PANELS = {"a": "grad_norms", "b": "backward_signal", "c": "delta_heatmap",
               "d": "loss_accuracy"}


def _decades(x):
    return f"{np.log10(x):.1f} decades" if np.isfinite(x) and x > 0 else "n/a"


def plot_backward_signal(rows, ax=None, *, title=None, colors=None):
    """||dL/dh[t]|| against the time step t (log y) for a few training steps, each with the
    bound ||dL/dh[T-1]|| sigma_max^(T-1-t) of BPTT's product of Jacobians.

    rows: {label: (delta_norms (T,), sigma_max of the W_hh that step used, or None)};
    colors: one matplotlib colour per row (default: the colour cycle)."""
    ax = new_axes(ax)
    for i, (label, (d, smax)) in enumerate(rows.items()):
        d = np.asarray(d, np.float64)
        t = np.flatnonzero(np.isfinite(d) & (d > 0))
        if not t.size:
            continue
        color = None if colors is None else colors[i]
        line, = ax.plot(t, d[t], lw=1.8, marker="o", ms=2.5, label=label, color=color)
        if smax is not None and np.isfinite(smax):
            top = t[-1]
            k = top - t
            ax.plot(t, d[top] * np.exp(k * np.log(smax)), ls="--", lw=1.0,
                    color=line.get_color(),
                    label=f"bound ||dL/dh[T-1]|| sigma_max^k, sigma_max = {smax:.3g}")
    label_axes(ax, "time step t", "||dL/dh[t]||_2 (log scale)",
           title or "Backward signal against time step", log_y=True)
    lo, hi = ax.get_ylim()
    finite = [np.nanmax(np.where(np.isfinite(d) & (np.asarray(d) > 0), d, np.nan))
              for d, _ in rows.values() if np.isfinite(np.asarray(d, float)).any()]
    if finite:
        ax.set_ylim(lo, min(hi, max(finite) * 1e3))     # the bound may run off far above
    return ax


def _smooth(values, width):
    """Mean over a trailing window of width steps, ignoring non-finite values."""
    v = np.where(np.isfinite(values), values, 0.0)
    n = np.isfinite(values).astype(np.float64)
    cs, cn = np.cumsum(np.r_[0.0, v]), np.cumsum(np.r_[0.0, n])
    lo = np.maximum(np.arange(1, len(v) + 1) - width, 0)
    hi = np.arange(1, len(v) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cs[hi] - cs[lo]) / (cn[hi] - cn[lo])


def plot_loss_accuracy(histories, axes, *, baseline=None, threshold=0.99, smooth=50):
    """Two panels: training loss (mean over smooth steps, log y) and held-out accuracy by
    the task's criterion (the eval_accuracy column) against the training step, one line per
    run, with the success threshold and the constant-prediction baseline
    (loss, accuracy) drawn."""
    loss_ax, acc_ax = axes
    for label, h in histories.items():
        loss_ax.plot(h["step"], _smooth(h["loss"], smooth), lw=1.2, label=label)
        acc = h["eval_accuracy"] if "eval_accuracy" in h else np.full(len(h), np.nan)
        ok = np.isfinite(acc)
        acc_ax.plot(h["step"][ok], 100 * acc[ok], lw=1.4, marker="o", ms=2.5, label=label)
    if baseline is not None:
        loss_ax.axhline(baseline[0], color="0.4", ls=":", lw=1.2,
                        label=f"constant prediction ({baseline[0]:.3g})")
        acc_ax.axhline(100 * baseline[1], color="0.4", ls=":", lw=1.2,
                       label=f"constant prediction ({100 * baseline[1]:.1f}%)")
    acc_ax.axhline(100 * threshold, color="tab:red", ls="--", lw=1.0,
                   label=f"solved: accuracy > {100 * threshold:g}%")
    label_axes(loss_ax, "training step", f"training loss (mean of {smooth} steps, log)",
           "Training loss", log_y=True)
    label_axes(acc_ax, "training step", "held-out accuracy (%)", "Task accuracy")
    acc_ax.set_ylim(0, 102)
    return axes


def _demo_titles(facts):
    """The finding of each panel, from the measured stories."""
    (u_name, u), (c_name, c) = list(facts.items())[:2]
    su, sc = u["story"], c["story"]
    a = (f"Unclipped: calm until step {su.left_band:,}, then {su.spike_factor:.3g}x the calm "
         f"median ({_decades(su.spike_factor)}) at step {su.spike_step:,}"
         if su.left_band is not None and su.spike_step is not None else
         "Unclipped: the gradient norm never left its calm band")
    if su.first_nonfinite is not None:
        a += f"; non-finite from step {su.first_nonfinite:,}"
    a += f"\nclipped: largest {sc.spike_norm:.3g}, {sc.clipped_steps:,} updates clipped"
    b = f"Backward signal of the {u_name} run"
    if np.isfinite(su.growth):
        b = (f"{u_name.capitalize()}: at the spike ||dL/dh[t]|| grows {np.exp(su.growth):.3f}x "
             f"per step back in time (R^2 {su.growth_r2:.2f})")
        if "calm" in u:
            b += f";\nat calm step {u['calm'][0]} it shrinks"
    return a, b


def save_demo_figures(out, facts, *, baseline=None, task=""):
    """The figures of `rnnx demo` into the folder out: one PNG per panel (DEMO_PANELS) and
    overview.png with all four; returns their paths.

    facts: {run name: {"history": History, "story": story.Story, "calm": (step, sigma_max,
    lambda_1), "spike": (step, sigma_max, lambda_1)}}, the unclipped run first;
    baseline: (loss, accuracy) of the constant prediction."""
    require_matplotlib()
    from matplotlib.figure import Figure
    out = Path(out)
    histories = {name: f["history"] for name, f in facts.items()}
    (u_name, u), = list(facts.items())[:1]
    su, hu = u["story"], u["history"]
    title_a, title_b = _demo_titles(facts)

    def grad_norms(ax):
        plot_grad_norms(histories, ax)
        for line in ax.get_lines():      # the unclipped run on top, the others behind it
            line.set(zorder=2.5) if line.get_label() == u_name else line.set(alpha=0.7)
        if np.isfinite(su.calm_median):
            ax.axhspan(su.calm_median / 10, su.calm_median * 10, color="tab:green",
                       alpha=0.08, label="calm band: median of steps 1-20, x/÷10")
            ax.legend(fontsize="x-small", loc="upper left")
        if su.spike_step is not None and su.left_band is not None:
            ax.annotate(f"{u_name} spike: {su.spike_norm:.3g} at step {su.spike_step:,}",
                        xy=(su.spike_step, su.spike_norm), xytext=(0.55, 0.93),
                        textcoords="axes fraction", fontsize="small",
                        arrowprops={"arrowstyle": "->", "lw": 0.8})
        ax.set_title(title_a, fontsize="medium")

    def backward(ax):
        rows = {}
        d = hu.delta_norms
        for key, what in (("calm", "calm step"), ("spike", "spike step")):
            if key in u and d.size:
                step, smax, lam = u[key]
                rows[f"{what} {step:,} (lambda_1 {lam:+.3f}/step)"] = (d[step - 1], smax)
        plot_backward_signal(rows, ax, title=title_b, colors=("0.4", "tab:red"))
        ax.title.set_fontsize("medium")

    def heatmap(ax):
        first, last = 1, len(hu)
        if su.spike_step is not None:
            first = max(1, min(su.left_band or su.spike_step, su.spike_step) - 60)
            last = min(len(hu), su.spike_step + 40)
        title = f"{u_name}: ||dL/dh[t]||, steps {first:,}-{last:,}"
        d = hu.delta_norms
        if su.spike_step is not None and d.size:
            k = su.spike_step - 1          # row of the spike step
            with np.errstate(all="ignore"):
                before = np.nanmedian(d[max(0, k - 20):k, 0]) if k else np.nan
                after = np.nanmedian(d[k + 1:k + 21, 0]) if k + 1 < len(d) else np.nan
            title = (f"{u_name}, steps {first:,}-{last:,}: median ||dL/dh[0]|| {before:.2g} "
                     f"in the 20 steps\nbefore the spike (dotted), {after:.2g} in the 20 after")
        plot_delta_heatmap(d, ax, steps=(first, last), title=title)
        if su.spike_step is not None:
            ax.axvline(su.spike_step, color="w", ls=":", lw=1.0)
        ax.title.set_fontsize("medium")

    def loss_acc(fig, spec=None):
        axes = (fig.add_subplot(spec[0, 0]), fig.add_subplot(spec[0, 1])) if spec is not None \
            else fig.subplots(1, 2)
        plot_loss_accuracy(histories, axes, baseline=baseline)
        last = []
        for name, h in histories.items():
            acc = h["eval_accuracy"] if "eval_accuracy" in h else np.full(1, np.nan)
            acc = acc[np.isfinite(acc)]
            if acc.size:
                last.append(f"{name.split(' ')[0]} {100 * acc[-1]:.0f}%")
        if last:
            lines = [", ".join(last[i:i + 2]) for i in range(0, len(last), 2)]
            axes[1].set_title("Held-out accuracy at the end:\n" + ",\n".join(lines),
                              fontsize="medium")
        return axes

    paths = []
    for key, draw, size in (("a", grad_norms, (8, 4.6)), ("b", backward, (8, 4.6)),
                            ("c", heatmap, (8, 4.6))):
        fig = Figure(figsize=size, layout="constrained")
        draw(fig.add_subplot())
        paths.append(save_figure(fig, out / f"{DEMO_PANELS[key]}.png"))
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    loss_acc(fig)
    paths.append(save_figure(fig, out / f"{DEMO_PANELS['d']}.png"))
    fig = Figure(figsize=(15, 10), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    grad_norms(fig.add_subplot(grid[0, 0]))
    backward(fig.add_subplot(grid[0, 1]))
    heatmap(fig.add_subplot(grid[1, 0]))
    loss_acc(fig, grid[1, 1].subgridspec(1, 2))
    fig.suptitle(f"rnnx demo: the same RNN on {task}, from the same weights: "
                 + ", ".join(histories), fontsize="large")
    paths.append(save_figure(fig, out / "overview.png"))
    return paths
