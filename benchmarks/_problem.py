"""The problem the core benchmarks time: one batch, its loss gradient and a tanh RNN."""


def problem(T, B, D, H, dtype, seed=0):
    """(x, W_xh, W_hh, b_h, G) in dtype: x (T, B, D) and G = dL/dh (T, B, H) standard
    normal, W_xh (H, D) with std 0.3, W_hh 0.9 times a random orthogonal matrix (so the
    backward signal neither explodes nor dies out over T), b_h zero.

    numpy is imported here, so that the caller can set the BLAS thread count first.
    """
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    W_xh = (0.3 * rng.standard_normal((H, D))).astype(dtype)
    W_hh = (0.9 * np.linalg.qr(rng.standard_normal((H, H)))[0]).astype(dtype)
    b_h = np.zeros(H, dtype)
    G = rng.standard_normal((T, B, H)).astype(dtype)
    return x, W_xh, W_hh, b_h, G
