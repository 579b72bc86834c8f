"""The training layer: the loop (loop), what it does with a rejected step (policies),
everything else it does (callbacks: log, checkpoints, evaluation, diagnostics, progress),
its data (data), its log (history) and its checkpoints (checkpoint, state, files)."""
from .callbacks import EVENTS, Callback
from .loop import Trainer
from .policies import POLICIES, SPIKE_POLICIES, Log, Policy, Raise, Rollback, Skip

__all__ = ["Trainer", "Callback", "POLICIES", "SPIKE_POLICIES", "EVENTS", "Policy", "Raise",
           "Skip", "Rollback", "Log"]
