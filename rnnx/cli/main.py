"""The ``rnnx`` command: demo, train, diagnose, sweep, plot.

main(argv) returns the exit status: 0 on success, 2 for bad usage or argument values,
1 for missing or unreadable files, sizes that do not fit in memory, failed training and
missing optional dependencies, 141 (like a command killed by SIGPIPE) when the reader of
its output went away (`rnnx diagnose --json | head -c 100`). User errors are one line on
stderr, never a traceback. The choices of the options (optimizers, policies, dtypes,
initialisations, tasks) are read from the modules that define them.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .._checks import FLOAT_DTYPES
from ..model.init import RECURRENT_INITS
from ..optim.optimizers import OPTIMIZERS
from ..optim.named import CLIPS, make_clip
from ..tasks import make as make_task
from ..training import POLICIES, SPIKE_POLICIES
from .args import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Parser, UsageError
from .args import formatter as _formatter
from .args import jsonable as _jsonable
from .args import nonnegative_int as _nonnegative_int
from .args import positive as _positive
from .args import quoted as _quoted
from .args import shown as _shown
from .args import task_names as _task_names
from .diagnosis import add_diagnose as _add_diagnose
from .resume import (MAY_CHANGE, SavedSettings, record_given_flags, resume_settings,
                     settings_of)
from .sizes import check_memory as _check_memory
from .sizes import new_model as _new_model
from .sizes import task_sizes as _task_sizes

__all__ = ["main", "build_parser"]


# --- demo ---------------------------------------------------------------------------------

def _add_demo(sub):
    from .demo import DEFAULTS
    p = sub.add_parser(
        "demo", formatter_class=_formatter,
        help="watch BPTT's gradient explode, and clipping let the same RNN learn",
        description="Train the same small RNN three times from the same seed and weights "
                    f"on {DEFAULTS['task']} (T={DEFAULTS['length']}, W_hh orthogonal with "
                    f"spectral radius {DEFAULTS['spectral_radius']}, SGD with momentum): "
                    "without clipping, with clipping by global norm, and with the "
                    "rollback policy and no clipping. Prints what "
                    "happened in words (calm band, spike, growth of the backward signal "
                    "per time step against sigma_max(W_hh) and the Lyapunov exponent, "
                    "accuracy on 10,000 fresh sequences) and a summary table; writes logs, "
                    "checkpoints and figures.",
        epilog="examples:\n  rnnx demo\n  rnnx demo --steps 3000 --seed 3 --out /tmp/demo\n"
               "  rnnx demo --no-plots --quiet")
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

def _spike_choices():
    """The Trainer's spike policies, with "off" for None (detection off)."""
    return tuple("off" if p is None else p for p in SPIKE_POLICIES)


def _threshold_defaults():
    """'1; 2.5 for zclip': the usual --clip-threshold default, then the exceptions."""
    values = [d for _, d in CLIPS.values() if d is not None]
    usual = max(set(values), key=values.count)
    others = [f"{d:g} for {k}" for k, (_, d) in CLIPS.items() if d not in (None, usual)]
    return "; ".join([f"{usual:g}"] + others)


