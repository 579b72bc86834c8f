"""jacobian_log_norms against explicit products of the Jacobians diag(1 - h[i]^2) W_hh."""
import numpy as np
import pytest
import rnnx
from _reference import forward, log_norms, orthogonal, random_problem


@pytest.mark.parametrize("ord", [2, "fro"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (6, 3, 4, 5), (12, 2, 3, 7), (8, 1, 2, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_matches_explicit_product(rng, shape, dtype, ord):
    x, W_xh, W_hh, b_h, h0, _ = random_problem(*shape, rng=rng, dtype=dtype, scale=1.5)
    T, B, _, H = shape
    L = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, ord=ord)
    assert L.shape == (T + 1, B) and L.dtype == np.float64
    # the products are taken along the trajectory h; with float32 inputs rnnx follows its
    # own float32 trajectory (which differs from the float64 one by ~1e-7), so use that one
    h = (rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0) if dtype == np.float32
         else forward(x, W_xh, W_hh, b_h, h0))
    expected = log_norms(h, W_hh, ord)
    np.testing.assert_allclose(L, expected, rtol=1e-9, atol=1e-9)
    assert np.all(L[0] == (0.0 if ord == 2 else 0.5 * np.log(H)))


def test_without_h0_starts_from_zeros(rng):
    x, W_xh, W_hh, b_h, _, _ = random_problem(5, 2, 3, 4, rng=rng)
    np.testing.assert_array_equal(
        rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h),
        rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, np.zeros((2, 4))))


@pytest.mark.parametrize("ord", [2, "fro"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("a", [3.0, 0.2])
def test_scaled_orthogonal_over_5000_steps(rng, a, dtype, ord):
    # h = 0 everywhere, so dh[T-1]/dh[T-1-k] = (a Q)^k: spectral norm a^k, Frobenius
    # a^k sqrt(H). 3^5000 and 0.2^5000 are far outside float64: a plain product would
    # overflow or underflow.
    T, B, D, H = 5000, 2, 3, 6
    W_hh = (a * orthogonal(H, rng)).astype(dtype)
    x = np.zeros((T, B, D), dtype)
    L = rnnx.jacobian_log_norms(x, rng.standard_normal((H, D)), W_hh, np.zeros(H),
                                np.zeros((B, H)), ord=ord)
    k = np.arange(T + 1)[:, None]
    expected = k * np.log(a) + (0.0 if ord == 2 else 0.5 * np.log(H))
    expected = np.broadcast_to(expected, (T + 1, B))
    assert np.all(np.isfinite(L))
    np.testing.assert_allclose(L, expected, rtol=1e-6, atol=1e-9)


def test_saturated_units_give_minus_inf(rng):
    # sample 0 saturates every unit at step 1 (pre-activation ~50: tanh rounds to 1, so
    # tanh' = 0 exactly); the product then vanishes from lag T - 1 on (the lags whose
    # product includes step 1). Sample 1 never saturates.
    T, B, H = 5, 2, 3
    x = 0.1 * rng.standard_normal((T, B, H))
    x[1, 0] = 50.0
    W_xh, W_hh, b_h = np.eye(H), 0.3 * orthogonal(H, rng), np.zeros(H)
    for ord in (2, "fro"):
        L = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, ord=ord)
        assert np.all(np.isfinite(L[:T - 1, 0]))
        assert np.all(L[T - 1:, 0] == -np.inf)
        assert np.all(np.isfinite(L[:, 1]))
        h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(L, log_norms(h, W_hh, ord), rtol=1e-9, atol=1e-9)


def test_zero_W_hh_gives_minus_inf_after_lag_0(rng):
    x, W_xh, _, b_h, h0, _ = random_problem(4, 2, 3, 5, rng=rng)
    L = rnnx.jacobian_log_norms(x, W_xh, np.zeros((5, 5)), b_h, h0)
    assert np.all(L[0] == 0) and np.all(L[1:] == -np.inf)


@pytest.mark.parametrize("ord", [1, 3, np.inf, -2, "nuc", "2", 2.5, True, None, [2]])
def test_bad_ord_raises(rng, ord):
    x, W_xh, W_hh, b_h, h0, _ = random_problem(3, 2, 2, 3, rng=rng)
    with pytest.raises(ValueError, match="ord"):
        rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, ord=ord)


