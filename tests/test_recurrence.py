"""rnn_forward and rnn_backward against the numpy reference, finite differences and PyTorch."""
import numpy as np
import pytest
import rnnx
from threadpoolctl import threadpool_limits

from _reference import TOL, assert_close, random_problem

DTYPES = [np.float64, np.float32]

# (T, B, D, H): unit sizes, odd sizes, and sizes that take the GEMV (B = 1), the
# register-blocked kernel (B >= 4, H a multiple of 32) and the BLAS GEMM paths of each step;
# with D a multiple of 32 as well, the backward loop makes every gradient itself (B = 1:
# dx by GEMV; B = 5, 9: rows left over from the 4-row tiles)
SHAPES = [
    (1, 1, 1, 1), (1, 3, 2, 4), (5, 1, 3, 2), (4, 2, 1, 3), (3, 2, 5, 1), (2, 1, 1, 7),
    (7, 3, 5, 11), (6, 5, 3, 32), (5, 7, 4, 64), (4, 4, 2, 33), (9, 1, 6, 40),
    (6, 5, 32, 32), (4, 1, 32, 64), (1, 4, 64, 32), (5, 9, 96, 64),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(check_core, rng, shape, with_h0, dtype):
    check_core(*random_problem(*shape, rng=rng, dtype=dtype, with_h0=with_h0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_large_product_with_budgets_of_one_and_two_threads(check_core, rng, threads, dtype):
    # B*H*H = 2^21 in one block (too little work for blocks): with a budget of one thread
    # the register-blocked kernel computes each step's product, with two BLAS does (on as
    # many threads as it has, one or two); all must match the reference
    old = rnnx.core.threads.set_thread_budget(threads)
    try:
        for blas in (1, 2):
            with threadpool_limits(blas, user_api="blas"):
                check_core(*random_problem(3, 32, 2, 256, rng=rng, dtype=dtype, with_h0=True))
    finally:
        rnnx.core.threads.set_thread_budget(old)


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_sequence_contractive(check_core, rng, dtype):
    # T = 2000: errors must not accumulate over time when W_hh is contractive
    _, g, _ = check_core(*random_problem(2000, 3, 4, 16, rng=rng, dtype=dtype, scale=0.5))
    assert np.all(np.isfinite(g.delta_norms))


def test_no_h0_means_zeros(rng):
    x, W_xh, W_hh, b_h, _, G = random_problem(4, 3, 2, 5, rng=rng)
    zeros = np.zeros((3, 5))
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
    np.testing.assert_array_equal(h, rnnx.rnn_forward(x, W_xh, W_hh, b_h, zeros))
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h)
    g0 = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, zeros)
    for name in ("dW_xh", "dW_hh", "db_h", "dx", "dh0", "delta_norms"):
        np.testing.assert_allclose(getattr(g, name), getattr(g0, name), rtol=1e-14, atol=0)
    assert g.delta is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_h0", [True, False])
def test_clip_delta_matches_reference(check_core, rng, dtype, with_h0):
    # W_hh of spectral radius ~2 so that delta grows and the clipping bites at many steps
    problem = random_problem(12, 3, 4, 6, rng=rng, dtype=dtype, scale=2.0, with_h0=with_h0)
    clip = 0.7
    _, g, ref = check_core(*problem, clip=clip)
    assert np.max(np.abs(g.delta)) <= np.float64(np.asarray(clip, dtype))
    # the clipping was active: some entries sit exactly on the bounds
    assert np.sum(np.abs(ref["delta"]) == clip) > 10


def test_clip_delta_above_every_entry_changes_nothing(rng):
    x, W_xh, W_hh, b_h, h0, G = random_problem(6, 2, 3, 4, rng=rng)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, return_delta=True)
    c = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, clip_delta=1e6, return_delta=True)
    for name in ("dW_xh", "dW_hh", "db_h", "dx", "dh0", "delta_norms", "delta"):
        np.testing.assert_array_equal(getattr(c, name), getattr(g, name), err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_return_delta(check_core, rng, dtype):
    problem = random_problem(9, 4, 3, 5, rng=rng, dtype=dtype)
    _, g, _ = check_core(*problem)
    assert g.delta.shape == (9, 4, 5) and g.delta.dtype == dtype
    assert g.delta.flags.c_contiguous
    # its per-step norms are delta_norms
    norms = np.linalg.norm(g.delta.astype(np.float64).reshape(9, -1), axis=1)
    np.testing.assert_allclose(g.delta_norms, norms, rtol=TOL[np.dtype(dtype)])
    # nothing flows back into the last step: delta[T-1] is grad_h[T-1] itself
    np.testing.assert_array_equal(g.delta[-1], problem[-1][-1])


# --- central finite differences of L = sum(h * G), float64 --------------------------------

def _loss(x, W_xh, W_hh, b_h, h0, G):
    return float(np.sum(rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0) * G))


@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (4, 5, 32, 32)],
                         ids=lambda s: "x".join(map(str, s)))
