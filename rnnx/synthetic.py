"""The published synthetic problems' generators (the Tasks of rnnx.tasks wrap them).

    adding                  Hochreiter & Schmidhuber (1997), experiment 4
    temporal_order_hs, temporal_order_3bit_hs
                            Hochreiter & Schmidhuber (1997), experiments 6a and 6b
    addition, multiplication, temporal_order, temporal_order_3bit, random_permutation,
    noiseless_memorization  Pascanu, Mikolov & Bengio (2013), as their published code
                            (pascanur/trainingRNNs) generates them

Each is vectorised numpy, seeded by a numpy Generator (or an int seed), and returns
time-major inputs x (L, B, D) with targets in the form rnnx.RNN's losses expect. Lengths
and the padding of batches whose sequences differ in length: see rnnx.tasks.
"""
from __future__ import annotations

import numpy as np

from ._checks import float_dtype, generator, whole_number

__all__ = ["adding", "addition", "multiplication", "temporal_order", "temporal_order_3bit",
           "temporal_order_hs", "temporal_order_3bit_hs", "random_permutation",
           "noiseless_memorization", "NO_LABEL"]

NO_LABEL = -1      # rnnx.model.losses.IGNORE_LABEL: a step without a label


def one_hot(symbols, n, dtype):
    """symbols (L, B) ints -> (L, B, n) one-hot; a negative symbol gives an all-zero row."""
    x = np.zeros(symbols.shape + (n,), dtype)
    np.put_along_axis(x, np.maximum(symbols, 0)[..., None], 1, axis=-1)
    x[symbols < 0] = 0
    return x


def _positions(rng, low, high, B):
    """B positions drawn uniformly from [low, high)."""
    return rng.integers(low, high, size=B)