def test_numpy_integer_ord_is_accepted(rng):
    x, W_xh, W_hh, b_h, h0, _ = random_problem(3, 2, 2, 3, rng=rng)
    np.testing.assert_array_equal(
        rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, ord=np.int64(2)),
        rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0))


@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
@pytest.mark.parametrize("H", [33, 64, 256, 301])
def test_spectral_norm_matches_lapack_at_every_lag(rng, H, init):
    # long enough for every path of the certified iteration: the first lags (where the top
    # singular values are close and Cholesky or the SVD certify) and the later ones; from
    # H = 256 the Lanczos steps run on the Gram matrix rounded to float32 and their basis
    # is checked against the exact product (or the steps start again on the exact one)
    T, B = 60, 2
    x, W_xh, W_hh, b_h, h0, _ = random_problem(T, B, 3, H, rng=rng, scale=1.1)
    if init == "orthogonal":
        W_hh = 1.05 * orthogonal(H, rng)
    L = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0)
    h = forward(x, W_xh, W_hh, b_h, h0)
    expected = log_norms(h, W_hh, 2)
    # 1e-9 relative of the norm is 1e-9 absolute of its log
    np.testing.assert_allclose(L, expected, rtol=0, atol=1e-9)


def test_rounded_gram_matrix_in_a_stack_of_samples(rng):
    # BLAS's GEMM on stacks of samples (kernel "blas": 2 samples of 256 a stack, B = 3 makes
    # a full and a partial one, their leading dimension 8 past the stack): the float32 Gram
    # matrix and the check of its Lanczos basis read each sample's block in place
    T, B, H = 40, 3, 256
    x, W_xh, _, b_h, h0, _ = random_problem(T, B, 3, H, rng=rng)
    W_hh = 1.05 * orthogonal(H, rng)
    old = rnnx.set_kernel("blas")
    try:
        L = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0)
    finally:
        rnnx.set_kernel(old)
    h = forward(x, W_xh, W_hh, b_h, h0)
    np.testing.assert_allclose(L, log_norms(h, W_hh, 2), rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H", [17, 40, 130, 260])
def test_spectral_norm_with_nearly_equal_top_singular_values(rng, H, dtype):
    # h = 0 throughout, so the product over k lags is W^k; W = U diag(s) V^T with its two
    # largest singular values 1e-7 apart (and a third 1e-3 below): Lanczos cannot tell
    # them apart in a few steps, so the lags go through the Gram matrix, Cholesky and
    # LAPACK's eigenvalue. At H = 260 the Gram matrix is rounded to float32 first, which
    # cannot tell them apart at all: only the exact check of its basis can. The reference:
    # numpy's SVD of each explicit product.
    s = np.concatenate([[1.0, 1.0 - 1e-7, 1.0 - 1e-3], np.linspace(0.9, 0.2, H - 3)])
    _check_powers(rng, s, T=40, B=2, D=3, dtype=dtype)


def _check_powers(rng, s, *, T, B, D, dtype):
    """jacobian_log_norms(ord=2) with h = 0 throughout, where the product over k lags is
    W^k, for W = U diag(s) V^T with random orthogonal U, V: against numpy's SVD of each
    power, to 1e-9 (relative of the norm, so absolute of its log)."""
    H = len(s)
    W_hh = ((orthogonal(H, rng) * s) @ orthogonal(H, rng).T).astype(dtype)
    L = rnnx.jacobian_log_norms(np.zeros((T, B, D), dtype),
                                rng.standard_normal((H, D)).astype(dtype), W_hh,
                                np.zeros(H, dtype), np.zeros((B, H), dtype))
    W = W_hh.astype(np.float64)
    P, expected = np.eye(H), [0.0]
    for _ in range(T):
        P = P @ W
        expected.append(np.log(np.linalg.norm(P, 2)))
    np.testing.assert_allclose(L, np.broadcast_to(np.array(expected)[:, None], (T + 1, B)),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("ord", [2, "fro"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H", [128, 131])
def test_stacked_samples_match_explicit_products(rng, H, dtype, ord):
    # from H = 128 the samples' products are carried as a stack of a few samples (512
    # rows: 4 at H = 128, 3 at H = 131), so 7 samples make full and partial stacks; sample
    # 2 saturates every unit at step 4 (tanh' = 0) and gives -inf from lag T - 4 on while
    # its stack goes on
    T, B, D = 14, 7, 3
    x, W_xh, W_hh, b_h, h0, _ = random_problem(T, B, D, H, rng=rng, dtype=dtype, scale=1.2)
    W_xh[:, 0] = 1
    x[4, 2, 0] = 200
    L = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, ord=ord)
    h = (rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0) if dtype == np.float32
         else forward(x, W_xh, W_hh, b_h, h0))
    assert np.all(L[T - 4:, 2] == -np.inf) and np.all(np.isfinite(L[:T - 4, 2]))
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(L, log_norms(h, W_hh, ord), rtol=0, atol=1e-9)


@pytest.mark.parametrize("kernel", rnnx.available_kernels())
@pytest.mark.parametrize("H, B", [(15, 2), (16, 3), (50, 2), (128, 4), (131, 7), (400, 2)])
def test_every_kernel_makes_the_same_log_norms(rng, kernel, H, B):
    # the products by W_hh' of each lag: BLAS's GEMM (from H = 128 on stacks of samples,
    # full and partial, their leading dimension one cache line over), or a register-blocked
    # kernel on one sample at a time, reading the scaled product in the panels that the
    # scaling pass writes. BLAS whatever the kernel under 16 columns and at 400 (above
    # KERNEL_MAX_H); 50 and 131 are not multiples of the panel. Sample 1 saturates every
    # unit at step 5 (tanh' = 0): a zero product from then on.
    T = 9
    x, W_xh, W_hh, b_h, h0, _ = random_problem(T, B, 3, H, rng=rng, scale=1.2)
    W_xh[:, 0] = 1
    x[5, 1, 0] = 200
    old = rnnx.set_kernel(kernel)
    try:
        two = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0)
        fro = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, ord="fro")
    finally:
        rnnx.set_kernel(old)
    h = forward(x, W_xh, W_hh, b_h, h0)
    assert np.all(two[T - 5:, 1] == -np.inf) and np.all(fro[T - 5:, 1] == -np.inf)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(two, log_norms(h, W_hh, 2), rtol=0, atol=1e-9)
        np.testing.assert_allclose(fro, log_norms(h, W_hh, "fro"), rtol=0, atol=1e-9)


