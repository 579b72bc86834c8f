"""Initialisations of the RNN's weights, W_hh above all.

Whether BPTT explodes or vanishes at the start of training is set by W_hh: the backward
signal is multiplied by diag(1 - h^2) W_hh once per step, so a spectral radius above 1
invites explosion and one well below 1 makes the gradient vanish. `spectral_radius`
rescales any initialisation to a chosen max |eigenvalue| (1.5 provokes explosions on
purpose).

"smart_tanh" and "basic_tanh" are the two tanh initialisations of Pascanu, Mikolov &
Bengio (2013) as their published code (pascanur/trainingRNNs, RNN.py) draws them, every
weight included, with the code's scales as defaults (see PAPER_SCALES). The code computes
h[t] = tanh(h[t-1] @ W + ...), so its W is rnnx's W_hh transposed: the code keeps 15
weights in each ROW of its W, i.e. 15 OUTGOING weights per unit, which are the 15
non-zeros in each COLUMN of rnnx's W_hh.
"""
from __future__ import annotations


import numpy as np

from .._checks import float_dtype, generator, positive, whole_number

__all__ = ["RECURRENT_INITS", "PAPER_SCALES", "init_recurrent", "init_params"]

RECURRENT_INITS = ("orthogonal", "gaussian", "identity", "smart_tanh", "basic_tanh")

# Martens (2010)'s sparse initialisation as Pascanu et al. (2013) use it in "smart_tanh":
# each unit keeps this many non-zero outgoing recurrent weights (all of them when H < 15).
_SPARSE_NONZEROS = 15

# The published code's scales: std of W_hh's draw (before the rescaling, for smart_tanh),
# the spectral radius smart_tanh rescales W_hh to, and the stds of W_xh and W_hy.
PAPER_SCALES = {
    "smart_tanh": {"std": 0.01, "spectral_radius": 0.95, "input_std": 0.01,
                   "output_std": 0.01},
    "basic_tanh": {"std": 0.1, "spectral_radius": None, "input_std": 0.1,
                   "output_std": 0.1},
}


def spectral_radius_of(W):
    """max |eigenvalue| of the square matrix W, computed in float64."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(W, dtype=np.float64)))))


def _orthogonal(H, rng):
    # QR of a Gaussian matrix, with the signs of R's diagonal folded into Q so that Q is
    # Haar-distributed (Mezzadri 2007) rather than biased by the QR convention.
    Q, R = np.linalg.qr(rng.standard_normal((H, H)))
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def _smart_tanh(H, rng, std):
    k = min(_SPARSE_NONZEROS, H)
    W = std * rng.standard_normal((H, H))
    # argsort of uniform keys = an independent random subset of k rows for every column:
    # unit j keeps k outgoing weights W[i, j] (into units i) and loses the others.
    dropped = np.argsort(rng.random((H, H)), axis=0)[k:]
    W[dropped, np.arange(H)] = 0.0
    return W


def init_recurrent(kind, H, rng, *, std=None, spectral_radius=None, dtype=np.float64):
    """An initial recurrent matrix W_hh (H, H).

    kind:
      "orthogonal" -- a Haar-random orthogonal matrix (all singular values 1);
      "gaussian"   -- i.i.d. N(0, std^2) entries, std defaults to 1/sqrt(H) (spectral
                      radius close to 1 for large H, by the circular law);
      "identity"   -- the identity (IRNN, Le et al. 2015);
      "smart_tanh" -- Pascanu et al. 2013: N(0, std^2) entries (std 0.01) of which each
                      unit keeps 15 outgoing ones (column j of W_hh; all when H < 15),
                      then rescaled to spectral radius 0.95 unless spectral_radius says
                      otherwise;
      "basic_tanh" -- Pascanu et al. 2013: dense N(0, std^2) entries, std 0.1.
    std only applies to "gaussian", "smart_tanh" and "basic_tanh"; scale the others with
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
        raise ValueError(f"std applies only to the 'gaussian', 'smart_tanh' and "
                         f"'basic_tanh' inits; for {kind!r} use spectral_radius to scale "
                         f"W_hh (got std={std})")
    paper = PAPER_SCALES.get(kind)
    if paper is not None:
        std = paper["std"] if std is None else std
        radius = paper["spectral_radius"] if radius is None else radius
    if kind == "orthogonal":
        W = _orthogonal(H, rng)
    elif kind == "gaussian":
        W = (1.0 / np.sqrt(H) if std is None else std) * rng.standard_normal((H, H))
    elif kind == "identity":
        W = np.eye(H)
    elif kind == "smart_tanh":
        W = _smart_tanh(H, rng, std)
    else:
        W = std * rng.standard_normal((H, H))
    if radius is not None:
        current = spectral_radius_of(W)
        if not current > 0:
            raise ValueError(f"cannot rescale W_hh to spectral_radius={radius}: the "
                             f"{kind!r} draw has all eigenvalues 0 (H={H}); use another "
                             "seed or init")
        W *= radius / current
    return W.astype(dtype)


def init_params(input_size, hidden_size, output_size, rng, *, kind="orthogonal", std=None,
                spectral_radius=None, input_std=None, output_std=None, dtype=np.float64):
    """All five parameters of the RNN with a linear readout, as a dict of fresh arrays.

    W_hh from init_recurrent(kind, ...); W_xh (H, D) ~ N(0, input_std^2) and
    W_hy (O, H) ~ N(0, output_std^2); b_h and b_y start at 0. input_std and output_std
    default to the published scales for "smart_tanh" (0.01, 0.01) and "basic_tanh"
    (0.1, 0.1), and otherwise to 1/sqrt(D) and 1/sqrt(H), so that pre-activations and
    outputs start with unit variance.
    """
    D = whole_number("input_size", input_size)
    H = whole_number("hidden_size", hidden_size)
    O = whole_number("output_size", output_size)
    input_std = positive("input_std", input_std, none=True)
    output_std = positive("output_std", output_std, none=True)
    dtype = float_dtype(dtype)
    rng = generator(rng)
    paper = PAPER_SCALES.get(kind, {"input_std": 1.0 / np.sqrt(D),
                                    "output_std": 1.0 / np.sqrt(H)})
    input_std = paper["input_std"] if input_std is None else input_std
    output_std = paper["output_std"] if output_std is None else output_std
    W_hh = init_recurrent(kind, H, rng, std=std, spectral_radius=spectral_radius, dtype=dtype)
    return {
        "W_xh": (input_std * rng.standard_normal((H, D))).astype(dtype),
        "W_hh": W_hh,
        "b_h": np.zeros(H, dtype),
        "W_hy": (output_std * rng.standard_normal((O, H))).astype(dtype),
        "b_y": np.zeros(O, dtype),
    }
