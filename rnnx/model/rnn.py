"""rnnx.RNN: the tanh recurrence of the compiled core plus a linear readout and a loss.

    h[t] = tanh(W_xh x[t] + W_hh h[t-1] + b_h)        (rnnx.rnn_forward, compiled)
    y    = W_hy h[T-1] + b_y        readout "last"   (B, O)
    y[t] = W_hy h[t]   + b_y        readout "all"    (T, B, O)

The per-step work stays in rnn_forward / rnn_backward; this module only adds the readout,
the loss, and optionally Pascanu et al.'s regulariser Omega.
"""
from __future__ import annotations

import copy as _copy
import math
from dataclasses import dataclass

import numpy as np

from .. import _reductions
from .._checks import (all_finite, choice, float_array, float_dtype, positive,
                       positive_or_none, whole_number)
from .._checks import seed as checked_seed
from .init import RECURRENT_INITS, init_params, spectral_radius_of
from .losses import LOSSES
from ..core.plan import make_plan
from ..core.recurrence import backward_checked, forward_checked
from ..core.threads import blas_limit, matmul, serial_blas
from ..errors import GradientOverflowError
from .regularizers import OMEGA_FORMS

__all__ = ["RNN", "Gradients"]

READOUTS = ("last", "all")


@dataclass
class Gradients:
    """One loss and gradient evaluation of an RNN.

    loss: data loss (+ omega * Omega when omega > 0); grads: same keys, shapes and dtypes
    as RNN.params; delta_norms (T,) float64: ||dL/dh[t]|| over the batch, from
    rnn_backward; h_last (B, H): the final hidden state (truncated BPTT carries it to the
    next window); omega: Omega's value (0.0 when not used).
    """

    loss: float
    grads: dict
    delta_norms: np.ndarray
    h_last: np.ndarray
    omega: float


def _time_major(name, value):
    """A batch-first (B, T, ...) array as a time-major (T, B, ...) view."""
    arr = np.asarray(value)
    if arr.ndim < 2:
        raise ValueError(f"{name} must be batch-first (B, T, ...) with batch_first=True, at "
                         f"least 2-D; got shape {arr.shape}")
    return arr.swapaxes(0, 1)


def _readout_overflow(value, grad_h, T):
    """The GradientOverflowError for a loss or readout gradient that is already non-finite
    (a huge W_hy or b_y), so that callers see one exception type for every non-finite
    backward signal: raised at the last step t whose dL/dh[t] is non-finite. grad_h holds
    the last len(grad_h) of the T steps (readout "last": only the last one)."""
    first = T - len(grad_h)
    steps = np.sqrt(np.sum(np.square(grad_h, dtype=np.float64), axis=(1, 2)))
    bad = np.flatnonzero(~np.isfinite(steps)) + first
    t = int(bad[-1]) if bad.size else T - 1
    norms = np.full(T, np.nan)
    norms[first:] = steps
    norms[:t] = np.nan                   # steps BPTT never reached, as in rnn_backward
    return GradientOverflowError(t, norms[t] if bad.size else value, delta_norms=norms)


