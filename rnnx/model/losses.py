"""Losses with their gradients, mean-reduced like PyTorch's defaults.

Each returns (loss, gradient w.r.t. its first argument); the model turns that gradient
into grad_h for rnn_backward. The gradient keeps the dtype of the prediction; the loss is
a Python float accumulated in float64.
"""
from __future__ import annotations

import numpy as np

__all__ = ["mse", "softmax_cross_entropy", "LOSSES"]


def _float_array(name, value):
    if type(value) is np.ndarray and value.dtype in (np.float32, np.float64):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)


def mse(y, target):
    """Mean squared error mean((y - target)^2) over all entries, and its gradient dy."""
    y = _float_array("y", y)
    target = _float_array("target", target)
    if target.shape != y.shape:
        raise ValueError(f"target must have the prediction's shape {y.shape}; "
                         f"got {target.shape}")
    if y.size == 0:
        raise ValueError(f"y must not be empty; got shape {y.shape}")
    err = y - target.astype(y.dtype, copy=False)
    err64 = err.astype(np.float64, copy=False).reshape(-1)
    loss = float(np.dot(err64, err64)) / err.size      # mean of the squares, in float64
    return loss, err * y.dtype.type(2.0 / y.size)


def softmax_cross_entropy(logits, labels):
    """Mean over samples of -log softmax(logits)[label], and its gradient dlogits.

    logits (..., C) real; labels (...) integers in [0, C). Stable for any finite logits:
    the row maximum is subtracted before exponentiating (log-sum-exp).
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
    if labels.size and (labels.min() < 0 or labels.max() >= C):
        raise ValueError(f"labels must be in [0, {C}) for {C} classes; got values in "
                         f"[{labels.min()}, {labels.max()}]")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=-1, keepdims=True)
    picked = np.take_along_axis(shifted, labels[..., None], axis=-1)[..., 0]
    n = labels.size
    loss = float(np.mean(np.log(sum_exp[..., 0], dtype=np.float64) - picked))
    dlogits = exp / sum_exp
    np.put_along_axis(dlogits, labels[..., None],
                      np.take_along_axis(dlogits, labels[..., None], axis=-1) - 1, axis=-1)
    dlogits *= logits.dtype.type(1.0 / n)
    return loss, dlogits


# the losses by the name the model and the Trainer take (loss="mse" | "cross_entropy")
LOSSES = {"mse": mse, "cross_entropy": softmax_cross_entropy}
