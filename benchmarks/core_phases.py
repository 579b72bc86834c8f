"""Where one forward + BPTT of the core spends its time, phase by phase (one block).

    python benchmarks/core_phases.py [--shape 200,32,32,128] [--threads 1] [--repeat 30]

Times the core's phases as rnnx.rnn_forward / rnn_backward run them for a single block of
rows: project (the input projection GEMM) and recur (the forward time loop) after it, or
recur projecting each step's inputs itself (one block uses this where the own kernel
fits; "(used)" marks the forward phases rnnx.rnn_forward runs), backward_steps
(the backward time loop, adding up db_h, and where the own kernel fits dW_hh, and where
it fits D as well dW_xh, dx and dh0), and backward_gemms (the gradients the loop left),
then the two public calls themselves. Median ms per phase and the GFLOP/s of the
products each phase makes.
"""
import argparse
import os
import statistics
import time

from _problem import problem


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="200,32,32,128", help="T,B,D,H")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)   # before numpy loads BLAS
    import numpy as np
    import rnnx
    from rnnx import _core
    from rnnx.core import recurrence

    T, B, D, H = (int(v) for v in args.shape.split(","))

    def median_ms(fn):
        samples = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples) * 1e3

    print(f"(T, B, D, H) = ({T}, {B}, {D}, {H}), scipy BLAS threads: {args.threads}\n")
    print("| phase | dtype | ms | GFLOP/s of its products |")
    print("|---|---|---|---|")
    for dtype in ("float32", "float64"):
        x, W_xh, W_hh, b_h, G = problem(T, B, D, H, dtype)
        own = recurrence._own_kernel_alone(B, H)
        in_loop = own and _core.small_gemm_fits(H, H)
        fused = in_loop and _core.small_gemm_fits(H, D)
        W_hh_T = np.ascontiguousarray(W_hh.T)
        h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
        scratch = h.copy()
        work = np.empty(2 * B * H if fused else T * B * H, dtype)
        norms = np.empty(T)
        db_h, dW_hh = np.zeros(H, dtype), (np.zeros((H, H), dtype) if in_loop else None)
        dW_xh = np.zeros((H, D), dtype) if fused else None
        dx, dh0 = np.empty((T, B, D), dtype), np.empty((B, H), dtype)
        mac_hh, mac_xh = T * B * H * H, T * B * D * H      # multiply-adds of one product
        # the products the backward loop makes itself; backward_gemms makes the others
        in_steps = mac_hh * (1 + in_loop) + 2 * mac_xh * fused + B * H * H * fused
        W_xh_T = np.ascontiguousarray(W_xh.T)
        per_step = recurrence._kernel_fits(own, [(0, B)], H)   # as rnnx.rnn_forward chooses
        mark = {per_step: " (used)", not per_step: ""}
        # the weights in panels where the own kernel makes the products by them
        W_xh_TP, W_hh_TP, W_hh_P = ((_core.panels(W_xh_T), _core.panels(W_hh_T),
                                     _core.panels(W_hh)) if per_step else (None,) * 3)
        W_xh_P = (_core.panels(W_xh) if fused and recurrence._kernel_fits(own, [(0, B)], D)
                  else None)
        phases = [
            ("project" + mark[False], lambda: _core.project(x, W_xh), mac_xh),
            ("recur after project" + mark[False], lambda: _core.recur(
                x, None, scratch, W_hh_T, b_h, None, 0, B, None, W_hh_TP), mac_hh),
            ("recur projecting each step" + mark[True], lambda: _core.recur(
                x, W_xh_T, scratch, W_hh_T, b_h, None, 0, B, W_xh_TP, W_hh_TP),
             mac_hh + mac_xh),
            ("backward_steps", lambda: _core.backward_steps(
                x, h, G, W_xh, W_hh, None, 0, B, np.inf, 0.0, work, None, norms, db_h, dW_hh,
                dW_xh, dx if fused else None, dh0 if fused else None, W_hh_P, W_xh_P),
             in_steps),
        ]
        if not fused:
            phases.append(("backward_gemms", lambda: _core.backward_gemms(
                x, h, work, W_xh, W_hh, None, 0, T * B, dx, dh0, not in_loop),
                2 * mac_hh + 2 * mac_xh + B * H * H - in_steps))
        phases.append(("rnn_forward + rnn_backward", lambda: rnnx.rnn_backward(
            x, rnnx.rnn_forward(x, W_xh, W_hh, b_h), G, W_xh, W_hh, b_h),
            3 * mac_hh + 3 * mac_xh))
        for name, fn, macs in phases:
            fn()
            ms = median_ms(fn)
            print(f"| {name} | {dtype} | {ms:.3f} | {2 * macs / ms / 1e6:.1f} |")


if __name__ == "__main__":
    main()
