"""Where one forward + BPTT of the core spends its time, phase by phase (one block).

    python benchmarks/core_phases.py [--shape 200,32,32,128] [--threads 1] [--repeat 30]
        [--clock wall|cpu] [--kernel auto|avx512|avx2|generic|blas]

Times the core's phases as rnnx runs them for a single block of rows, following the Plan
that rnnx.core.plan.make_plan makes for the shape (with blocks ruled out): project (the
input projection GEMM) and recur (the forward time loop) after it, or recur projecting
each step's inputs itself ("(used)" marks the forward phases the plan runs; the plan
projects in the loop where the register-blocked kernel makes each step's products),
backward_steps (the backward time loop, adding up db_h, and as the plan says dW_hh, and
dW_xh, dx and dh0), and backward_gemms (the gradients the loop left), then the two
public calls themselves (with the blocks rnnx uses, if any). Median ms per phase and the
GFLOP/s of the products each phase makes.
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
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the process's CPU time (steadier on a loaded machine, "
                         "1 thread)")
    ap.add_argument("--kernel", default=None,
                    help="auto, avx512, avx2, generic or blas (default: RNNX_KERNEL, else auto)")
    args = ap.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)   # before numpy loads BLAS
    import numpy as np
    import rnnx
    from rnnx import _core
    from rnnx.core.plan import make_plan

    T, B, D, H = (int(v) for v in args.shape.split(","))
    if args.kernel is not None:
        rnnx.set_kernel(args.kernel)

    clock = time.perf_counter if args.clock == "wall" else time.process_time

    def median_ms(fn):
        samples = []
        for _ in range(args.repeat):
            t0 = clock()
            fn()
            samples.append(clock() - t0)
        return statistics.median(samples) * 1e3

    print(f"(T, B, D, H) = ({T}, {B}, {D}, {H}), scipy BLAS threads and rnnx's thread "
          f"budget: {args.threads}, kernel: {rnnx.core.kernels.kernel_in_force()} "
          "(RNNX_KERNEL or --kernel)\n")
    print("| phase | dtype | ms | GFLOP/s of its products |")
    print("|---|---|---|---|")
    for dtype in ("float32", "float64"):
        x, W_xh, W_hh, b_h, G = problem(T, B, D, H, dtype)
        plan = make_plan(T, B, D, H, dtype, min_work=float("inf"))     # one block
        W_hh_T = np.ascontiguousarray(W_hh.T)
        h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
        scratch = h.copy()
        fused = plan.all_in_loop
        work = np.empty(2 * B * H if fused else T * B * H, dtype)
        norms = np.empty(T)
        db_h = np.zeros(H, dtype)
        dW_hh = np.zeros((H, H), dtype) if plan.dW_hh_in_loop else None
        dW_xh = np.zeros((H, D), dtype) if fused else None
        dx, dh0 = np.empty((T, B, D), dtype), np.empty((B, H), dtype)
        mac_hh, mac_xh = T * B * H * H, T * B * D * H      # multiply-adds of one product
        # the products the backward loop makes itself; backward_gemms makes the others
        in_steps = (mac_hh * (1 + plan.dW_hh_in_loop) + 2 * mac_xh * fused
                    + B * H * H * fused)
        W_xh_T = np.ascontiguousarray(W_xh.T)
        mark = {plan.step_kernel: " (used)", not plan.step_kernel: ""}
        # the weights in panels where the register-blocked kernel makes the products by them
        kernel = plan.step_kernel
        W_xh_TP = _core.panels(W_xh_T) if kernel else None
        W_hh_TP = _core.panels(W_hh_T) if kernel else None
        W_hh_P = _core.panels(W_hh) if kernel else None
        W_xh_P = _core.panels(W_xh) if plan.dx_kernel else None
        outputs = {"dx": dx, "dh0": dh0} if fused else {}
        phases = [
            ("project" + mark[False], lambda: _core.project(x, W_xh), mac_xh),
            ("recur after project" + mark[False], lambda: _core.recur(
                x, scratch, W_hh_T, b_h, r0=0, r1=B, W_hh_P=W_hh_TP, kernel=plan.kernel),
                mac_hh),
            ("recur projecting each step" + mark[True], lambda: _core.recur(
                x, scratch, W_hh_T, b_h, r0=0, r1=B, W_xh_T=W_xh_T, W_hh_P=W_hh_TP,
                W_xh_P=W_xh_TP, kernel=plan.kernel), mac_hh + mac_xh),
            ("backward_steps", lambda: _core.backward_steps(
                x, h, G, W_xh, W_hh, r0=0, r1=B, max_norm=np.inf, clip_delta=0.0,
                work=work, norms=norms, db_h=db_h, dW_hh=dW_hh, dW_xh=dW_xh,
                W_hh_P=W_hh_P, W_xh_P=W_xh_P, kernel=plan.kernel, **outputs), in_steps),
        ]
        if not fused:
            dW_xh_all = np.empty((H, D), dtype)
            dW_hh_all = None if plan.dW_hh_in_loop else np.empty((H, H), dtype)
            phases.append(("backward_gemms", lambda: _core.backward_gemms(
                x, h, work, W_xh, W_hh, dW_xh=dW_xh_all, dx=dx, dh0=dh0, dW_hh=dW_hh_all),
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