def test_finite_differences(rng, shape, with_h0):
    args = list(random_problem(*shape, rng=rng, scale=1.2))
    names = ["x", "W_xh", "W_hh", "b_h", "h0"]
    x, W_xh, W_hh, b_h, h0, G = args
    if not with_h0:
        args[4] = h0 = None
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0)
    analytic = dict(x=g.dx, W_xh=g.dW_xh, W_hh=g.dW_hh, b_h=g.db_h, h0=g.dh0)
    eps = 1e-6
    for i, name in enumerate(names):
        # without h0 the derivative with respect to it is taken at h0 = 0
        base = np.zeros(h.shape[1:]) if args[i] is None else args[i]
        for _ in range(4):
            idx = tuple(int(rng.integers(n)) for n in base.shape)
            plus, minus = base.copy(), base.copy()
            plus[idx] += eps
            minus[idx] -= eps
            lp = _loss(*(args[:i] + [plus] + args[i + 1:]))
            lm = _loss(*(args[:i] + [minus] + args[i + 1:]))
            numeric = (lp - lm) / (2 * eps)
            assert analytic[name][idx] == pytest.approx(numeric, rel=1e-6, abs=1e-8), \
                f"d L / d {name}{list(idx)}"


# --- PyTorch autograd ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 3, 5, 11), (30, 2, 4, 8), (6, 5, 32, 32)],
                         ids=lambda s: "x".join(map(str, s)))
def test_matches_torch(rng, shape, with_h0, dtype):
    torch = pytest.importorskip("torch")
    T, B, D, H = shape
    x, W_xh, W_hh, b_h, h0, G = random_problem(*shape, rng=rng, dtype=dtype, with_h0=with_h0)

    rnn = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=False, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(W_xh.astype(np.float64)))
        rnn.weight_hh_l0.copy_(torch.from_numpy(W_hh.astype(np.float64)))
        rnn.bias_ih_l0.copy_(torch.from_numpy(b_h.astype(np.float64)))
        rnn.bias_hh_l0.zero_()
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    h0t = (torch.zeros(1, B, H, dtype=torch.float64) if h0 is None
           else torch.from_numpy(h0.astype(np.float64))[None]).requires_grad_()
    out, _ = rnn(xt, h0t)
    (out * torch.from_numpy(G.astype(np.float64))).sum().backward()

    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0)
    rtol = TOL[np.dtype(dtype)]
    expected = dict(h=out, dW_xh=rnn.weight_ih_l0.grad, dW_hh=rnn.weight_hh_l0.grad,
                    db_h=rnn.bias_ih_l0.grad, dx=xt.grad, dh0=h0t.grad[0])
    got = dict(h=h, dW_xh=g.dW_xh, dW_hh=g.dW_hh, db_h=g.db_h, dx=g.dx, dh0=g.dh0)
    for name, want in expected.items():
        assert got[name].dtype == dtype, name
        assert_close(got[name], want.detach().numpy(), rtol, name)


# --- the weights in panels, as the register-blocked kernel reads them ----------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_panels_are_the_32_column_blocks_in_turn(dtype):
    from rnnx import _core
    M = np.arange(5 * 96, dtype=dtype).reshape(5, 96)
    P = _core.panels(M)
    assert P.shape == (3, 5, 32) and P.dtype == dtype and P.flags.c_contiguous
    for j in range(3):
        np.testing.assert_array_equal(P[j], M[:, 32 * j:32 * (j + 1)])
    # the last panel of any other width is padded with zeros (tests/test_kernels.py)
    assert _core.panels(np.ones((4, 40), dtype)).shape == (2, 4, 32)


def test_the_core_rejects_panels_of_another_shape(rng):
    from rnnx import _core
    from rnnx.core.kernels import kernel_in_force
    kernel = kernel_in_force()
    if kernel == "blas":
        pytest.skip("no register-blocked kernel runs here")
    T, B, D, H = 3, 4, 32, 64
    x, W_xh, W_hh, b_h, _, G = random_problem(T, B, D, H, rng=rng)
    W_xh_T, W_hh_T = np.ascontiguousarray(W_xh.T), np.ascontiguousarray(W_hh.T)
    h = np.empty((T, B, H))
    wrong = _core.panels(np.zeros((H, 32)))                  # (1, H, 32), not (2, H, 32)
    with pytest.raises(ValueError, match="in panels"):
        _core.recur(x, h, W_hh_T, b_h, r0=0, r1=B, W_xh_T=W_xh_T,
                    W_xh_P=_core.panels(W_xh_T), W_hh_P=wrong, kernel=kernel)
    with pytest.raises(ValueError, match="go together"):
        _core.recur(x, h, W_hh_T, b_h, r0=0, r1=B, W_xh_T=W_xh_T,
                    W_hh_P=_core.panels(W_hh_T), kernel=kernel)
    with pytest.raises(ValueError, match="in panels"):          # no kernel named
        _core.recur(x, h, W_hh_T, b_h, r0=0, r1=B, W_xh_T=W_xh_T,
                    W_xh_P=_core.panels(W_xh_T), W_hh_P=_core.panels(W_hh_T))
    with pytest.raises(ValueError, match="in panels"):
        _core.recur(x, np.empty((T, B, 8)), np.ones((8, 8)), np.zeros(8), r0=0, r1=B,
                    W_hh_P=_core.panels(np.ones((8, 8))), kernel=kernel)   # too narrow
    with pytest.raises(ValueError, match="in panels"):
        _core.backward_steps(x, h, G, W_xh, W_hh, r0=0, r1=B, max_norm=np.inf,
                             clip_delta=0.0, work=np.empty(T * B * H), norms=np.empty(T),
                             db_h=np.zeros(H), W_hh_P=wrong, kernel=kernel)
