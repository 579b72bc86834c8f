"""The ``rnnx`` command: demo, train, diagnose, sweep, plot.

main(argv) returns the exit status: 0 on success, 2 for bad usage or argument values,
1 for missing or unreadable files, sizes that do not fit in memory, failed training and
missing optional dependencies, 141 (like a command killed by SIGPIPE) when the reader of
its output went away (`rnnx diagnose --json | head -c 100`). User errors are one line on
stderr, never a traceback. The choices of the options (optimizers, policies, dtypes,
initialisations, tasks) are read from the modules that define them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .args import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Parser, UsageError
from .args import formatter as _formatter
from .args import nonnegative_int as _nonnegative_int
from .args import positive as _positive
from .args import quoted as _quoted
from .args import shown as _shown
from .args import task_names as _task_names
from .diagnosis import add_diagnose as _add_diagnose
from .train import add_train

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
        from .story import logged_sigma_max, narrate, read_story, wrap
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
    for add in (_add_demo, add_train, _add_diagnose, _add_sweep, _add_plot):
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
