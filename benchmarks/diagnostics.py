"""Speed of the diagnostics against the limit their arithmetic sets, at the machine's GEMM rate.

    python benchmarks/diagnostics.py            # every size (20 minutes on a busy 2-core box)
    python benchmarks/diagnostics.py --quick    # the two smaller sizes
    python benchmarks/diagnostics.py --sizes 2 3 --threads 2
    python benchmarks/diagnostics.py --only jacobian --threads 1   # the log-norms alone
    python benchmarks/diagnostics.py --kernels --sizes 1 2   # the products' kernels
    python benchmarks/diagnostics.py --kernels avx512 blas --sizes 2

The limits: exact Jacobian log-norms for every lag need T * B products of (H, H) @ (H, H),
2 T B H^3 flops (both norms); the k largest Lyapunov exponents need T * B products of
(H, H) @ (H, k) and a QR of (H, k), 2 T B H^2 k + 2 T B H k^2 flops; the largest alone
(k = 1) is compared with the forward trajectory plus its tangent vector,
2 T B H (D + H) + 2 T B H^2. Each time is printed with its GFLOP/s and its multiple of
the limit at the float64 GEMM rate of (1024, 1024) @ (1024, 1024) measured just before
each size with the same number of threads (the kernels accumulate in float64; on a shared
machine the rate drifts within a run); a B = 1 call runs on one thread by design (its lags
and steps are sequential), so its rows with 2 threads are against the 1-thread rate.
"threads" is both rnnx's thread budget (B >= 2: blocks of samples on threads) and scipy's
BLAS threads. Inputs: float32, the problem of benchmarks/_problem.py (W_hh = 0.9 x
orthogonal, D = 8). With both thread counts, the ratios of each row's time at 2 threads
over 1 follow the table.

--kernels [NAME ...]: instead, jacobian_log_norms with each kernel named (default: every
one this machine runs) making the per-lag products (rnnx.set_kernel: the register-blocked
kernel's builds, and BLAS's GEMM, always included),
1 thread, the kernels interleaved over 3 rounds (the fastest call of each), and each one's
time over BLAS's.

Then jacobian_log_norms at (T, B, H) = (1000, 1, 64), 2 threads over 1, the two settings
interleaved (the fastest of 8 calls each: robust to a drifting load), and the busy-machine
ratio: jacobian_log_norms at (10, 1, 128) with a busy loop on every core, over its time on
the idle machine, at the default BLAS threads.
"""
import argparse
import multiprocessing
import os
import time

from _problem import problem

SIZES = [(1000, 1, 64), (100, 32, 128), (100, 32, 512), (5000, 1, 256)]
D = 8


def best_time(fn, budget=1.0, most=30, least=2):
    """The fastest of up to `most` calls, as many as fit in about `budget` seconds and at
    least `least` (a single call of many seconds catches any burst of load)."""
    best, spent, n = float("inf"), 0.0, 0
    while n < most and (n < least or spent + best < budget):
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        best, spent, n = min(best, t), spent + t, n + 1
    return best


def gemm_rate():
    """flop/s of float64 (1024, 1024) @ (1024, 1024) by scipy's BLAS (the kernels' BLAS)."""
    import numpy as np
    from scipy.linalg.blas import dgemm
    a = np.asfortranarray(np.random.default_rng(0).standard_normal((1024, 1024)))
    return 2 * 1024 ** 3 / best_time(lambda: dgemm(1.0, a, a), budget=2.0)


def rows(T, B, H, rate, only=None):
    import numpy as np
    import rnnx
    from rnnx.diagnostics.lyapunov import lyapunov_exponents
    x, W_xh, W_hh, b_h, _ = problem(T, B, D, H, np.float32)
    for name, fn, flops in [
            ("jacobian ord=2", lambda: rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h),
             2 * T * B * H ** 3),
            ("jacobian fro", lambda: rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, ord="fro"),
             2 * T * B * H ** 3)] + [
            (f"lyapunov k={k}", lambda k=k: lyapunov_exponents(x, W_xh, W_hh, b_h, k=k),
             2 * T * B * H * (D + H) + 2 * T * B * H ** 2 if k == 1
             else 2 * T * B * H ** 2 * k + 2 * T * B * H * k ** 2)
            for k in sorted({1, min(10, H), H})]:
        if only is not None and not name.startswith(only):
            continue
        t = best_time(fn)
        yield name, t, flops / t / 1e9, t / (flops / rate)


def b1_thread_ratios():
    """{ord: time with 2 threads / with 1} at (1000, 1, 64), interleaved, fastest of 8."""
    import numpy as np
    import rnnx
    from threadpoolctl import threadpool_limits
    from rnnx.core.threads import set_thread_budget
    x, W_xh, W_hh, b_h, _ = problem(1000, 1, D, 64, np.float32)
    best = {}
    old = set_thread_budget(1)
    try:
        for _ in range(8):
            for n in (1, 2):
                set_thread_budget(n)
                with threadpool_limits(n):
                    for ord in (2, "fro"):
                        t = best_time(lambda: rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h,
                                                                       ord=ord), most=1)
                        best[n, ord] = min(best.get((n, ord), t), t)
    finally:
        set_thread_budget(old)
    return {ord: best[2, ord] / best[1, ord] for ord in (2, "fro")}


