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
import zipfile
from pathlib import Path

import numpy as np

from .files import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "atomic_write", "CheckpointError",
           "expect_array"]

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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, or not what the trainer saved.
    The message names the file and what is wrong."""


def load_checkpoint(path):
    """The state dict saved by save_checkpoint at path.

    Raises FileNotFoundError, or CheckpointError naming the file when it is not a readable
    rnnx checkpoint (empty, truncated, random bytes, a torn JSON document).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {str(path)!r} is a folder")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"checkpoint {str(path)!r} is a single array, not an rnnx "
                                  "checkpoint")
        with archive:
            if _META not in archive.files:
                raise CheckpointError(f"checkpoint {str(path)!r} is not an rnnx checkpoint "
                                      f"(no {_META} entry)")
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(str(arrays.pop(_META)))
        return _join(meta, arrays)
    except CheckpointError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile,
            RecursionError) as e:
        # numpy reports a file that is not an archive as "pickled data" (allow_pickle
        # advice that would be unsafe here): say what happened instead
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not an .npz written "
                              f"by rnnx ({_reason(e)})") from None


def _reason(error):
    if isinstance(error, ValueError) and "pickle" in str(error):
        return "not a zip archive of arrays"
    if isinstance(error, EOFError) or (isinstance(error, zipfile.BadZipFile)):
        return "truncated or not a zip archive"
    if isinstance(error, json.JSONDecodeError):
        return "its settings document is torn"
    return f"{type(error).__name__}: {error}"


def expect_array(path, key, value, shape, dtype):
    """value if it is an array of exactly shape and dtype, else CheckpointError naming the
    file and the key (a scalar where a matrix belongs would otherwise broadcast)."""
    if not isinstance(value, np.ndarray) or value.shape != tuple(shape) or (
            dtype is not None and value.dtype != dtype):
        got = (f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray)
               else f"a scalar {type(value).__name__}")
        want = f"{np.dtype(dtype).name} " if dtype is not None else ""
        raise CheckpointError(f"checkpoint {str(path)!r}: {key} must be {want}"
                              f"{tuple(shape)}; got {got}")
    return value
