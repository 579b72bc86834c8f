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
def test_smart_tanh_has_15_nonzeros_per_unit(H, k):
    W = init_recurrent("smart_tanh", H, rng(2), spectral_radius=1.1 if H > 1 else None)
    np.testing.assert_array_equal(np.count_nonzero(W, axis=1), k)
    if H > 15:   # the non-zero columns differ between units (independent subsets)
        assert len({tuple(np.flatnonzero(r)) for r in W}) > 1


def test_smart_tanh_std():
    W = init_recurrent("smart_tanh", 400, rng(3), std=0.5)
    nz = W[W != 0]
    assert nz.size == 400 * 15
    assert nz.std() == pytest.approx(0.5, rel=0.05)   # 6000 draws: ~1% standard error


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
    """Picks the off-diagonal entry for a 2x2 sparse draw; keeps only row 0's."""

    def __init__(self):
        super().__init__(np.random.PCG64(0))

    def random(self, size=None):           # column order: the off-diagonal first
        return np.array([[1.0, 0.0], [0.0, 1.0]])

    def standard_normal(self, size=None):
        return np.array([[1.0, 0.0], [0.0, 0.0]])[:size[0], :size[1]]
