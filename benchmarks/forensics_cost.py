"""What explosion forensics costs: per ordinary step, and per examined step.

(a) Trainer.fit per step with the early warning on (the default) and off, and, timed
alone, the two parts that every step runs: the growth rate and overflow horizon columns,
and the early warning's forecast (EarlyWarning.on_record on an ordinary step), and the
part it runs every rate_every steps: the sample of lambda_1 (EarlyWarning.sample_rate),
per sample and spread over the steps between two samples, alone and inside training
(the median train_step time at each position of the rate_every cycle, with and without
the warning, interleaved: the sampling step's excess over the other steps); (b) one
examination of a spiking or failing float32 step -- the float64 second opinion and the
blame (Forensics.examine) -- against one ordinary training step on the same batch, and
against its floor: one training step of the same model in float64 (the examination is
one float64 forward pass and BPTT, which keeps delta, plus the blame's norms). (b)
runs only on spikes and failures, so it is the price of a bad step, not of a run.

    .venv/bin/python benchmarks/forensics_cost.py [--T 50 --B 20 --H 50 --steps 1000]

Timings are minima over repeats (the machine may be loaded); compare the ratios.
"""
import argparse
import logging
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import rnnx
from rnnx.training.forensics import fill_growth

from _timing import best_per_call


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--B", type=int, default=20)
    ap.add_argument("--H", type=int, default=50)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.T, args.B, 2)).astype(np.float32)
    y = rng.standard_normal((args.B, 1)).astype(np.float32)

    def trainer(dtype=np.float32, **kw):
        m = rnnx.RNN(2, args.H, 1, seed=0, dtype=dtype)
        return rnnx.Trainer(m, rnnx.SGD(1e-9), progress=False, diag_every=None, seed=0,
                            spikes=None, **kw)

    on, off = trainer(), trainer(warnings=None)
    batches = [(x, y)] * args.steps
    t_on = t_off = float("inf")
    for _ in range(args.repeat):            # alternate, so that load hits both alike
        t_off = min(t_off, best_per_call(lambda: off.fit(batches), 1, 1) / args.steps)
        t_on = min(t_on, best_per_call(lambda: on.fit(batches), 1, 1) / args.steps)
    deltas = on.history.delta_norms[-1]
    record = dict(on.history.records()[-1])
    t_growth = best_per_call(lambda: fill_growth(record, deltas, np.float32), 2000, args.repeat)
    warning = on.warnings                   # its on_record on an ordinary step, alone
    on.step += on.step % warning.rate_every == 0          # not a step that samples lambda_1
    t_warn = best_per_call(lambda: warning.on_record(on, dict(record)), 2000, args.repeat)
    t_rate = best_per_call(lambda: warning.sample_rate(on), 200, args.repeat)

    cycle = {k: trainer(warnings=w) for k, w in (("off", None), ("on", "log"))}
    times = {k: [] for k in cycle}
    for _ in range(100 * warning.rate_every):
        for k, t in cycle.items():
            t0 = time.perf_counter()
            t.train_step(x, y)
            times[k].append(time.perf_counter() - t0)
    by_position = {k: np.median(np.reshape(v, (-1, warning.rate_every)), axis=0)
                   for k, v in times.items()}   # step k * rate_every samples: the last column
    t_plain, t_sampling = np.median(by_position["on"][:-1]), by_position["on"][-1]
    t_off_median = np.median(by_position["off"])
    tr = trainer()
    tr64, x64, y64 = trainer(np.float64), x.astype(np.float64), y.astype(np.float64)
    rec = dict(record)
    t_step = t_step64 = t_exam = float("inf")
    for _ in range(args.repeat):            # interleaved, so that load hits all three alike
        t_step = min(t_step, best_per_call(lambda: tr.train_step(x, y), 50, 1))
        t_exam = min(t_exam, best_per_call(lambda: tr.forensics.examine(
            tr, "nonfinite", (x, y, None), rec), 50, 1))
        t_step64 = min(t_step64, best_per_call(lambda: tr64.train_step(x64, y64), 50, 1))
    print(f"(T, B, H) = ({args.T}, {args.B}, {args.H}), float32")
    print(f"step, warnings off:              {t_off * 1e6:8.1f} us")
    print(f"step, warnings on (default):     {t_on * 1e6:8.1f} us  "
          f"(+{100 * (t_on / t_off - 1):.1f}%)")
    print(f"growth + overflow horizon:       {t_growth * 1e6:8.1f} us  "
          f"({100 * t_growth / t_off:.1f}% of a step)")
    print(f"EarlyWarning.on_record alone:    {t_warn * 1e6:8.1f} us  "
          f"({100 * t_warn / t_off:.1f}% of a step)")
    print(f"lambda_1 sample (every {warning.rate_every} steps): {t_rate * 1e6:8.1f} us  "
          f"({t_rate / t_off:.2f} steps; {100 * t_rate / t_off / warning.rate_every:.1f}% "
          f"of a step spread over {warning.rate_every})")
    mean_on = (t_plain * (warning.rate_every - 1) + t_sampling) / warning.rate_every
    print(f"inside training (medians by position): step {t_off_median * 1e6:.1f} us "
          f"without the warning, {t_plain * 1e6:.1f} us with it, {t_sampling * 1e6:.1f} us "
          f"on the sampling step (+{(t_sampling - t_plain) / t_off_median:.2f} steps); "
          f"per step on average +{100 * (mean_on / t_off_median - 1):.1f}%")
    print(f"one examined step (float64 second opinion + blame): {t_exam * 1e6:8.1f} us "
          f"= {t_exam / t_step:.2f} training steps")
    print(f"its floor, one float64 training step:              {t_step64 * 1e6:8.1f} us "
          f"= {t_step64 / t_step:.2f} training steps")


if __name__ == "__main__":
    main()
