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
           "save_run_figures",
           "save_diagnosis_figure", "new_axes", "label_axes", "save_figure"]

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


def new_axes(ax, size=(7.0, 4.2)):
    if ax is not None:
        return ax
    require_matplotlib()
    from matplotlib.figure import Figure
    return Figure(figsize=size, layout="constrained").add_subplot()


def label_axes(ax, xlabel, ylabel, title, *, log_y=False, legend=True):
    """The labels, grid and legend every line plot here gets."""
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        ax.legend(fontsize="x-small", loc="best")


def save_figure(fig, path):
    path = Path(path)
    fig.savefig(path, dpi=_DPI)
    return path


def plot_grad_norms(histories, ax=None):
    """Global gradient norm (before clipping) per training step, log y axis, one line per
    run of histories {label: History}. Spikes, skipped steps and clipped steps are
    marked; a step whose norm is non-finite or was never computed (backward overflow) gets
    a marker pinned at the top of the axis, so failures stay visible."""
    ax = new_axes(ax)
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
    label_axes(ax, "training step", "global gradient norm ||g||_2 (before clipping)",
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
    ax = new_axes(ax)
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
    ax = new_axes(ax)
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
    label_axes(ax, "lag k (time steps)", "ln ||dh[T-1] / dh[T-1-k]||_2",
           "Jacobian norm over k steps vs the sigma_max^k bound")
    return ax


def plot_losses(histories, ax=None):
    """Training loss per step (log y), one line per run; non-finite losses leave gaps
    and are counted in the legend."""
    ax = new_axes(ax)
    for label, h in histories.items():
        loss = h["loss"]
        ok = np.isfinite(loss) & (loss > 0)
        n_bad = int((~np.isfinite(loss)).sum())
        ax.plot(h["step"], np.where(ok, loss, np.nan), lw=1.0,
                label=label + (f" ({n_bad} non-finite steps not drawn)" if n_bad else ""))
    label_axes(ax, "training step", "training loss (log scale)", "Loss", log_y=True)
    return ax


def plot_lyapunov(exponents, ax=None):
    """The Lyapunov exponents by index (nats per step), zero line marked."""
    ax = new_axes(ax)
    e = np.asarray(exponents, np.float64)
    ax.plot(np.arange(1, len(e) + 1), e, "o-", ms=3)
    ax.axhline(0.0, color="k", lw=0.6)
    label_axes(ax, "index i", "Lyapunov exponent lambda_i (nats / time step)",
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
        paths.append(save_figure(fig, out / f"{prefix}{name}.png"))

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
        paths.append(save_figure(fig, out / f"{prefix}overview.png"))
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
    return save_figure(fig, path)


# --- the demo's figures ------------------------------------------------------------------

# file name of each panel of `rnnx demo`, in the order of the overview
