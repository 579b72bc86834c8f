"""Figures of a training run's gradients (matplotlib, an optional extra: rnnx[plot]).

Every ``plot_*`` function draws into a matplotlib Axes (a new figure when ax is None) and
returns it; ``save_*`` functions write PNG files. Figures are built with
matplotlib.figure.Figure directly, not pyplot, so no display or global backend is touched
(PNG output goes through Agg). matplotlib is imported inside the functions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["PLOT_INSTALL_HINT", "require_matplotlib", "plot_grad_norms",
           "plot_delta_heatmap", "plot_jacobian", "plot_losses", "plot_lyapunov",
           "plot_backward_signal", "plot_loss_accuracy", "save_run_figures",
           "save_diagnosis_figure", "save_demo_figures", "DEMO_PANELS"]

PLOT_INSTALL_HINT = 'pip install "rnnx[plot]"'
_DPI = 110


def require_matplotlib():
    """Import matplotlib, or raise ImportError saying how to install it."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401  (fails on broken installs)
    except ImportError:
        raise ImportError(f"figures need matplotlib: {PLOT_INSTALL_HINT}") from None
    return matplotlib


def _axes(ax, size=(7.0, 4.2)):
    if ax is not None:
        return ax
    require_matplotlib()
    from matplotlib.figure import Figure
    return Figure(figsize=size, layout="constrained").add_subplot()


def _label(ax, xlabel, ylabel, title, *, log_y=False, legend=True):
    """The labels, grid and legend every line plot here gets."""
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        ax.legend(fontsize="x-small", loc="best")


def _save(fig, path):
    path = Path(path)
    fig.savefig(path, dpi=_DPI)
    return path


def plot_grad_norms(histories, ax=None):
    """Global gradient norm (before clipping) per training step, log y axis, one line per
    run of histories {label: History}. Spikes, skipped steps and clipped steps are
    marked; a step whose norm is non-finite or was never computed (backward overflow) gets
    a marker pinned at the top of the axis, so failures stay visible."""
    ax = _axes(ax)
    finite_max = 1.0
    for h in histories.values():
        g = h["grad_norm"]
        if np.isfinite(g).any():
            finite_max = max(finite_max, float(np.nanmax(np.where(np.isfinite(g), g, np.nan))))
    top = finite_max * 30.0          # headroom above the largest finite norm for the pins
    for i, (label, h) in enumerate(histories.items()):
        step, g = h["step"], h["grad_norm"]
        ok = np.isfinite(g) & (g > 0)
        line, = ax.plot(step, np.where(ok, g, np.nan), lw=1.0, label=f"{label}")
        color = line.get_color()
        marks = [(h["spike"] & ok, g, "^", "spike"),
                 (h["skipped"] & ok, g, "x", "skipped (finite norm)"),
                 ((h["clip_coef"] < 1) & ok, h["clipped_norm"], "_", "norm after clipping")]
        for mask, values, marker, what in marks:
            if mask.any():
                ax.scatter(step[mask], values[mask], marker=marker, s=28, color=color,
                           label=f"{label}: {what} ({int(mask.sum())})", zorder=3)
        bad = h["nonfinite"] | ~np.isfinite(g)
        if bad.any():
            # pinned at the top, one row per run so two runs' pins don't hide each other
            ax.scatter(step[bad], np.full(bad.sum(), top / 3.0 ** i), marker="v", s=22,
                       color=color, clip_on=False, zorder=3,
                       label=f"{label}: non-finite / overflow, pinned at top "
                             f"({int(bad.sum())})")
    _label(ax, "training step", "global gradient norm ||g||_2 (before clipping)",
           "Gradient norm per training step", log_y=True)
    ax.set_ylim(top=top * 1.5)
    return ax