def test_unknown_kernel_is_refused_by_the_compiled_kernel():
    from rnnx import _diagnostics
    h = np.zeros((3, 1, 16))
    with pytest.raises(ValueError, match=r"kernel must be 'blas' or a variant this CPU runs "
                                         r".*got 'avx1024'"):
        _diagnostics.jacobian_log_norms(h, np.eye(16), False, np.zeros((4, 1)), 0, 1,
                                        np.zeros(1, np.int32), None, [], True, "avx1024")


@pytest.mark.parametrize("gap", [10.0, 1.0 + 1e-9])
def test_spectral_norm_with_a_large_or_no_gap(rng, gap):
    # h = 0 throughout: the product over k lags is W^k, W = U diag(s) V^T with s_1 = gap *
    # s_2. A large gap certifies from the first Lanczos steps (the trace bound); a gap of
    # 1e-9 (below the certified accuracy) leaves Lanczos stalled on the top pair and
    # Cholesky or LAPACK decide. Stacked samples (H = 129, B = 4). Reference: numpy's SVD.
    s = np.concatenate([[gap], np.linspace(1.0, 0.3, 128)])
    _check_powers(rng, s, T=25, B=4, D=2, dtype=np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("H", [2, 3, 6, 29, 130, 131])
def test_spectral_norm_every_column_remainder(rng, H, B, dtype):
    # the Lanczos steps by R read it one pass, four columns at a time: H mod 4 = 0..3
    # leftover columns and rows, alone and in a stack (H >= 128, padded leading dimension);
    # the first lag goes straight to LAPACK's eigenpair. Reference: numpy's 2-norm (SVD)
    # of each explicit product.
    T = 12
    x, W_xh, W_hh, b_h, h0, _ = random_problem(T, B, 3, H, rng=rng, dtype=dtype, scale=1.2)
    L = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0)
    h = (rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0) if dtype == np.float32
         else forward(x, W_xh, W_hh, b_h, h0))
    np.testing.assert_allclose(L, log_norms(h, W_hh, 2), rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [1, 2])
