"""Files that a run writes: atomic replacement, and checks made before step 1.

atomic_write writes a temporary file beside the target, syncs it, then moves it over the
target with os.replace: a reader, or a run killed at any moment, sees the old file or the
new one, never a torn one. The temporary file is created with mode 0o666 minus the
user's umask (as open() would create the target), and temporary files left by a killed
writer of the same target are removed by the next write.
"""
from __future__ import annotations

import glob
import os
import secrets
from pathlib import Path

__all__ = ["atomic_write", "check_writable", "stale_temp_files"]

_TMP = ".tmp"


def _temp_name(path):
    return path.with_name(f"{path.name}.{secrets.token_hex(4)}{_TMP}")


def stale_temp_files(path):
    """The temporary files atomic_write(path) leaves behind when it is killed."""
    path = Path(path)
    pattern = glob.escape(str(path.parent / path.name)) + ".*" + _TMP
    return [Path(p) for p in glob.glob(pattern)]


def atomic_write(path, write, *, text=False):
    """Call write(f) on a temporary file beside path (binary, or text with text=True),
    sync it, then move it over path."""
    path = Path(path)
    for stale in stale_temp_files(path):
        try:
            stale.unlink()
        except OSError:          # gone already, or not ours to remove: not this write's concern
            pass
    tmp = _temp_name(path)
    # O_EXCL: never through an existing file or link; mode 0o666 is reduced by the umask
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with (os.fdopen(fd, "w", encoding="utf-8", newline="") if text
              else os.fdopen(fd, "wb")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_writable(name, path):
    """Raise FileNotFoundError / PermissionError / IsADirectoryError, naming the argument,
    unless a file can be written at path (its folder exists and is writable)."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise IsADirectoryError(f"{name} {str(path)!r} is a folder; give a file name")
    if not folder.is_dir():
        raise FileNotFoundError(f"{name} {str(path)!r}: the folder {str(folder)!r} does not "
                                "exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists()
                                                    and not os.access(path, os.W_OK)):
        raise PermissionError(f"{name} {str(path)!r} is not writable")
