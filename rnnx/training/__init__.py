"""The training layer: the loop, what it does when a step fails, its log and checkpoints."""
from .loop import EVENTS, POLICIES, SPIKE_POLICIES, Callback, Trainer

__all__ = ["Trainer", "Callback", "POLICIES", "SPIKE_POLICIES", "EVENTS"]
