"""The ``rnnx`` command: demo, train, diagnose, plot.

main(argv) returns the exit status: 0 on success, 2 for bad usage or argument values,
1 for missing or unreadable files, failed training and missing optional dependencies.
User errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")
CLIPS = ("none", "global_norm", "value", "parameter_norm", "adaptive", "autoclip")


class UsageError(Exception):
    """A bad combination of arguments (exit status 2)."""


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}")
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _task_names():
    from ..tasks import TASKS
    return sorted(TASKS)


# --- demo ---------------------------------------------------------------------------------

def _add_demo(sub):
    from .demo import DEFAULTS
    p = sub.add_parser(
        "demo", formatter_class=_formatter,
        help="train one RNN with and without gradient clipping and compare",
        description="Train the same small RNN (W_hh with spectral radius "
                    f"{DEFAULTS['spectral_radius']}) twice from the same seed: without "
                    "clipping (it explodes; failed steps are skipped and counted) and with "
                    "clipping by global norm (it does not). Prints a summary table and "
                    "writes logs and figures.",
        epilog="examples:\n  rnnx demo\n  rnnx demo --steps 100 --seed 3 --out /tmp/demo\n"
               "  rnnx demo --task temporal_order --no-plots")
    p.add_argument("--out", default="rnnx-demo", metavar="DIR",
                   help="output folder (default: ./rnnx-demo)")
    p.add_argument("--steps", type=_positive(int), default=DEFAULTS["steps"],
                   help="training steps per run (default: %(default)s)")
    p.add_argument("--seed", type=_nonnegative_int, default=DEFAULTS["seed"],
                   help="seed of the initialisation and the batches (default: %(default)s)")
    p.add_argument("--task", choices=_task_names(), default=DEFAULTS["task"],
                   help="built-in task (default: %(default)s)")
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run_demo)


def _run_demo(args):
    from .demo import run_demo
    run_demo(args.out, steps=args.steps, seed=args.seed, task=args.task,
             plots=not args.no_plots, progress=not args.quiet)
    return EXIT_OK


# --- train --------------------------------------------------------------------------------

def _add_train(sub):
    from ..model.init import RECURRENT_INITS
    p = sub.add_parser(
        "train", formatter_class=_formatter, help="train an RNN on a built-in task",
        description="Train a vanilla tanh RNN on a built-in task with every knob of "
                    "rnnx.Trainer. --steps is the total: with --resume the run continues "
                    "from the checkpoint up to that many steps.",
        epilog="examples:\n"
               "  rnnx train --task adding --length 100 --clip global_norm --clip-threshold 1\n"
               "  rnnx train --spectral-radius 1.5 --lr 0.3 --policy skip --log run.csv --json\n"
               "  rnnx train --steps 2000 --checkpoint run.npz --checkpoint-every 100\n"
               "  rnnx train --steps 4000 --checkpoint run.npz --resume   # continue it")
    g = p.add_argument_group("task and model")
    g.add_argument("--task", choices=_task_names(), default="adding")
    g.add_argument("--length", "-T", type=_positive(int), default=50,
                   help="sequence length T (default: %(default)s)")
    g.add_argument("--hidden", type=_positive(int), default=32, help="hidden size H")
    g.add_argument("--init", choices=RECURRENT_INITS, default="orthogonal",
                   help="initialisation of W_hh (default: %(default)s)")
    g.add_argument("--spectral-radius", type=_positive(float), default=None,
                   help="rescale W_hh to this spectral radius")
    g.add_argument("--std", type=_positive(float), default=None,
                   help="std of the gaussian / smart_tanh inits")
    g.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    g.add_argument("--lr", type=_positive(float), default=0.01,
                   help="learning rate (default: %(default)s)")
    g.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    g.add_argument("--clip", choices=CLIPS, default="none", help="gradient clipping method")
    g.add_argument("--clip-threshold", type=_positive(float), default=1.0,
                   help="max norm / limit / AGC ratio / AutoClip percentile (default: 1.0)")
    g.add_argument("--clip-delta", type=_positive(float), default=None,
                   help="element-wise clip of dL/dh[t] inside BPTT")
    g.add_argument("--max-norm", type=_positive(float), default=None,
                   help="fail a step whose ||dL/dh[t]|| passes this")
    g.add_argument("--omega", type=float, default=0.0,
                   help="weight of Pascanu et al.'s regulariser (default: 0)")
    g.add_argument("--policy", choices=("raise", "skip", "rollback"), default="skip",
                   help="what a non-finite step does (default: %(default)s)")
    g.add_argument("--spikes", choices=("log", "skip", "rollback", "off"), default="log",
                   help="what a gradient-norm spike does (default: %(default)s)")
    g.add_argument("--steps", type=_positive(int), default=500)
    g.add_argument("--batch-size", type=_positive(int), default=32)
    g.add_argument("--seed", type=_nonnegative_int, default=0)
    g = p.add_argument_group("output")
    g.add_argument("--log", metavar="PATH", help="log file (.csv or .jsonl)")
    g.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (.npz)")
    g.add_argument("--checkpoint-every", type=_positive(int), default=None,
                   help="save a checkpoint every N steps (default: at the end only)")
    g.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    g.add_argument("--quiet", action="store_true", help="no progress bar or table")
    g.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=_run_train)


def _clip(args):
    from ..optim import clipping
    c = args.clip_threshold
    return {"none": lambda: None,
            "global_norm": lambda: clipping.clip_by_global_norm(c),
            "value": lambda: clipping.clip_by_value(c),
            "parameter_norm": lambda: clipping.clip_by_parameter_norm(c),
            "adaptive": lambda: clipping.adaptive_clip(c),
            "autoclip": lambda: clipping.autoclip(c)}[args.clip]()


def _optimizer(args):
    from ..optim import optimizers
    if args.momentum and args.optimizer != "sgd":
        raise UsageError("--momentum applies to --optimizer sgd only")
    if args.optimizer == "sgd":
        return optimizers.SGD(lr=args.lr, momentum=args.momentum)
    return {"adam": optimizers.Adam, "rmsprop": optimizers.RMSprop,
            "adagrad": optimizers.Adagrad}[args.optimizer](lr=args.lr)


def _run_train(args):
    from .demo import format_table, quiet_training, summarize
    from ..model.rnn import RNN
    from ..tasks import make
    from ..training.loop import Trainer
    if args.resume and not args.checkpoint:
        raise UsageError("--resume needs --checkpoint PATH")
    if args.checkpoint_every and not args.checkpoint:
        raise UsageError("--checkpoint-every needs --checkpoint PATH")
    if args.resume and not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"no checkpoint to resume at {args.checkpoint!r}")
    task = make(args.task, args.length, dtype=args.dtype)
    model = RNN(task.input_size, args.hidden, task.output_size, readout=task.readout,
                dtype=args.dtype, init=args.init, spectral_radius=args.spectral_radius,
                std=args.std, seed=args.seed)
    trainer = Trainer(model, _optimizer(args), loss=task.loss, clip=_clip(args),
                      policy=args.policy, max_norm=args.max_norm, clip_delta=args.clip_delta,
                      omega=args.omega, spikes=None if args.spikes == "off" else args.spikes,
                      log_path=args.log, checkpoint_path=args.checkpoint,
                      checkpoint_every=args.checkpoint_every,
                      progress=not (args.quiet or args.json), seed=args.seed)
    if args.resume:
        trainer.load_checkpoint(args.checkpoint)
    remaining = args.steps - trainer.step
    if remaining > 0:
        with quiet_training():
            trainer.fit(task, steps=remaining, batch_size=args.batch_size)
        if args.checkpoint:
            trainer.save_checkpoint()
    summary = summarize("train", trainer, task, seed=args.seed + 2)
    summary["resumed_from_step"] = args.steps - remaining if args.resume else None
    if args.json:
        print(json.dumps(_jsonable(summary)))
    elif not args.quiet:
        print(format_table([summary]))
    return EXIT_OK


def _jsonable(value):
    """NaN/inf -> None so that the output is strict JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- diagnose -----------------------------------------------------------------------------

