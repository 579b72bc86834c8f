"""The story of a training run in plain words (the summary table is rnnx.cli.report's).

``read_story`` measures the story of any run from its History (live, or a saved log and
its .delta_norms.npy), and ``narrate`` tells it, for `rnnx demo`, `rnnx train --explain` and
`rnnx plot LOG --explain`:

* the calm band: the median global gradient norm of the first CALM_STEPS steps, and the
  band of a factor BAND either side of it;
* the step where the norm first left that band, and the largest finite norm in the
  JUMP_WINDOW steps after it (the jump, as a factor of the calm median);
* the spike: the largest finite norm before the first non-finite step, and how the
  backward signal ||dL/dh[t]|| of that step depends on the time step t. BPTT multiplies
  it by the Jacobian dh[t]/dh[t-1] once per step back in time, so compound growth is a
  straight line in ln ||dL/dh[t]|| against t: its slope, read as a factor per time step,
  and R^2 say whether the spike is that growth;
* the first non-finite step and the time step where BPTT overflowed, and what the run
  did about failures (skipped, rolled back, clipped).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["CALM_STEPS", "BAND", "JUMP_WINDOW", "AFTER", "first_index", "growth_rate",
           "Story", "read_story", "logged_sigma_max", "narrate", "wrap"]

CALM_STEPS = 20        # the calm stretch the band is measured on
BAND = 10.0            # the band: a factor 10 either side of the calm median
JUMP_WINDOW = 10       # steps after leaving the band in which the jump is looked for
AFTER = 20             # steps either side of the spike compared at t = 0


def first_index(mask):
    """The index of the first True of mask, None when there is none."""
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def growth_rate(delta_norms):
    """(rate, r2, first t, last t) of ln ||dL/dh[t]|| against t by least squares, over the
    time steps whose norm is finite and positive; rate = -slope, so that rate > 0 means the
    backward signal grows going back in time (exp(rate) per time step). NaNs when fewer
    than 3 time steps qualify or the norms are all equal."""
    d = np.asarray(delta_norms, np.float64)
    t = np.flatnonzero(np.isfinite(d) & (d > 0))
    if t.size < 3:
        return math.nan, math.nan, -1, -1
    y = np.log(d[t])
    slope, intercept = np.polyfit(t, y, 1)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - (slope * t + intercept)) ** 2)) / total if total > 0 else math.nan
    return float(-slope), r2, int(t[0]), int(t[-1])


@dataclass
class Story:
    """The measured story of one run (see the module docs); steps are training steps as
    logged (from 1), None when the event did not happen."""

    steps: int
    calm_median: float             # median norm of the first CALM_STEPS finite steps
    calm_steps: int                # how many steps that median is of
    calm_held: bool                # there were that many, all finite and in the band
    left_band: int | None          # first step after them outside the band
    jump_step: int | None          # largest finite norm within JUMP_WINDOW steps of left_band
    jump_factor: float             # ... over calm_median
    spike_step: int | None         # largest finite norm before the first non-finite step
    spike_norm: float
    spike_factor: float
    growth: float                  # growth rate per time step of ||dL/dh[t]|| at the spike
    growth_r2: float
    growth_t: tuple                # (first, last) time step of the fit
    W_hh_share: float              # ||g_W_hh|| / ||g|| at the spike (NaN if not logged)
    first_nonfinite: int | None
    overflow_t: int | None         # time step where BPTT overflowed at first_nonfinite
    nonfinite_steps: int
    skipped_steps: int
    skipped_nonfinite: int         # ... of which non-finite (the failure policy's)
    rolled_back_steps: int
    signal_before: float           # median ||dL/dh[0]|| of the AFTER steps before the spike
    signal_after: float            # ... and of the AFTER steps after it
    lr_first: float                # learning rate of the first step
    lr_last: float                 # ... and of the last (rollbacks lower it)
    clipped_steps: int
    largest_clipped: float         # largest norm that clipping rescaled (NaN: none)
    clipped_to: float              # ... to this norm

    def to_dict(self):
        return asdict(self)


def _column(history, name, fill):
    """history[name], or an array of fill when the log has no such column."""
    return history[name] if name in history else np.full(len(history), fill)


def _median(values):
    """Median of the finite values (NaN when there are none)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else math.nan