def plot_delta_heatmap(delta_norms, ax=None, *, title="Backward signal ||dL/dh[t]||",
                       steps=None):
    """Heatmap of the backward-signal norms (training step x time step t), log colour
    scale. Cells BPTT never reached or that were non-finite are shown in grey. steps:
    (first, last) training steps to show (from 1, inclusive), default all."""
    require_matplotlib()
    from matplotlib.colors import LogNorm
    ax = _axes(ax)
    d = np.asarray(delta_norms, np.float64)
    first = 1
    if steps is not None and d.size:
        first, last = max(1, int(steps[0])), min(d.shape[0], int(steps[1]))
        d = d[first - 1:last]
    good = np.isfinite(d) & (d > 0)
    masked = np.ma.masked_where(~good, d)
    if good.any():
        lo, hi = float(d[good].min()), float(d[good].max())
        norm = LogNorm(vmin=lo, vmax=max(hi, lo * 10))
    else:
        norm = LogNorm(vmin=1e-3, vmax=1.0)
    import matplotlib
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.75")
    im = ax.imshow(masked.T if d.size else np.zeros((1, 1)), aspect="auto", origin="lower",
                   cmap=cmap, norm=norm, interpolation="nearest",
                   extent=(first - 0.5, first + d.shape[0] - 0.5, -0.5, d.shape[1] - 0.5)
                   if d.size else None)
    grey = "\n(grey: 0, non-finite, not reached or padding)" if (~good).any() else ""
    ax.figure.colorbar(im, ax=ax, label="||dL/dh[t]||_2 (log scale)" + grey)
    ax.set_xlabel("training step")
    ax.set_ylabel("time step t")
    ax.set_title(title, fontsize="medium")
    return ax


def plot_jacobian(curves, ax=None):
    """ln ||dh[T-1]/dh[T-1-k]|| against the lag k, with the bound k ln sigma_max(W_hh).

    curves: {label: (log_norms (T+1, B) from rnnx.jacobian_log_norms, sigma_max)}; the
    batch mean is drawn with a band from the smallest to the largest sequence."""
    ax = _axes(ax)
    for label, (L, sigma_max) in curves.items():
        L = np.asarray(L, np.float64)
        lag = np.arange(L.shape[0])
        finite = np.where(np.isfinite(L), L, np.nan)     # -inf: a saturated product
        line, = ax.plot(lag, np.nanmean(finite, axis=1), lw=1.6, label=f"{label}: batch mean")
        ax.fill_between(lag, np.nanmin(finite, axis=1), np.nanmax(finite, axis=1), alpha=0.2,
                        color=line.get_color())
        ax.plot(lag, lag * np.log(sigma_max), ls="--", color=line.get_color(),
                label=f"{label}: bound k ln sigma_max (sigma_max={sigma_max:.3g})")
    ax.axhline(0.0, color="k", lw=0.6)
    _label(ax, "lag k (time steps)", "ln ||dh[T-1] / dh[T-1-k]||_2",
           "Jacobian norm over k steps vs the sigma_max^k bound")
    return ax


def plot_losses(histories, ax=None):
    """Training loss per step (log y), one line per run; non-finite losses leave gaps
    and are counted in the legend."""
    ax = _axes(ax)
    for label, h in histories.items():
        loss = h["loss"]
        ok = np.isfinite(loss) & (loss > 0)
        n_bad = int((~np.isfinite(loss)).sum())
        ax.plot(h["step"], np.where(ok, loss, np.nan), lw=1.0,
                label=label + (f" ({n_bad} non-finite steps not drawn)" if n_bad else ""))
    _label(ax, "training step", "training loss (log scale)", "Loss", log_y=True)
    return ax


def plot_lyapunov(exponents, ax=None):
    """The Lyapunov exponents by index (nats per step), zero line marked."""
    ax = _axes(ax)
    e = np.asarray(exponents, np.float64)
    ax.plot(np.arange(1, len(e) + 1), e, "o-", ms=3)
    ax.axhline(0.0, color="k", lw=0.6)
    _label(ax, "index i", "Lyapunov exponent lambda_i (nats / time step)",
           "Lyapunov spectrum (QR method)", legend=False)
    return ax