def test_spectral_norm_lapack_runs_and_warm_starts(rng, B, dtype):
    # the top two singular values of W 1e-10 apart (below the certified accuracy), the rest
    # close below: the first lag goes to LAPACK's eigenpair, whose eigenvector starts the
    # second; lags whose Lanczos steps cannot settle the top end in Cholesky or LAPACK (and
    # a lag after LAPACK goes to it directly). H = 30 (two leftover columns); h = 0, so
    # the product over k lags is W^k. Reference: numpy's SVD of each power.
    s = np.concatenate([[1.0, 1.0 - 1e-10], np.linspace(0.99, 0.5, 28)])
    _check_powers(rng, s, T=30, B=B, D=2, dtype=dtype)


@pytest.mark.parametrize("ord", [2, "fro"])
def test_scaled_orthogonal_stacked_over_2000_steps(rng, ord):
    # the k ln a check of test_scaled_orthogonal_over_5000_steps through the stack of
    # samples (H = 130: 3 samples a stack, B = 4)
    T, B, D, H, a = 2000, 4, 2, 130, 1.7
    W_hh = a * orthogonal(H, rng)
    L = rnnx.jacobian_log_norms(np.zeros((T, B, D)), rng.standard_normal((H, D)), W_hh,
                                np.zeros(H), np.zeros((B, H)), ord=ord)
    k = np.arange(T + 1)[:, None]
    expected = k * np.log(a) + (0.0 if ord == 2 else 0.5 * np.log(H))
    np.testing.assert_allclose(L, np.broadcast_to(expected, (T + 1, B)), rtol=1e-9, atol=1e-9)


def test_lags_and_batch_first(rng):
    x, W_xh, W_hh, b_h, h0, _ = random_problem(9, 3, 2, 5, rng=rng, scale=1.3)
    full = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0)
    np.testing.assert_array_equal(rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, lags=4),
                                  full[:5])
    np.testing.assert_array_equal(
        rnnx.jacobian_log_norms(np.swapaxes(x, 0, 1), W_xh, W_hh, b_h, h0, batch_first=True),
        full.T)
    for lags in (0, 10, 2.0, True):
        with pytest.raises(ValueError, match="lags"):
            rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, lags=lags)
    with pytest.raises(TypeError, match="batch_first"):
        rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, batch_first="yes")


@pytest.mark.parametrize("H", [32, 128])
@pytest.mark.parametrize("ord", [2, "fro"])
def test_same_numbers_with_one_and_two_threads(rng, ord, H):
    # with two threads the samples are split over them (at H = 128 into other stacks);
    # each sample's numbers do not move
    from threadpoolctl import threadpool_limits
    x, W_xh, W_hh, b_h, h0, _ = random_problem(20, 5, 3, H, rng=rng, scale=1.2)
    with threadpool_limits(1):
        one = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, ord=ord)
    with threadpool_limits(2):
        two = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0, ord=ord)
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-12)