def _add_diagnose(sub):
    from ..model.init import RECURRENT_INITS
    p = sub.add_parser(
        "diagnose", formatter_class=_formatter,
        help="will this RNN's gradients explode? (spectrum, Jacobians, Lyapunov exponents)",
        description="Spectral radius and singular values of W_hh, Jacobian log-norms "
                    "ln||dh[T-1]/dh[T-1-k]|| per lag along a real trajectory, the Lyapunov "
                    "exponents by the QR method (Benettin et al.), and a verdict: exploding "
                    "(lambda_1 > 0.01 per step), vanishing (< -0.01) or near the edge. Of "
                    "a checkpoint written by `rnnx train --checkpoint`, or of a random "
                    "initialisation.",
        epilog="examples:\n  rnnx diagnose --hidden 64 --spectral-radius 1.5\n"
               "  rnnx diagnose run.npz --task adding --length 100 --plot diag.png\n"
               "  rnnx diagnose run.npz --task noise --json\n"
               "  rnnx diagnose --hidden 512 --batch-size 32 --samples 4 --lags 50")
    p.add_argument("checkpoint", nargs="?", help="checkpoint (.npz); omit for a random init")
    p.add_argument("--task", choices=_task_names() + ["noise"], default="adding",
                   help="inputs of the trajectory: a built-in task's, or standard normal "
                        "noise (default: %(default)s)")
    p.add_argument("--length", "-T", type=_positive(int), default=100,
                   help="trajectory length T (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive(int), default=16,
                   help="sequences drawn (default: %(default)s)")
    p.add_argument("--samples", type=_positive(int), default=None, metavar="N",
                   help="diagnose a random subset of N of the sequences (default: all)")
    p.add_argument("--lags", type=_positive(int), default=None, metavar="K",
                   help="Jacobian log-norms of the first K lags only (default: T)")
    p.add_argument("--hidden", type=_positive(int), default=32,
                   help="hidden size of the random init (default: %(default)s)")
    p.add_argument("--init", choices=RECURRENT_INITS, default="orthogonal",
                   help="init of the random W_hh (default: %(default)s)")
    p.add_argument("--spectral-radius", type=_positive(float), default=1.0,
                   help="spectral radius of the random W_hh (default: %(default)s)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--plot", metavar="PNG", help="write the figure here")
    p.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_diagnose)


