"""Conversion between rnnx.RNN and PyTorch's torch.nn.RNN (+ torch.nn.Linear readout).

torch.nn.RNN computes h[t] = tanh(W_ih x[t] + b_ih + W_hh h[t-1] + b_hh): the same
recurrence as rnnx with W_xh = W_ih and b_h = b_ih + b_hh, so a single-layer,
unidirectional tanh RNN converts exactly (its two biases combined into one). rnnx is
time-major: x is (T, B, D) whatever the module's batch_first says, so a batch_first
module's inputs must be transposed with x.transpose(0, 1) before rnnx sees them.
torch is imported inside the functions, so importing rnnx never needs it.
"""
from __future__ import annotations

import numpy as np

from .rnn import READOUTS, RNN

__all__ = ["from_torch", "to_torch"]

_DTYPES = ("float32", "float64")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch interop needs torch: pip install torch") from None
    return torch


def _numpy(tensor):
    return tensor.detach().cpu().numpy().copy()


def _check_rnn(torch, module):
    if not isinstance(module, torch.nn.RNN):
        raise TypeError(f"module must be a torch.nn.RNN (tanh); got {type(module).__name__}")
    problems = []
    if module.num_layers != 1:
        problems.append(f"num_layers={module.num_layers} (rnnx has one layer)")
    if module.bidirectional:
        problems.append("bidirectional=True (rnnx runs forward in time only)")
    if module.nonlinearity != "tanh":
        problems.append(f"nonlinearity={module.nonlinearity!r} (rnnx is a tanh RNN)")
    if problems:
        raise ValueError("cannot convert this torch.nn.RNN: " + "; ".join(problems))
    dtype = str(module.weight_hh_l0.dtype).removeprefix("torch.")
    if dtype not in _DTYPES:
        raise TypeError(f"module's weights must be float32 or float64; got {dtype} "
                        "(convert with module.float() or module.double())")
    return dtype


def from_torch(module, readout=None, *, outputs="last"):
    """An rnnx.RNN with the weights of module (a single-layer tanh torch.nn.RNN).

    readout: an optional torch.nn.Linear(hidden_size, O) applied to the hidden state;
    without one, the rnnx readout is the identity (O = hidden_size), so predictions are
    the hidden states themselves. outputs: "last" (predict from h[T-1]) or "all" (at every
    step). The weights are copied; the dtype (float32/float64) is kept.
    """
    torch = _torch()
    dtype = _check_rnn(torch, module)
    if outputs not in READOUTS:
        raise ValueError(f"outputs must be one of {READOUTS}; got {outputs!r}")
    D, H = module.input_size, module.hidden_size
    W_xh, W_hh = _numpy(module.weight_ih_l0), _numpy(module.weight_hh_l0)
    b_h = np.zeros(H, dtype)
    if module.bias:
        b_h = _numpy(module.bias_ih_l0) + _numpy(module.bias_hh_l0)
    if readout is None:
        W_hy, b_y = np.eye(H, dtype=dtype), np.zeros(H, dtype)
    else:
        if not isinstance(readout, torch.nn.Linear):
            raise TypeError(f"readout must be a torch.nn.Linear or None; got "
                            f"{type(readout).__name__}")
        if readout.in_features != H:
            raise ValueError(f"readout.in_features must equal the RNN's hidden_size {H}; "
                             f"got {readout.in_features}")
        W_hy = _numpy(readout.weight).astype(dtype)
        b_y = (np.zeros(readout.out_features, dtype) if readout.bias is None
               else _numpy(readout.bias).astype(dtype))
    model = RNN(D, H, W_hy.shape[0], readout=outputs, dtype=dtype, seed=0)
    model.params = {"W_xh": W_xh, "W_hh": W_hh, "b_h": b_h, "W_hy": W_hy, "b_y": b_y}
    model.checked_params()      # non-finite weights are refused here, naming the parameter
    return model


def to_torch(model, *, batch_first=False):
    """(torch.nn.RNN, torch.nn.Linear) with model's weights (an rnnx.RNN), same dtype.

    The combined bias b_h goes to bias_ih_l0 and bias_hh_l0 is zero. batch_first only
    sets the returned module's input layout; the weights do not depend on it.
    """
    torch = _torch()
    p = model.checked_params()
    dtype = getattr(torch, model.dtype.name)
    rnn = torch.nn.RNN(model.input_size, model.hidden_size, nonlinearity="tanh",
                       batch_first=bool(batch_first), dtype=dtype)
    linear = torch.nn.Linear(model.hidden_size, model.output_size, dtype=dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(p["W_xh"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p["W_hh"]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p["b_h"]))
        rnn.bias_hh_l0.zero_()
        linear.weight.copy_(torch.from_numpy(p["W_hy"]))
        linear.bias.copy_(torch.from_numpy(p["b_y"]))
    return rnn, linear
