"""rnnx: vanilla tanh RNNs with a compiled core, and tools to see, measure and tame
exploding gradients."""

__version__ = "0.1.0"


def _require_compiled_core():
    """Explain, instead of a circular-import message, an rnnx without its compiled core:
    the source tree of a clone found first on sys.path."""
    try:
        from . import _core  # noqa: F401
    except ImportError:
        import importlib.machinery
        from pathlib import Path
        built = [f for d in __path__ for s in importlib.machinery.EXTENSION_SUFFIXES
                 for f in Path(d).glob("_core*" + s)]
        if built:
            raise       # the compiled core is there but failed to load: say why
        raise ImportError(
            f"rnnx's compiled core (rnnx._core) is missing: Python imported rnnx from "
            f"{__path__[0]}, which looks like the source tree of a clone (it has the Python "
            "files but no compiled extension). This happens when the current directory is "
            "the root of a clone, which Python puts first on sys.path. Either do the development "
            "install (`pip install --no-build-isolation -e .`, see the README), which works "
            "from here, or `pip install .` and run Python from another directory. Note that "
            "`python -m pytest` from the root puts the source tree first too: with a "
            "non-editable install, run `pytest` instead.") from None


_require_compiled_core()
del _require_compiled_core

from . import tasks
from .training.checkpoint import load_checkpoint, save_checkpoint
from .optim.clipping import (ClipReport, adaptive_clip, autoclip, chain,
                             clip_by_global_norm, clip_by_parameter_norm, clip_by_value,
                             global_norm)
from .optim.zclip import zclip
from .errors import DivergenceError, GradientOverflowError
from .training.history import History, load_history
from .model.init import init_params, init_recurrent
from .model.losses import mse, softmax_cross_entropy
from .model import RNN, Gradients
from .optim.optimizers import SGD, Adagrad, Adam, RMSprop
from .core import BackwardResult, rnn_backward, rnn_forward
from .core.kernels import available_kernels, set_kernel
from .diagnostics import diagnose, jacobian_log_norms
from .model.regularizers import pascanu_omega
from .optim.schedules import constant, cosine, step_decay
from .training.spikes import SpikeDetector
from .training import Callback, EarlyWarning, Trainer, forensics_summary
from .diagnostics.forecast import overflow_horizon
# after the rest: rnnx.sweep is the function from here on (its package stays importable
# as rnnx.sweep.<module> through sys.modules)
from .sweep import sweep

__all__ = [
    "__version__",
    # the compiled core
    "rnn_forward", "rnn_backward", "jacobian_log_norms", "BackwardResult",
    "set_kernel", "available_kernels",
    "GradientOverflowError", "DivergenceError",
    # model and training
    "RNN", "Gradients", "init_recurrent", "init_params", "mse", "softmax_cross_entropy",
    "pascanu_omega", "SGD", "Adam", "RMSprop", "Adagrad", "constant", "step_decay", "cosine",
    "ClipReport", "global_norm", "clip_by_global_norm", "clip_by_value",
    "clip_by_parameter_norm", "adaptive_clip", "autoclip", "zclip", "chain",
    "Trainer", "Callback", "SpikeDetector", "EarlyWarning", "forensics_summary", "History",
    "load_history",
    "save_checkpoint", "load_checkpoint", "tasks",
    # diagnostics
    "diagnose", "overflow_horizon",
    # sweeps
    "sweep",
]