def read_story(history, *, calm_steps=CALM_STEPS):
    """The Story of a run from its History: the columns `rnnx plot` needs (step, grad_norm,
    clipped_norm, clip_coef, skipped, nonfinite), rolled_back, overflow_t and
    grad_norm_W_hh when logged, and delta_norms for the growth rate (NaN when absent)."""
    n = len(history)
    step = history["step"]
    g = history["grad_norm"]
    ok = np.isfinite(g) & (g > 0)
    nonfinite = history["nonfinite"] | ~np.isfinite(g)
    first_bad = first_index(nonfinite)
    calm_idx = np.flatnonzero(ok)[:calm_steps]
    median = float(np.median(g[calm_idx])) if calm_idx.size else math.nan
    inside = ok & (g <= BAND * median) & (g >= median / BAND)
    # held: calm_steps steps measured, every step up to the last of them finite and inside
    calm_held = calm_idx.size == calm_steps and bool(inside[:calm_idx[-1] + 1].all())
    after = calm_idx[-1] + 1 if calm_idx.size else n
    left = first_index(~inside[after:])
    left = None if left is None else left + after
    jump = jump_factor = None
    if left is not None:
        window = np.arange(left, min(left + JUMP_WINDOW + 1, n))
        window = window[ok[window]]
        if window.size:
            jump = int(window[np.argmax(g[window])])
            jump_factor = float(g[jump] / median)
    before = np.flatnonzero(ok[:first_bad if first_bad is not None else n])
    spike = int(before[np.argmax(g[before])]) if before.size else None
    growth = (math.nan, math.nan, -1, -1)
    before_after = math.nan, math.nan
    share = math.nan
    if spike is not None:
        deltas = history.delta_norms
        if deltas.shape[0] == n and deltas.size:
            growth = growth_rate(deltas[spike])
            before_after = (_median(deltas[max(0, spike - AFTER):spike, 0]),
                            _median(deltas[spike + 1:spike + 1 + AFTER, 0]))
        share = float(_column(history, "grad_norm_W_hh", math.nan)[spike] / g[spike])
    clipped = (history["clip_coef"] < 1) & ok
    skipped = history["skipped"]
    rolled_back = _column(history, "rolled_back", False)
    overflow = _column(history, "overflow_t", -1)[first_bad] if first_bad is not None else -1
    at = lambda i: None if i is None else int(step[i])
    return Story(
        steps=n, calm_median=median, calm_steps=int(calm_idx.size), calm_held=calm_held,
        left_band=at(left), jump_step=at(jump),
        jump_factor=math.nan if jump_factor is None else jump_factor,
        spike_step=at(spike), spike_norm=math.nan if spike is None else float(g[spike]),
        spike_factor=math.nan if spike is None else float(g[spike] / median),
        growth=growth[0], growth_r2=growth[1], growth_t=(growth[2], growth[3]),
        W_hh_share=share, first_nonfinite=at(first_bad),
        overflow_t=int(overflow) if overflow >= 0 else None,
        signal_before=before_after[0], signal_after=before_after[1],
        nonfinite_steps=int(nonfinite.sum()), skipped_steps=int(skipped.sum()),
        skipped_nonfinite=int((skipped & nonfinite & ~rolled_back).sum()),
        rolled_back_steps=int(rolled_back.sum()),
        lr_first=float(_column(history, "lr", math.nan)[0]) if n else math.nan,
        lr_last=float(_column(history, "lr", math.nan)[-1]) if n else math.nan,
        clipped_steps=int(clipped.sum()),
        largest_clipped=float(g[clipped].max()) if clipped.any() else math.nan,
        clipped_to=float(history["clipped_norm"][clipped][np.argmax(g[clipped])])
        if clipped.any() else math.nan)


