"""Fuzzed core calls and forks during concurrent calls: crashes, silent non-finite outputs,
hangs.

    python benchmarks/reliability_core.py [--calls 3000] [--seconds 300] [--forks 100]

The fuzz runs in a worker process that reports each call on a line of its own, so that a
crash (the worker dies) and a hang (no line within --hang seconds; the worker is killed)
are counted and the fuzz goes on in a new worker. Each call is rnn_forward or rnn_backward
(with batch_first either way) on random shapes (1s included), dtypes (float32, float64,
float16, int64, longdouble, complex, object, lists), values from 1e-3 to 1e300 with NaN
and inf mixed in, an h that is not a tanh output, wrong shapes, and bad max_norm /
clip_delta. A call either returns finite arrays, or raises ValueError, TypeError or a
FloatingPointError (GradientOverflowError included); anything else it raises is
"unexpected", and finite-looking success with an inf or NaN in any output is "silent
non-finite". Then --forks children are forked while two threads run rnnx (one inside
serial_blas); each child must finish a split call and see the parent's BLAS thread count.
Prints a markdown table.
"""
import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time

SIZES = [1, 1, 2, 3, 4, 5, 8, 13, 32, 33, 64]
SCALES = [1e-3, 1.0, 3.0, 1e5, 1e20, 1e38, 1e300]
DTYPES = ["float32", "float64", "float32", "float64", "float16", "int64", "longdouble",
          "complex128", "object", "list"]


def _array(rng, shape, dtype, scale):
    import numpy as np
    a = scale * rng.standard_normal(shape)
    if rng.random() < 0.1 and a.size:
        a.flat[rng.integers(a.size)] = rng.choice([np.nan, np.inf, -np.inf])
    if dtype == "list":
        return a.tolist()
    if dtype == "object":
        return a.astype(object)
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(dtype)


def _one_call(rng):
    """One fuzzed call: 'ok', 'raised', 'silent' (a non-finite output returned) or
    'unexpected: <type>'."""
    import numpy as np
    import rnnx
    T, B, D, H = (int(rng.choice(SIZES)) for _ in range(4))
    dtype = str(rng.choice(DTYPES))
    scale = float(rng.choice(SCALES))
    batch_first = bool(rng.random() < 0.3)
    wshape = (H, D) if rng.random() > 0.05 else (H + 1, D)      # now and then a wrong shape
    x = _array(rng, (B, T, D) if batch_first else (T, B, D), dtype, scale)
    W_xh = _array(rng, wshape, dtype, float(rng.choice(SCALES)) / max(D, 1))
    W_hh = _array(rng, (H, H), dtype, float(rng.choice(SCALES[:4])) / np.sqrt(H))
    b_h = _array(rng, (H,), dtype, 0.1)
    h0 = _array(rng, (B, H), dtype, 0.5) if rng.random() < 0.5 else None
    options = {}
    if rng.random() < 0.2:
        options["max_norm"] = rng.choice([1.0, 1e6, -1.0, 0.0, np.nan, "big"])
    if rng.random() < 0.2:
        options["clip_delta"] = rng.choice([0.5, 10.0, -2.0, np.inf])
    try:
        h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0, batch_first=batch_first)
        outputs = [h]
        if rng.random() < 0.7:
            if rng.random() < 0.1:
                with np.errstate(over="ignore"):                     # not a tanh output
                    h = h * float(rng.choice([1.5, 1e300]))
            grad_h = _array(rng, h.shape, str(h.dtype), float(rng.choice(SCALES)))
            g = rnnx.rnn_backward(x, h, grad_h, W_xh, W_hh, b_h, h0, return_delta=True,
                                  batch_first=batch_first, **options)
            outputs += [g.dW_xh, g.dW_hh, g.db_h, g.dx, g.dh0, g.delta]
    except (ValueError, TypeError, FloatingPointError):
        return "raised"
    except Exception as exc:                     # noqa: BLE001 -- counted, not hidden
        return f"unexpected: {type(exc).__name__}: {exc}"
    return "ok" if all(np.isfinite(o).all() for o in outputs) else "silent"


def fuzz_worker(seed, calls):
    """The worker process: "ready" once rnnx is imported, then one line per call, its
    outcome as JSON."""
    import numpy as np
    import rnnx  # noqa: F401 -- imported (an editable install may rebuild) before timing
    rng = np.random.default_rng(seed)
    print("ready", flush=True)
    for _ in range(calls):
        print(json.dumps(_one_call(rng)), flush=True)


