"""Sizes that fit: a lower bound of the memory a command needs, checked before anything is
allocated, and models whose init stays finite in their dtype."""
from __future__ import annotations

import os

import numpy as np

from ..tasks import make as make_task
from .args import UsageError


def _memory():
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024


def task_sizes(name):
    """(inputs D, outputs O) of a built-in task, or of --task noise (2, 1)."""
    if name == "noise":
        return 2, 1
    task = make_task(name, 50)          # its sizes do not depend on the length
    return task.input_size, task.output_size


def check_memory(T, B, H, D, O, dtype, *, training):
    """Refuse sizes whose largest arrays alone would not fit in this machine's memory,
    before allocating any (a MemoryError half-way is a traceback and a wasted wait).

    A lower bound of what the command allocates, in bytes: the tasks' longest sequence is
    L = T + T/10 (+ 20 steps of padding), s the itemsize.
    train: a step's x, h, dL/dh, dx and outputs, L B (2D + 3H + O) s, or the final
    evaluation's batches of 1000 sequences, L 1000 (D + H + O) s, whichever is larger;
    the weights, their gradients and two optimizer moments, 4 P s.
    diagnose: x, h and its float64 copy, the Jacobian norms, L B ((D + H) s + 8 (D + 2H
    + 1)), the QR frames of every sequence, 3 B H^2 8, and the weights.
    Both: the init's float64 draws and factorisation of W_hh, 2 H^2 8.
    """
    s = np.dtype(dtype).itemsize
    L = T + T // 10 + 20
    P = H * (H + D + 1) + O * (H + 1)
    if training:
        need = s * (L * max(B * (2 * D + 3 * H + O), 1000 * (D + H + O)) + 4 * P)
    else:
        need = L * B * ((D + H) * s + 8 * (D + 2 * H + 1)) + 24 * B * H * H + s * P
    need += 16 * H * H
    have = _memory()
    if have is not None and need > have:
        raise MemoryError(f"--length {T}, --batch-size {B} and --hidden {H} ({dtype}) need "
                          f"at least {_size(need)} of memory; this machine has "
                          f"{_size(have)}: use smaller sizes")


def new_model(args, input_size, output_size, **kwargs):
    """An RNN from the command's size and init options; an init whose scale overflows
    the dtype is blamed on the option that asked for it, not on W_hh."""
    from ..model.rnn import RNN
    with np.errstate(over="ignore", invalid="ignore"):
        model = RNN(input_size, args.hidden, output_size, dtype=args.dtype, init=args.init,
                    spectral_radius=args.spectral_radius, seed=args.seed, **kwargs)
    if not all(np.isfinite(w).all() for w in model.params.values()):
        given = [f"--{k.replace('_', '-')} {v:g}" for k, v in
                 (("spectral_radius", args.spectral_radius),
                  ("std", kwargs.get("std"))) if v is not None]
        raise UsageError(f"{' and '.join(given) or 'the init'} gives W_hh entries beyond "
                         f"the range of {args.dtype} (inf); use a smaller value"
                         + (" or --dtype float64" if args.dtype == "float32" else ""))
    return model
