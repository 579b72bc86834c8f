"""Initialisations of W_hh: orthogonality, spectral radius, sparsity, determinism."""
import numpy as np
import pytest

from rnnx.model.init import RECURRENT_INITS, init_params, init_recurrent


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("H", [1, 2, 7, 64])
def test_orthogonal(H):
    W = init_recurrent("orthogonal", H, rng())
    np.testing.assert_allclose(W @ W.T, np.eye(H), atol=1e-12)
    np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kind", RECURRENT_INITS)
@pytest.mark.parametrize("radius", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spectral_radius_rescaling(kind, radius, dtype):
    W = init_recurrent(kind, 40, rng(1), spectral_radius=radius, dtype=dtype)
    assert W.dtype == dtype and W.shape == (40, 40)
    got = np.abs(np.linalg.eigvals(W.astype(np.float64))).max()
    # float32 rounding of the entries moves eigenvalues by ~1e-7 relative.
    assert got == pytest.approx(radius, rel=1e-6 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("H, k", [(40, 15), (15, 15), (16, 15), (9, 9), (1, 1)])
def test_smart_tanh_keeps_15_outgoing_weights_per_unit(H, k):
    # Pascanu et al.'s code zeroes all but 15 entries of each row of its W, which
    # multiplies h from the right: row j holds unit j's outgoing weights, which are
    # column j of rnnx's W_hh (h[t] = tanh(W_hh h[t-1] + ...)).
    W = init_recurrent("smart_tanh", H, rng(2))
    np.testing.assert_array_equal(np.count_nonzero(W, axis=0), k)
    if H > 15:   # the kept rows differ between units (independent subsets)
        assert len({tuple(np.flatnonzero(c)) for c in W.T}) > 1
        assert np.count_nonzero(W, axis=1).std() > 0   # incoming counts are not fixed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smart_tanh_defaults_to_the_papers_spectral_radius(dtype):
    W = init_recurrent("smart_tanh", 50, rng(3), dtype=dtype)
    rho = np.abs(np.linalg.eigvals(W.astype(np.float64))).max()
    assert rho == pytest.approx(0.95, rel=1e-6 if dtype == np.float64 else 1e-5)
    # the rescaling makes the std of the draw irrelevant, as in the published code
    np.testing.assert_allclose(init_recurrent("smart_tanh", 50, rng(3), std=0.5,
                                              dtype=dtype), W, rtol=1e-5, atol=1e-7)


def test_smart_tanh_std_without_the_rescaling_is_001():
    # spectral_radius=None cannot switch the rescaling off (None means the paper's
    # default), so the 0.01 draw is measured through a radius that leaves it almost
    # unchanged: the ratio of two radii rescales exactly.
    a = init_recurrent("smart_tanh", 400, rng(4), spectral_radius=1.0)
    b = init_recurrent("smart_tanh", 400, rng(4), spectral_radius=2.0)
    np.testing.assert_allclose(2 * a, b, rtol=1e-12)
    nz = a[a != 0]
    assert nz.size == 400 * 15
    assert abs(nz.mean()) < 4 * nz.std() / np.sqrt(nz.size)   # centred


def test_basic_tanh_is_dense_with_std_01():
    W = init_recurrent("basic_tanh", 400, rng(5))
    assert np.count_nonzero(W) == W.size
    assert W.std() == pytest.approx(0.1, rel=0.02)   # 160000 draws: 0.2% standard error
    assert abs(W.mean()) < 4 * 0.1 / 400
    W = init_recurrent("basic_tanh", 400, rng(5), std=0.3)
    assert W.std() == pytest.approx(0.3, rel=0.02)


@pytest.mark.parametrize("kind, input_std, output_std, radius", [
    ("smart_tanh", 0.01, 0.01, 0.95), ("basic_tanh", 0.1, 0.1, None)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_params_papers_scales(kind, input_std, output_std, radius, dtype):
    """Every weight as the published code draws it: W_xh and W_hy N(0, s^2), biases 0."""
    D, H, O = 100, 50, 120          # 5000 and 6000 draws: ~1% standard error of the std
    p = init_params(D, H, O, rng(6), kind=kind, dtype=dtype)
    assert p["W_xh"].std() == pytest.approx(input_std, rel=0.05)
    assert p["W_hy"].std() == pytest.approx(output_std, rel=0.05)
    assert not p["b_h"].any() and not p["b_y"].any()
    assert all(v.dtype == dtype for v in p.values())
    rho = np.abs(np.linalg.eigvals(p["W_hh"].astype(np.float64))).max()
    if radius is not None:
        assert rho == pytest.approx(radius, rel=1e-5)
    p = init_params(D, H, O, rng(6), kind=kind, input_std=0.5, output_std=0.25)
    assert p["W_xh"].std() == pytest.approx(0.5, rel=0.05)
    assert p["W_hy"].std() == pytest.approx(0.25, rel=0.05)


def test_init_params_default_scales_for_the_other_kinds():
    p = init_params(400, 100, 300, rng(7), kind="orthogonal")
    assert p["W_xh"].std() == pytest.approx(1 / np.sqrt(400), rel=0.03)
    assert p["W_hy"].std() == pytest.approx(1 / np.sqrt(100), rel=0.03)


def test_rnn_takes_the_papers_inits_by_name():
    import rnnx
    m = rnnx.RNN(2, 50, 1, init="smart_tanh", seed=0)
    assert m.diagnostics()["spectral_radius"] == pytest.approx(0.95, rel=1e-5)
    assert m.params["W_xh"].std() < 0.02 and m.params["W_hy"].std() < 0.02
    m = rnnx.RNN(2, 50, 1, init="basic_tanh", seed=0)
    assert m.params["W_hh"].std() == pytest.approx(0.1, rel=0.05)


def test_gaussian_std_default_and_given():
    W = init_recurrent("gaussian", 200, rng(4))
    assert W.std() == pytest.approx(1 / np.sqrt(200), rel=0.02)   # 40000 draws
    W = init_recurrent("gaussian", 200, rng(4), std=0.3)
    assert W.std() == pytest.approx(0.3, rel=0.02)


def test_identity():
    np.testing.assert_array_equal(init_recurrent("identity", 5, rng()), np.eye(5))
    np.testing.assert_allclose(init_recurrent("identity", 5, rng(), spectral_radius=0.9),
                               0.9 * np.eye(5), rtol=1e-15)


@pytest.mark.parametrize("kind", RECURRENT_INITS)
def test_deterministic_by_seed(kind):
    a = init_recurrent(kind, 20, rng(7))
    b = init_recurrent(kind, 20, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, init_recurrent(kind, 20, 7))   # int seed
    if kind != "identity":
        assert not np.array_equal(a, init_recurrent(kind, 20, rng(8)))


def test_init_params():
    p = init_params(3, 5, 2, rng(), kind="gaussian", std=0.2, dtype=np.float32)
    assert {k: v.shape for k, v in p.items()} == {
        "W_xh": (5, 3), "W_hh": (5, 5), "b_h": (5,), "W_hy": (2, 5), "b_y": (2,)}
    assert all(v.dtype == np.float32 for v in p.values())
    assert not p["b_h"].any() and not p["b_y"].any()


@pytest.mark.parametrize("args, kwargs, exc, pattern", [
    (("tanh", 4), {}, ValueError, "init kind"),
    (("orthogonal", 0), {}, ValueError, "H must be a positive int"),
    (("orthogonal", 2.0), {}, ValueError, "H must be a positive int"),
    (("gaussian", 4), dict(std=0), ValueError, "std"),
    (("orthogonal", 4), dict(std=0.1), ValueError, "std applies only"),
    (("identity", 4), dict(std=0.1), ValueError, "std applies only"),
    (("orthogonal", 4), dict(spectral_radius=0), ValueError, "spectral_radius"),
    (("orthogonal", 4), dict(spectral_radius=float("inf")), ValueError, "spectral_radius"),
    (("orthogonal", 4), dict(dtype=np.int32), ValueError, "dtype"),
    (("basic_tanh", 4), dict(std=-1.0), ValueError, "std"),
])
def test_bad_arguments(args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        init_recurrent(*args, rng(), **kwargs)


def test_bad_rng_and_nilpotent_draw():
    with pytest.raises(TypeError, match="rng"):
        init_recurrent("orthogonal", 3, "seed")
    # A strictly triangular draw has all eigenvalues 0 and cannot be rescaled.
    with pytest.raises(ValueError, match="eigenvalues 0"):
        init_recurrent("smart_tanh", 2, _TriangularGenerator(), spectral_radius=1.0)


class _TriangularGenerator(np.random.Generator):
    """Draws a strictly upper triangular 2x2 matrix (kept whole: H < 15)."""

    def __init__(self):
        super().__init__(np.random.PCG64(0))

    def standard_normal(self, size=None):
        return np.array([[0.0, 1.0], [0.0, 0.0]])