def _load_model(path):
    """The RNN saved in a Trainer checkpoint."""
    from ..training.checkpoint import load_checkpoint
    from ..model.rnn import RNN
    if Path(path).suffix != ".npz":
        raise UsageError(f"checkpoint must be an .npz file written by rnnx train "
                         f"--checkpoint; got {str(path)!r}")
    try:
        state = load_checkpoint(path)
        cfg = state["config"]["model"]
        params = state["params"]
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}") from None
    except (KeyError, TypeError) as e:
        raise OSError(f"{str(path)!r} is not a checkpoint written by rnnx train / "
                      f"Trainer.save_checkpoint (missing {e})") from None
    except Exception as e:  # noqa: BLE001 -- any unreadable archive is a user error here
        raise OSError(f"cannot read checkpoint {str(path)!r} ({type(e).__name__}); is it "
                      "an .npz written by rnnx train --checkpoint?") from None
    model = RNN(cfg["input_size"], cfg["hidden_size"], cfg["output_size"],
                readout=cfg["readout"], dtype=cfg["dtype"], seed=0)
    model.params = {k: np.asarray(v) for k, v in params.items()}
    return model


def _diagnosis_inputs(args, model):
    """x (T, B, D) of the requested length T: a task's batch (whose length the task draws
    from [T, T + T/10]) is cut to its first T steps; --samples picks a random subset."""
    from ..tasks import make
    rng = np.random.default_rng(args.seed + 1)
    if args.task == "noise":
        x = rng.standard_normal((args.length, args.batch_size, model.input_size))
    else:
        task = make(args.task, args.length)
        if task.input_size != model.input_size:
            raise UsageError(f"task {args.task!r} has {task.input_size} inputs but the model "
                             f"takes {model.input_size}; pick its task or --task noise")
        x = task.sample(args.batch_size, rng)[0][:args.length]
    if args.samples is not None:
        if args.samples > args.batch_size:
            raise UsageError(f"--samples {args.samples} is more than --batch-size "
                             f"{args.batch_size}")
        x = x[:, np.sort(rng.choice(args.batch_size, args.samples, replace=False))]
    if args.lags is not None and args.lags > args.length:
        raise UsageError(f"--lags {args.lags} is more than --length {args.length}")
    return x


