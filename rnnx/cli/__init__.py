"""The ``rnnx`` command and what it shows: the demo, the figures, the subcommands."""
from .main import build_parser, main

__all__ = ["main", "build_parser"]
