"""Pascanu, Mikolov & Bengio (2013)'s regulariser Omega of the gradient flow (eq. 9-10).

Omega asks every backward step to preserve the norm of the backward signal, in the
direction the loss actually sends it:

    Omega_b = sum_t ( ||v[t,b] @ W_hh|| / ||delta[t,b]|| - 1 )^2,
    v[t,b]  = delta[t,b] * (1 - h[t,b]^2),    Omega = mean_b Omega_b,

where delta[t] = dL/dh[t] (rnn_backward(..., return_delta=True)) and
v[t] @ W_hh = delta[t] dh[t]/dh[t-1]. Conventions:
  * norms are per sample (over H) and Omega is averaged over the batch, like the loss;
  * the sum runs over all T transitions dh[t]/dh[t-1], t = 0..T-1, the first one going
    back to h0 (its Jacobian diag(1 - h[0]^2) W_hh does not depend on h0);
  * as in the paper, delta and h are constants: the gradient is the immediate derivative
    with respect to W_hh only;
  * terms with delta[t,b] = 0 (no signal to preserve) are left out, and a term whose
    v[t,b] @ W_hh is 0 contributes its value 1 but no gradient (the norm has no
    derivative at 0).
"""
from __future__ import annotations

import numpy as np

__all__ = ["pascanu_omega"]


def pascanu_omega(h, delta, W_hh):
    """(Omega: float, dOmega/dW_hh (H, H) in W_hh's dtype) for h, delta (T, B, H)."""
    h = np.asarray(h, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    W = np.asarray(W_hh, dtype=np.float64)
    if h.ndim != 3 or delta.shape != h.shape or W.shape != (h.shape[2],) * 2:
        raise ValueError(f"h and delta must be (T, B, H) and W_hh (H, H); got h {h.shape}, "
                         f"delta {delta.shape}, W_hh {W.shape}")
    B, H = h.shape[1], h.shape[2]
    v = delta * (1.0 - h * h)
    u = v @ W                                            # delta[t] dh[t]/dh[t-1]
    d = np.linalg.norm(delta, axis=-1)                   # (T, B)
    n = np.linalg.norm(u, axis=-1)
    live = d > 0
    ratio = np.divide(n, d, out=np.zeros_like(n), where=live)
    omega = float(np.sum(np.square(ratio - 1.0, where=live, out=np.zeros_like(n))) / B)
    # d/dW ||v @ W|| = outer(v, u) / ||u||, so each term's gradient is c * outer(v, u).
    c = np.divide(2.0 * (ratio - 1.0), d * n * B, out=np.zeros_like(n), where=live & (n > 0))
    dW = (v * c[..., None]).reshape(-1, H).T @ u.reshape(-1, H)
    return omega, dW.astype(np.asarray(W_hh).dtype, copy=False)
