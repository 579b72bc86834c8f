"""The optimizers and clipping transformations by the names the command line and sweeps
use.

``rnnx train --optimizer NAME --clip NAME --clip-threshold C`` and a sweep's settings both
build their objects here, so that one table says what each name means.
"""
from __future__ import annotations

from . import clipping
from .optimizers import OPTIMIZERS
from .pascanu_fallback import pascanu_rescale
from .zclip import zclip

__all__ = ["CLIPS", "make_clip", "make_optimizer"]

# name -> (the transformation given its threshold, the threshold's default)
CLIPS = {"none": (lambda c: None, None),
         "global_norm": (clipping.clip_by_global_norm, 1.0),
         "value": (clipping.clip_by_value, 1.0),
         "parameter_norm": (clipping.clip_by_parameter_norm, 1.0),
         "adaptive": (clipping.adaptive_clip, 1.0),
         "autoclip": (clipping.autoclip, 1.0),
         "zclip": (zclip, 2.5),
         "pascanu": (pascanu_rescale, 1.0)}     # global norm + the code's fallback


def make_clip(name, threshold=None):
    """The transformation called name (a key of CLIPS) with threshold, or its default
    threshold when None; None for "none"."""
    if name not in CLIPS:
        raise ValueError(f"clip must be one of {tuple(CLIPS)}; got {name!r}")
    make, default = CLIPS[name]
    return make(default if threshold is None else threshold)


def make_optimizer(name, lr, momentum=0.0):
    """The optimizer called name (a key of rnnx.optim.optimizers.OPTIMIZERS) with learning
    rate lr; momentum applies to "sgd" only (the caller checks that, naming its option)."""
    if name == "sgd":
        return OPTIMIZERS["sgd"](lr=lr, momentum=momentum)
    return OPTIMIZERS[name](lr=lr)
