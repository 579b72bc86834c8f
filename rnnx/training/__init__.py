"""The training layer: the loop (loop), what it does with a rejected step (policies),
everything else it does (callbacks: log, checkpoints, evaluation, diagnostics, progress),
its data (data), its log (history) and its checkpoints (checkpoint, state, files); the
explosion forensics (forensics, shadow: blame and a float64 second opinion; warnings:
the early-warning callback)."""
from .callbacks import EVENTS, Callback
from .loop import Trainer
from .warnings import EarlyWarning, LowerLR, TightenClip, WarnLog
from .forensics import forensics_summary
from .policies import (POLICIES, SPIKE_POLICIES, Log, PascanuFallback, Policy, Raise,
                       Rollback, Skip)

__all__ = ["Trainer", "Callback", "POLICIES", "SPIKE_POLICIES", "EVENTS", "Policy", "Raise",
           "Skip", "Rollback", "Log", "PascanuFallback", "EarlyWarning", "WarnLog", "LowerLR", "TightenClip",
           "forensics_summary"]
