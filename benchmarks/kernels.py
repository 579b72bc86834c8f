"""Forward + BPTT time of every kernel path this machine runs, against numpy (hoisted GEMMs).

    python benchmarks/kernels.py [--quick] [--clock wall|cpu] [--threads 1,2]
        [--dtypes float32,float64] [--kernels avx512,avx2,generic,blas] [--sizes "T,B,D,H;..."]
        [--same-isa] [--hoist]

For each thread count (a child process each, with OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
RNNX_NUM_THREADS set before numpy loads), each dtype and each size, times numpy with the
input projection and the weight gradients hoisted out of the time loop
(benchmarks/core_speed.py's) and rnnx with every path forced in turn (rnnx.set_kernel:
avx512, avx2, generic, blas, those this CPU runs), one cell after the other so that the
ratios of a row come from the same moment. Prints, per thread count and dtype, the median
ms and the ratio to numpy (lower is better), the time per FLOP (picoseconds, FLOPs as the
yardstick counts them: 6 T B H (H + D)), avx2's time per FLOP over avx512's, and for
each size whose H is not a multiple of 32 the time per FLOP over that of the nearest
multiple (same T, B, D, timed in turn with it; the path "auto" picks). The sizes: the
project's yardstick's six and the six of issue 17. On a loaded machine compare the
ratios of one run, repeat, and prefer --clock cpu (1 thread). The cells of a size are
timed in turn, starting each round from the next one, so that none always follows numpy
(whose BLAS threads, with 2 threads, spin for a while after each call).
--quick: fewer, shorter samples.
--same-isa: each path against numpy on the instruction set that path stands for: a child
process per path with OPENBLAS_CORETYPE set for numpy's (and scipy's) OpenBLAS, Haswell
for avx2, Nehalem (SSE4.2, no AVX) for generic, this CPU's own for avx512 and blas; blas
also on each of the others (what such a CPU runs without the kernel). The architecture
threadpoolctl reports heads each column, to show that it took effect.
--hoist: also rnnx ("auto") with dW_hh added up in the backward loop and made after it
(rnnx.core.plan.HOIST_BYTES_PER_ROW forced to inf and to 0), against the plan's choice.
"""
import argparse
import json
import os
import subprocess
import sys

YARDSTICK = [(100, 1, 8, 32), (100, 32, 8, 64), (200, 32, 32, 128), (100, 64, 64, 256),
             (50, 64, 128, 512), (1000, 16, 8, 64)]
ISSUE = [(50, 20, 2, 50), (100, 20, 1, 100), (200, 16, 3, 200), (100, 32, 10, 300),
         (50, 64, 100, 500), (2000, 1, 1, 50)]
PATHS = ("avx512", "avx2", "generic", "blas")
# the OpenBLAS core type of a CPU that runs each path (None: this CPU's own), for --same-isa
CORETYPE = {"avx512": None, "avx2": "Haswell", "generic": "Nehalem", "blas": None}


def flops(T, B, D, H):
    return 6.0 * T * B * H * (H + D)


def neighbour(H):
    """The multiple of 32 nearest H (the larger on a tie)."""
    return max(32, 32 * round(H / 32 + 1e-9))


def child(args):
    """Times every cell with this process's thread count; prints one JSON line per cell."""
    import statistics
    import time

    import rnnx
    from _problem import problem
    from core_speed import numpy_impl

    paths = [k for k in args.kernels if k in rnnx.available_kernels()]
    repeat, min_s = (5, 0.005) if args.quick else (11, 0.02)
    if args.same_isa:
        from threadpoolctl import threadpool_info
        arch = sorted({lib.get("architecture") or "?" for lib in threadpool_info()
                       if lib.get("user_api") == "blas"})
        print(json.dumps({"architecture": arch, "paths": paths}), flush=True)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    def medians_ms(fns):
        """{name: median ms of one call of fn}, the samples of the fns taken in turn, so
        that a change of the machine's load hits them alike."""
        calls = {}
        for name, fn in fns.items():
            fn()
            n, t0 = 1, clock()
            fn()
            while (clock() - t0) * n < min_s and n < 1 << 12:
                n *= 2
            calls[name] = n
        samples = {name: [] for name in fns}
        names = list(fns)
        for r in range(repeat):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn = fns[name]
                t0 = clock()
                for _ in range(calls[name]):
                    fn()
                samples[name].append((clock() - t0) / calls[name] * 1e3)
        return {name: statistics.median(v) for name, v in samples.items()}

    def rnnx_run(path, x, W_xh, W_hh, b, G, hoist=None):
        rnnx.set_kernel(path)
        plan.HOIST_BYTES_PER_ROW = default_hoist if hoist is None else hoist
        h = rnnx.rnn_forward(x, W_xh, W_hh, b)
        return rnnx.rnn_backward(x, h, G, W_xh, W_hh, b)

    from rnnx.core import plan
    default_hoist = plan.HOIST_BYTES_PER_ROW

    for dtype in args.dtypes:
        for T, B, D, H in args.sizes:
            arrays = problem(T, B, D, H, dtype)
            fns = {"numpy": lambda: numpy_impl(*arrays),
                   "auto": lambda: rnnx_run("auto", *arrays)}
            for path in paths:
                fns[path] = lambda path=path: rnnx_run(path, *arrays)
            if args.hoist:
                fns["in loop"] = lambda: rnnx_run("auto", *arrays, hoist=float("inf"))
                fns["after loop"] = lambda: rnnx_run("auto", *arrays, hoist=0)
            if H % 32 and not args.same_isa:
                near = problem(T, B, D, neighbour(H), dtype)
                fns["near"] = lambda: rnnx_run("auto", *near)
            cell = {"size": (T, B, D, H), "dtype": dtype, **medians_ms(fns)}
            print(json.dumps(cell), flush=True)