def _add_train(sub):
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
    record_given_flags(p)       # so that --resume tells a given flag from a default
    g = p.add_argument_group("task and model")
    g.add_argument("--task", choices=_task_names(), default="adding", help="built-in task")
    g.add_argument("--length", "-T", type=_positive(int), default=50, help="sequence length T")
    g.add_argument("--hidden", type=_positive(int), default=32, help="hidden size H")
    g.add_argument("--init", choices=RECURRENT_INITS, default="orthogonal",
                   help="initialisation of W_hh")
    g.add_argument("--spectral-radius", type=_positive(float), default=None,
                   help="rescale W_hh to this spectral radius (default: the init's own)")
    g.add_argument("--std", type=_positive(float), default=None,
                   help="std of the gaussian / smart_tanh inits (default: the init's own)")
    g.add_argument("--dtype", choices=FLOAT_DTYPES, default="float32",
                   help="dtype of the weights and the computation")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd", help="optimizer")
    g.add_argument("--lr", type=_positive(float), default=0.01, help="learning rate")
    g.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    g.add_argument("--clip", choices=tuple(CLIPS), default="none",
                   help="gradient clipping transformation")
    g.add_argument("--clip-threshold", type=_positive(float), default=None,
                   help="max norm / limit / AGC ratio / AutoClip percentile / ZClip z-score "
                        f"(default: {_threshold_defaults()})")
    g.add_argument("--clip-delta", type=_positive(float), default=None,
                   help="element-wise clip of dL/dh[t] inside BPTT (default: none)")
    g.add_argument("--max-norm", type=_positive(float), default=None,
                   help="fail a step whose ||dL/dh[t]|| passes this (default: none)")
    g.add_argument("--omega", type=float, default=0.0,
                   help="weight of Pascanu et al.'s regulariser")
    g.add_argument("--policy", choices=POLICIES, default="skip",
                   help="what a non-finite step does")
    g.add_argument("--spikes", choices=_spike_choices(), default="log",
                   help="what a gradient-norm spike does")
    g.add_argument("--steps", type=_positive(int), default=500,
                   help="training steps in all (with --resume: up to this many)")
    g.add_argument("--batch-size", type=_positive(int), default=32,
                   help="sequences per training step")
    g.add_argument("--seed", type=_nonnegative_int, default=0,
                   help="seed of the initialisation and the batches")
    g = p.add_argument_group("output")
    g.add_argument("--log", metavar="PATH", help="log file, .csv or .jsonl (default: none)")
    g.add_argument("--checkpoint", metavar="PATH", help="checkpoint file, .npz (default: none)")
    g.add_argument("--checkpoint-every", type=_positive(int), default=None,
                   help="save a checkpoint every N steps (default: at the end only)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run saved in --checkpoint, with its settings (flags "
                        "given override only " + ", ".join("--" + k.replace("_", "-") for k
                                                           in MAY_CHANGE) + ")")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing --checkpoint with a new run")
    g.add_argument("--quiet", action="store_true", help="no progress bar or table")
    g.add_argument("--json", action="store_true", help="print the summary as JSON")
    g.add_argument("--explain", action="store_true",
                   help="also tell the run's story in words: calm band, first spike, first "
                        "overflow and its time step, growth of the backward signal per time "
                        "step, what the policy and clipping did")
    p.set_defaults(run=_run_train)


def _clip(args):
    return make_clip(args.clip, args.clip_threshold)


def _optimizer(args):
    if args.momentum and args.optimizer != "sgd":
        raise UsageError("--momentum applies to --optimizer sgd only")
    if args.optimizer == "sgd":
        return OPTIMIZERS["sgd"](lr=args.lr, momentum=args.momentum)
    return OPTIMIZERS[args.optimizer](lr=args.lr)


