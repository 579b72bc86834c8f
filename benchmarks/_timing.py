"""The timing loop the benchmarks share."""
import time


def best_per_call(fn, n, repeat):
    """Seconds per call of fn(): the best of `repeat` timings of n calls in a row."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best
