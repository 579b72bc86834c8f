"""Diagnostics of a recurrence: the Jacobian log-norms along a trajectory, the Lyapunov
exponents (global and finite-time), and a verdict (exploding, vanishing, at the edge,
saturated)."""
from .jacobian import jacobian_log_norms
from .lyapunov import diagnose, local_lyapunov_exponents, lyapunov_exponents

__all__ = ["diagnose", "jacobian_log_norms", "lyapunov_exponents", "local_lyapunov_exponents"]
