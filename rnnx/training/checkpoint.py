"""Atomic checkpoints: a nested dict of numpy arrays and plain values in one .npz file.

Arrays go into the archive under their "/"-joined key path; everything else (ints, floats,
bools, strings, None, lists, the numpy bit-generator state) goes into one JSON document
stored beside them, with each array replaced by a reference to its key. The JSON keeps
Python floats exact (repr round trip) and big ints whole, so a checkpoint restores the
same values bit for bit. The file is written to a temporary file in the target directory,
synced, then moved over the target with os.replace, so a crash mid-write leaves the
previous checkpoint intact and never a torn one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "atomic_write"]

_META = "__meta__"


def _split(value, path, arrays):
    """The JSON tree of value, with arrays moved into arrays[path]."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"checkpoint entry {path!r} is an object array; only numeric, "
                            "bool and string arrays can be saved")
        arrays[path] = value
        return {"__array__": path}
    if isinstance(value, np.generic):
        arrays[path] = np.asarray(value)
        return {"__scalar__": path}
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str) or "/" in k or k.startswith("__"):
                raise TypeError(f"checkpoint keys must be str without '/' or a leading "
                                f"'__'; got {k!r} under {path!r}")
        return {k: _split(v, f"{path}/{k}" if path else k, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"checkpoint entry {path!r} has unsupported type {type(value).__name__}")


def _join(tree, archive):
    if isinstance(tree, dict):
        if "__array__" in tree:
            return archive[tree["__array__"]]
        if "__scalar__" in tree:
            return archive[tree["__scalar__"]][()]
        return {k: _join(v, archive) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, archive) for v in tree]
    return tree


def save_checkpoint(path, state):
    """Write state (a dict) atomically to path (.npz)."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict; got {type(state).__name__}")
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"checkpoint path must end in .npz; got {str(path)!r}")
    arrays = {}
    meta = json.dumps(_split(state, "", arrays))
    arrays[_META] = np.array(meta)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def atomic_write(path, write):
    """Call write(f) on a temporary binary file beside path, sync it, then move it over
    path: readers see the old file or the new one, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_checkpoint(path):
    """The state dict saved by save_checkpoint at path."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    with np.load(path, allow_pickle=False) as archive:
        if _META not in archive.files:
            raise ValueError(f"{str(path)!r} is not an rnnx checkpoint (no {_META} entry)")
        arrays = {k: archive[k] for k in archive.files}
    return _join(json.loads(str(arrays.pop(_META))), arrays)