def _sequence_lengths(rng, T, B):
    """Hochreiter & Schmidhuber: each sequence's length uniform in [T, T + T//10]."""
    return T + rng.integers(0, T // 10 + 1, size=B)


def _padded_targets(lengths, values, fill, dtype):
    """(L_max, B, ...) of fill with values[b] at step lengths[b] - 1 of sequence b."""
    values = np.asarray(values)
    out = np.full((int(lengths.max()), len(lengths)) + values.shape[1:], fill, dtype)
    out[lengths - 1, np.arange(len(lengths))] = values
    return out


_JITTERS = ("sequence", "batch")


# --- regression: two marked numbers ------------------------------------------------------

def adding(T, batch_size, rng=None, *, jitter="sequence", dtype=np.float32):
    """Hochreiter & Schmidhuber's adding problem: pairs (value, marker), x (L, B, 2).

    Each sequence's length L_b is uniform in [T, T + T//10] (jitter="sequence", as
    published: x is right-padded to L = max L_b and the target is (L, B, 1), NaN but at
    step L_b - 1, for readout "all"); jitter="batch" draws one L for the whole batch and
    gives targets (B, 1) for readout "last". Channel 0 is a value uniform in [-1, 1];
    channel 1 a marker: 1 at one of the first 10 steps (X1) and at one of the first
    T//2 - 1 steps still unmarked (X2), -1 at the first and last step of the sequence
    when they are unmarked, 0 elsewhere; a marked first step has its value set to 0.
    Target 0.5 + (X1 + X2)/4. Criterion: ``adding_accuracy`` (|error| < 0.04). Needs
    T >= 6 (X1 is then drawn from the first min(10, T - 1) steps).
    """
    T = whole_number("T", T, low=6)
    B = whole_number("batch_size", batch_size)
    if jitter not in _JITTERS:
        raise ValueError(f"jitter must be one of {_JITTERS}; got {jitter!r}")
    dtype, rng = float_dtype(dtype), generator(rng)
    if jitter == "sequence":
        lengths = _sequence_lengths(rng, T, B)
    else:
        lengths = np.full(B, T + int(rng.integers(0, T // 10 + 1)))
    L, cols = int(lengths.max()), np.arange(B)
    x = np.zeros((L, B, 2), dtype)
    x[:, :, 0] = rng.uniform(-1.0, 1.0, size=(L, B))
    x[np.arange(L)[:, None] >= lengths] = 0.0                 # padding
    x[0, :, 1] = -1.0
    x[lengths - 1, cols, 1] = -1.0
    p1 = _positions(rng, 0, min(10, T - 1), B)
    # X2: one of the first T//2 - 1 pairs that are still unmarked (p1 skipped).
    p2 = rng.integers(0, T // 2 - 1, size=B)
    p2 = p2 + (p2 >= p1)
    x[p1, cols, 1] = x[p2, cols, 1] = 1.0
    x[0, (p1 == 0) | (p2 == 0), 0] = 0.0
    target = 0.5 + (x[p1, cols, 0] + x[p2, cols, 0]) / 4.0
    if jitter == "batch":
        return x, target.reshape(B, 1).astype(dtype)
    return x, _padded_targets(lengths, target[:, None], np.nan, dtype)


def _marked_pair(T, batch_size, rng, dtype, combine):
    """Pascanu et al.'s addition/multiplication inputs, as their code draws them: one
    length L = T + U{0, .., int(0.1 T) - 1} per batch; channel 0 a marker, channel 1 a
    value uniform in [0, 1); markers at one step in [0, int(0.1 L)) and one in
    [int(0.1 L), int(0.1 L) + int(0.4 L))."""
    T = whole_number("T", T, low=10)
    B = whole_number("batch_size", batch_size)
    dtype, rng = float_dtype(dtype), generator(rng)
    L = T + int(rng.integers(0, int(T * 0.1)))
    x = np.zeros((L, B, 2), dtype)
    x[:, :, 1] = rng.uniform(0.0, 1.0, size=(L, B))
    a = int(L * 0.1)
    cols = np.arange(B)
    p0 = _positions(rng, 0, a, B)
    p1 = _positions(rng, a, a + int(L * 0.4), B)
    x[p0, cols, 0] = x[p1, cols, 0] = 1.0
    target = combine(x[p0, cols, 1], x[p1, cols, 1])
    return x, target.reshape(B, 1).astype(dtype)


def addition(T, batch_size, rng=None, *, dtype=np.float32):
    """Pascanu et al.'s addition problem: x (L, B, 2), target (B, 1) = mean of the two
    marked values; one L in [T, T + int(0.1 T) - 1] per batch. Needs T >= 10.
    Criterion: ``regression_accuracy``."""
    return _marked_pair(T, batch_size, rng, dtype, lambda u, v: (u + v) / 2.0)


def multiplication(T, batch_size, rng=None, *, dtype=np.float32):
    """Pascanu et al.'s multiplication problem: like ``addition`` with target the product
    of the two marked values. Criterion: ``regression_accuracy``."""
    return _marked_pair(T, batch_size, rng, dtype, lambda u, v: u * v)


# --- classification at the last step -----------------------------------------------------

def _temporal_order(T, batch_size, rng, dtype, starts):
    """Pascanu et al.'s code: length T exactly; 6 symbols one-hot: 0, 1 = A, B (relevant),
    2..5 distractors. A relevant symbol v_i sits at a random step of
    [int(s T), int(s T) + int(0.1 T)) for each start s; label = sum_i v_i 2^i."""
    T = whole_number("T", T, low=10)
    B = whole_number("batch_size", batch_size)
    dtype, rng = float_dtype(dtype), generator(rng)
    symbols = rng.integers(2, 6, size=(T, B))
    label = np.zeros(B, np.int64)
    cols = np.arange(B)
    width = int(T * 0.1)
    for i, s in enumerate(starts):
        p = _positions(rng, int(T * s), int(T * s) + width, B)
        v = rng.integers(0, 2, size=B)
        symbols[p, cols] = v
        label += v << i
    return one_hot(symbols, 6, dtype), label


def temporal_order(T, batch_size, rng=None, *, dtype=np.float32):
    """Pascanu et al.'s temporal order problem: x (T, B, 6), labels (B,) in 0..3 -- which
    of A/B came at a step in [0.1T, 0.2T) and which at a step in [0.5T, 0.6T)
    (label v0 + 2 v1). Never length-jittered, as in the code (for Hochreiter &
    Schmidhuber's jittered original see ``temporal_order_hs``). Criterion:
    ``sequence_accuracy``. Needs T >= 10."""
    return _temporal_order(T, batch_size, rng, dtype, (0.1, 0.5))


def temporal_order_3bit(T, batch_size, rng=None, *, dtype=np.float32):
    """Pascanu et al.'s 3-bit temporal order problem: three relevant symbols in
    [0.1T, 0.2T), [0.3T, 0.4T) and [0.6T, 0.7T); labels (B,) in 0..7; length T.
    Criterion: ``sequence_accuracy``."""
    return _temporal_order(T, batch_size, rng, dtype, (0.1, 0.3, 0.6))


# Hochreiter & Schmidhuber's symbols: X, Y relevant; a..d distractors; E start; B trigger.
_HS_X, _HS_A, _HS_E, _HS_B, _HS_SYMBOLS = 0, 2, 6, 7, 8


def _temporal_order_hs(T, batch_size, rng, dtype, starts):
    """Hochreiter & Schmidhuber's experiment 6, scaled from their T = 100: each
    sequence's length uniform in [T, T + T//10]; E first, B (the trigger) last, a..d
    elsewhere except at 1-based positions t_i uniform in [s_i T/100, s_i T/100 + T//10]
    (both ends included) holding X or Y. Right-padded; labels (L, B), -1 but at each
    sequence's last step: the X/Y sequence read as a binary number, X = 0, first symbol
    the most significant bit (6a: XX, XY, YX, YY = Q, R, S, U = 0..3)."""
    T = whole_number("T", T, low=20)
    B = whole_number("batch_size", batch_size)
    dtype, rng = float_dtype(dtype), generator(rng)
    lengths = _sequence_lengths(rng, T, B)
    L, cols = int(lengths.max()), np.arange(B)
    symbols = rng.integers(_HS_A, _HS_A + 4, size=(L, B))
    symbols[np.arange(L)[:, None] >= lengths] = -1          # padding: all-zero inputs
    symbols[0] = _HS_E
    symbols[lengths - 1, cols] = _HS_B
    label = np.zeros(B, np.int64)
    for s in starts:
        first = s * T // 100                                # 1-based, as published
        p = _positions(rng, first, first + T // 10 + 1, B) - 1
        v = rng.integers(0, 2, size=B)
        symbols[p, cols] = _HS_X + v
        label = 2 * label + v
    return (one_hot(symbols, _HS_SYMBOLS, dtype),
            _padded_targets(lengths, label, NO_LABEL, np.int64))


def temporal_order_hs(T, batch_size, rng=None, *, dtype=np.float32):
    """Hochreiter & Schmidhuber's temporal order problem (experiment 6a): X or Y at
    positions t1 in [T/10, 2T/10] and t2 in [5T/10, 6T/10] of a sequence of length in
    [T, T + T//10] (T = 100: their 10..20, 50..60, 100..110); x (L, B, 8) right-padded,
    labels (L, B) in 0..3 at each sequence's last step, -1 elsewhere (readout "all").
    Criterion: ``sequence_accuracy``. Needs T >= 20."""
    return _temporal_order_hs(T, batch_size, rng, dtype, (10, 50))


def temporal_order_3bit_hs(T, batch_size, rng=None, *, dtype=np.float32):
    """Hochreiter & Schmidhuber's 3-bit temporal order problem (experiment 6b): like
    ``temporal_order_hs`` with X/Y at t1 in [10, 20], t2 in [33, 43], t3 in [66, 76]
    (scaled by T/100); labels in 0..7 (XXX .. YYY = Q, R, S, U, V, A, B, C)."""
    return _temporal_order_hs(T, batch_size, rng, dtype, (10, 33, 66))


def random_permutation(T, batch_size, rng=None, *, dtype=np.float32):
    """Pascanu et al.'s random permutation problem: x (T, B, 100) one-hot; the first
    symbol is 0 or 1, the others uniform over 2..99; the label (B,) is the first symbol,
    to be predicted at the end among 100 classes. Length T, never jittered (as the
    code). Criterion: ``sequence_accuracy``."""
    T = whole_number("T", T, low=1)
    B = whole_number("batch_size", batch_size)
    dtype, rng = float_dtype(dtype), generator(rng)
    symbols = rng.integers(2, 100, size=(T, B))
    symbols[0] = rng.integers(0, 2, size=B)
    return one_hot(symbols, 100, dtype), symbols[0].astype(np.int64)


# --- per-step classification -------------------------------------------------------------

def noiseless_memorization(T, batch_size, rng=None, *, n_values=5, n_pos=10,
                           dtype=np.float32):
    """Pascanu et al.'s noiseless memorization: x (T + 2*n_pos, B, n_values + 2), labels
    (T + 2*n_pos, B); never length-jittered (as the code).

    The first n_pos steps show a pattern of symbols from n_values; then blanks (input
    channel n_values) for T steps, a trigger (channel n_values + 1) at step T + n_pos, and
    the model must output the pattern over the last n_pos steps; the label of every other
    step is the blank class n_values. Criterion: ``sequence_accuracy`` (every step right).
    """
    T = whole_number("T", T, low=1)
    B = whole_number("batch_size", batch_size)
    n_values, n_pos = whole_number("n_values", n_values, low=2), whole_number("n_pos", n_pos)
    dtype, rng = float_dtype(dtype), generator(rng)
    L = T + 2 * n_pos
    pattern = rng.integers(0, n_values, size=(n_pos, B))
    symbols = np.full((L, B), n_values)
    symbols[:n_pos] = pattern
    symbols[T + n_pos] = n_values + 1
    labels = np.full((L, B), n_values, np.int64)
    labels[-n_pos:] = pattern
    return one_hot(symbols, n_values + 2, dtype), labels


