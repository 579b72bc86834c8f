"""When running the time loops on several threads (rnnx.core._row_blocks) pays.

    python benchmarks/row_blocks.py [--threads 2] [--repeat 15] [--rounds 2]

For each shape, forward + BPTT (rnn_forward + rnn_backward) timed three ways, in one
process with scipy's BLAS on --threads threads: one block whose per-step product is
the core's own kernel where it fits (BLAS on several threads from B*H*H = 2^21), one
block with BLAS for every product, and blocks with the own kernel in each whatever the
work (rnnx itself uses blocks only from a work T*B*H*H, counted twice in float64, of
rnnx.core._row_blocks._MIN_WORK; the last column says how many it uses). Prints the median
ms (the lower of --rounds interleaved rounds) and the ratio of blocks to one block. A
pause before each mode lets OpenBLAS's worker threads go back to sleep, as they do
between the calls of a program that makes no other threaded BLAS calls, and 0.1 s of
calls then bring the clock back up.
"""
import argparse
import os
import statistics
import time

from _problem import problem

SHAPES = [(50, 8, 4, 32), (100, 16, 8, 32), (50, 16, 8, 64), (50, 32, 8, 64),
          (100, 16, 8, 64), (100, 32, 8, 64), (50, 32, 8, 128), (200, 32, 32, 128),
          (1000, 16, 8, 64), (100, 64, 64, 256), (50, 64, 128, 512)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)   # before numpy loads BLAS
    import rnnx
    from rnnx.core import _row_blocks
    from rnnx.core import recurrence

    plan, min_work = recurrence._plan, _row_blocks._MIN_WORK

    def forced_blocks(T, B, H, itemsize):
        _row_blocks._MIN_WORK = 0
        try:
            return plan(T, B, H, itemsize)
        finally:
            _row_blocks._MIN_WORK = min_work

    modes = {
        "one block": lambda T, B, H, _: (recurrence._own_kernel_alone(B, H), [(0, B)]),
        "one block, BLAS products": lambda T, B, H, _: (False, [(0, B)]),
        "blocks": forced_blocks,
    }
    print(f"scipy BLAS threads: {args.threads}\n")
    print("| T, B, D, H | T*B*H*H | dtype | one block (ms) | BLAS products (ms) "
          "| blocks (ms) | blocks / one | rnnx uses |")
    print("|---|---|---|---|---|---|---|---|")
    for T, B, D, H in SHAPES:
        for dtype in ("float32", "float64"):
            x, W_xh, W_hh, b_h, G = problem(T, B, D, H, dtype)

            def call():
                h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
                rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h)

            times = {}
            for _ in range(args.rounds):            # modes interleaved: noise hits all
                for name, mode in modes.items():
                    recurrence._plan = mode
                    time.sleep(0.3)
                    warm = time.perf_counter() + 0.1    # back to full clock speed
                    while time.perf_counter() < warm:
                        call()
                    samples = []
                    for _ in range(args.repeat):
                        t0 = time.perf_counter()
                        call()
                        samples.append(time.perf_counter() - t0)
                    best = min(times.get(name, float("inf")), statistics.median(samples))
                    times[name] = best
            recurrence._plan = plan
            times = {k: v * 1e3 for k, v in times.items()}
            one, blas, blocks = times.values()
            n = len(_row_blocks.row_blocks(T, B, H, x.itemsize))
            print(f"| {T}, {B}, {D}, {H} | {T * B * H * H:.1e} | {dtype} | {one:.3f} "
                  f"| {blas:.3f} | {blocks:.3f} | {blocks / one:.2f} | {n} |")


if __name__ == "__main__":
    main()
