"""The ``rnnx sweep`` command's options and what it prints (rnnx.cli.main wires it in).

The base settings are the flags of ``rnnx train`` (one per setting of rnnx.sweep.SETTINGS,
``spectral_radius`` as ``--spectral-radius``), so a command line of ``rnnx train`` becomes
a sweep by adding ``--grid`` axes and ``--seeds``.
"""
from __future__ import annotations

import argparse
import sys

from .settings import SETTINGS

__all__ = ["add_arguments", "run", "plot"]

EPILOG = """examples:
  rnnx sweep --grid spectral_radius=0.8:2.0:13 --grid clip=none,1,0.1 \\
             --grid length=25,50,100 --seeds 5 --steps 300 --lr 0.1 --out map
  rnnx sweep --kind diagnose --grid spectral_radius=0.5:2.0:16 \\
             --grid length=10,20,50,100,200 --seeds 3 --out edge
  rnnx sweep ... --scheduler tcp://scheduler-host:8786     # on a Dask cluster
  rnnx plot map/results.csv --metric max_grad_norm         # redraw the maps"""


def _typed(setting):
    def parse(text):
        try:
            return setting.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = setting.name
    return parse


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def _axes(text):
    return [a.strip().replace("-", "_") for a in text.split(",") if a.strip()]


def add_map_arguments(parser):
    parser.add_argument("--metric", default=None,
                        help="also map this column's mean (e.g. max_grad_norm, accuracy, "
                             "first_nonfinite_step; for diagnose: sigma_max, ...) (default: the "
                             "outcome map only)")
    parser.add_argument("--axes", type=_axes, default=None, metavar="X,Y[,PANEL]",
                        help="grid axes of the maps (default: the first grid axes with "
                             "more than one value)")


def add_arguments(p):
    g = p.add_argument_group("the sweep")
    g.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                   help="a grid axis: NAME=V1,V2,... or NAME=START:STOP:COUNT (inclusive); "
                        "NAME is any setting below (e.g. spectral_radius, clip, length, "
                        "lr); repeat for more axes. clip values: none or a threshold of "
                        "clipping by global norm")
    g.add_argument("--seeds", type=_positive_int, default=1,
                   help="seeds per grid point, --seed onwards (default: %(default)s)")
    g.add_argument("--kind", choices=("train", "diagnose"), default="train",
                   help="train: a short training run per cell; diagnose: the initial "
                        "weights only (sigma_max, lambda_1, overflow horizon)")
    g.add_argument("--workers", type=_positive_int, default=None,
                   help="local worker processes (default: all cores)")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="run the cells on this Dask scheduler's workers (rnnx[dask])")
    g.add_argument("--out", metavar="DIR", default="rnnx-sweep",
                   help="folder of results.csv and the maps; a rerun resumes it "
                        "(default: ./rnnx-sweep)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--no-plots", action="store_true", help="draw no maps")
    add_map_arguments(g)
    g = p.add_argument_group("base settings (the flags of rnnx train)")
    for s in SETTINGS.values():
        flags = ["--" + s.name.replace("_", "-")] + (["-T"] if s.name == "length" else [])
        g.add_argument(*flags, dest=s.name, type=_typed(s), default=s.default,
                       metavar=s.name.upper(),
                       help=f"{s.help} (default: {'none' if s.default is None else s.default})")


def run(args):
    """Run the sweep of the parsed args; returns the exit status."""
    from .grid import parse_grid
    from .run import sweep
    grid = parse_grid(args.grid)
    if args.scheduler and args.workers is not None:
        raise ValueError("--workers applies to local processes; a Dask scheduler has its "
                         "own workers")
    base = {name: getattr(args, name) for name in SETTINGS}
    try:
        result = sweep(base, grid, seeds=args.seeds, kind=args.kind,
                       engine=args.scheduler, workers=args.workers, out=args.out,
                       progress=not args.quiet, plots=not args.no_plots,
                       metric=args.metric, axes=args.axes)
    except RuntimeError as e:               # a local worker process died
        print(f"rnnx sweep: error: {e}", file=sys.stderr)
        return 1
    n, failed = len(result.rows), len(result.errors)
    print(f"{n} cells in {result.path}" + (f" ({failed} raised: see its error column)"
                                           if failed else ""))
    if args.kind == "train" and n:
        counts = {}
        for row in result.rows:
            counts[row.get("outcome")] = counts.get(row.get("outcome"), 0) + 1
        print(", ".join(f"{counts[o]} {o}" for o in ("solved", "did not learn", "exploded")
                        if o in counts))
    for path in result.figures:
        print(f"figure: {path}")
    return 0


def plot(path, out=None, *, metric=None, axes=None):
    """Redraw the maps of a results file or folder into out (default: its folder); returns
    the figure paths."""
    from pathlib import Path

    from ..cli.plots import require_matplotlib
    from .maps import save_maps
    from .results import read_manifest, read_rows, results_path
    path = results_path(path)
    rows = read_rows(path)
    require_matplotlib()
    manifest = read_manifest(path.parent)
    kind = manifest.get("kind") or (rows[0]["kind"] if rows else "train")
    grid_names = list(manifest.get("grid", {})) or _varying(rows)
    folder = Path(out) if out else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    return save_maps(folder, rows, grid_names, kind, metric=metric, axes=axes)


def _varying(rows):
    """The settings that take more than one value in rows (a results file without its
    sweep.json)."""
    return [n for n in SETTINGS if n != "seed" and len({r.get(n) for r in rows}) > 1]
