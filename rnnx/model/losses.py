"""Losses with their gradients, mean-reduced like PyTorch's defaults.

Each returns (loss, gradient w.r.t. its first argument); the model turns that gradient
into grad_h for rnn_backward. The gradient keeps the dtype of the prediction; the loss is
a Python float accumulated in float64.

Entries without a target: a NaN regression target or the class label IGNORE_LABEL (-1)
marks an output that has nothing to fit. It is left out of the mean (the loss averages
over the entries that have a target) and gets a gradient of exactly 0. This is how a batch
of sequences of different lengths is represented (rnnx.tasks): right-padded inputs, a
readout at every step and a target only at each sequence's own last step. Since no loss
depends on a padded step, BPTT's dL/dh is exactly 0 there and the gradient is the one of
each sequence run alone.
"""
from __future__ import annotations

import numpy as np

__all__ = ["mse", "softmax_cross_entropy", "IGNORE_LABEL", "LOSSES"]

IGNORE_LABEL = -1     # a class label with nothing to fit (PyTorch's ignore_index)


def _float_array(name, value):
    if type(value) is np.ndarray and value.dtype in (np.float32, np.float64):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)


def mse(y, target):
    """Mean squared error mean((y - target)^2) over the entries that have a target (every
    entry but those whose target is NaN), and its gradient dy (0 where there is none)."""
    y = _float_array("y", y)
    target = _float_array("target", target)
    if target.shape != y.shape:
        raise ValueError(f"target must have the prediction's shape {y.shape}; "
                         f"got {target.shape}")
    if y.size == 0:
        raise ValueError(f"y must not be empty; got shape {y.shape}")
    err = y - target.astype(y.dtype, copy=False)
    n = err.size
    missing = np.isnan(target)
    if missing.any():
        n -= int(np.count_nonzero(missing))
        if n == 0:
            raise ValueError("target is NaN everywhere: no entry has a target to fit")
        err[missing] = 0.0
    err64 = err.astype(np.float64, copy=False).reshape(-1)
    loss = float(np.dot(err64, err64)) / n              # mean of the squares, in float64
    return loss, err * y.dtype.type(2.0 / n)


def softmax_cross_entropy(logits, labels):
    """Mean over samples of -log softmax(logits)[label], and its gradient dlogits.

    logits (..., C) real; labels (...) integers in [0, C), or IGNORE_LABEL (-1) for a
    sample with no label (left out of the mean, gradient 0). Stable for any finite
    logits: the row maximum is subtracted before exponentiating (log-sum-exp).
    """
    logits = _float_array("logits", logits)
    labels = np.asarray(labels)
    if logits.ndim < 1 or logits.size == 0:
        raise ValueError(f"logits must have shape (..., C) with no empty dimension; "
                         f"got {logits.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices; got dtype {labels.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels must have shape {logits.shape[:-1]} (logits.shape[:-1]); "
                         f"got {labels.shape}")
    C = logits.shape[-1]
    kept = labels != IGNORE_LABEL
    if labels.size and (labels[kept].min(initial=0) < 0 or labels.max() >= C):
        raise ValueError(f"labels must be in [0, {C}) for {C} classes (or {IGNORE_LABEL}: "
                         f"no label); got values in [{labels.min()}, {labels.max()}]")
    n = int(np.count_nonzero(kept))
    if n == 0:
        raise ValueError(f"labels are {IGNORE_LABEL} everywhere: no sample has a label")
    safe = np.where(kept, labels, 0)[..., None]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=-1, keepdims=True)
    picked = np.take_along_axis(shifted, safe, axis=-1)[..., 0]
    terms = np.log(sum_exp[..., 0], dtype=np.float64) - picked
    loss = float(np.sum(terms, where=kept)) / n
    dlogits = exp / sum_exp
    np.put_along_axis(dlogits, safe, np.take_along_axis(dlogits, safe, axis=-1) - 1, axis=-1)
    dlogits *= logits.dtype.type(1.0 / n)
    if n < labels.size:
        dlogits[~kept] = 0.0
    return loss, dlogits


# the losses by the name the model and the Trainer take (loss="mse" | "cross_entropy")
LOSSES = {"mse": mse, "cross_entropy": softmax_cross_entropy}