def _run_train(args):
    from .report import (format_table, logged_sigma_max, narrate, quiet_training,
                         read_story, summarize, wrap)
    from ..training.loop import Trainer
    from ..training.checkpoint import CheckpointError
    given = getattr(args, "given_flags", set())
    if args.resume and not args.checkpoint:
        raise UsageError("--resume needs --checkpoint PATH")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    new_policy = False
    if args.resume:
        if not Path(args.checkpoint).exists():
            raise FileNotFoundError(f"no checkpoint to resume at {args.checkpoint!r}")
        new_policy = resume_settings(args, given)
    elif args.checkpoint and Path(args.checkpoint).exists() and not args.overwrite:
        raise UsageError(f"checkpoint {args.checkpoint!r} exists: pass --resume to continue "
                         "that run, or --overwrite to replace it with a new one")
    if args.checkpoint_every and not args.checkpoint:
        raise UsageError("--checkpoint-every needs --checkpoint PATH")
    settings = settings_of(args)
    _check_memory(args.length, args.batch_size, args.hidden, *_task_sizes(args.task),
                  args.dtype, training=True)
    task = make_task(args.task, args.length, dtype=args.dtype)
    model = _new_model(args, task.input_size, task.output_size, readout=task.readout,
                       std=args.std)
    trainer = Trainer(model, _optimizer(args), loss=task.loss, clip=_clip(args),
                      policy=args.policy, max_norm=args.max_norm, clip_delta=args.clip_delta,
                      omega=args.omega, spikes=None if args.spikes == "off" else args.spikes,
                      log_path=args.log, checkpoint_path=args.checkpoint,
                      checkpoint_every=args.checkpoint_every,
                      callbacks=[SavedSettings(settings)],
                      progress=not (args.quiet or args.json), seed=args.seed)
    if args.resume:
        try:
            trainer.load_checkpoint(args.checkpoint, new_policy=new_policy)
        except CheckpointError as e:
            raise OSError(str(e)) from None
    remaining = args.steps - trainer.step
    if remaining > 0:
        with quiet_training():
            trainer.fit(task, steps=remaining, batch_size=args.batch_size)
        if args.checkpoint:
            trainer.save_checkpoint()
    summary = summarize("train", trainer, task, seed=args.seed + 2)
    summary["resumed_from_step"] = args.steps - remaining if args.resume else None
    if args.explain:
        story = read_story(trainer.history)
        at, smax = logged_sigma_max(trainer.history, story.spike_step)
        summary["story"] = story.to_dict()
        summary["explanation"] = narrate(story, name="this run", sigma_max=smax,
                                         sigma_max_step=at, accuracy=summary["accuracy"],
                                         eval_sequences=summary["eval_sequences"],
                                         solved=summary["solved"])
    if args.json:
        summary["forensics"] = _forensics(trainer.history)
        print(json.dumps(_jsonable(summary)))
    elif not args.quiet:
        print(format_table([summary]))
        print(_forensics_line(_forensics(trainer.history)))
    if args.explain and not args.json:
        print("\n" + wrap(summary["explanation"]))
    return EXIT_OK


def _forensics(history):
    from ..training.forensics import forensics_summary
    return forensics_summary(history)


def _forensics_line(counts):
    """One line: the early warnings and the float64 verdicts on spikes and failures."""
    return (f"forensics: {counts['warnings']} early warning(s); float64 second opinion on "
            f"spikes/failures: {counts['real']} real, {counts['artefact']} float32 "
            f"artefact(s), {counts['disputed']} disputed")


# --- sweep --------------------------------------------------------------------------------

def _add_sweep(sub):
    from ..sweep.command import EPILOG, add_arguments
    p = sub.add_parser(
        "sweep", formatter_class=_formatter,
        help="stability maps: train or diagnose over a grid of settings and seeds",
        description="Run a grid of rnnx train settings x seeds on local processes (or a "
                    "Dask cluster), append every finished cell to OUT/results.csv (a rerun "
                    "skips the cells done) and draw stability maps: outcome (exploded / did "
                    "not learn / solved) or a metric over two grid axes, or, for --kind "
                    "diagnose, lambda_1 over radius x length with its zero contour.",
        epilog=EPILOG)
    add_arguments(p)
    p.set_defaults(run=_run_sweep)


def _run_sweep(args):
    from ..sweep.command import run
    return run(args)


def _run_plot_sweep(args):
    from ..sweep.command import plot
    for path in plot(args.logs[0], args.out, metric=args.metric, axes=args.axes):
        print(path)
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
               "  rnnx plot rnnx-demo/unclipped.csv rnnx-demo/clipped.csv --out figs\n"
               "  rnnx plot rnnx-sweep/results.csv --metric max_grad_norm   # sweep maps")
    p.add_argument("logs", nargs="+", metavar="LOG", help="log file(s), .csv or .jsonl; or "
                   "one sweep's results.csv (or its folder) to redraw its maps")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: the first log's folder)")
    from ..sweep.command import add_map_arguments
    add_map_arguments(p.add_argument_group("sweep results only"))
    p.add_argument("--explain", action="store_true",
                   help="also print each run's story in words (calm band, first spike, "
                        "first overflow and its time step, growth of the backward signal "
                        "per time step, what the policy and clipping did)")
    p.set_defaults(run=_run_plot)