class RNN:
    """A vanilla tanh RNN with a linear readout, its parameters a plain dict of arrays.

    params: "W_xh" (H, D), "W_hh" (H, H), "b_h" (H,), "W_hy" (O, H), "b_y" (O,); read and
    set them freely (they are checked on every use; one of another dtype or layout is
    converted and stored back). readout "last" predicts from the last hidden state, "all"
    at every step (sequence labelling, character models).
    init / std / spectral_radius choose W_hh (rnnx.model.init.init_params; Pascanu et al.'s
    "smart_tanh" and "basic_tanh" set every weight's scale); seed makes
    the initialisation deterministic. dtype is "float32" or "float64": inputs are
    converted to it and all computation runs in it. omega_form picks the Omega that
    loss_and_gradients(..., omega=alpha) adds: "code" (Pascanu et al.'s published code,
    the default) or "eq9" (the paper's eq. 9 as printed); see rnnx.model.regularizers.
    """

    omega_form = "code"

    def __init__(self, input_size, hidden_size, output_size, *, readout="last",
                 dtype="float32", init="orthogonal", spectral_radius=None, std=None,
                 seed=None):
        self.input_size = whole_number("input_size", input_size)
        self.hidden_size = whole_number("hidden_size", hidden_size)
        self.output_size = whole_number("output_size", output_size)
        self.readout = choice("readout", readout, READOUTS)
        choice("init", init, RECURRENT_INITS)
        seed = checked_seed(seed)
        self.dtype = float_dtype(dtype)
        self.init = init
        self.spectral_radius = positive("spectral_radius", spectral_radius, none=True)
        with serial_blas():     # a QR or eigenvalues of (H, H), once
            self.params = init_params(self.input_size, self.hidden_size, self.output_size,
                                      np.random.default_rng(seed), kind=init, std=std,
                                      spectral_radius=self.spectral_radius, dtype=self.dtype)

    def __repr__(self):
        return (f"RNN(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}, readout={self.readout!r}, "
                f"dtype={self.dtype.name!r})")

    def checked_params(self):
        """The params, checked: finite, of the model's shapes, and writeable C-contiguous
        arrays of its dtype. One that is finite and of the right shape but not such an array
        (a list, another dtype or layout, read-only) is converted and stored back, so that
        an optimizer updates in place the very arrays the model computes with."""
        D, H, O = self.input_size, self.hidden_size, self.output_size
        shapes = {"W_xh": (H, D), "W_hh": (H, H), "b_h": (H,), "W_hy": (O, H), "b_y": (O,)}
        params, dtype = self.params, self.dtype
        missing = set(shapes) - set(params)
        if missing:
            raise KeyError(f"params is missing {sorted(missing)}; it needs {sorted(shapes)}")
        arrays = [params[k] for k in shapes]
        # the usual case, every step of training: one compiled scan of all five
        if all(type(a) is np.ndarray and a.dtype == dtype and a.shape == shape
               and a.flags.c_contiguous and a.flags.writeable
               for a, shape in zip(arrays, shapes.values())) and (
                _reductions.first_nonfinite(arrays) < 0):
            return params
        for k, shape in shapes.items():
            value = params[k]
            arr = float_array(f"params[{k!r}]", value, self.dtype, shape)
            if arr is not value or not arr.flags.writeable:
                params[k] = arr if arr.flags.writeable and arr.base is None else arr.copy()
        return params

    def checked_inputs(self, x, h0=None, *, batch_first=False):
        """(x, h0) checked and converted to the model's dtype: x (T, B, D) time-major (given
        as (B, T, D) with batch_first=True), h0 (B, H) or None."""
        if batch_first:
            x = _time_major("x", x)
        x = float_array("x", x, self.dtype, ("T", "B", self.input_size))
        if h0 is not None:
            h0 = float_array("h0", h0, self.dtype, (x.shape[1], self.hidden_size))
        return x, h0

    def _plan(self, x):
        """(the core's Plan for the time-major batch x, the BLAS threads of the whole call):
        the plan's (rnnx.core.plan.Plan.blas_threads), one where the core makes no BLAS
        call. The call -- the core, the readout, the loss, Omega -- runs under
        blas_limit(threads); its large products are split over rnnx's own threads
        (rnnx.core.threads.matmul)."""
        plan = make_plan(*x.shape, self.hidden_size, self.dtype)
        return plan, plan.blas_threads or 1

    def _forward(self, p, x, h0, plan):
        # every argument checked by the caller
        h = forward_checked(x, p["W_xh"], p["W_hh"], p["b_h"], h0, plan)
        if self.readout == "last":
            # (B, H) @ (H, O)
            return h[-1] @ p["W_hy"].T + p["b_y"], h
        # (T*B, H) @ (H, O) as one 2-D product: numpy's stacked matmul over T is much slower
        y = matmul(h.reshape(-1, self.hidden_size), p["W_hy"].T) + p["b_y"]
        return y.reshape(h.shape[:2] + (self.output_size,)), h

    def forward(self, x, h0=None, *, batch_first=False):
        """(y, h): y (B, O) for readout "last" or (T, B, O) for "all"; h (T, B, H).

        batch_first=True: x is (B, T, D), and y of readout "all" and h come back
        batch-first too, (B, T, O) and (B, T, H), as torch.nn.RNN(batch_first=True)."""
        x, h0 = self.checked_inputs(x, h0, batch_first=batch_first)
        plan, threads = self._plan(x)
        with blas_limit(threads):
            y, h = self._forward(self.checked_params(), x, h0, plan)
        if batch_first:
            h = h.swapaxes(0, 1)
            if self.readout == "all":
                y = y.swapaxes(0, 1)
        return y, h

    def predict(self, x, h0=None, *, batch_first=False):
        """The readout y of forward(x, h0, batch_first=batch_first)."""
        return self.forward(x, h0, batch_first=batch_first)[0]

    def _check_target(self, loss, target, y):
        if loss == "cross_entropy":
            want = y.shape[:-1]
            target = np.asarray(target)
            if target.dtype.kind not in "iu":
                raise TypeError(f"target must hold integer class labels for "
                                f"loss='cross_entropy'; got dtype {target.dtype}")
        else:
            want = y.shape
        if np.shape(target) != want:
            layout = "(B,)" if self.readout == "last" else "(T, B)"
            if loss == "mse":
                layout = "(B, O)" if self.readout == "last" else "(T, B, O)"
            raise ValueError(f"target must have shape {layout} = {want} for loss={loss!r} "
                             f"and readout={self.readout!r}; got {np.shape(target)}")

    def loss_and_gradients(self, x, target, *, loss="mse", h0=None, max_norm=None,
                           clip_delta=None, omega=0.0, batch_first=False):
        """The loss and its gradient with respect to every parameter, by BPTT.

        loss: "mse" (target shaped like y) or "cross_entropy" (integer class labels:
        (B,) for readout "last", (T, B) for "all"). max_norm and clip_delta go to
        rnn_backward; its rnnx.GradientOverflowError propagates unchanged (and a loss or
        readout gradient that is already non-finite raises one too). omega > 0 adds
        omega * Omega (the form self.omega_form names in rnnx.model.regularizers.OMEGA_FORMS)
        to the loss and its gradient to grads["W_hh"]. batch_first=True: x is (B, T, D) and a
        per-step target (readout "all") is (B, T, O) or (B, T) labels. Returns a Gradients.
        """
        return self.objective(loss, max_norm=max_norm, clip_delta=clip_delta, omega=omega,
                              batch_first=batch_first)(x, target, h0)

    def objective(self, loss="mse", *, max_norm=None, clip_delta=None, omega=0.0,
                  batch_first=False):
        """loss_and_gradients with its settings checked once: a function
        (x, target, h0=None) -> Gradients, for a training loop that calls it every step."""
        choice("loss", loss, tuple(LOSSES))
        max_norm = positive_or_none("max_norm", max_norm)
        clip_delta = positive_or_none("clip_delta", clip_delta)
        omega = positive("omega", omega, zero=True)
        per_step = self.readout == "all"

        def evaluate(x, target, h0=None):
            x, h0 = self.checked_inputs(x, h0, batch_first=batch_first)
            if batch_first and per_step:
                target = _time_major("target", target)
            plan, threads = self._plan(x)
            with blas_limit(threads):
                return self._gradients(x, target, loss, h0, max_norm, clip_delta, omega, plan)
        return evaluate

    def _gradients(self, x, target, loss, h0, max_norm, clip_delta, omega, plan):
        p = self.checked_params()
        y, h = self._forward(p, x, h0, plan)
        self._check_target(loss, target, y)
        value, dy = LOSSES[loss](y, target)
        # The readout is the only place the loss touches h: for "last" only h[T-1].
        if self.readout == "last":
            # dW_hy (O, H) = (O, B) @ (B, H); grad_h[T-1] (B, H) = (B, O) @ (O, H)
            dW_hy, db_y = dy.T @ h[-1], dy.sum(axis=0)
            grad_h = (dy @ p["W_hy"])[None]     # (1, B, H): the core's "last step only"
        else:
            dy2 = dy.reshape(-1, self.output_size)
            # dW_hy (O, H) = (O, T*B) @ (T*B, H)
            dW_hy = matmul(dy2.T, h.reshape(-1, self.hidden_size))
            db_y = dy.sum(axis=(0, 1))
            # (T*B, O) @ (O, H) as one 2-D product (as in _forward)
            grad_h = matmul(dy2, p["W_hy"]).reshape(h.shape)
        if not (math.isfinite(value) and all_finite(grad_h)):
            raise _readout_overflow(value, grad_h, len(h))
        # x, h0 and the params were checked above, h and grad_h are finite by construction
        g = backward_checked(x, h, grad_h, p["W_xh"], p["W_hh"], h0, max_norm, clip_delta,
                             omega > 0, plan)
        dW_hh, omega_value = g.dW_hh, 0.0
        if omega > 0:
            choice("omega_form", self.omega_form, tuple(OMEGA_FORMS))
            omega_value, dOmega = OMEGA_FORMS[self.omega_form](h, g.delta, p["W_hh"])
            value += float(omega) * omega_value
            dW_hh = dW_hh + self.dtype.type(omega) * dOmega
        grads = {"W_xh": g.dW_xh, "W_hh": dW_hh, "b_h": g.db_h, "W_hy": dW_hy, "b_y": db_y}
        return Gradients(loss=value, grads=grads, delta_norms=g.delta_norms,
                         h_last=h[-1].copy(), omega=omega_value)

    def jacobian_log_norms(self, x, h0=None, *, ord=2, lags=None, batch_first=False):
        """rnnx.jacobian_log_norms along this model's trajectory on the batch x: (T+1, B)
        float64, ln ||dh[T-1] / dh[T-1-k]|| per lag k and sequence (see it for lags and
        batch_first)."""
        from ..diagnostics.jacobian import jacobian_log_norms, time_major
        x, h0 = self.checked_inputs(time_major(x, batch_first), h0)
        p = self.checked_params()
        L = jacobian_log_norms(x, p["W_xh"], p["W_hh"], p["b_h"], h0, ord=ord, lags=lags)
        return np.ascontiguousarray(L.T) if batch_first else L

    def diagnostics(self):
        """{"spectral_radius", "sigma_max", "singular_values" (descending)} of W_hh."""
        W = np.asarray(self.params["W_hh"], dtype=np.float64)
        with serial_blas():     # LAPACK on an (H, H) matrix, between training steps
            s = np.linalg.svd(W, compute_uv=False)
            radius = spectral_radius_of(W)
        return {"spectral_radius": radius, "sigma_max": float(s[0]), "singular_values": s}

    def copy(self):
        """A new RNN with the same configuration and its own copies of the params."""
        other = _copy.copy(self)
        other.params = {k: np.array(v, copy=True) for k, v in self.params.items()}
        return other

    @classmethod
    def from_torch(cls, module, readout=None, *, outputs="last"):
        """An RNN with the weights of a single-layer tanh torch.nn.RNN and an optional
        torch.nn.Linear readout (see rnnx.model.torch_interop.from_torch; needs torch)."""
        from .torch_interop import from_torch
        return from_torch(module, readout, outputs=outputs)

    def to_torch(self, *, batch_first=False):
        """(torch.nn.RNN, torch.nn.Linear) with this model's weights (see
        rnnx.model.torch_interop.to_torch; needs torch)."""
        from .torch_interop import to_torch
        return to_torch(self, batch_first=batch_first)
