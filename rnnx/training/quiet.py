"""quiet_training(): a block of training without per-step noise."""
from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np

__all__ = ["quiet_training"]


@contextmanager
def quiet_training():
    """Silence the trainer's per-step warnings (a summary counts them) and numpy's overflow
    warnings (overflow is detected and handled explicitly)."""
    logger = logging.getLogger("rnnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            yield
    finally:
        logger.setLevel(level)
