"""What the exact handling of per-sequence lengths costs in training.

Hochreiter & Schmidhuber's adding problem draws every sequence's length from
[T, T + T//10]: rnnx right-pads the batch and reads out at every step with a target only
at each sequence's end (exact, see rnnx.tasks). This times one Trainer step on such a
batch against one on a batch of a single length drawn for the whole batch
(adding(..., jitter="batch"), read out at the last step only), both with Pascanu et al.'s
settings (SGD lr 0.01, batch 20, 50 units, smart_tanh, clipping by global norm 1), and
prints the ratio.

    .venv/bin/python benchmarks/padded_batches.py [--T 50 --B 20 --H 50 --steps 300]

A benchmark, not a test: the minimum over repeats is reported, each repeat on the same
pre-drawn batches.
"""
import argparse
import logging
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # as benchmarks/training_overhead.py

import numpy as np

import rnnx


def best_step_time(jitter, args):
    task = rnnx.tasks.make("adding", args.T, jitter=jitter)
    rng = np.random.default_rng(0)
    batches = [task.sample(args.B, rng) for _ in range(args.steps)]
    times = []
    for _ in range(args.repeat):
        model = rnnx.RNN(task.input_size, args.H, task.output_size, readout=task.readout,
                         init="smart_tanh", seed=0)
        trainer = rnnx.Trainer(model, rnnx.SGD(0.01), clip=rnnx.clip_by_global_norm(1.0),
                               progress=False, seed=0, diag_every=None)
        t0 = time.perf_counter()
        trainer.fit(batches)
        times.append((time.perf_counter() - t0) / args.steps)
    return min(times), batches


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--B", type=int, default=20)
    ap.add_argument("--H", type=int, default=50)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    padded, pb = best_step_time("sequence", args)
    single, sb = best_step_time("batch", args)
    mean_len = lambda bs: np.mean([x.shape[0] for x, _ in bs])
    print(f"(T, B, H) = ({args.T}, {args.B}, {args.H}), {args.steps} steps, "
          f"best of {args.repeat}")
    print(f"per-sequence lengths, right-padded, readout all: {1e6 * padded:8.1f} us/step "
          f"(mean padded length {mean_len(pb):.2f})")
    print(f"one length per batch, readout last:              {1e6 * single:8.1f} us/step "
          f"(mean length {mean_len(sb):.2f})")
    print(f"ratio: {padded / single:.2f}")


if __name__ == "__main__":
    main()
