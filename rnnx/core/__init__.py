"""The compiled core's Python face: argument checks, the kernel plan, threads, and the
exceptions raised from the kernels' statuses. Everything above this layer calls
rnn_forward / rnn_backward (or their checked-once twins)."""
from .recurrence import BackwardResult, rnn_backward, rnn_forward

__all__ = ["BackwardResult", "rnn_forward", "rnn_backward"]
