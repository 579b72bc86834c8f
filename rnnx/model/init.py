"""Initialisations of the RNN's weights, W_hh above all.

Whether BPTT explodes or vanishes at the start of training is set by W_hh: the backward
signal is multiplied by diag(1 - h^2) W_hh once per step, so a spectral radius above 1
invites explosion and one well below 1 makes the gradient vanish. `spectral_radius`
rescales any initialisation to a chosen max |eigenvalue| (1.5 provokes explosions on
purpose).
"""
from __future__ import annotations


import numpy as np

from .._checks import float_dtype, generator, positive, whole_number

__all__ = ["RECURRENT_INITS", "init_recurrent", "init_params"]

RECURRENT_INITS = ("orthogonal", "gaussian", "identity", "smart_tanh")

# Martens (2010) / Sutskever et al. (2013) sparse initialisation, used by Pascanu et al.
# (2013) as "smart tanh": each unit gets this many non-zero incoming recurrent weights.
_SPARSE_NONZEROS = 15


def _spectral_radius(W):
    """max |eigenvalue| of the square matrix W, computed in float64."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(W, dtype=np.float64)))))


def _orthogonal(H, rng):
    # QR of a Gaussian matrix, with the signs of R's diagonal folded into Q so that Q is
    # Haar-distributed (Mezzadri 2007) rather than biased by the QR convention.
    Q, R = np.linalg.qr(rng.standard_normal((H, H)))
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def _smart_tanh(H, rng, std):
    k = min(_SPARSE_NONZEROS, H)
    W = np.zeros((H, H))
    # argsort of uniform keys = an independent random subset of k columns for every row.
    cols = np.argsort(rng.random((H, H)), axis=1)[:, :k]
    W[np.arange(H)[:, None], cols] = std * rng.standard_normal((H, k))
    return W


def init_recurrent(kind, H, rng, *, std=None, spectral_radius=None, dtype=np.float64):
    """An initial recurrent matrix W_hh (H, H).

    kind:
      "orthogonal" -- a Haar-random orthogonal matrix (all singular values 1);
      "gaussian"   -- i.i.d. N(0, std^2) entries, std defaults to 1/sqrt(H) (spectral
                      radius close to 1 for large H, by the circular law);
      "identity"   -- the identity (IRNN, Le et al. 2015);
      "smart_tanh" -- Pascanu et al. 2013's sparse initialisation: 15 non-zero incoming
                      weights per unit (row), or H when H < 15, each N(0, std^2) with std
                      defaulting to 1.
    std only applies to "gaussian" and "smart_tanh"; scale the others with
    spectral_radius. spectral_radius (> 0), when given, rescales W_hh so that its
    max |eigenvalue| is exactly that value. rng: a numpy Generator (or an int seed);
    the same seed gives the same matrix.
    """
    if kind not in RECURRENT_INITS:
        raise ValueError(f"init kind must be one of {RECURRENT_INITS}; got {kind!r}")
    H = whole_number("H", H)
    std = positive("std", std, none=True)
    radius = positive("spectral_radius", spectral_radius, none=True)
    dtype = float_dtype(dtype)
    rng = generator(rng)
    if std is not None and kind in ("orthogonal", "identity"):
        raise ValueError(f"std applies only to the 'gaussian' and 'smart_tanh' inits; for "
                         f"{kind!r} use spectral_radius to scale W_hh (got std={std})")
    if kind == "orthogonal":
        W = _orthogonal(H, rng)
    elif kind == "gaussian":
        W = (1.0 / np.sqrt(H) if std is None else std) * rng.standard_normal((H, H))
    elif kind == "identity":
        W = np.eye(H)
    else:
        W = _smart_tanh(H, rng, 1.0 if std is None else std)
    if radius is not None:
        current = _spectral_radius(W)
        if not current > 0:
            raise ValueError(f"cannot rescale W_hh to spectral_radius={radius}: the "
                             f"{kind!r} draw has all eigenvalues 0 (H={H}); use another "
                             "seed or init")
        W *= radius / current
    return W.astype(dtype)


def init_params(input_size, hidden_size, output_size, rng, *, kind="orthogonal", std=None,
                spectral_radius=None, dtype=np.float64):
    """All five parameters of the RNN with a linear readout, as a dict of fresh arrays.

    W_hh from init_recurrent(kind, ...); W_xh (H, D) ~ N(0, 1/D) and W_hy (O, H) ~ N(0, 1/H)
    so that pre-activations and outputs start with unit variance; b_h and b_y start at 0.
    """
    D = whole_number("input_size", input_size)
    H = whole_number("hidden_size", hidden_size)
    O = whole_number("output_size", output_size)
    dtype = float_dtype(dtype)
    rng = generator(rng)
    W_hh = init_recurrent(kind, H, rng, std=std, spectral_radius=spectral_radius, dtype=dtype)
    return {
        "W_xh": (rng.standard_normal((H, D)) / np.sqrt(D)).astype(dtype),
        "W_hh": W_hh,
        "b_h": np.zeros(H, dtype),
        "W_hy": (rng.standard_normal((O, H)) / np.sqrt(H)).astype(dtype),
        "b_y": np.zeros(O, dtype),
    }