def same_isa_table(groups, threads):
    """Markdown table of --same-isa: each path's time over numpy's in the child of that
    path's core type. groups: [(architecture, paths, cells)], one per child."""
    out = [f"\n{threads} thread(s): time / numpy's on the same instruction set "
           "(OpenBLAS core type numpy ran)\n"]
    heads = [(p, arch) for arch, paths, _ in groups for p in paths]
    out.append("| T, B, D, H | dtype | "
               + " | ".join(f"{p} ({'/'.join(a)})" for p, a in heads) + " |")
    out.append("|---|---|" + "---|" * len(heads))
    for k, c0 in enumerate(groups[0][2]):
        vals = [f"{cells[k][p] / cells[k]['numpy']:.2f}" for _, paths, cells in groups
                for p in paths]
        out.append(f"| {', '.join(map(str, c0['size']))} | {c0['dtype']} | "
                   + " | ".join(vals) + " |")
    return "\n".join(out)


def tables(cells, threads, paths):
    """Markdown tables of one thread count's cells."""
    out = []
    for dtype in dict.fromkeys(c["dtype"] for c in cells):
        rows = [c for c in cells if c["dtype"] == dtype]
        shown = [p for p in paths + ("in loop", "after loop") if p in rows[0]]
        out.append(f"\n{threads} thread(s), {dtype}: median ms (time / numpy's)\n")
        out.append("| T, B, D, H | numpy | " + " | ".join(shown) + " |")
        out.append("|---|---|" + "---|" * len(shown))
        for c in rows:
            out.append(f"| {', '.join(map(str, c['size']))} | {c['numpy']:.2f} | "
                       + " | ".join(f"{c[p]:.2f} ({c[p] / c['numpy']:.2f})" for p in shown)
                       + " |")
        out.append(f"\n{threads} thread(s), {dtype}: picoseconds per FLOP (6 T B H (H + D))\n")
        head = ["numpy"] + shown
        extra = (["avx2 / avx512"] if "avx512" in shown and "avx2" in shown else [])
        extra.append("auto / nearest multiple of 32")
        out.append("| T, B, D, H | " + " | ".join(head + extra) + " |")
        out.append("|---|" + "---|" * (len(head) + len(extra)))
        for c in rows:
            T, B, D, H = c["size"]
            f = flops(T, B, D, H)
            vals = [f"{c[p] * 1e9 / f:.1f}" for p in head]
            if "avx2 / avx512" in extra:
                # the same ratio per FLOP: both paths ran the same size
                vals.append(f"{c['avx2'] / c['avx512']:.2f}")
            if "near" in c:
                ratio = (c["auto"] / f) / (c["near"] / flops(T, B, D, neighbour(H)))
                vals.append(f"{ratio:.2f} (H = {neighbour(H)})")
            else:
                vals.append("")
            out.append(f"| {', '.join(map(str, c['size']))} | " + " | ".join(vals) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter samples")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--kernels", default=",".join(PATHS),
                    help="paths to time, of those this CPU runs (default: all)")
    ap.add_argument("--sizes", default=None,
                    help='"T,B,D,H;..." (default: the yardstick\'s six and issue 17\'s six)')
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the process's CPU time (steadier on a loaded machine with 1 "
                         "thread; with 2 it adds both threads' time)")
    ap.add_argument("--same-isa", action="store_true",
                    help="each path against numpy's OpenBLAS on that path's core type")
    ap.add_argument("--hoist", action="store_true",
                    help="also dW_hh in the backward loop and after it, forced")
    ap.add_argument("--_child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.dtypes = args.dtypes.split(",")
    args.kernels = args.kernels.split(",")
    args.sizes = (YARDSTICK + ISSUE if args.sizes is None else
                  [tuple(int(v) for v in s.split(",")) for s in args.sizes.split(";")])
    if args.__dict__["_child"]:
        child(args)
        return
    for n in (int(v) for v in args.threads.split(",")):
        if not args.same_isa:
            _, cells = run_child(args, n, args.kernels, None)
            print(tables(cells, n, PATHS), flush=True)
            continue
        groups = []
        for coretype in dict.fromkeys(CORETYPE[k] for k in args.kernels):
            # blas too on every core type: what that CPU runs without the kernel
            kernels = [k for k in args.kernels
                       if CORETYPE[k] == coretype or (k == "blas" and coretype)]
            head, cells = run_child(args, n, kernels, coretype)
            if head["paths"]:
                groups.append((head["architecture"], head["paths"], cells))
        print(same_isa_table(groups, n), flush=True)


def run_child(args, n, kernels, coretype):
    """(first JSON line or None, the cells) of a child timing kernels with n threads, its
    OpenBLAS on coretype (None: this CPU's)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(n), OMP_NUM_THREADS=str(n),
               MKL_NUM_THREADS=str(n), RNNX_NUM_THREADS=str(n))
    env.pop("RNNX_KERNEL", None)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    command = [sys.executable, os.path.abspath(__file__), "--_child", str(n),
               "--dtypes", ",".join(args.dtypes), "--kernels", ",".join(kernels),
               "--sizes", ";".join(",".join(map(str, s)) for s in args.sizes),
               "--clock", args.clock]
    flags = (("--quick", args.quick), ("--same-isa", args.same_isa), ("--hoist", args.hoist))
    command += [flag for flag, on in flags if on]
    here = os.path.dirname(os.path.abspath(__file__))
    run = subprocess.run(command, env=env, cwd=here, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"kernels.py: the {n}-thread child failed:\n{run.stderr}")
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    head = lines.pop(0) if args.same_isa else None
    return head, lines


if __name__ == "__main__":
    main()
