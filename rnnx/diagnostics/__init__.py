"""Diagnostics of a recurrence: the Lyapunov exponents, the Jacobian log-norms along a
trajectory, and a verdict (exploding, vanishing, at the edge)."""
from .lyapunov import diagnose

__all__ = ["diagnose"]
