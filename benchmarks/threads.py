"""Threads that never make rnnx slower: a training step and a diagnosis with 1 thread and
with 2, as a user sets them.

    .venv/bin/python benchmarks/threads.py [--rounds 3] [--seconds 0.5] [--quick]

Every case runs in fresh processes: "1 thread" with OPENBLAS_NUM_THREADS=1 and
RNNX_NUM_THREADS=1 in the environment, "2 threads" with neither (nor OMP_NUM_THREADS) set,
which is what a user gets on a 2-core machine without touching anything. A process times
its case --seconds at a time, three times, and reports the best. The cases go round
--rounds times, the settings of a case one after the other in alternating order, so
that a shared machine's drifts fall on both; the table gives each setting's best over the
rounds and the ratio time(2 threads) / time(1 thread). Two processes of the same setting
differ too (their memory lands at other addresses, the VM schedules them elsewhere): a
third process per case and round, with 1 thread again, gives the ratio of two 1-thread
processes (A/A), the noise floor the 2T / 1T ratio is to be read against. The CPU time a
call uses (every thread of the process) with 2 threads over that with 1 shows whether
the second thread adds work. On Linux it also gives the CPU time the BLAS libraries' own
worker threads (numpy's and scipy's OpenBLAS) used per call with 2 threads: a worker
spinning after a threaded product shows there, however loaded the machine is.

The cases: rnnx.Trainer steps (float32, the addition task, D = 2, one output, SGD,
clip_by_global_norm(1.0), the Trainer's defaults otherwise: spike detection, W_hh's
diagnostics every 50 steps) at (T, B, H) in (50, 20, 50), (100, 20, 50), (200, 20, 50)
(Pascanu et al.'s setting), (100, 32, 128) and (50, 64, 512), without and with Pascanu's
Omega; and rnnx.diagnose at (T, B, H) = (30, 4, 128). The target: a ratio <= 1.05
everywhere, below 1 where the work is large.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _timing import best_per_call

TRAIN = [(50, 20, 50), (100, 20, 50), (200, 20, 50), (100, 32, 128), (50, 64, 512)]
DIAGNOSE = (30, 4, 128)
OMEGA = 2.0
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "RNNX_NUM_THREADS", "OMP_NUM_THREADS")


def _best_seconds(run, seconds, repeats=3):
    """The best time of one run() over `repeats` timings of about `seconds` each."""
    run()                                               # warm up (plans, scratch, pages)
    t0 = time.perf_counter()
    run()
    n = max(1, round(seconds / max(time.perf_counter() - t0, 1e-6)))
    return best_per_call(run, n, repeats)


def _thread_ids():
    try:
        return set(os.listdir("/proc/self/task"))
    except OSError:                                     # not Linux
        return set()


def _cpu_seconds(tids):
    """CPU time (user + system) used so far by the threads tids of this process."""
    total = 0
    for tid in tids:
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _child(case, seconds):
    """(seconds per call of the case, CPU seconds of the BLAS workers per call, CPU seconds
    of the whole process per call), in this process (numpy imported only now, after the
    environment was set)."""
    import logging

    before = _thread_ids()
    import numpy as np
    import scipy.linalg  # noqa: F401  (scipy's BLAS, and its worker threads)
    workers = _thread_ids() - before                   # the BLAS libraries' threads

    import rnnx
    from rnnx.optim.clipping import clip_by_global_norm
    from rnnx.optim.optimizers import SGD
    logging.disable(logging.WARNING)
    T, B, H = case["T"], case["B"], case["H"]
    task = rnnx.tasks.make("addition", T)
    rng = np.random.default_rng(0)
    model = rnnx.RNN(task.input_size, H, task.output_size, seed=0)
    if case["kind"] == "diagnose":
        x, _ = task.sample(B, rng)
        run = lambda: rnnx.diagnose(model, x)                              # noqa: E731
    else:
        # a tiny learning rate keeps the weights, and so the work of a step, steady
        trainer = rnnx.Trainer(model, SGD(1e-6), clip=clip_by_global_norm(1.0),
                               omega=case["omega"], progress=False, seed=0)
        batches = [task.sample(B, rng) for _ in range(8)]
        step = iter(range(1 << 62))
        run = lambda: trainer.train_step(*batches[next(step) % 8])         # noqa: E731
    calls = [0]

    def counted():
        calls[0] += 1
        run()
    cpu, process = _cpu_seconds(workers), time.process_time()
    best = _best_seconds(counted, seconds)
    return (best, (_cpu_seconds(workers) - cpu) / calls[0],
            (time.process_time() - process) / calls[0])


def _environment(threads):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if threads != 2:
        env.update(OPENBLAS_NUM_THREADS="1", RNNX_NUM_THREADS="1")
    return env


def _measure(case, threads, seconds):
    """_child's (seconds, workers' CPU seconds, process CPU seconds) per call of the case in
    a fresh process with `threads` threads (2; else 1: "1" and "1 again" are two processes
    of the same setting)."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(case),
                          "--seconds", str(seconds)], env=_environment(threads),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _label(case):
    shape = f"{case['T']}, {case['B']}, {case['H']}"
    if case["kind"] == "diagnose":
        return f"`rnnx.diagnose` {shape} | - | calls/s"
    return f"Trainer {shape} | {'on' if case['omega'] else 'off'} | steps/s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--quick", action="store_true", help="one round of 0.2 s timings")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child), args.seconds)))
        return
    if args.quick:
        args.rounds, args.seconds = 1, 0.2
    cases = [dict(kind="train", T=T, B=B, H=H, omega=omega)
             for T, B, H in TRAIN for omega in (0.0, OMEGA)]
    cases.append(dict(kind="diagnose", T=DIAGNOSE[0], B=DIAGNOSE[1], H=DIAGNOSE[2]))
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.2f} at the start; "
          f"{args.rounds} rounds of {args.seconds} s timings", flush=True)
    settings = (1, 2, "1 again")
    times = {(i, n): [] for i in range(len(cases)) for n in settings}
    cpu = {(i, n): [] for i in range(len(cases)) for n in settings}
    spin = {i: [] for i in range(len(cases))}
    for r in range(args.rounds):
        for i, case in enumerate(cases):
            for n in (settings if (r + i) % 2 == 0 else settings[::-1]):
                seconds, workers, process = _measure(case, n, args.seconds)
                times[i, n].append(seconds)
                cpu[i, n].append(process)
                if n == 2:
                    spin[i].append(workers)
    print(f"load average {os.getloadavg()[0]:.2f} at the end\n")
    print("| case (T, B, H) | Omega | unit | 1 thread | 2 threads | time 2T / 1T | "
          "median over rounds | A/A: 1T / 1T, two processes | CPU per call 2T / 1T | "
          "BLAS workers' CPU per call, 2T |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, case in enumerate(cases):
        one, two, again = (min(times[i, n]) for n in settings)
        ratio = two / one
        per_round = statistics.median(b / a for a, b in zip(times[i, 1], times[i, 2]))
        mark = "**" if ratio > 1.05 else ""
        print(f"| {_label(case)} | {1 / one:.0f} | {1 / two:.0f} | {mark}{ratio:.2f}{mark} "
              f"| {per_round:.2f} | {again / one:.2f} "
              f"| {min(cpu[i, 2]) / min(cpu[i, 1]):.2f} | {1e3 * max(spin[i]):.2f} ms |",
              flush=True)


if __name__ == "__main__":
    main()