def _n(x):
    """A number for prose: 3 significant figures, thousands separated."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1e5 or (x != 0 and abs(x) < 1e-3):
        return f"{x:.3g}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def logged_sigma_max(history, step):
    """(step, sigma_max) of the last sigma_max(W_hh) the log holds from before step (the
    Trainer logs it every diag_every steps, after that step's update), or (None, None)."""
    if step is None or "sigma_max" not in history:
        return None, None
    steps, values = history["step"], history["sigma_max"]
    idx = np.flatnonzero((steps < step) & np.isfinite(values))
    return (int(steps[idx[-1]]), float(values[idx[-1]])) if idx.size else (None, None)


def _not_applied(s, policy):
    """What was done with the updates that were not applied but not rolled back: a spike
    policy's skips leave the weights unchanged; a non-finite step's update was replaced
    as the failure policy says (unknown when the story comes from a log)."""
    acts = []
    failures = s.skipped_nonfinite
    spikes = s.skipped_steps - s.rolled_back_steps - failures
    if policy == "skip":
        spikes, failures = spikes + failures, 0
    steps = lambda n: f"{n:,} step{'' if n == 1 else 's'}"                  # noqa: E731
    if spikes > 0:
        acts.append(f"skipped {steps(spikes)} (weights unchanged)")
    if failures and policy == "pascanu":
        acts.append(f"replaced the update of {steps(failures)} (non-finite) by Pascanu et "
                    "al.'s fallback step (a multiple of W_hh)")
    elif failures:
        acts.append(f"did not apply the update of {steps(failures)} (non-finite)")
    return acts


def narrate(story, *, name="the run", sigma_max=None, lyapunov=None, calm_lyapunov=None,
            accuracy=None, eval_sequences=None, solved=None, sigma_max_step=None,
            policy=None):
    """The story in plain words (a paragraph of a few sentences).

    sigma_max, lyapunov: sigma_max(W_hh) and the largest Lyapunov exponent (nats per time
    step) of the weights the spike step used (sigma_max_step: the step after which
    sigma_max was logged instead, when it comes from a log); calm_lyapunov: (step,
    exponent) during the calm stretch; accuracy / eval_sequences / solved: the task
    criterion on fresh data; policy: the name of the failure policy (Trainer.policy), which
    says what was done instead of a non-finite step's update (a log does not record it).
    Each is left out of the story when None.
    """
    s = story
    out = []
    if s.calm_steps == 0:
        return f"{name}: no step had a finite gradient norm, so there is no story to tell."
    calm = (f"{name}: over the first {s.calm_steps} steps the gradient norm "
            f"{'stayed' if s.calm_held else 'did not stay'} within a factor "
            f"{BAND:g} of its median {_n(s.calm_median)}")
    if calm_lyapunov is not None:
        step, lam = calm_lyapunov
        calm += (f" (at step {step} the largest Lyapunov exponent was {lam:+.3f} per time "
                 f"step: the backward signal {'shrank' if lam < 0 else 'grew'} going back in "
                 "time)")
    out.append(calm + ".")
    if s.left_band is None:
        out.append(f"It never left that band in {s.steps:,} steps.")
    else:
        text = f"It first left the band at step {s.left_band:,}"
        if s.jump_step is not None:
            text += (f"; within {JUMP_WINDOW} steps it reached {_n(s.jump_factor)}x the calm "
                     f"median (step {s.jump_step:,})")
        out.append(text + ".")
    if s.spike_step is not None and s.left_band is not None:
        text = (f"The largest finite norm, {_n(s.spike_norm)} ({_n(s.spike_factor)}x the "
                f"calm median, {math.log10(max(s.spike_factor, 1e-300)):.1f} decades), came "
                f"at step {s.spike_step:,}")
        if math.isfinite(s.growth):
            factor = math.exp(s.growth)
            t0, t1 = s.growth_t
            way = "grew" if s.growth > 0 else "shrank"
            text += (f"; there ||dL/dh[t]|| {way} by a factor {factor:.3f} per time step going "
                     f"back in time (R^2 = {s.growth_r2:.2f} over t = {t0}..{t1}: "
                     f"{factor ** (t1 - t0):.3g}x end to end)")
            if s.growth > 0 and s.growth_r2 > 0.8:
                text += ", BPTT's compound growth"
        out.append(text + ".")
        if sigma_max is not None or lyapunov is not None:
            parts = []
            if sigma_max is not None:
                when = "" if sigma_max_step is None else f", as logged after step " \
                    f"{sigma_max_step:,},"
                parts.append(f"sigma_max(W_hh){when} was {sigma_max:.3g} (the bound: at most "
                             f"{sigma_max:.3g}x per time step)")
            if lyapunov is not None:
                parts.append(f"the largest Lyapunov exponent {lyapunov:+.3f} per time step "
                             f"({math.exp(lyapunov):.3f}x)")
            text = "At that step " + " and ".join(parts)
            if lyapunov is not None and lyapunov < 0 < s.growth:
                text += ("; lambda_1 averages the growth along whole trajectories of other "
                         "sequences, and this step's batch grew faster")
            out.append(text + ".")
        if math.isfinite(s.W_hh_share):
            out.append(f"W_hh carried {100 * s.W_hh_share:.0f}% of that gradient's norm.")
        if math.isfinite(s.signal_before) and math.isfinite(s.signal_after):
            out.append(f"Over the {AFTER} steps before it the backward signal at t = 0 had "
                       f"median {_n(s.signal_before)}, over the {AFTER} after it "
                       f"{_n(s.signal_after)}.")
    if s.first_nonfinite is None:
        out.append("No step was non-finite.")
    else:
        where = f" (BPTT overflowed at time step t = {s.overflow_t})" \
            if s.overflow_t is not None else ""
        out.append(f"The first non-finite step was step {s.first_nonfinite:,}{where}; "
                   f"{s.nonfinite_steps:,} steps were non-finite in all.")
    if s.skipped_steps or s.rolled_back_steps:
        acts = _not_applied(s, policy)
        if s.rolled_back_steps:
            lowered = (f"the learning rate lowered from {s.lr_first:.3g} to {s.lr_last:.3g}"
                       if math.isfinite(s.lr_first) and math.isfinite(s.lr_last)
                       else "the learning rate lowered")
            acts.append(f"rolled back {s.rolled_back_steps:,} steps ({lowered})")
        out.append("The policy " + " and ".join(acts) + ".")
    if s.clipped_steps:
        out.append(f"Clipping rescaled {s.clipped_steps:,} of {s.steps:,} updates "
                   f"({100 * s.clipped_steps / s.steps:.0f}%), the largest gradient "
                   f"({_n(s.largest_clipped)}) down to norm {_n(s.clipped_to)}.")
    if accuracy is not None:
        seqs = f" on {eval_sequences:,} fresh sequences" if eval_sequences else ""
        verdict = "" if solved is None else (": solved (error below 1%)" if solved
                                             else ": not solved (error 1% or more)")
        out.append(f"Accuracy{seqs}: {100 * accuracy:.2f}%{verdict}.")
    return " ".join(out)


def wrap(text, width=92):
    """text with each paragraph (blank-line separated) filled to width columns."""
    import textwrap
    return "\n\n".join(textwrap.fill(p, width) for p in text.split("\n\n"))
