"""Benchmark tasks for recurrent networks, as published, with their success criteria.

Every generator (in rnnx.synthetic, re-exported here) is vectorised numpy, seeded by a
numpy Generator (or an int seed), and returns time-major inputs x (L, B, D) and targets in
the form rnnx.RNN's losses expect: regression targets (B, 1) for "mse" at the last step,
integer labels (B,) for "cross_entropy" at the last step, integer labels (L, B) for
per-step tasks. rnnx.synthetic's docstring says which paper each generator follows;
CharText here is next-character prediction on a text the user supplies.

Lengths. Hochreiter & Schmidhuber draw the length of EVERY SEQUENCE from [T, T + T/10].
Pascanu et al.'s code draws one length per BATCH for addition and multiplication, from
[T, T + int(0.1 T) - 1], and never varies it for temporal order, random permutation and
noiseless memorization (length T; T + 2 n_pos for memorization).

Sequences of different lengths in one batch are right-padded: sequence b fills steps
0..L_b - 1 of x (L_max, B, D) and x is 0 after them. The task's readout is then "all" and
the targets are given at every step, with "no target" everywhere but at each sequence's
own last step: NaN for regression targets (L_max, B, 1), the label -1
(rnnx.model.losses.IGNORE_LABEL) for class labels (L_max, B). The losses leave those
entries out, so no loss depends on a padded step, BPTT's dL/dh is exactly 0 on them, and
loss and gradient are exactly those of the sequences run one by one (the recurrence has no
mask to skip steps with; left-padding would not be exact, since h drifts under b_h while
it waits). The criteria below read the same marks.

A Task (from ``make(name, T, ...)``) bundles a generator with the sizes, loss and readout a
model needs and a named Criterion for "solved": "pascanu2013" (the default: fewer than 1%
of 10,000 fresh sequences wrong) or "hochreiter1997" (none of 2,560 fresh sequences wrong).
``task.evaluate(model)`` is the fraction of the criterion's fresh sequences solved.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._checks import float_dtype, generator, whole_number
from .synthetic import (NO_LABEL, one_hot, adding, addition, multiplication,
                        noiseless_memorization, random_permutation, temporal_order,
                        temporal_order_3bit, temporal_order_3bit_hs, temporal_order_hs)

__all__ = [
    "Task", "Criterion", "CharText", "make", "TASKS", "CRITERIA",
    "adding", "addition", "multiplication", "temporal_order", "temporal_order_3bit",
    "temporal_order_hs", "temporal_order_3bit_hs", "random_permutation",
    "noiseless_memorization", "adding_accuracy", "regression_accuracy",
    "sequence_accuracy", "SOLVED_ERROR_RATE",
]

SOLVED_ERROR_RATE = 0.01   # Pascanu et al. 2013: a task is solved below 1% error


# --- success criteria --------------------------------------------------------------------

def _paired(y, target):
    y, target = np.asarray(y), np.asarray(target)
    if y.shape != target.shape:
        raise ValueError(f"y and target must have the same shape; got {y.shape} and "
                         f"{target.shape}")
    return y.astype(np.float64), target.astype(np.float64)


def _per_sequence(right, ndim):
    """right (the shape of y) -> (B,): all of a sequence's entries right. The batch axis
    is 1 for (L, B, O) arrays (readout "all"), else 0."""
    batch = 1 if ndim == 3 else 0
    return np.all(right, axis=tuple(a for a in range(ndim) if a != batch))


def adding_accuracy(y, target):
    """Fraction of sequences whose absolute error is below 0.04 at every target
    (Hochreiter & Schmidhuber 1997): y and target (B, 1), (B,), or (L, B, 1) with NaN
    where a step has no target."""
    y, target = _paired(y, target)
    right = np.isnan(target) | (np.abs(y - target) < 0.04)
    return float(np.mean(_per_sequence(right, y.ndim)))


def regression_accuracy(y, target):
    """Fraction of sequences whose squared error, summed over the outputs, is at most
    0.04 (Pascanu et al. 2013's criterion for addition and multiplication): y and target
    (B, O), (B,), or (L, B, O) with NaN where a step has no target."""
    y, target = _paired(y, target)
    err = np.where(np.isnan(target), 0.0, (y - target) ** 2)
    if err.ndim == 3:
        err = err.sum(axis=0)
    return float(np.mean(err.reshape(len(err), -1).sum(axis=1) <= 0.04))


def sequence_accuracy(logits, labels):
    """Fraction of sequences classified right: logits (B, C) with labels (B,), or per-step
    logits (L, B, C) with labels (L, B), where a sequence is right only when every step
    with a label (not -1) is (Pascanu et al. 2013)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim not in (2, 3) or logits.shape[:-1] != labels.shape:
        raise ValueError("logits must be (B, C) with labels (B,), or (L, B, C) with labels "
                         f"(L, B); got {logits.shape} and {labels.shape}")
    right = (logits.argmax(axis=-1) == labels) | (labels == NO_LABEL)
    return float(np.mean(right.all(axis=0) if right.ndim == 2 else right))


@dataclass(frozen=True)
class Criterion:
    """A published rule for "solved": evaluated on n fresh sequences, the task is solved
    when the fraction wrong is below max_error_rate (or, for 0, when none is wrong)."""

    name: str
    n: int
    max_error_rate: float

    def solved(self, accuracy):
        error = 1.0 - accuracy
        return error < self.max_error_rate if self.max_error_rate > 0 else error <= 0.0


CRITERIA = {
    # Pascanu et al. 2013: fewer than 1% of 10,000 test sequences wrong.
    "pascanu2013": Criterion("pascanu2013", 10_000, SOLVED_ERROR_RATE),
    # Hochreiter & Schmidhuber 1997: every one of 2,560 test sequences right.
    "hochreiter1997": Criterion("hochreiter1997", 2_560, 0.0),
}


# --- tasks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """A generator with what a model needs to learn it and the criterion to judge it.

    ``generate(batch_size, rng)`` -> (x, target); ``accuracy(y, target)`` -> fraction of
    sequences solved; ``criterion``: the Criterion of ``evaluate`` and ``solved``.
    ``rnnx.Trainer.fit(task, steps=..., batch_size=...)`` draws batches from the
    trainer's own seeded Generator, so a resumed run sees the same batches.
    """

    name: str
    T: int
    generate: Callable = field(repr=False)
    accuracy: Callable = field(repr=False)
    input_size: int
    output_size: int
    loss: str
    readout: str
    criterion: Criterion = CRITERIA["pascanu2013"]

    def sample(self, batch_size, rng=None):
        return self.generate(batch_size, generator(rng))

    def batches(self, batch_size, rng=None):
        """Endless iterator of fresh batches."""
        rng = generator(rng)
        while True:
            yield self.generate(batch_size, rng)

    def evaluate(self, model, n=None, rng=None, *, batch_size=1000):
        """Fraction of n fresh sequences the model solves (n: the criterion's, 10,000 for
        "pascanu2013" and 2,560 for "hochreiter1997")."""
        n = self.criterion.n if n is None else whole_number("n", n)
        batch_size = whole_number("batch_size", batch_size)
        rng, solved = generator(rng), 0.0
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            x, target = self.generate(b, rng)
            solved += self.accuracy(model.predict(x), target) * b
        return solved / n

    def solved(self, accuracy):
        """Whether accuracy (from ``evaluate``) meets the task's criterion."""
        return self.criterion.solved(accuracy)


def _bind(fn, T, dtype, **options):
    return lambda batch_size, rng: fn(T, batch_size, rng, dtype=dtype, **options)


# name -> (generator, accuracy, output_size (None: from the options), loss, options)
TASKS = {
    "adding": (adding, adding_accuracy, 1, "mse", ("jitter",)),
    "addition": (addition, regression_accuracy, 1, "mse", ()),
    "multiplication": (multiplication, regression_accuracy, 1, "mse", ()),
    "temporal_order": (temporal_order, sequence_accuracy, 4, "cross_entropy", ()),
    "temporal_order_3bit": (temporal_order_3bit, sequence_accuracy, 8, "cross_entropy", ()),
    "temporal_order_hs": (temporal_order_hs, sequence_accuracy, 4, "cross_entropy", ()),
    "temporal_order_3bit_hs": (temporal_order_3bit_hs, sequence_accuracy, 8,
                               "cross_entropy", ()),
    "random_permutation": (random_permutation, sequence_accuracy, 100, "cross_entropy", ()),
    "noiseless_memorization": (noiseless_memorization, sequence_accuracy, None,
                               "cross_entropy", ("n_values", "n_pos")),
}


def make(name, T, *, dtype=np.float32, criterion="pascanu2013", **options):
    """The Task called name (a key of TASKS) at sequence length T, judged by the named
    criterion (a key of CRITERIA).

    options go to the generator: jitter for adding, n_values and n_pos for
    noiseless_memorization. The readout is "all" when the targets are per step (the
    memorization task, and every task whose sequences differ in length within a batch).
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {sorted(CRITERIA)}; got {criterion!r}")
    fn, accuracy, O, loss, allowed = TASKS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"task {name!r} takes the options {list(allowed)}; got {unknown}")
    x, target = fn(T, 1, np.random.default_rng(0), dtype=dtype, **options)  # validates
    per_step = np.ndim(target) == (2 if loss == "cross_entropy" else 3)
    D = x.shape[-1]
    return Task(name, int(T), _bind(fn, T, dtype, **options), accuracy, D,
                D - 1 if O is None else O, loss, "all" if per_step else "last",
                CRITERIA[criterion])


# --- character-level text ----------------------------------------------------------------

class CharText:
    """Next-character prediction on a user's text (readout "all", loss "cross_entropy").

    The vocabulary is the sorted set of characters. ``windows`` draws random windows;
    ``stream`` cuts the text into batch_size contiguous streams and yields consecutive
    windows of each, for truncated BPTT with the hidden state carried between windows
    (``Trainer.fit(text.stream(...), carry_state=True)``).
    """

    def __init__(self, text, *, dtype=np.float32):
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        if len(text) < 2:
            raise ValueError(f"text must have at least 2 characters; got {len(text)}")
        self.dtype = float_dtype(dtype)
        self.vocab = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.vocab)}
        self.ids = self.encode(text)

    @property
    def vocab_size(self):
        return len(self.vocab)

    def encode(self, text):
        missing = set(text) - self.index.keys()
        if missing:
            raise ValueError(f"characters not in the vocabulary: {sorted(missing)!r}")
        return np.array([self.index[c] for c in text], np.int64)

    def decode(self, ids):
        return "".join(self.vocab[int(i)] for i in np.asarray(ids).reshape(-1))

    def one_hot(self, ids):
        return one_hot(np.asarray(ids), self.vocab_size, self.dtype)

    def _check_window(self, window, batch_size):
        window, batch_size = whole_number("window", window), whole_number("batch_size", batch_size)
        if window + 1 > len(self.ids):
            raise ValueError(f"window must be shorter than the text ({len(self.ids)} "
                             f"characters); got {window}")
        return window, batch_size

    def windows(self, window, batch_size, rng=None):
        """x (window, B, V) one-hot, labels (window, B) = the next character: B windows
        starting at random offsets."""
        window, batch_size = self._check_window(window, batch_size)
        start = generator(rng).integers(0, len(self.ids) - window, size=batch_size)
        idx = start + np.arange(window)[:, None]
        return self.one_hot(self.ids[idx]), self.ids[idx + 1]

    def stream(self, window, batch_size):
        """Consecutive (x, labels) windows of batch_size contiguous streams, one pass over
        the text (the tail that does not fill a window is dropped)."""
        window, batch_size = self._check_window(window, batch_size)
        n = (len(self.ids) - 1) // batch_size
        if n < window:
            raise ValueError(f"text of {len(self.ids)} characters is too short for "
                             f"batch_size={batch_size} streams of window={window}")
        inputs = self.ids[:n * batch_size].reshape(batch_size, n).T
        labels = self.ids[1:n * batch_size + 1].reshape(batch_size, n).T
        for t in range(0, n - window + 1, window):
            yield self.one_hot(inputs[t:t + window]), labels[t:t + window]
