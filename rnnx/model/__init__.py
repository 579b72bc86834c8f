"""The network: RNN (the recurrence plus a linear readout), its initialisations, losses and
Pascanu et al.'s regulariser, and the bridge to PyTorch."""
from .rnn import RNN, Gradients

__all__ = ["RNN", "Gradients"]