def _run_diagnose(args):
    from ..diagnostics.lyapunov import SINGULAR_TOLERANCE, diagnose
    from ..model.rnn import RNN
    from ..tasks import make
    if args.checkpoint:
        model = _load_model(args.checkpoint)
    else:
        model = RNN(2 if args.task == "noise" else make(args.task, args.length).input_size,
                    args.hidden, 1, dtype=args.dtype, init=args.init,
                    spectral_radius=args.spectral_radius, seed=args.seed)
    x = _diagnosis_inputs(args, model)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        d = diagnose(model, x.astype(model.dtype), lags=args.lags,
                     progress=not (args.quiet or args.json))
    if args.plot:
        from .plots import save_diagnosis_figure
        save_diagnosis_figure(args.plot, d)
    if args.json:
        out = d.to_dict()
        out["plot"] = args.plot
        print(json.dumps(_jsonable(out)))
        return EXIT_OK
    s, L = d.singular_values, d.log_norms
    K = len(L) - 1
    lags = sorted({k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, K) if k <= K})
    print(f"W_hh: H={len(s)}, spectral radius {d.spectral_radius:.4g}, singular values "
          f"{s[0]:.4g} (max) .. {s[-1]:.4g} (min), {d.above_one} above 1 "
          f"(counting from 1 + {SINGULAR_TOLERANCE:g})")
    print(f"Jacobian ln||dh[T-1]/dh[T-1-k]|| (mean of {d.batch_size} sequences, T={d.T}): "
          + ", ".join(f"k={k}: {L[k]:+.3g}" for k in lags)
          + f"   [bound k ln sigma_max: {math.log(s[0]):+.4f} per step]")
    e = d.exponents
    print("Lyapunov exponents (QR method, nats/step): "
          + ", ".join(f"{v:+.4f}" for v in e[:5]) + (" ..." if len(e) > 5 else "")
          + f"   sum {e.sum():+.4f}")
    print(f"verdict: {d.explain()}")
    if args.plot:
        print(f"figure: {args.plot}")
    return EXIT_OK


# --- plot ---------------------------------------------------------------------------------

def _add_plot(sub):
    p = sub.add_parser(
        "plot", formatter_class=_formatter, help="redraw the figures of saved training logs",
        description="Redraw the gradient-norm, backward-signal heatmap and loss figures "
                    "from logs written by `rnnx train --log` or `rnnx demo` (the "
                    "<log>.delta_norms.npy next to each log feeds the heatmap). Several "
                    "logs are overlaid, labelled by file name. The Jacobian figure needs "
                    "the weights: use `rnnx diagnose CHECKPOINT --plot`.",
        epilog="examples:\n  rnnx plot run.csv\n"
               "  rnnx plot rnnx-demo/unclipped.csv rnnx-demo/clipped.csv --out figs")
    p.add_argument("logs", nargs="+", metavar="LOG", help="log file(s), .csv or .jsonl")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: the first log's folder)")
    p.set_defaults(run=_run_plot)


def _run_plot(args):
    from ..training.history import load_history
    from .plots import require_matplotlib, save_run_figures
    histories = {}
    for log in args.logs:
        try:
            h = load_history(log)
        except FileNotFoundError:
            raise FileNotFoundError(f"no log file at {log!r}") from None
        except ValueError as e:
            raise UsageError(str(e)) from None
        except Exception as e:  # noqa: BLE001 -- a corrupt log is a user error here
            raise OSError(f"cannot read log {log!r}: {e}") from None
        missing = {"step", "loss", "grad_norm", "clipped_norm", "clip_coef", "spike",
                   "skipped", "nonfinite"} - set(h.columns or [])
        if not len(h) or missing:
            raise OSError(f"{log!r} is not a training log (no rows or missing columns "
                          f"{sorted(missing)})")
        histories[Path(log).stem] = h
    require_matplotlib()      # after reading the logs, so a wrong path is reported first
    out = Path(args.out) if args.out else Path(args.logs[0]).parent
    out.mkdir(parents=True, exist_ok=True)
    for path in save_run_figures(out, histories):
        print(path)
    return EXIT_OK


# --- entry point --------------------------------------------------------------------------

def build_parser():
    from .. import __version__
    parser = argparse.ArgumentParser(
        prog="rnnx", formatter_class=_formatter,
        description="Train vanilla tanh RNNs and see, measure and tame exploding gradients.",
        epilog="examples:\n  rnnx demo\n  rnnx train --spectral-radius 1.5 --clip global_norm\n"
               "  rnnx diagnose --spectral-radius 1.2\n  rnnx plot rnnx-demo/clipped.csv\n"
               "Run `rnnx COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"rnnx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_demo, _add_train, _add_diagnose, _add_plot):
        add(sub)
    return parser


def main(argv=None):
    """Run the rnnx command with argv (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:            # --help, --version (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    name = f"rnnx {args.command}"
    try:
        return args.run(args)
    except UsageError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except (ValueError, TypeError, KeyError) as e:
        # the library's checks name the argument and the expected value
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (FloatingPointError, OSError) as e:
        # training failed under policy "raise" / diverged, or an unreadable file
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130

