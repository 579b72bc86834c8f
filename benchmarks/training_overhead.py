"""How much the Python training loop adds over the compiled core.

Times (a) the core alone: rnn_forward + rnn_backward on one batch, and (b) one step of
Trainer.fit on the same batch (readout, loss, checks, norms, clipping, the optimizer
update with its undo copy, the History record, the log line with --log), and prints the
ratio (b) / (a).

    .venv/bin/python benchmarks/training_overhead.py [--T 50 --B 20 --H 50 --steps 2000]

The target is (b) / (a) <= 1.20 at (T, B, H) = (50, 20, 50). This is a benchmark, not a
test: run it on a quiet machine; the minimum over repeats is reported.
"""
import argparse
import logging
import os

# One BLAS thread, set before numpy loads its BLAS: on 2 shared cores a second BLAS thread
# waiting for a busy core stalls small GEMMs for milliseconds, which would swamp the Python
# overhead this measures.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import rnnx
from rnnx.optim.clipping import clip_by_global_norm
from rnnx.model.rnn import RNN
from rnnx.optim.optimizers import SGD
from rnnx.training.loop import Trainer

from _timing import best_per_call


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--B", type=int, default=20)
    ap.add_argument("--H", type=int, default=50)
    ap.add_argument("--D", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--log", default=None, help="also stream the log to this .csv/.jsonl")
    ap.add_argument("--bare", action="store_true",
                    help="no clipping and no spike detection: the loop alone")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.T, args.B, args.D)).astype(args.dtype)
    target = rng.standard_normal((args.B, 1)).astype(args.dtype)
    model = RNN(args.D, args.H, 1, seed=0, dtype=args.dtype)
    p = model.params
    grad_h = np.zeros((args.T, args.B, args.H), args.dtype)
    grad_h[-1] = 1.0

    def core():
        h = rnnx.rnn_forward(x, p["W_xh"], p["W_hh"], p["b_h"])
        rnnx.rnn_backward(x, h, grad_h, p["W_xh"], p["W_hh"], p["b_h"])

    # A tiny learning rate keeps the weights (and so the work per step) steady.
    features = (dict(clip=None, spikes=None) if args.bare
                else dict(clip=clip_by_global_norm(1.0), spikes="log"))
    trainer = Trainer(model, SGD(1e-9), progress=False, log_path=args.log, diag_every=None,
                      seed=0, **features)

    batches = [(x, target)] * args.steps

    def fit():
        trainer.fit(batches)

    best_per_call(core, 50, 1)                    # warm up
    # Alternate the two measurements so that load from other processes hits both alike.
    t_core = t_step = float("inf")
    for _ in range(args.repeat):
        t_core = min(t_core, best_per_call(core, args.steps, 1))
        t_step = min(t_step, best_per_call(fit, 1, 1) / args.steps)
    print(f"(T, B, H) = ({args.T}, {args.B}, {args.H}), {args.dtype}, "
          + ("bare loop" if args.bare else "clipping by global norm + spike detection"))
    print(f"core rnn_forward + rnn_backward: {t_core * 1e6:8.1f} us")
    print(f"Trainer.fit, per step:           {t_step * 1e6:8.1f} us")
    print(f"ratio: {t_step / t_core:.3f}  (overhead {100 * (t_step / t_core - 1):.1f}%)")


if __name__ == "__main__":
    main()
