"""Forward + BPTT time of rnnx against a careful numpy implementation and torch.nn.RNN.

    python benchmarks/core_speed.py [--threads 1] [--repeat 7]

Prints a markdown table of the median time per call (ms) and the ratio of each to rnnx.
All implementations compute the same thing: h = forward(x), then the gradients of
L = sum(h * G) with respect to W_xh, W_hh, b_h and x. Run it on a quiet machine and compare
ratios within one run.
"""
import argparse
import os
import statistics
import time

from _problem import problem

SHAPES = [(100, 1, 8, 32), (100, 32, 8, 64), (200, 32, 32, 128), (100, 64, 64, 256),
          (50, 64, 128, 512), (1000, 16, 8, 64)]


def numpy_impl(x, W_xh, W_hh, b, G):
    """The numpy baseline: input projection and weight gradients hoisted out of the loops."""
    import numpy as np
    T, B, _ = x.shape
    H = W_hh.shape[0]
    h = np.empty((T, B, H), x.dtype)
    xw = (x.reshape(T * B, -1) @ W_xh.T + b).reshape(T, B, H)
    prev = np.zeros((B, H), x.dtype)
    for t in range(T):
        prev = h[t] = np.tanh(xw[t] + prev @ W_hh.T)
    dz = np.empty_like(h)
    carry = np.zeros((B, H), x.dtype)
    for t in range(T - 1, -1, -1):
        dz[t] = (G[t] + carry) * (1 - h[t] * h[t])
        carry = dz[t] @ W_hh
    dz2 = dz.reshape(T * B, H)
    dW_hh = dz[1:].reshape(-1, H).T @ h[:-1].reshape(-1, H)
    return dz2.T @ x.reshape(T * B, -1), dW_hh, dz2.sum(0), (dz2 @ W_xh).reshape(x.shape)


def torch_impl():
    """torch.nn.RNN with bias_hh frozen at zero, gradients by autograd; None without torch."""
    try:
        import torch
    except ImportError:
        return None

    def run(x, W_xh, W_hh, b, G, _cache={}):
        key = (x.shape, W_hh.shape, x.dtype)
        if key not in _cache:
            rnn = torch.nn.RNN(x.shape[2], W_hh.shape[0], nonlinearity="tanh")
            rnn = rnn.to(torch.float32 if x.dtype.name == "float32" else torch.float64)
            with torch.no_grad():
                rnn.weight_ih_l0.copy_(torch.from_numpy(W_xh))
                rnn.weight_hh_l0.copy_(torch.from_numpy(W_hh))
                rnn.bias_ih_l0.copy_(torch.from_numpy(b))
                rnn.bias_hh_l0.zero_()
            rnn.bias_hh_l0.requires_grad_(False)
            _cache[key] = rnn, torch.from_numpy(x).requires_grad_(True), torch.from_numpy(G)
        rnn, xt, Gt = _cache[key]
        h, _ = rnn(xt)
        return torch.autograd.grad((h * Gt).sum(),
                                   (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, xt))

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return run


def rnnx_impl(x, W_xh, W_hh, b, G):
    import rnnx
    h = rnnx.rnn_forward(x, W_xh, W_hh, b)
    return rnnx.rnn_backward(x, h, G, W_xh, W_hh, b)


def median_ms(fn, args, repeat):
    fn(*args)                                    # warm-up (and torch's graph cache)
    calls = 1
    while True:                                  # enough calls per sample for ~20 ms
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        if time.perf_counter() - t0 > 0.02:
            break
        calls *= 2
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        samples.append((time.perf_counter() - t0) / calls * 1e3)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="BLAS/torch threads (default 1)")
    ap.add_argument("--repeat", type=int, default=7, help="timed samples per cell (median)")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)          # before numpy / torch load their BLAS
    import numpy as np
    import rnnx

    impls = {"rnnx": rnnx_impl, "numpy": numpy_impl}
    torch_run = torch_impl()
    if torch_run is not None:
        impls["torch"] = torch_run
    print(f"rnnx {rnnx.__version__}, numpy {np.__version__}, {args.threads} thread(s); "
          "median ms per forward + BPTT, (ratio to rnnx)\n")
    print("| T, B, D, H | dtype | " + " | ".join(impls) + " |")
    print("|---|---|" + "---|" * len(impls))
    for T, B, D, H in SHAPES:
        for dtype in ("float32", "float64"):
            x, W_xh, W_hh, b, G = problem(T, B, D, H, dtype)
            times = {name: median_ms(fn, (x, W_xh, W_hh, b, G), args.repeat)
                     for name, fn in impls.items()}
            cells = [f"{ms:.3f} ({ms / times['rnnx']:.2f}x)" for ms in times.values()]
            print(f"| {T}, {B}, {D}, {H} | {dtype} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
