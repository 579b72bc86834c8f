"""Lyapunov exponents of the recurrence along a real trajectory, and what they predict.

The backward signal of BPTT is multiplied by the per-step Jacobian
J_t = dh[t]/dh[t-1] = diag(1 - h[t]^2) W_hh once per step, so over k steps it is scaled by
the product J_t J_{t-1} ... J_{t-k+1}. The Lyapunov exponents are the growth rates per
step of that product: lambda_1 > 0 means gradients explode like exp(lambda_1 k), lambda_1 < 0
that they vanish. They are measured by Benettin et al.'s QR method (1980): carry an
orthonormal frame Q through the Jacobians, re-orthonormalise it with a QR factorisation
after every step and average ln |diag(R)| -- the frame never overflows, whatever the
growth, unlike the product itself. sigma_max(W_hh) only bounds lambda_1 from above
(|1 - h^2| <= 1); saturated units make the real rate smaller, which is why it is measured
on a trajectory rather than read off W_hh.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..core.recurrence import rnn_forward

__all__ = ["lyapunov_exponents", "verdict", "Diagnosis", "diagnose", "EDGE_TOLERANCE"]

# |lambda_1| below this many nats per step counts as "near the edge": over 100 steps the
# backward signal then changes by less than a factor e^(0.01 * 100) = e.
EDGE_TOLERANCE = 0.01


def _qr_positive(Z):
    """Q, |diag(R)| of stacked QR factorisations Z = Q R (B, H, k)."""
    Q, R = np.linalg.qr(Z)
    return Q, np.abs(np.diagonal(R, axis1=-2, axis2=-1))


def lyapunov_exponents(x, W_xh, W_hh, b_h, h0=None, *, k=None, discard=0):
    """The k largest Lyapunov exponents (nats per time step, descending), float64 (k,).

    Measured along the trajectory h = rnn_forward(x, W_xh, W_hh, b_h, h0) of every
    sequence in the batch x (T, B, D) by the QR method, then averaged over the batch.
    k defaults to H (all exponents). The first ``discard`` steps move the frame onto the
    trajectory's dominant directions without being counted (a transient).
    """
    h = rnn_forward(x, W_xh, W_hh, b_h, h0).astype(np.float64)
    T, B, H = h.shape
    k = H if k is None else k
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= H:
        raise ValueError(f"k must be an int in [1, H={H}]; got {k!r}")
    if isinstance(discard, bool) or not isinstance(discard, numbers.Integral) or not (
            0 <= discard < T):
        raise ValueError(f"discard must be an int in [0, T={T}); got {discard!r}")
    W = np.asarray(W_hh, np.float64)
    Q = np.broadcast_to(np.eye(H)[:, :k], (B, H, k))
    log_growth = np.zeros((B, k))
    with np.errstate(divide="ignore"):        # a saturated frame direction: ln 0 = -inf
        for t in range(T):
            # J_t Q = diag(1 - h[t]^2) (W_hh Q), batched over the sequences
            Q, r = _qr_positive((1.0 - h[t] ** 2)[:, :, None] * (W @ Q))
            if t >= discard:
                log_growth += np.log(r)
    exponents = log_growth.mean(axis=0) / (T - discard)
    return np.sort(exponents)[::-1]


def verdict(lambda_max, tol=EDGE_TOLERANCE):
    """"exploding" (lambda_max > tol), "vanishing" (< -tol) or "near the edge"."""
    if lambda_max > tol:
        return "exploding"
    if lambda_max < -tol:
        return "vanishing"
    return "near the edge"


@dataclass
class Diagnosis:
    """What W_hh and a real trajectory say about the gradients of an RNN.

    singular_values: of W_hh, descending. jacobian_log_norms (T+1, B):
    ln ||dh[T-1]/dh[T-1-k]|| per lag k and sequence (rnnx.jacobian_log_norms); log_norms
    is its batch mean. exponents: the
    Lyapunov exponents, descending. verdict: from exponents[0] (see ``verdict``).
    """

    spectral_radius: float
    singular_values: np.ndarray
    jacobian_log_norms: np.ndarray
    exponents: np.ndarray
    verdict: str
    T: int
    batch_size: int

    @property
    def sigma_max(self):
        return float(self.singular_values[0])

    @property
    def log_norms(self):
        """(T+1,) batch mean of jacobian_log_norms."""
        return self.jacobian_log_norms.mean(axis=1)

    @property
    def lambda_max(self):
        return float(self.exponents[0])

    def explain(self):
        """One line: the verdict and the number behind it."""
        lam = self.lambda_max
        if self.verdict == "near the edge":
            return (f"near the edge: lambda_1 = {lam:+.4f} per step (|lambda_1| <= "
                    f"{EDGE_TOLERANCE}); gradients neither explode nor vanish quickly")
        grow = "grows" if lam > 0 else "shrinks"
        return (f"{self.verdict}: lambda_1 = {lam:+.4f} per step, so the backward signal "
                f"{grow} about 10x every {np.log(10) / abs(lam):.3g} steps "
                f"(sigma_max(W_hh) = {self.sigma_max:.4g} bounds it by "
                f"{np.log(self.sigma_max):+.4f} per step)")

    def to_dict(self):
        """Plain Python values (for JSON)."""
        return {"spectral_radius": self.spectral_radius, "sigma_max": self.sigma_max,
                "singular_values": self.singular_values.tolist(),
                "jacobian_log_norms_mean": [None if not np.isfinite(v) else float(v)
                                            for v in self.log_norms],
                "lyapunov_exponents": self.exponents.tolist(),
                "lambda_max": self.lambda_max, "verdict": self.verdict,
                "explanation": self.explain(), "T": self.T, "batch_size": self.batch_size}


def diagnose(model, x, h0=None, *, k=None, discard=None, tol=EDGE_TOLERANCE):
    """A Diagnosis of model (an rnnx.RNN) along its trajectories on the batch x (T, B, D).

    discard defaults to T // 10 (transient steps not counted in the exponents).
    """
    x, h0 = model.checked_inputs(x, h0)
    p = model.checked_params()
    d = model.diagnostics()
    T, B = x.shape[:2]
    discard = T // 10 if discard is None else discard
    L = model.jacobian_log_norms(x, h0)
    exps = lyapunov_exponents(x, p["W_xh"], p["W_hh"], p["b_h"], h0, k=k, discard=discard)
    return Diagnosis(spectral_radius=d["spectral_radius"],
                     singular_values=np.asarray(d["singular_values"]),
                     jacobian_log_norms=L, exponents=exps,
                     verdict=verdict(float(exps[0]), tol), T=T, batch_size=B)
