"""When running the time loops on several threads (blocks of batch rows) pays.

    python benchmarks/row_blocks.py [--threads 2] [--repeat 15] [--rounds 2]

For each shape, forward + BPTT (rnnx.core.recurrence's wrappers) timed with three Plans
(rnnx.core.plan), in one process with scipy's BLAS and rnnx's thread budget on --threads
threads: one block (make_plan's, blocks ruled out: the register-blocked kernel makes the
per-step products where it fits, BLAS on several threads from B*H*H = THREADED_PRODUCT),
one block with BLAS for every product, and blocks with the register-blocked kernel in
each whatever the work (make_plan's with min_work=0; rnnx itself uses blocks only from a
work T*B*H*H, counted twice in float64, of MIN_WORK; the last column says how many it
uses). Prints the median ms (the lower of --rounds interleaved rounds) and the ratio of
blocks to one block. A pause before each mode lets OpenBLAS's worker threads go back to
sleep, as they do between the calls of a program that makes no other threaded BLAS
calls, and 0.1 s of calls then bring the clock back up.
"""
import argparse
import dataclasses
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
    os.environ["RNNX_NUM_THREADS"] = str(args.threads)
    from rnnx.core import recurrence
    from rnnx.core.plan import make_plan

    def one_block(T, B, D, H, dtype):
        return make_plan(T, B, D, H, dtype, min_work=float("inf"))

    modes = {
        "one block": one_block,
        "one block, BLAS products": lambda *shape: dataclasses.replace(
            one_block(*shape), step_kernel=False, dW_hh_in_loop=False, all_in_loop=False,
            dx_kernel=False),
        "blocks": lambda *shape: make_plan(*shape, min_work=0),
    }
    print(f"scipy BLAS threads: {args.threads}\n")
    print("| T, B, D, H | T*B*H*H | dtype | one block (ms) | BLAS products (ms) "
          "| blocks (ms) | blocks / one | rnnx uses |")
    print("|---|---|---|---|---|---|---|---|")
    for T, B, D, H in SHAPES:
        for dtype in ("float32", "float64"):
            x, W_xh, W_hh, b_h, G = problem(T, B, D, H, dtype)

            times = {}
            for _ in range(args.rounds):            # modes interleaved: noise hits all
                for name, mode in modes.items():
                    plan = mode(T, B, D, H, dtype)

                    def call():
                        h = recurrence.forward_checked(x, W_xh, W_hh, b_h, None, plan)
                        recurrence.backward_checked(x, h, G, W_xh, W_hh, None, None, None,
                                                    False, plan)

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
            times = {k: v * 1e3 for k, v in times.items()}
            one, blas, blocks = times.values()
            n = len(make_plan(T, B, D, H, dtype).blocks)
            print(f"| {T}, {B}, {D}, {H} | {T * B * H * H:.1e} | {dtype} | {one:.3f} "
                  f"| {blas:.3f} | {blocks:.3f} | {blocks / one:.2f} | {n} |")


if __name__ == "__main__":
    main()
