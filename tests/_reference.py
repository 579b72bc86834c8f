"""A plain-numpy reference of the tanh RNN, written for the tests and independent of rnnx.

Loops over time, one numpy expression per equation, in the dtype of the inputs (so a
float32 reference really rounds like float32 arithmetic). Nothing here is clever: it is
meant to be obviously right.

    h[t]     = tanh(x[t] @ W_xh.T + h[t-1] @ W_hh.T + b_h),        h[-1] = h0
    delta[t] = grad_h[t] + dz[t+1] @ W_hh                          (dL/dh[t] in total)
    dz[t]    = delta[t] * (1 - h[t]^2)                             (dL/d pre-activation)
"""
import numpy as np

__all__ = ["random_problem", "forward", "backward", "jacobian_product", "log_norms",
           "orthogonal", "assert_close", "TOL"]

# rtol of the comparisons with the reference, per compute dtype
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


def orthogonal(n, rng):
    """A random orthogonal (n, n) matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def random_problem(T, B, D, H, *, rng, dtype=np.float64, scale=1.0, with_h0=True):
    """Random (x, W_xh, W_hh, b_h, h0, G) with W_hh of spectral radius about scale.

    G (T, B, H) plays grad_h, the direct gradient of the loss L = sum(h * G).
    """
    x = rng.standard_normal((T, B, D))
    W_xh = rng.standard_normal((H, D)) / np.sqrt(D)
    W_hh = scale * rng.standard_normal((H, H)) / np.sqrt(H)
    b_h = 0.1 * rng.standard_normal(H)
    h0 = 0.5 * rng.standard_normal((B, H)) if with_h0 else None
    G = rng.standard_normal((T, B, H))
    cast = (lambda a: None if a is None else a.astype(dtype))
    return tuple(cast(a) for a in (x, W_xh, W_hh, b_h, h0, G))


def _h_prev(h, h0):
    """h[t-1] for t = 0..T-1, with h[-1] = h0 (zeros if None)."""
    first = np.zeros_like(h[0]) if h0 is None else h0
    return np.concatenate([first[None], h[:-1]], axis=0)


def forward(x, W_xh, W_hh, b_h, h0=None):
    T, B, _ = x.shape
    H = W_hh.shape[0]
    h = np.empty((T, B, H), dtype=x.dtype)
    prev = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0
    for t in range(T):
        prev = np.tanh(x[t] @ W_xh.T + prev @ W_hh.T + b_h)
        h[t] = prev
    return h


def backward(x, h, grad_h, W_xh, W_hh, b_h, h0=None, *, clip=None):
    """BPTT in the inputs' dtype. Returns a dict of dW_xh, dW_hh, db_h, dx, dh0, delta,
    delta_norms (float64) and t_fail: the first t (going back from T-1) where delta[t] is
    not finite, or None. The gradients are None when t_fail is not None.

    clip: element-wise clip of delta[t] to [-clip, clip] before it flows further back.
    """
    T, B, _ = x.shape
    H = W_hh.shape[0]
    delta = np.full((T, B, H), np.nan, dtype=x.dtype)
    dz = np.zeros((T, B, H), dtype=x.dtype)
    norms = np.full(T, np.nan)
    t_fail = None
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T - 1, -1, -1):
            d = grad_h[t] + (dz[t + 1] @ W_hh if t < T - 1 else 0)
            if not np.all(np.isfinite(d)):
                t_fail = t
                break
            if clip is not None:
                d = np.clip(d, -clip, clip)
            delta[t] = d
            norms[t] = np.linalg.norm(d.astype(np.float64))
            dz[t] = d * (1 - h[t] * h[t])
    out = dict(delta=delta, delta_norms=norms, t_fail=t_fail)
    if t_fail is not None:
        return out | dict(dW_xh=None, dW_hh=None, db_h=None, dx=None, dh0=None)
    prev = _h_prev(h, h0)
    return out | dict(
        dW_xh=sum(dz[t].T @ x[t] for t in range(T)),
        dW_hh=sum(dz[t].T @ prev[t] for t in range(T)),
        db_h=dz.sum(axis=(0, 1)),
        dx=dz @ W_xh,
        dh0=dz[0] @ W_hh,
    )


def jacobian_product(h, W_hh, b, k):
    """dh[T-1]/dh[T-1-k] for sample b: J[T-1] @ J[T-2] @ ... @ J[T-k], J[i] = diag(1-h[i]^2) W_hh."""
    T, _, H = h.shape
    P = np.eye(H)
    for i in range(T - 1, T - 1 - k, -1):
        P = P @ (np.diag(1 - h[i, b].astype(np.float64) ** 2) @ W_hh.astype(np.float64))
    return P


def log_norms(h, W_hh, ord=2):
    """(T+1, B): ln ||dh[T-1]/dh[T-1-k]|| from explicit products (overflows for long T)."""
    T, B, _ = h.shape
    with np.errstate(divide="ignore"):
        return np.array([[np.log(np.linalg.norm(jacobian_product(h, W_hh, b, k), ord))
                          for b in range(B)] for k in range(T + 1)])


def assert_close(actual, expected, rtol, name=""):
    """Elementwise |actual - expected| <= rtol * (|expected| + max |expected|).

    The atol part (rtol times the array's largest entry) absorbs the cancellation error of
    entries that are sums of terms much larger than themselves.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    atol = rtol * float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rtol, atol=atol,
                               err_msg=name)


def padded_batch(lengths, D, rng):
    """(x, values, target) of a right-padded batch of len(lengths) sequences of D inputs:
    x (L, B, D) zero past each sequence's length, one regression value per sequence, and
    target (L, B, 1) NaN everywhere but each sequence's last step (L = max(lengths))."""
    L, B = max(lengths), len(lengths)
    x = rng.standard_normal((L, B, D))
    x[np.arange(L)[:, None] >= lengths] = 0.0
    values = rng.standard_normal(B)
    target = np.full((L, B, 1), np.nan)
    target[lengths - 1, np.arange(B), 0] = values
    return x, values, target
