"""Pascanu, Mikolov & Bengio (2013)'s regulariser Omega of the gradient flow, in its two
published forms.

Omega asks every backward step to preserve the norm of the backward signal, in the
direction the loss actually sends it. With delta[t] = dL/dh[t] (rnn_backward(...,
return_delta=True)), v[t] = delta[t] * (1 - h[t]^2) and u[t] = v[t] @ W_hh =
delta[t] dh[t]/dh[t-1], per sample b (norms over H):

  pascanu_omega (the published code, RNN.py; the default, the form the paper's alpha
  values were chosen with): the mean, over the live (t, b) pairs, of a SQUARED-norm ratio

      Omega = mean_{(t, b) live} ( ||u[t,b]||^2 / ||delta[t,b]||^2 - 1 )^2,
      live  = ||delta[t,b]||^2 >= bound (1e-20 in the code);

  pascanu_omega_eq9 (eq. 9 as printed in the paper): a SUM over time of the unsquared
  norm ratio, here averaged over the batch like the loss,

      Omega = mean_b sum_t ( ||u[t,b]|| / ||delta[t,b]|| - 1 )^2   (terms with delta = 0
      left out).

The eq. 9 value grows with T where the code's does not, so an alpha tuned for one does not
carry over to the other. Common conventions:
  * t runs over all T transitions dh[t]/dh[t-1], t = 0..T-1, the first one going back to
    h0 (its Jacobian diag(1 - h[0]^2) W_hh does not depend on h0);
  * as in the paper and the code, delta and h are constants: the gradient is the immediate
    derivative with respect to W_hh only;
  * a dead pair (no signal to preserve: right-padded steps after a sequence's end have
    delta = 0 exactly) counts for nothing; with no live pair Omega = 0;
  * a live term whose u is 0 (saturated units) contributes its value but, in eq. 9's form,
    no gradient (the norm has no derivative at 0).
Both return (Omega: float, dOmega/dW_hh (H, H) in W_hh's dtype), computed in float64.
Their two products, of (T*B) x H x H multiply-adds each, are rnnx.core.threads.matmul's:
on one BLAS thread, split over rnnx's threads where they are large.
"""
from __future__ import annotations

import numpy as np

from .._checks import positive
from ..core.threads import matmul

__all__ = ["pascanu_omega", "pascanu_omega_eq9", "OMEGA_FORMS"]

# The code's threshold on ||delta||^2 below which a pair is left out.
CODE_BOUND = 1e-20


def _flow(h, delta, W_hh):
    """(v, u, ||delta||^2, W's dtype): the backward step u = v @ W of every (t, b)."""
    dtype = np.asarray(W_hh).dtype
    h = np.asarray(h, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    W = np.asarray(W_hh, dtype=np.float64)
    if h.ndim != 3 or delta.shape != h.shape or W.shape != (h.shape[2],) * 2:
        raise ValueError(f"h and delta must be (T, B, H) and W_hh (H, H); got h {h.shape}, "
                         f"delta {delta.shape}, W_hh {W.shape}")
    v = delta * (1.0 - h * h)
    # u[t] = v[t] @ W = delta[t] dh[t]/dh[t-1]   (T*B, H) = (T*B, H) @ (H, H)
    u = matmul(v.reshape(-1, W.shape[0]), W).reshape(v.shape)
    return v, u, np.einsum("tbh,tbh->tb", delta, delta), dtype


def _outer_sum(v, c, u):
    """sum over (t, b) of c[t,b] * outer(v[t,b], u[t,b]): (T*B, H)^T (T*B, H) -> (H, H)."""
    H = v.shape[-1]
    return matmul((v * c[..., None]).reshape(-1, H).T, u.reshape(-1, H))


def pascanu_omega(h, delta, W_hh, *, bound=CODE_BOUND):
    """Omega as Pascanu et al.'s published code computes it (see the module docstring):
    the mean over live (t, b) of (||u||^2 / ||delta||^2 - 1)^2, for h, delta (T, B, H)
    and W_hh (H, H). bound: the least ||delta||^2 of a live pair (the code's 1e-20)."""
    bound = positive("bound", bound)
    v, u, d2, dtype = _flow(h, delta, W_hh)
    live = d2 >= bound
    count = int(np.count_nonzero(live))
    if count == 0:
        return 0.0, np.zeros(np.shape(W_hh), dtype)
    q = np.divide(np.einsum("tbh,tbh->tb", u, u), d2, out=np.ones_like(d2), where=live)
    omega = float(np.sum(np.square(q - 1.0))) / count
    # d/dW ||v @ W||^2 = 2 outer(v, u), so each term's gradient is c * outer(v, u).
    c = np.divide(4.0 * (q - 1.0), d2 * count, out=np.zeros_like(d2), where=live)
    return omega, _outer_sum(v, c, u).astype(dtype, copy=False)


def pascanu_omega_eq9(h, delta, W_hh):
    """Omega as eq. 9 of the paper prints it (see the module docstring): the batch mean of
    sum_t (||u|| / ||delta|| - 1)^2, for h, delta (T, B, H) and W_hh (H, H)."""
    v, u, d2, dtype = _flow(h, delta, W_hh)
    B = v.shape[1]
    d = np.sqrt(d2)
    n = np.linalg.norm(u, axis=-1)
    live = d > 0
    ratio = np.divide(n, d, out=np.zeros_like(n), where=live)
    omega = float(np.sum(np.square(ratio - 1.0, where=live, out=np.zeros_like(n))) / B)
    # d/dW ||v @ W|| = outer(v, u) / ||u||, so each term's gradient is c * outer(v, u).
    c = np.divide(2.0 * (ratio - 1.0), d * n * B, out=np.zeros_like(n), where=live & (n > 0))
    return omega, _outer_sum(v, c, u).astype(dtype, copy=False)


# RNN.omega_form -> the function RNN.loss_and_gradients(..., omega=alpha) adds.
OMEGA_FORMS = {"code": pascanu_omega, "eq9": pascanu_omega_eq9}
