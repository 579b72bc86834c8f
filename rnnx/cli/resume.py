"""What `rnnx train --resume` needs from the command line: which flags were given (so that
the settings saved in the checkpoint fill the others), and the settings themselves, saved in
the checkpoint by a callback."""
from __future__ import annotations

import argparse
import json

from .args import UsageError

__all__ = ["record_given_flags", "SavedSettings", "resume_settings", "settings_of",
           "MAY_CHANGE"]

# the settings a resumed run may change; the others are read from the checkpoint
MAY_CHANGE = ("steps", "checkpoint_every", "log", "policy", "spikes")
_NOT_SAVED = ("checkpoint", "resume", "overwrite", "quiet", "json", "explain", "run",
              "command", "given_flags")


def _note_given(namespace, dest):
    namespace.given_flags = getattr(namespace, "given_flags", set()) | {dest}


class _Store(argparse.Action):
    """argparse's "store", also noting in namespace.given_flags that the flag was given."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _note_given(namespace, self.dest)


class _StoreTrue(argparse.Action):
    """argparse's "store_true", also noting that the flag was given."""

    def __init__(self, option_strings, dest, default=False, required=False, help=None):
        super().__init__(option_strings, dest, nargs=0, const=True, default=default,
                         required=required, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        _note_given(namespace, self.dest)


def record_given_flags(parser):
    """Make parser's store and store_true options note, when given, their dest in the
    namespace's given_flags, so that --resume tells a given flag from a default."""
    for kind, action in ((None, _Store), ("store", _Store), ("store_true", _StoreTrue)):
        parser.register("action", kind, action)


def settings_of(args):
    """The run's settings: every option of args that a checkpoint keeps."""
    return {k: v for k, v in vars(args).items() if k not in _NOT_SAVED}


class SavedSettings:
    """A callback whose checkpoint state is the command line's settings, so that
    `rnnx train --resume` can read them back."""

    state_key = "rnnx_train"

    def __init__(self, settings):
        self.settings = settings

    def state_dict(self):
        return {"settings": json.dumps(self.settings)}

    def load_state_dict(self, state):
        pass


def resume_settings(args, given):
    """Fill args from the checkpoint's saved settings: a flag given may change only what
    MAY_CHANGE lists. True when the failure or spike policy changes."""
    from ..training.checkpoint import CheckpointError, load_checkpoint
    try:
        state = load_checkpoint(args.checkpoint)
        saved = json.loads(state["callbacks"][SavedSettings.state_key]["settings"])
    except CheckpointError as e:
        raise OSError(str(e)) from None
    except (KeyError, TypeError, ValueError):
        return False     # not written by rnnx train: the flags must match its settings
    for k, v in saved.items():
        if k in given and k not in MAY_CHANGE and getattr(args, k, v) != v:
            flag = "--" + k.replace("_", "-")
            raise UsageError(f"{flag} {getattr(args, k)} differs from the checkpoint's "
                             f"{v!r}; a resumed run keeps its settings (only "
                             + ", ".join("--" + m.replace("_", "-") for m in MAY_CHANGE)
                             + " may change; or start a new run with --overwrite)")
        if k not in given:
            setattr(args, k, v)
    return any(k in given and getattr(args, k) != saved.get(k) for k in ("policy", "spikes"))
