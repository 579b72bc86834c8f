"""Lyapunov exponents by the QR method against independent references."""
import numpy as np
import pytest
import rnnx
from rnnx.diagnostics.lyapunov import EDGE_TOLERANCE, diagnose, lyapunov_exponents, verdict
from rnnx.model.rnn import RNN


def _jacobians(x, W_xh, W_hh, b_h):
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h).astype(np.float64)
    return [(1 - h[t, b] ** 2)[:, None] * W_hh.astype(np.float64)
            for b in range(x.shape[1]) for t in range(x.shape[0])], h.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fixed_point_gives_log_of_diagonal(dtype):
    # x = 0, b = 0, h0 = 0: h stays 0, every Jacobian is W_hh = diag(a), exponents ln|a|.
    a = np.array([0.5, 2.0, -1.0, 3.0])
    x = np.zeros((40, 2, 1), dtype)
    e = lyapunov_exponents(x, np.zeros((4, 1), dtype), np.diag(a).astype(dtype),
                           np.zeros(4, dtype))
    assert e.dtype == np.float64
    np.testing.assert_allclose(e, np.sort(np.log(np.abs(a)))[::-1], atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_of_exponents_is_mean_log_determinant(dtype):
    # sum_i lambda_i = (1/T) sum_t ln|det J_t| exactly (volume growth), per sequence.
    rng = np.random.default_rng(1)
    T, B, D, H = 30, 3, 2, 5
    x = rng.standard_normal((T, B, D)).astype(dtype)
    W_xh, W_hh = rng.standard_normal((H, D)).astype(dtype), (1.3 * rng.standard_normal((H, H)) / np.sqrt(H)).astype(dtype)
    b_h = 0.1 * rng.standard_normal(H).astype(dtype)
    e = lyapunov_exponents(x, W_xh, W_hh, b_h)
    Js, _ = _jacobians(x, W_xh, W_hh, b_h)
    logdet = np.mean([np.linalg.slogdet(J)[1] for J in Js])
    np.testing.assert_allclose(e.sum(), logdet, rtol=1e-9)
    assert np.all(np.diff(e) <= 0)


def test_largest_exponent_matches_product_growth():
    # lambda_1 = lim (1/T) ln ||J_T ... J_1||; on a long trajectory the difference is O(1/T).
    rng = np.random.default_rng(2)
    T, H = 400, 6
    x = rng.standard_normal((T, 1, 1))
    W_xh, W_hh, b_h = rng.standard_normal((H, 1)), 1.5 * rng.standard_normal((H, H)) / np.sqrt(H), np.zeros(H)
    e1 = lyapunov_exponents(x, W_xh, W_hh, b_h, k=1)
    assert e1.shape == (1,)
    L = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h)
    assert abs(e1[0] - L[-1, 0] / T) < 5.0 / T


def test_one_unit_one_step():
    x = np.array([[[0.3]]])
    W_xh, W_hh, b_h = np.array([[1.0]]), np.array([[0.7]]), np.array([0.1])
    h = np.tanh(0.3 + 0.1)
    np.testing.assert_allclose(lyapunov_exponents(x, W_xh, W_hh, b_h),
                               [np.log(0.7 * (1 - h ** 2))], rtol=1e-12)


def test_bad_arguments():
    x = np.zeros((5, 1, 1))
    args = (x, np.zeros((2, 1)), np.eye(2), np.zeros(2))
    with pytest.raises(ValueError, match="k must"):
        lyapunov_exponents(*args, k=3)
    with pytest.raises(ValueError, match="discard"):
        lyapunov_exponents(*args, discard=5)
    with pytest.raises(ValueError):
        lyapunov_exponents(np.zeros((5, 1, 3)), *args[1:])


def test_verdict_thresholds():
    assert verdict(0.5) == "exploding"
    assert verdict(-0.5) == "vanishing"
    assert verdict(EDGE_TOLERANCE / 2) == verdict(-EDGE_TOLERANCE / 2) == "near the edge"


def test_diagnose_model():
    m = RNN(2, 8, 1, spectral_radius=0.5, seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((30, 4, 2))
    d = diagnose(m, x)
    assert d.verdict == "vanishing" and d.lambda_max < np.log(0.5) + 1e-9
    assert d.jacobian_log_norms.shape == (31, 4) and d.log_norms.shape == (31,)
    np.testing.assert_allclose(d.sigma_max, np.linalg.norm(m.params["W_hh"], 2))
    # the Jacobian never beats the sigma_max^k bound
    assert np.all(d.log_norms <= np.arange(31) * np.log(d.sigma_max) + 1e-9)
    out = d.to_dict()
    assert out["verdict"] == "vanishing" and "per step" in out["explanation"]
    big = RNN(2, 8, 1, init="identity", spectral_radius=3.0, seed=0, dtype="float64")
    # x = 0 keeps h at 0, so J = 3 I: exploding at ln 3 per step
    d = diagnose(big, np.zeros((20, 2, 2)), discard=0)
    assert d.verdict == "exploding"
    np.testing.assert_allclose(d.exponents, np.log(3.0), atol=1e-12)