def test_thread_plan_from_the_shape():
    # the blocks of samples and the BLAS setting come from B and the thread budget only:
    # one block (one BLAS thread for small products) at B = 1 or for small work, blocks of
    # samples at B >= 2 where the work pays for the hand-off
    from rnnx.core.threads import blas_threads, can_serialise, set_thread_budget
    from rnnx.core.kernels import kernel_in_force
    from rnnx.diagnostics._threads import one_blas_thread, product_kernel, sample_blocks
    old = set_thread_budget(2)
    try:
        big = 10 * 5 * 128 ** 3
        assert sample_blocks(1, 128 ** 3, big)[0] == [(0, 1)]
        assert sample_blocks(5, 128 ** 3, big)[0] == ([(0, 2), (2, 5)] if can_serialise()
                                                      else [(0, 5)])
        assert sample_blocks(4, 32 * 32, 50 * 4 * 32 * 32 * 3)[0] == [(0, 4)]
        # the products' kernel: the one in force, but BLAS where its threads make them
        assert product_kernel(5, 128 ** 3, big) == kernel_in_force()
        assert product_kernel(1, 1024 ** 3, 1024 ** 3 * 10) == "blas"
        set_thread_budget(1)
        assert sample_blocks(5, 128 ** 3, big)[0] == [(0, 5)]
        # one thread: the kernel, unless BLAS's own setting cannot be serialised
        assert product_kernel(1, 1024 ** 3, 1024 ** 3 * 10) == (
            kernel_in_force() if can_serialise() else "blas")
    finally:
        set_thread_budget(old)
    if can_serialise():
        with one_blas_thread():
            assert blas_threads() == 1


def test_model_method_takes_lags_and_batch_first(rng):
    m = rnnx.RNN(2, 6, 1, seed=0, dtype="float64", spectral_radius=1.2)
    x = rng.standard_normal((7, 3, 2))
    p = m.params
    L = rnnx.jacobian_log_norms(x, p["W_xh"], p["W_hh"], p["b_h"], lags=5)
    np.testing.assert_array_equal(m.jacobian_log_norms(x, lags=5), L)
    np.testing.assert_array_equal(
        m.jacobian_log_norms(np.swapaxes(x, 0, 1), lags=5, batch_first=True), L.T)


_INTERRUPTED = """
import sys, time
import numpy as np
import rnnx
from rnnx.diagnostics.lyapunov import lyapunov_exponents
rng = np.random.default_rng(0)
T, H = 4000, {H}
x = rng.standard_normal((T, 1, 2)).astype(np.float32)
W_xh, b_h = rng.standard_normal((H, 2)), np.zeros(H)
W_hh = 1.1 * np.linalg.qr(rng.standard_normal((H, H)))[0]
print("started", flush=True)
t0 = time.perf_counter()
try:
    {call}
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.parametrize("call", [
    "rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h)",
    "rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, ord='fro')",
    "lyapunov_exponents(x, W_xh, W_hh, b_h)"])
def test_ctrl_c_stops_a_long_call(call, tmp_path):
    # The kernels check for a pending signal at release points: SIGINT ends a call that
    # would run for minutes within about a second (here: a generous 10 s on a busy CI).
    import signal
    import subprocess
    import sys
    import time
    # cwd away from the checkout, whose rnnx/ (no compiled core) would shadow the install
    child = subprocess.Popen([sys.executable, "-c", _INTERRUPTED.format(H=256, call=call)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path)
    try:
        assert child.stdout.readline().strip() == "started"
        time.sleep(1.0)                     # well inside the call (it takes minutes)
        sent = time.perf_counter()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
        waited = time.perf_counter() - sent
    finally:
        child.kill()
    assert "interrupted" in out, err
    assert waited < 10, f"took {waited:.1f} s to stop"
    print(f"stopped {waited:.2f} s after SIGINT")