def save_run_figures(out, histories, jacobian=None, *, prefix=""):
    """Write the figures of one or more runs into the folder out; returns their paths.

    grad_norms.png, delta_heatmap.png (one panel per run), losses.png, and when jacobian
    ({label: (log_norms, sigma_max)}) is given jacobian.png and overview.png (all four)."""
    require_matplotlib()
    from matplotlib.figure import Figure
    out = Path(out)
    paths = []

    def single(name, draw, size=(7.0, 4.2)):
        fig = Figure(figsize=size, layout="constrained")
        draw(fig)
        paths.append(_save(fig, out / f"{prefix}{name}.png"))

    def heatmaps(fig, axes=None):
        axes = axes if axes is not None else fig.subplots(1, len(histories), squeeze=False)[0]
        for ax, (label, h) in zip(axes, histories.items()):
            plot_delta_heatmap(h.delta_norms, ax, title=f"{label}: ||dL/dh[t]||")

    single("grad_norms", lambda f: plot_grad_norms(histories, f.add_subplot()))
    single("delta_heatmap", heatmaps, size=(5.0 * len(histories), 4.0))
    single("losses", lambda f: plot_losses(histories, f.add_subplot()))
    if jacobian:
        single("jacobian", lambda f: plot_jacobian(jacobian, f.add_subplot()))
        fig = Figure(figsize=(14, 10), layout="constrained")
        grid = fig.add_gridspec(3, 2)
        plot_grad_norms(histories, fig.add_subplot(grid[0, :]))
        row = grid[1, :].subgridspec(1, len(histories))
        heatmaps(fig, [fig.add_subplot(row[0, i]) for i in range(len(histories))])
        plot_jacobian(jacobian, fig.add_subplot(grid[2, 0]))
        plot_losses(histories, fig.add_subplot(grid[2, 1]))
        paths.append(_save(fig, out / f"{prefix}overview.png"))
    return paths


def save_diagnosis_figure(path, diagnosis):
    """The figure of ``rnnx diagnose`` (a rnnx.diagnostics.lyapunov.Diagnosis): Jacobian log-norms
    against lag with the bound, and the Lyapunov spectrum."""
    require_matplotlib()
    from matplotlib.figure import Figure
    import warnings
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    with warnings.catch_warnings():
        # a saturated model has lags (and exponents) that are all -inf: nothing to draw
        warnings.simplefilter("ignore", RuntimeWarning)
        plot_jacobian({"trajectory": (diagnosis.jacobian_log_norms, diagnosis.sigma_max)},
                      left)
        plot_lyapunov(diagnosis.exponents, right)
    fig.suptitle(f"verdict: {diagnosis.verdict} (lambda_1 = {diagnosis.lambda_max:+.4f} "
                 f"per step, spectral radius {diagnosis.spectral_radius:.4g})")
    return _save(fig, path)


# --- the demo's figures ------------------------------------------------------------------

# file name of each panel of `rnnx demo`, in the order of the overview
DEMO_PANELS = {"a": "grad_norms", "b": "backward_signal", "c": "delta_heatmap",
               "d": "loss_accuracy"}


def _decades(x):
    return f"{np.log10(x):.1f} decades" if np.isfinite(x) and x > 0 else "n/a"


def plot_backward_signal(rows, ax=None, *, title=None, colors=None):
    """||dL/dh[t]|| against the time step t (log y) for a few training steps, each with the
    bound ||dL/dh[T-1]|| sigma_max^(T-1-t) of BPTT's product of Jacobians.

    rows: {label: (delta_norms (T,), sigma_max of the W_hh that step used, or None)};
    colors: one matplotlib colour per row (default: the colour cycle)."""
    ax = _axes(ax)
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
    _label(ax, "time step t", "||dL/dh[t]||_2 (log scale)",
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
    _label(loss_ax, "training step", f"training loss (mean of {smooth} steps, log)",
           "Training loss", log_y=True)
    _label(acc_ax, "training step", "held-out accuracy (%)", "Task accuracy")
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

    facts: {run name: {"history": History, "story": report.Story, "calm": (step, sigma_max,
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
        paths.append(_save(fig, out / f"{DEMO_PANELS[key]}.png"))
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    loss_acc(fig)
    paths.append(_save(fig, out / f"{DEMO_PANELS['d']}.png"))
    fig = Figure(figsize=(15, 10), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    grad_norms(fig.add_subplot(grid[0, 0]))
    backward(fig.add_subplot(grid[0, 1]))
    heatmap(fig.add_subplot(grid[1, 0]))
    loss_acc(fig, grid[1, 1].subgridspec(1, 2))
    fig.suptitle(f"rnnx demo: the same RNN on {task}, from the same weights: "
                 + ", ".join(histories), fontsize="large")
    paths.append(_save(fig, out / "overview.png"))
    return paths
