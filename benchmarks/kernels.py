"""Forward + BPTT time of every kernel path this machine runs, against numpy (hoisted GEMMs).

    python benchmarks/kernels.py [--quick] [--clock wall|cpu] [--threads 1,2]
        [--dtypes float32,float64] [--kernels avx512,avx2,generic,blas] [--sizes "T,B,D,H;..."]

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
ratios of one run, repeat, and prefer --clock cpu (1 thread).
--quick: fewer, shorter samples.
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
        for _ in range(repeat):
            for name, fn in fns.items():
                t0 = clock()
                for _ in range(calls[name]):
                    fn()
                samples[name].append((clock() - t0) / calls[name] * 1e3)
        return {name: statistics.median(v) for name, v in samples.items()}

    def rnnx_run(path, x, W_xh, W_hh, b, G):
        rnnx.set_kernel(path)
        h = rnnx.rnn_forward(x, W_xh, W_hh, b)
        return rnnx.rnn_backward(x, h, G, W_xh, W_hh, b)

    for dtype in args.dtypes:
        for T, B, D, H in args.sizes:
            arrays = problem(T, B, D, H, dtype)
            fns = {"numpy": lambda: numpy_impl(*arrays),
                   "auto": lambda: rnnx_run("auto", *arrays)}
            for path in paths:
                fns[path] = lambda path=path: rnnx_run(path, *arrays)
            if H % 32:
                near = problem(T, B, D, neighbour(H), dtype)
                fns["near"] = lambda: rnnx_run("auto", *near)
            cell = {"size": (T, B, D, H), "dtype": dtype, **medians_ms(fns)}
            print(json.dumps(cell), flush=True)


def tables(cells, threads, paths):
    """Markdown tables of one thread count's cells."""
    out = []
    for dtype in dict.fromkeys(c["dtype"] for c in cells):
        rows = [c for c in cells if c["dtype"] == dtype]
        shown = [p for p in paths if p in rows[0]]
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
    ap.add_argument("--_child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.dtypes = args.dtypes.split(",")
    args.kernels = args.kernels.split(",")
    args.sizes = (YARDSTICK + ISSUE if args.sizes is None else
                  [tuple(int(v) for v in s.split(",")) for s in args.sizes.split(";")])
    if args.__dict__["_child"]:
        child(args)
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for n in (int(v) for v in args.threads.split(",")):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(n), OMP_NUM_THREADS=str(n),
                   MKL_NUM_THREADS=str(n), RNNX_NUM_THREADS=str(n))
        env.pop("RNNX_KERNEL", None)
        command = [sys.executable, os.path.abspath(__file__), "--_child", str(n),
                   "--dtypes", ",".join(args.dtypes), "--kernels", ",".join(args.kernels),
                   "--sizes", ";".join(",".join(map(str, s)) for s in args.sizes)]
        if args.quick:
            command.append("--quick")
        command += ["--clock", args.clock]
        run = subprocess.run(command, env=env, cwd=here, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"kernels.py: the {n}-thread child failed:\n{run.stderr}")
        cells = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        print(tables(cells, n, PATHS), flush=True)


if __name__ == "__main__":
    main()
