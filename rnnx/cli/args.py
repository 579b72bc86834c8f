"""What every subcommand's arguments share: exit statuses, the one-line usage error,
argument types that say what they expected, the help formatter that shows every default,
file names that can always be printed."""
from __future__ import annotations

import argparse
import math
import os

import numpy as np

from ..tasks import TASKS

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13          # 128 + SIGPIPE, what a shell reports for `... | head`


class UsageError(Exception):
    """A bad combination of arguments (exit status 2)."""


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}")
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line like every other error (the
    full usage is one --help away, not 17 lines above the message)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option's default in its help (an option whose
    default is None or False says what that means in its own words)."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or "default:" in text or action.default is None or (
                action.default is False or action.default == argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)".lstrip()


def formatter(prog):
    return _Formatter(prog)


def shown(path):
    """path as text that can always be printed: bytes of a file name that are not UTF-8
    (which Python keeps as lone surrogates) are shown as \\xNN escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def quoted(path):
    return f"'{shown(path)}'"


def task_names():
    return sorted(TASKS)


def jsonable(value):
    """value for strict JSON: NaN/inf -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
