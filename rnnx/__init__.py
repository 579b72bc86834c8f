"""rnnx: vanilla tanh RNNs with a compiled core, and tools to see, measure and tame
exploding gradients."""

__version__ = "0.1.0"

from . import tasks
from .training.checkpoint import load_checkpoint, save_checkpoint
from .optim.clipping import (ClipReport, adaptive_clip, autoclip, chain,
                             clip_by_global_norm, clip_by_parameter_norm, clip_by_value,
                             global_norm)
from .errors import DivergenceError, GradientOverflowError
from .training.history import History, load_history
from .model.init import init_params, init_recurrent
from .model.losses import mse, softmax_cross_entropy
from .model import RNN, Gradients
from .optim.optimizers import SGD, Adagrad, Adam, RMSprop
from .core import BackwardResult, rnn_backward, rnn_forward
from .diagnostics import diagnose, jacobian_log_norms
from .model.regularizers import pascanu_omega
from .optim.schedules import constant, cosine, step_decay
from .training.spikes import SpikeDetector
from .training import Callback, Trainer

__all__ = [
    "__version__",
    # the compiled core
    "rnn_forward", "rnn_backward", "jacobian_log_norms", "BackwardResult",
    "GradientOverflowError", "DivergenceError",
    # model and training
    "RNN", "Gradients", "init_recurrent", "init_params", "mse", "softmax_cross_entropy",
    "pascanu_omega", "SGD", "Adam", "RMSprop", "Adagrad", "constant", "step_decay", "cosine",
    "ClipReport", "global_norm", "clip_by_global_norm", "clip_by_value",
    "clip_by_parameter_norm", "adaptive_clip", "autoclip", "chain",
    "Trainer", "Callback", "SpikeDetector", "History", "load_history",
    "save_checkpoint", "load_checkpoint", "tasks",
    # diagnostics
    "diagnose",
]
