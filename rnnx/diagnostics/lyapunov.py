"""Lyapunov exponents of the recurrence along a real trajectory, and what they predict.

The backward signal of BPTT is multiplied by the per-step Jacobian
J_t = dh[t]/dh[t-1] = diag(1 - h[t]^2) W_hh once per step, so over k steps it is scaled by
the product J_t J_{t-1} ... J_{t-k+1}. The Lyapunov exponents are the growth rates per
step of that product: lambda_1 > 0 means gradients explode like exp(lambda_1 k), lambda_1 < 0
that they vanish. They are measured by Benettin et al.'s QR method (1980): carry an
orthonormal frame Q through the Jacobians, re-orthonormalise it with a QR factorisation
after every step and average ln |diag(R)| -- the frame never overflows, whatever the
growth, unlike the product itself (the loop is compiled: rnnx._diagnostics.lyapunov_sums).
sigma_max(W_hh) only bounds lambda_1 from above (|1 - h^2| <= 1); saturated units make the
real rate smaller, which is why it is measured on a trajectory rather than read off W_hh.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .. import _diagnostics
from ._threads import run_samples
from .jacobian import checked_lags, log_norms_along, time_major, trajectory

__all__ = ["lyapunov_exponents", "local_lyapunov_exponents", "verdict", "Diagnosis",
           "diagnose", "EDGE_TOLERANCE", "SINGULAR_TOLERANCE"]

# |lambda_1| below this many nats per step counts as "near the edge": over 100 steps the
# backward signal then changes by less than a factor e^(0.01 * 100) = e.
EDGE_TOLERANCE = 0.01
# a singular value of W_hh counts as "above 1" from 1 + this: an orthogonal W_hh stored in
# float32 has singular values 1 +- a few 1e-7, which is rounding, not growth
SINGULAR_TOLERANCE = 1e-4


def _int_in(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            low <= value <= high):
        raise ValueError(f"{name} must be an int in [{low}, {high}]; got {value!r}")
    return int(value)


def qr_log_sums(h, W_hh, k, discard, window, n_windows, progress=None):
    """(n_windows, B, k) float64: sums of ln |diag R| of the QR method over each window of
    `window` steps after `discard`, along h (T, B, H) with W_hh (H, H) of h's dtype
    (checked by the caller). progress(n) gets the multiply-adds done."""
    T, B, H = h.shape
    sums = np.zeros((n_windows, B, k))
    W = np.ascontiguousarray(np.asarray(W_hh, h.dtype), dtype=np.float64)
    per_step = H * k * (H + 2 * k)
    run_samples(lambda b0, b1, stop, report, errors, main: _diagnostics.lyapunov_sums(
        h, W, k, discard, window, sums, b0, b1, stop,
        None if report is None else (lambda n: report(n * (b1 - b0) * per_step)), errors,
        main), B, H * H * k, (T - discard) * B * per_step, progress)
    return sums


def lyapunov_exponents(x, W_xh, W_hh, b_h, h0=None, *, k=None, discard=0,
                       batch_first=False):
    """The k largest Lyapunov exponents (nats per time step, descending), float64 (k,).

    Measured along the trajectory h = rnn_forward(x, W_xh, W_hh, b_h, h0) of every
    sequence in the batch x (T, B, D) (or (B, T, D) with batch_first=True) by the QR
    method, then averaged over the batch. k defaults to H (all exponents). The first
    ``discard`` steps move the frame onto the trajectory's dominant directions without
    being counted (a transient).
    """
    h = trajectory(time_major(x, batch_first), W_xh, W_hh, b_h, h0)
    T, B, H = h.shape
    k = H if k is None else _int_in("k", k, 1, H)
    discard = _int_in("discard", discard, 0, T - 1)
    sums = qr_log_sums(h, W_hh, k, discard, T - discard, 1)
    return np.sort(sums[0].mean(axis=0) / (T - discard))[::-1]


def local_lyapunov_exponents(x, W_xh, W_hh, b_h, h0=None, *, window, k=1, discard=0,
                             batch_first=False):
    """Finite-time (local) Lyapunov exponents: (n, B, k) float64, the growth rates per step
    of the frame's k directions over each window of ``window`` steps after ``discard``
    (n = (T - discard) // window; trailing steps that fill no window are not counted), per
    sequence, in the frame's order (direction j is the j-th of the QR method, not sorted).
    Their mean over windows and sequences is lyapunov_exponents' (before sorting).
    With batch_first=True x is (B, T, D) and the result (B, n, k).
    """
    h = trajectory(time_major(x, batch_first), W_xh, W_hh, b_h, h0)
    T, B, H = h.shape
    k = _int_in("k", k, 1, H)
    discard = _int_in("discard", discard, 0, T - 1)
    window = _int_in("window", window, 1, T - discard)
    sums = qr_log_sums(h, W_hh, k, discard, window, (T - discard) // window)
    local = sums / window
    return np.ascontiguousarray(local.transpose(1, 0, 2)) if batch_first else local


def verdict(lambda_max, tol=EDGE_TOLERANCE):
    """"saturated" (lambda_max = -inf or NaN: no gradient flows back at all), "exploding"
    (lambda_max > tol), "vanishing" (< -tol) or "near the edge"."""
    if not lambda_max > -np.inf:
        return "saturated"
    if lambda_max > tol:
        return "exploding"
    if lambda_max < -tol:
        return "vanishing"
    return "near the edge"


@dataclass
class Diagnosis:
    """What W_hh and a real trajectory say about the gradients of an RNN.

    singular_values: of W_hh, descending. jacobian_log_norms (lags+1, B):
    ln ||dh[T-1]/dh[T-1-k]|| per lag k and sequence (rnnx.jacobian_log_norms); log_norms
    is its batch mean. exponents: the Lyapunov exponents, descending. verdict: from
    exponents[0] (see ``verdict``). T: the trajectory's length; batch_size: its sequences.
    saturation: the fraction of the trajectory's unit-steps with |h| = 1 exactly
    (tanh' = 0 in the model's dtype: no gradient passes them).
    """

    spectral_radius: float
    singular_values: np.ndarray
    jacobian_log_norms: np.ndarray
    exponents: np.ndarray
    verdict: str
    T: int
    batch_size: int
    saturation: float = 0.0

    @property
    def sigma_max(self):
        return float(self.singular_values[0])

    @property
    def log_norms(self):
        """(lags+1,) batch mean of jacobian_log_norms."""
        return self.jacobian_log_norms.mean(axis=1)

    @property
    def lambda_max(self):
        return float(self.exponents[0])

    @property
    def above_one(self):
        """How many singular values of W_hh exceed 1 + SINGULAR_TOLERANCE."""
        return int((self.singular_values > 1 + SINGULAR_TOLERANCE).sum())

    def explain(self):
        """One line: the verdict and the numbers behind it."""
        lam, sat = self.lambda_max, f"{100 * self.saturation:.3g}%"
        if self.verdict == "saturated":
            return (f"saturated: {sat} of the unit-steps sit at |h| = 1 (tanh' = 0), so no "
                    f"gradient flows back (lambda_1 = {lam}); the weights have exploded "
                    f"or are far too large (sigma_max(W_hh) = {self.sigma_max:.4g})")
        if self.verdict == "near the edge":
            line = (f"near the edge: lambda_1 = {lam:+.4f} per step (|lambda_1| <= "
                    f"{EDGE_TOLERANCE}); gradients neither explode nor vanish quickly")
        else:
            grow = "grows" if lam > 0 else "shrinks"
            line = (f"{self.verdict}: lambda_1 = {lam:+.4f} per step, so the backward signal "
                    f"{grow} about 10x every {np.log(10) / abs(lam):.3g} steps "
                    f"(sigma_max(W_hh) = {self.sigma_max:.4g} bounds it by "
                    f"{np.log(self.sigma_max):+.4f} per step)")
        if self.saturation >= 0.01:
            line += f"; {sat} of the unit-steps are saturated (|h| = 1)"
        return line

    def to_dict(self):
        """Plain Python values (for JSON)."""
        return {"spectral_radius": self.spectral_radius, "sigma_max": self.sigma_max,
                "singular_values": self.singular_values.tolist(),
                "singular_values_above_1": self.above_one,
                "singular_tolerance": SINGULAR_TOLERANCE,
                "jacobian_log_norms_mean": [None if not np.isfinite(v) else float(v)
                                            for v in self.log_norms],
                "lyapunov_exponents": [None if not np.isfinite(v) else float(v)
                                       for v in self.exponents],
                "lambda_max": self.lambda_max, "verdict": self.verdict,
                "explanation": self.explain(), "T": self.T, "batch_size": self.batch_size,
                "saturation": self.saturation}


def diagnose(model, x, h0=None, *, k=None, discard=None, tol=EDGE_TOLERANCE, lags=None,
             batch_first=False, progress=False):
    """A Diagnosis of model (an rnnx.RNN) along its trajectories on the batch x (T, B, D)
    (or (B, T, D) with batch_first=True).

    discard defaults to T // 10 (transient steps not counted in the exponents); lags
    (default T) limits the Jacobian log-norms to the first lags lags. progress=True shows
    a progress bar on stderr when the call takes more than about a second.
    """
    x, h0 = model.checked_inputs(time_major(x, batch_first), h0)
    p = model.checked_params()
    d = model.diagnostics()
    h = trajectory(x, p["W_xh"], p["W_hh"], p["b_h"], h0)
    T, B, H = h.shape
    k = H if k is None else _int_in("k", k, 1, H)
    discard = _int_in("discard", T // 10 if discard is None else discard, 0, T - 1)
    lags = checked_lags(lags, T)
    bar = _progress_bar(B * (lags * 2.4 * H ** 3 + T * H * k * (H + 2 * k))) if progress \
        else None
    update = None if bar is None else bar.update
    try:
        L = log_norms_along(h, p["W_hh"], 2, lags, update)
        sums = qr_log_sums(h, p["W_hh"], k, discard, T - discard, 1, update)
    finally:
        if bar is not None:
            bar.close()
    exps = np.sort(sums[0].mean(axis=0) / (T - discard))[::-1]
    saturation = float(np.mean(np.abs(h) == 1))
    return Diagnosis(spectral_radius=d["spectral_radius"],
                     singular_values=np.asarray(d["singular_values"]),
                     jacobian_log_norms=L, exponents=exps,
                     verdict=verdict(float(exps[0]), tol), T=T, batch_size=B,
                     saturation=saturation)


def _progress_bar(total):
    """A tqdm bar over `total` multiply-adds, shown only after a second."""
    from tqdm.auto import tqdm
    return tqdm(total=total, delay=1.0, desc="diagnose", leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