def _run_plot(args):
    from ..sweep.results import is_results
    if len(args.logs) == 1 and is_results(args.logs[0]):
        return _run_plot_sweep(args)
    from ..training.history import LogWriter, load_history
    from .plots import require_matplotlib, save_run_figures
    histories = {}
    for log in args.logs:
        try:
            LogWriter.check_path(log)
        except ValueError as e:
            raise UsageError(str(e)) from None
        try:
            h = load_history(log)
        except FileNotFoundError:
            raise FileNotFoundError(f"no log file at {_quoted(log)}") from None
        except ValueError as e:       # load_history names the file and what is wrong
            raise OSError(str(e)) from None
        missing = {"step", "loss", "grad_norm", "clipped_norm", "clip_coef", "spike",
                   "skipped", "nonfinite"} - set(h.columns or [])
        if not len(h) or missing:
            raise OSError(f"{_quoted(log)} is not a training log (no rows or missing columns "
                          f"{sorted(missing)})")
        histories[_shown(Path(log).stem)] = h     # the label drawn in the figures
    require_matplotlib()      # after reading the logs, so a wrong path is reported first
    out = Path(args.out) if args.out else Path(args.logs[0]).parent
    out.mkdir(parents=True, exist_ok=True)
    for path in save_run_figures(out, histories):
        print(_shown(path))
    if args.explain:
        from .report import logged_sigma_max, narrate, read_story, wrap
        for name, h in histories.items():
            story = read_story(h)
            at, smax = logged_sigma_max(h, story.spike_step)
            print("\n" + wrap(narrate(story, name=name, sigma_max=smax, sigma_max_step=at)))
    return EXIT_OK


# --- entry point --------------------------------------------------------------------------

def build_parser():
    from .. import __version__
    parser = Parser(
        prog="rnnx", formatter_class=_formatter,
        description="Train vanilla tanh RNNs and see, measure and tame exploding gradients.",
        epilog="examples:\n  rnnx demo\n  rnnx train --spectral-radius 1.5 --clip global_norm\n"
               "  rnnx diagnose --spectral-radius 1.2\n  rnnx plot rnnx-demo/clipped.csv\n"
               "  rnnx sweep --grid spectral_radius=0.8:2:7 --grid clip=none,1 --seeds 3\n"
               "Run `rnnx COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"rnnx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_demo, _add_train, _add_diagnose, _add_sweep, _add_plot):
        add(sub)
    return parser


def main(argv=None):
    """Run the rnnx command with argv (default: sys.argv[1:]); returns the exit status."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:        # --help, --version (0) or a usage error (2)
            sys.stdout.flush()
            return e.code if isinstance(e.code, int) else EXIT_USAGE
        return _run(args)
    except BrokenPipeError:
        return _output_closed()


def _run(args):
    name = f"rnnx {args.command}"
    try:
        status = args.run(args)
        sys.stdout.flush()         # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        raise
    except UsageError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except MemoryError as e:
        # the estimate in _check_memory, or an allocation beyond what this machine has
        print(f"{name}: error: out of memory: {e}", file=sys.stderr)
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


def _output_closed():
    """The reader of stdout went away (`rnnx diagnose --json | head -c 100`): stop without
    a message, as a command killed by SIGPIPE does, and point stdout at /dev/null so
    that Python's final flush at exit does not complain either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, ValueError, OSError):   # no real file behind sys.stdout
        pass
    return EXIT_BROKEN_PIPE