def kernel_ratios(sizes, paths, rounds=3):
    """Prints jacobian_log_norms' fastest time with each kernel making its products, and
    its ratio to BLAS's, the kernels interleaved (one BLAS thread)."""
    import numpy as np
    import rnnx
    from threadpoolctl import threadpool_limits
    from rnnx.core.threads import set_thread_budget
    paths = [k for k in rnnx.available_kernels() if not paths or k in paths or k == "blas"]
    print("| T | B | H | ord | " + " | ".join(f"{k} (s)" for k in paths) + " | "
          + " | ".join(f"{k} / blas" for k in paths if k != "blas") + " |")
    print("|---" * (4 + 2 * len(paths) - 1) + "|")
    old, kernel = set_thread_budget(1), rnnx.set_kernel(None)
    try:
        with threadpool_limits(1):
            for T, B, H in sizes:
                x, W_xh, W_hh, b_h, _ = problem(T, B, D, H, np.float32)
                best = {}
                for _ in range(rounds):
                    for path in paths:
                        rnnx.set_kernel(path)
                        for ord in (2, "fro"):
                            t = best_time(lambda: rnnx.jacobian_log_norms(
                                x, W_xh, W_hh, b_h, ord=ord), budget=0.5, most=5)
                            best[path, ord] = min(best.get((path, ord), t), t)
                for ord in (2, "fro"):
                    print(f"| {T} | {B} | {H} | {ord} | "
                          + " | ".join(f"{best[k, ord]:.3g}" for k in paths) + " | "
                          + " | ".join(f"{best[k, ord] / best['blas', ord]:.3f}"
                                       for k in paths if k != "blas") + " |", flush=True)
    finally:
        set_thread_budget(old)
        rnnx.set_kernel(kernel)


def busy_ratio():
    import numpy as np
    import rnnx
    x, W_xh, W_hh, b_h, _ = problem(10, 1, D, 128, np.float32)
    call = lambda: rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h)  # noqa: E731
    idle = best_time(call, budget=2.0, most=20)
    spinners = [multiprocessing.Process(target=_spin, daemon=True)
                for _ in range(os.cpu_count() or 1)]
    for p in spinners:
        p.start()
    try:
        time.sleep(0.5)
        busy = best_time(call, budget=5.0, most=20)
    finally:
        for p in spinners:
            p.terminate()
            p.join()
    return idle, busy


def _spin():
    while True:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the two smaller sizes")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, metavar="I",
                        help=f"indices into {SIZES} (default: all)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to run: rnnx's budget and BLAS's (default: 1 2)")
    parser.add_argument("--only", choices=["jacobian", "lyapunov"], default=None,
                        help="only these rows of the table (default: both)")
    parser.add_argument("--kernels", nargs="*", default=None, metavar="NAME",
                        help="instead: jacobian_log_norms with each kernel named (default: "
                             "all this machine runs) making its products, against BLAS")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits
    from rnnx.core.threads import set_thread_budget
    sizes = SIZES[:2] if args.quick else SIZES
    if args.sizes is not None:
        sizes = [SIZES[i] for i in args.sizes]
    if args.kernels is not None:
        import rnnx
        unknown = sorted(set(args.kernels) - set(rnnx.available_kernels()))
        if unknown:
            parser.error(f"--kernels: {', '.join(unknown)} not among the kernels this "
                         f"machine runs: {', '.join(rnnx.available_kernels())}")
        kernel_ratios(sizes, args.kernels)
        return
    print("| T | B | H | threads | what | time (s) | GFLOP/s | x limit |")
    print("|---|---|---|---|---|---|---|---|")
    rates, times = [], {}
    for n in args.threads:
        old = set_thread_budget(n)
        try:
            with threadpool_limits(n):
                for T, B, H in sizes:
                    rate = gemm_rate()
                    rates.append(f"{rate / 1e9:.3g} ({n} thread{'s' if n > 1 else ''}, H={H})")
                    used = n
                    if B == 1 and n > 1:
                        # one sample's lags and steps are sequential: a B = 1 call runs on
                        # one thread by design, so its limit is the 1-thread GEMM rate
                        with threadpool_limits(1):
                            rate = gemm_rate()
                        rates.append(f"{rate / 1e9:.3g} (1 thread, H={H}, B = 1)")
                        used = f"{n} (runs on 1)"
                    for name, t, gflops, multiple in rows(T, B, H, rate, args.only):
                        times[T, B, H, name, n] = t
                        print(f"| {T} | {B} | {H} | {used} | {name} | {t:.3g} | {gflops:.3g} | "
                              f"{multiple:.2f} |", flush=True)
        finally:
            set_thread_budget(old)
    print("float64 GEMM (1024^3) GFLOP/s before each size: " + ", ".join(rates))
    if 1 in args.threads and 2 in args.threads:
        print("time with 2 threads / with 1: " + ", ".join(
            f"{key[3]} ({key[0]}, {key[1]}, {key[2]}) {t / times[key[:4] + (1,)]:.2f}"
            for key, t in times.items() if key[4] == 2))
    print("B = 1, (1000, 1, 64), 2 threads / 1, interleaved: " + ", ".join(
        f"ord={ord!r} {r:.2f}" for ord, r in b1_thread_ratios().items()))
    idle, busy = busy_ratio()
    print(f"busy machine: jacobian_log_norms (10, 1, 128) {idle * 1e3:.3g} ms idle, "
          f"{busy * 1e3:.3g} ms with a busy loop on each of {os.cpu_count()} cores: "
          f"ratio {busy / idle:.2f}")


if __name__ == "__main__":
    main()
