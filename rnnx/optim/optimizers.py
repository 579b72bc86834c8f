"""Optimizers with PyTorch's update formulas (torch.optim, single-tensor, no weight decay).

opt.step(params, grads) updates the arrays of the params dict in place. Step k (opt.t = k
before the call, counting from 0) uses the learning rate schedule(k) * opt.lr_scale;
lr_scale (default 1) is what a rollback policy lowers. Every argument is checked before
any array or any state changes, so a bad call leaves the weights and the state as they
were; non-finite gradients are refused (the caller decides whether to skip or roll back).
state_dict() holds only numpy arrays and scalars (it fits in an .npz) and
load_state_dict() restores it exactly, so a resumed run continues bit-identically.

The update rules run compiled (rnnx._updates), all arrays in one call, with numpy's order
of operations; every new value is checked before any is written, so an update that would
make a weight or a state entry non-finite raises FloatingPointError and changes nothing.
"""
from __future__ import annotations


import numpy as np

from .. import _updates
from .._checks import all_finite, number_in, positive, whole_number
from .schedules import constant

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "Adagrad", "OPTIMIZERS"]


def _unit_interval(name, value):
    return number_in(name, value, 0, 1)


class Optimizer:
    """Shared machinery: the schedule, the step counter, per-parameter state buffers."""

    buffers: tuple = ()      # names of the per-parameter state arrays, set by subclasses

    def __init__(self, lr):
        self.schedule = lr if callable(lr) else constant(positive("lr", lr))
        self.t = 0
        self.lr_scale = 1.0
        self.state = {name: {} for name in self.buffers}

    @property
    def lr_scale(self):
        return self._lr_scale

    @lr_scale.setter
    def lr_scale(self, value):
        if isinstance(value, np.ndarray) and value.ndim == 0:   # as read back from an .npz
            value = value.item()
        self._lr_scale = positive("lr_scale", value)

    @property
    def learning_rate(self):
        """The learning rate the next step will use: schedule(t) * lr_scale."""
        return float(self.schedule(self.t)) * self.lr_scale

    def check(self, params, grads):
        """Raise, naming the key, unless grads fit params (same keys among them, shapes,
        finite) and the state buffers fit too; changes nothing."""
        for key, g in grads.items():
            if key not in params:
                raise KeyError(f"grads[{key!r}] has no parameter in params "
                               f"(keys {sorted(params)})")
            p = params[key]
            if not (isinstance(p, np.ndarray) and p.dtype in (np.float32, np.float64)
                    and p.flags.writeable):
                raise TypeError(f"params[{key!r}] must be a writeable float32 or float64 "
                                "numpy array (it is updated in place)")
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"grads[{key!r}] must have shape {p.shape} like "
                                 f"params[{key!r}]; got {g.shape}")
            if not all_finite(g):
                raise ValueError(f"grads[{key!r}] contains NaN or inf; refusing to update "
                                 "the weights (skip or roll back this step instead)")
            for name in self.buffers:
                buf = self.state[name].get(key)
                if buf is not None and (buf.shape != p.shape or buf.dtype != p.dtype):
                    raise ValueError(f"optimizer state {name}[{key!r}] is {buf.dtype} "
                                     f"{buf.shape} but params[{key!r}] is {p.dtype} "
                                     f"{p.shape}; was a state_dict of another model loaded?")

    def step(self, params, grads):
        """Update params (dict of arrays, in place) with grads (same keys/shapes).

        Raises FloatingPointError, changing nothing, when the update would make a weight
        or a state entry non-finite."""
        self.check(params, grads)
        self.update(params, grads)

    def update(self, params, grads, scale=1.0, lr=None):
        """step() without check(): the fast path of a training loop whose grads are known
        to fit (they come from the model, with its keys, shapes and dtypes, and are finite,
        as their global norm is), or passed check(). scale multiplies every gradient first,
        exactly as multiplying the arrays would (the coefficient of a clipping
        transformation that only rescales); lr, when the caller has it, is this step's
        learning_rate. Raises FloatingPointError, changing nothing, like step()."""
        if lr is None:
            lr = self.learning_rate
        if not (0 < lr < np.inf):
            raise ValueError(f"the schedule gave a learning rate of {lr} at step {self.t}; "
                             "it must be positive and finite")
        keys, groups, new_buffers, copies = list(grads), [], [], []
        for key in keys:
            p = params[key]
            if not p.flags.c_contiguous:                # the kernels need C order
                p = np.ascontiguousarray(p)
                copies.append((params[key], p))
            group = [p, np.ascontiguousarray(grads[key], dtype=p.dtype)]
            for name in self._active_buffers():
                buf = self.state[name].get(key)
                if buf is None:
                    # a zero buffer is a fresh one: every rule's first step from zeros
                    # gives exactly what torch's first step gives
                    buf = np.zeros_like(p, order="C")
                    new_buffers.append((name, key, buf))
                group.append(buf)
            groups.append(tuple(group))
        bad = self._kernel(groups, scale, lr, self.t + 1)
        if bad >= 0:
            raise FloatingPointError(f"the update of params[{keys[bad]!r}] would make it (or "
                                     "its optimizer state) non-finite; nothing was changed")
        for name, key, buf in new_buffers:
            self.state[name][key] = buf
        for p, updated in copies:
            p[...] = updated
        self.t += 1

    def _active_buffers(self):
        """The state buffers the rule reads and writes (all of them, for most rules)."""
        return self.buffers

    def _kernel(self, groups, scale, lr, t):
        """Apply step t (from 1) to groups of C-contiguous (param, grad, *buffers) arrays
        with the compiled rule, the grads times scale; -1, or the index of a group whose
        update would be non-finite."""
        raise NotImplementedError

    def state_dict(self):
        """{"t", "lr_scale", "<buffer>.<param key>": array}: numpy arrays and scalars."""
        d = {"t": np.int64(self.t), "lr_scale": np.float64(self.lr_scale)}
        for name, bufs in self.state.items():
            for key, buf in bufs.items():
                d[f"{name}.{key}"] = buf.copy()
        return d

    def load_state_dict(self, d):
        """Restore a state_dict() (also as loaded back from an .npz) exactly."""
        missing = {"t", "lr_scale"} - set(d)
        if missing:
            raise KeyError(f"state_dict is missing {sorted(missing)}")
        state = {name: {} for name in self.buffers}
        for full, value in d.items():
            if full in ("t", "lr_scale"):
                continue
            name, _, key = full.partition(".")
            if name not in state or not key:
                raise KeyError(f"unexpected key {full!r} in a {type(self).__name__} "
                               f"state_dict (buffers: {self.buffers})")
            state[name][key] = np.array(value, copy=True)
        t = d["t"]
        if isinstance(t, np.ndarray):
            t = t.item()
        t = whole_number("state_dict['t']", t, low=0)
        self.lr_scale = float(d["lr_scale"])
        self.t = t
        self.state = state


