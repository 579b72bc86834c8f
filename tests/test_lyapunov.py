"""Lyapunov exponents by the QR method against independent references."""
import numpy as np
import pytest
import rnnx
from rnnx.diagnostics.lyapunov import (EDGE_TOLERANCE, diagnose, local_lyapunov_exponents,
                                      lyapunov_exponents, verdict)
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


def _qr_method(h, W_hh, k, discard, window):
    """A numpy transcription of the QR method (Benettin et al. 1980): sums of ln |diag R|
    over each window of `window` steps after `discard`, (n_windows, B, k)."""
    T, B, H = h.shape
    W = np.asarray(W_hh, np.float64)
    Q = np.broadcast_to(np.eye(H)[:, :k], (B, H, k))
    sums = np.zeros(((T - discard) // window, B, k))
    with np.errstate(divide="ignore"):
        for t in range(T):
            Q, R = np.linalg.qr((1.0 - h[t].astype(np.float64) ** 2)[:, :, None] * (W @ Q))
            w = (t - discard) // window
            if t >= discard and w < len(sums):
                sums[w] += np.log(np.abs(np.diagonal(R, axis1=-2, axis2=-1)))
    return sums


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,H", [(1, 7), (3, 7), (7, 7), (20, 20), (17, 40)])
def test_matches_numpy_transcription(dtype, k, H):
    # k <= 16: Gram-Schmidt; larger frames: Cholesky QR with its correction
    rng = np.random.default_rng(5)
    T, B, D = 50, 3, 2
    x = rng.standard_normal((T, B, D)).astype(dtype)
    W_xh = rng.standard_normal((H, D)).astype(dtype)
    W_hh = (1.4 * rng.standard_normal((H, H)) / np.sqrt(H)).astype(dtype)
    b_h = (0.1 * rng.standard_normal(H)).astype(dtype)
    local = _check_against_transcription(x, W_xh, W_hh, b_h, k, discard=5, window=10)
    assert local.shape == (4, B, k)           # 45 steps: 4 windows of 10, 5 left over


def _check_against_transcription(x, W_xh, W_hh, b_h, k, *, discard, window):
    """The exponents over the whole trajectory and per window against _qr_method's, to
    1e-10 relative; returns the local exponents."""
    T = x.shape[0]
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
    e = lyapunov_exponents(x, W_xh, W_hh, b_h, k=k, discard=discard)
    ref = _qr_method(h, W_hh, k, discard, T - discard)[0].mean(axis=0) / (T - discard)
    np.testing.assert_allclose(e, np.sort(ref)[::-1], rtol=1e-10, atol=1e-12)
    local = local_lyapunov_exponents(x, W_xh, W_hh, b_h, window=window, k=k,
                                     discard=discard)
    np.testing.assert_allclose(local, _qr_method(h, W_hh, k, discard, window) / window,
                               rtol=1e-10, atol=1e-12)
    return local
    np.testing.assert_allclose(
        local_lyapunov_exponents(np.swapaxes(x, 0, 1), W_xh, W_hh, b_h, window=10, k=k,
                                 discard=5, batch_first=True), local.transpose(1, 0, 2))


def test_ill_conditioned_frames_fall_back_to_householder():
    # units with tanh' ~ 1e-9 make the frame's columns nearly dependent: Cholesky QR
    # would lose accuracy there, the Householder path must not
    rng = np.random.default_rng(6)
    T, B, H = 30, 2, 6
    x = np.zeros((T, B, H))
    x[:, :, :2] = 11.0                         # tanh(11) = 1 - 5.6e-10
    W_xh, W_hh = np.eye(H), 0.9 * np.linalg.qr(rng.standard_normal((H, H)))[0]
    h = rnnx.rnn_forward(x, W_xh, W_hh, np.zeros(H))
    e = lyapunov_exponents(x, W_xh, W_hh, np.zeros(H))
    ref = _qr_method(h, W_hh, H, 0, T)[0].mean(axis=0) / T
    np.testing.assert_allclose(e, np.sort(ref)[::-1], rtol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ill_conditioned_large_frames_against_numpy(dtype):
    # k = H = 24 > 16: Cholesky QR, one pass per step and a second at window ends; units
    # near saturation make Z ill-conditioned (Cholesky's Q off orthonormal by about
    # cond(Z)^2 1e-16); the sums per window still match numpy's Householder QR
    rng = np.random.default_rng(7)
    T, B, H = 40, 2, 24
    x = 0.5 * rng.standard_normal((T, B, H))
    x[:, 0, :3] = 4.0                          # tanh'(4) ~ 1e-3 on three units
    x[::3, 1, 5] = 7.0
    x = x.astype(dtype)
    W_xh, W_hh = np.eye(H, dtype=dtype), (1.2 * np.linalg.qr(
        rng.standard_normal((H, H)))[0]).astype(dtype)
    b_h = np.zeros(H, dtype)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
    local = local_lyapunov_exponents(x, W_xh, W_hh, b_h, window=7, k=H, discard=3)
    np.testing.assert_allclose(local, _qr_method(h, W_hh, H, 3, 7) / 7, rtol=1e-10)
    e = lyapunov_exponents(x, W_xh, W_hh, b_h, discard=3)
    ref = _qr_method(h, W_hh, H, 3, T - 3)[0].mean(axis=0) / (T - 3)
    np.testing.assert_allclose(e, np.sort(ref)[::-1], rtol=1e-10)


def test_saturated_trajectory_gets_its_own_verdict():
    # an exploded W_hh: every unit at |h| = 1, tanh' = 0, no gradient flows back
    m = RNN(2, 5, 1, seed=0, dtype="float32", init="identity")
    m.params["W_hh"] = (4e9 * np.eye(5)).astype(np.float32)
    x = np.ones((20, 3, 2), np.float32)
    d = diagnose(m, x)
    assert d.verdict == "saturated" and d.lambda_max == -np.inf
    assert d.saturation > 0.9
    assert "saturated" in d.explain() and "|h| = 1" in d.explain() and "4e+09" in d.explain()
    assert verdict(-np.inf) == verdict(np.nan) == "saturated"


def test_diagnose_lags_batch_first_and_tolerance():
    m = RNN(2, 16, 1, seed=0, dtype="float32")            # orthogonal W_hh, in float32
    x = np.random.default_rng(1).standard_normal((12, 3, 2)).astype(np.float32)
    d = diagnose(m, x, lags=4)
    assert d.jacobian_log_norms.shape == (5, 3) and d.T == 12
    assert d.above_one == 0 and d.to_dict()["singular_values_above_1"] == 0
    d2 = diagnose(m, np.swapaxes(x, 0, 1), lags=4, batch_first=True)
    np.testing.assert_array_equal(d2.jacobian_log_norms, d.jacobian_log_norms)
    np.testing.assert_array_equal(d2.exponents, d.exponents)


def test_one_of_everything():
    # T = B = H = k = 1 through the compiled loop: ln |w (1 - h^2)|
    x, W_xh, W_hh, b_h = np.array([[[0.2]]]), np.array([[0.5]]), np.array([[-2.0]]), np.zeros(1)
    h = np.tanh(0.1)
    np.testing.assert_allclose(local_lyapunov_exponents(x, W_xh, W_hh, b_h, window=1),
                               [[[np.log(2.0 * (1 - h ** 2))]]], rtol=1e-12)


def test_cli_diagnose_lags_samples_and_length(capsys):
    import json
    from rnnx.cli.main import main
    assert main(["diagnose", "--hidden", "8", "--length", "40", "--batch-size", "6",
                 "--samples", "2", "--lags", "5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["T"] == 40 and d["batch_size"] == 2            # the requested length, cut
    assert len(d["jacobian_log_norms_mean"]) == 6 and d["singular_values_above_1"] == 0
    assert main(["diagnose", "--hidden", "8", "--length", "40", "--quiet"]) == 0
    assert "0 above 1 (counting from 1 + 0.0001)" in capsys.readouterr().out
    assert main(["diagnose", "--samples", "20", "--batch-size", "4"]) == 2
    assert "--samples 20 is more than --batch-size 4" in capsys.readouterr().err
    assert main(["diagnose", "--lags", "200", "--length", "10"]) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,H,B", [(33, 33, 1), (33, 33, 3), (17, 33, 2), (40, 40, 1)])
def test_several_steps_between_qr_passes(dtype, k, H, B):
    # k > 16 on a long trajectory: the frame is carried through several Jacobians between
    # two Cholesky QR passes where it stays well conditioned; the window sums, and so the
    # exponents, are still the per-step QR method's (inputs small enough that no unit
    # saturates: at tanh' = 0 the smallest direction's R_jj is rounding noise in either)
    rng = np.random.default_rng(8)
    T, D = 230, 3
    x = rng.standard_normal((T, B, D)).astype(dtype)
    W_xh = (0.6 * rng.standard_normal((H, D))).astype(dtype)
    W_hh = (1.5 * np.linalg.qr(rng.standard_normal((H, H)))[0]).astype(dtype)
    b_h = (0.1 * rng.standard_normal(H)).astype(dtype)
    local = _check_against_transcription(x, W_xh, W_hh, b_h, k, discard=7, window=37)
    assert local.shape == (6, B, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_frame_one_step(dtype):
    # T = 1, k = H = 19 (Cholesky QR): the exponents are ln |R_jj| of one QR
    rng = np.random.default_rng(9)
    H = 19
    x = rng.standard_normal((1, 2, 1)).astype(dtype)
    W_xh = rng.standard_normal((H, 1)).astype(dtype)
    W_hh = rng.standard_normal((H, H)).astype(dtype)
    b_h = np.zeros(H, dtype)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
    e = lyapunov_exponents(x, W_xh, W_hh, b_h)
    ref = _qr_method(h, W_hh, H, 0, 1)[0].mean(axis=0)
    np.testing.assert_allclose(e, np.sort(ref)[::-1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_large_frame_far_from_unit_norm(dtype, scale):
    # W_hh = scale x orthogonal, h = 0: every Jacobian is W_hh, whose exponents are about
    # ln(scale); a product of several steps would under- or overflow in Z^T Z, so the
    # passes stay step by step there
    rng = np.random.default_rng(10)
    H = 21
    W_hh = (scale * np.linalg.qr(rng.standard_normal((H, H)))[0]).astype(dtype)
    x = np.zeros((30, 2, 1), dtype)
    e = lyapunov_exponents(x, np.zeros((H, 1), dtype), W_hh, np.zeros(H, dtype))
    ref = _qr_method(np.zeros((30, 2, H)), W_hh, H, 0, 30)[0].mean(axis=0) / 30
    np.testing.assert_allclose(e, np.sort(ref)[::-1], rtol=1e-12)
    np.testing.assert_allclose(e, np.log(scale), rtol=1e-6)
