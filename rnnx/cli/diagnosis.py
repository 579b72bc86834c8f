"""`rnnx diagnose`: will this RNN's gradients explode? Of a checkpoint or a random init."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .._checks import FLOAT_DTYPES
from ..model.init import RECURRENT_INITS
from ..tasks import make as make_task
from .args import (EXIT_OK, UsageError, formatter, jsonable, nonnegative_int, positive,
                   quoted, shown, task_names)
from .sizes import check_memory, new_model, task_sizes

__all__ = ["add_diagnose", "run_diagnose"]


def add_diagnose(sub):
    p = sub.add_parser(
        "diagnose", formatter_class=formatter,
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
    p.add_argument("--task", choices=task_names() + ["noise"], default="adding",
                   help="inputs of the trajectory: a built-in task's, or standard normal "
                        "noise (default: %(default)s)")
    p.add_argument("--length", "-T", type=positive(int), default=100,
                   help="trajectory length T (default: %(default)s)")
    p.add_argument("--batch-size", type=positive(int), default=16,
                   help="sequences drawn (default: %(default)s)")
    p.add_argument("--samples", type=positive(int), default=None, metavar="N",
                   help="diagnose a random subset of N of the sequences (default: all)")
    p.add_argument("--lags", type=positive(int), default=None, metavar="K",
                   help="Jacobian log-norms of the first K lags only (default: T)")
    p.add_argument("--hidden", type=positive(int), default=32,
                   help="hidden size of the random init")
    p.add_argument("--init", choices=RECURRENT_INITS, default="orthogonal",
                   help="init of the random W_hh (default: %(default)s)")
    p.add_argument("--spectral-radius", type=positive(float), default=1.0,
                   help="spectral radius of the random W_hh (default: %(default)s)")
    p.add_argument("--dtype", choices=FLOAT_DTYPES, default="float32",
                   help="dtype of the random init")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the random init and the trajectory's inputs")
    p.add_argument("--plot", metavar="PNG",
                   help="write the figure to this file (.png added when it has no suffix; "
                        "in a folder: FOLDER/diagnosis.png) (default: no figure)")
    p.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_diagnose)


def _load_model(path, args):
    """The RNN saved in a Trainer checkpoint."""
    from ..training.checkpoint import load_checkpoint
    from ..model.rnn import RNN
    if Path(path).suffix != ".npz":
        raise UsageError(f"checkpoint must be an .npz file written by rnnx train "
                         f"--checkpoint; got {quoted(path)}")
    try:
        state = load_checkpoint(path)
        cfg = state["config"]["model"]
        params = state["params"]
        sizes = [int(cfg[k]) for k in ("input_size", "hidden_size", "output_size")]
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {quoted(path)}") from None
    except (KeyError, TypeError) as e:
        raise OSError(f"{quoted(path)} is not a checkpoint written by rnnx train / "
                      f"Trainer.save_checkpoint (missing {e})") from None
    except Exception as e:  # noqa: BLE001 -- any unreadable archive is a user error here
        raise OSError(f"cannot read checkpoint {quoted(path)} ({type(e).__name__}); is it "
                      "an .npz written by rnnx train --checkpoint?") from None
    D, H, O = sizes
    check_memory(args.length, args.batch_size, H, D, O, cfg["dtype"], training=False)
    model = RNN(D, H, O, readout=cfg["readout"], dtype=cfg["dtype"], seed=0)
    model.params = {k: np.asarray(v) for k, v in params.items()}
    return model


def _figure_path(text):
    """Where --plot TEXT writes: TEXT, TEXT.png when it has no suffix (matplotlib's own
    choice), FOLDER/diagnosis.png for a folder; its folder must exist."""
    path = Path(text)
    if path.is_dir():
        path = path / "diagnosis.png"
    elif not path.suffix:
        path = path.with_name(path.name + ".png")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--plot {quoted(text)}: no folder {quoted(path.parent)} "
                                "to write the figure in")
    return path


def _overflow_horizons(rate):
    """{dtype: time steps until a backward signal of norm 1 growing by rate nats per step
    overflows it} (inf when it does not grow)."""
    from ..diagnostics.forecast import overflow_horizon
    return {dt: overflow_horizon(rate, dt) for dt in FLOAT_DTYPES}


def _overflow_horizon_line(rate):
    h = _overflow_horizons(rate)
    if not math.isfinite(h["float32"]):
        return "overflow horizon: none (lambda_1 <= 0: the backward signal does not grow)"
    return (f"overflow horizon at lambda_1 = {rate:+.4f}/step: a backward signal overflows "
            f"float32 after {h['float32']:.0f} time steps, float64 after "
            f"{h['float64']:.0f}")


def _diagnosis_inputs(args, model):
    """x (T, B, D) of the requested length T: a task's batch (whose length the task may
    draw above T) is cut to its first T steps; --samples picks a random subset."""
    rng = np.random.default_rng(args.seed + 1)
    if args.task == "noise":
        x = rng.standard_normal((args.length, args.batch_size, model.input_size))
    else:
        task = make_task(args.task, args.length)
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


def run_diagnose(args):
    from ..diagnostics.lyapunov import SINGULAR_TOLERANCE, diagnose
    figure = None
    if args.plot:
        from .plots import require_matplotlib
        figure = _figure_path(args.plot)
        require_matplotlib()       # before the diagnosis, which can take a while
    if args.checkpoint:
        model = _load_model(args.checkpoint, args)
    else:
        D = task_sizes(args.task)[0]
        check_memory(args.length, args.batch_size, args.hidden, D, 1, args.dtype,
                      training=False)
        model = new_model(args, D, 1)
    x = _diagnosis_inputs(args, model)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        d = diagnose(model, x.astype(model.dtype), lags=args.lags,
                     progress=not (args.quiet or args.json))
    if figure is not None:
        from .plots import save_diagnosis_figure
        try:
            save_diagnosis_figure(figure, d)
        except ValueError as e:          # matplotlib: a suffix that is not a format
            raise UsageError(f"--plot {quoted(figure)}: {e}") from None
    if args.json:
        out = d.to_dict()
        out["plot"] = None if figure is None else shown(figure)
        out["overflow_horizon"] = _overflow_horizons(d.lambda_max)
        print(json.dumps(jsonable(out)))
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
    print(_overflow_horizon_line(d.lambda_max))
    if figure is not None:
        print(f"figure: {shown(figure)}")
    return EXIT_OK