class SGD(Optimizer):
    """Stochastic gradient descent with (Nesterov) momentum, as torch.optim.SGD.

    p -= lr * g without momentum; with it buf = g (first step), then
    buf = momentum * buf + g, and the step direction is buf, or g + momentum * buf with
    nesterov=True.
    """

    buffers = ("momentum_buffer",)

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False):
        super().__init__(lr)
        self.momentum = _unit_interval("momentum", momentum)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    def _active_buffers(self):
        return self.buffers if self.momentum else ()

    def _kernel(self, groups, scale, lr, t):
        return _updates.sgd(groups, scale, lr, self.momentum, self.nesterov)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, as torch.optim.Adam."""

    buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}") from None
        self.betas = (_unit_interval("betas[0]", b1), _unit_interval("betas[1]", b2))
        self.eps = positive("eps", eps)

    def _kernel(self, groups, scale, lr, t):
        b1, b2 = self.betas
        return _updates.adam(groups, scale, lr / (1 - b1 ** t), b1, b2,
                             (1 - b2 ** t) ** 0.5, self.eps)

class RMSprop(Optimizer):
    """RMSprop (Hinton 2012), as torch.optim.RMSprop (not centered, no momentum)."""

    buffers = ("square_avg",)

    def __init__(self, lr=1e-3, alpha=0.99, eps=1e-8):
        super().__init__(lr)
        self.alpha = _unit_interval("alpha", alpha)
        self.eps = positive("eps", eps)

    def _kernel(self, groups, scale, lr, t):
        return _updates.rmsprop(groups, scale, lr, self.alpha, self.eps)

class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), as torch.optim.Adagrad (no lr decay)."""

    buffers = ("sum",)

    def __init__(self, lr=1e-2, eps=1e-10):
        super().__init__(lr)
        self.eps = positive("eps", eps)

    def _kernel(self, groups, scale, lr, t):
        return _updates.adagrad(groups, scale, lr, self.eps)


# name -> class, for the command line and configuration files
OPTIMIZERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}