def fuzz(calls, seconds, hang):
    """Runs the fuzz in worker processes: the counts of each outcome."""
    counts = {"calls": 0, "ok": 0, "raised": 0, "unexpected": 0, "silent": 0,
              "crashes": 0, "hangs": 0}
    examples = []
    deadline = time.monotonic() + seconds
    seed = 0
    while counts["calls"] < calls and time.monotonic() < deadline:
        seed += 1
        left = calls - counts["calls"]
        worker = subprocess.Popen([sys.executable, __file__, "--fuzz-worker", str(seed),
                                   str(left)], stdout=subprocess.PIPE, text=True)
        sel = selectors.DefaultSelector()
        sel.register(worker.stdout, selectors.EVENT_READ)
        while worker.stdout.readline() not in ("ready\n", ""):
            pass                                  # what an import prints before
        done = 0
        while done < left:
            if not sel.select(timeout=hang):
                worker.kill()
                counts["hangs"] += 1
                counts["calls"] += 1
                break
            line = worker.stdout.readline()
            if not line:                                       # the worker died
                worker.wait()
                counts["crashes"] += 1
                counts["calls"] += 1
                examples.append(f"worker exit code {worker.returncode} (seed {seed})")
                break
            outcome = json.loads(line)
            done += 1
            counts["calls"] += 1
            key = outcome.split(":")[0]
            counts[key] += 1
            if key in ("unexpected", "silent") and len(examples) < 5:
                examples.append(f"{outcome} (seed {seed}, call {done})")
            if time.monotonic() > deadline:
                worker.kill()
                break
        worker.wait()
    return counts, examples


def forks(n, timeout=30.0):
    """Forks n children while two threads run rnnx: (hangs, children that failed)."""
    import numpy as np
    import rnnx
    from rnnx.core import threads
    rng = np.random.default_rng(0)
    problem = [rng.standard_normal(s).astype(np.float32)
               for s in ((100, 32, 8), (64, 8), (64, 64))] + [np.zeros(64, np.float32)]
    problem[2] *= 0.1
    expected = rnnx.rnn_forward(*problem)
    original = threads.blas_threads()
    stop = threading.Event()

    def work(serial):
        while not stop.is_set():
            if serial:
                with threads.serial_blas():
                    rnnx.rnn_forward(*problem)
            else:
                rnnx.rnn_forward(*problem)

    workers = [threading.Thread(target=work, args=(s,)) for s in (False, True)]
    for w in workers:
        w.start()
    hangs = failed = 0
    try:
        for _ in range(n):
            time.sleep(0.002)
            pid = os.fork()
            if pid == 0:
                code = 2
                try:
                    ok = (threads.blas_threads() == original
                          and np.array_equal(rnnx.rnn_forward(*problem), expected))
                    code = 0 if ok else 1
                finally:
                    os._exit(code)
            end = time.monotonic() + timeout
            while True:
                got, status = os.waitpid(pid, os.WNOHANG)
                if got:
                    failed += os.waitstatus_to_exitcode(status) != 0
                    break
                if time.monotonic() > end:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    hangs += 1
                    break
                time.sleep(0.001)
    finally:
        stop.set()
        for w in workers:
            w.join()
    return hangs, failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=300, help="time bound of the fuzz")
    ap.add_argument("--hang", type=float, default=60, help="seconds without a reply = hang")
    ap.add_argument("--forks", type=int, default=100)
    ap.add_argument("--fuzz-worker", nargs=2, type=int, metavar=("SEED", "CALLS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fuzz_worker:
        fuzz_worker(*args.fuzz_worker)
        return
    import rnnx  # noqa: F401 -- here first, so that the workers do not all rebuild it
    t0 = time.monotonic()
    counts, examples = fuzz(args.calls, args.seconds, args.hang)
    fuzz_s = time.monotonic() - t0
    fork_hangs, fork_failed = forks(args.forks) if hasattr(os, "fork") else (None, None)
    print(f"fuzz: {fuzz_s:.0f} s\n")
    print("| fuzzed calls | returned finite | clear errors | unexpected exceptions | crashes "
          "| silent non-finite | hangs | forks | fork hangs | children failed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {counts['calls']} | {counts['ok']} | {counts['raised']} | "
          f"{counts['unexpected']} | {counts['crashes']} | {counts['silent']} | "
          f"{counts['hangs']} | {args.forks} | {fork_hangs} | {fork_failed} |")
    for e in examples:
        print("-", e)


if __name__ == "__main__":
    main()
