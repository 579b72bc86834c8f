"""GradientOverflowError: non-finite delta in float32, the max_norm threshold, the message.

The exploding case: x = 0, b_h = 0, h0 = 0 make h = tanh(0) = 0 exactly at every step, so
tanh' = 1 and going back one step multiplies delta by W_hh = 3 Q (Q orthogonal):
||delta[T-1-k]|| = 3^k ||g|| exactly, where g = grad_h[T-1] is the only nonzero grad_h.
"""
import math

import numpy as np
import pytest
import rnnx
from _reference import backward, orthogonal

T, B, H, D = 100, 2, 4, 3
FLT_MAX = float(np.finfo(np.float32).max)
# Every entry of a vector of n = B*H = 8 entries is at most its norm, and the largest is at
# least norm / sqrt(8) = norm / 2.83. Choosing ||g|| with 3^K ||g|| = 2.9 FLT_MAX:
#   at lag K - 1 the norm is 0.97 FLT_MAX, so no entry (nor any partial sum of the
#   product, bounded by 3 ||dz|| by Cauchy-Schwarz) overflows;
#   at lag K the largest entry is >= 2.9 / 2.83 FLT_MAX > FLT_MAX: it is inf.
# So delta first becomes non-finite at lag K, time step T - 1 - K, whatever Q is.
K = math.ceil(math.log(FLT_MAX) / math.log(3))          # 81: 3^81 = 4.4e38 > FLT_MAX > 3^80
G_NORM = 2.9 * FLT_MAX / 3.0 ** K
T_FAIL = T - 1 - K                                      # 18


# a batch as above, and one where D and H are multiples of 32 (the backward loop then
# makes every gradient itself): the norms do not depend on the shape
SHAPES = [(B, H, D), (4, 32, 32)]


def exploding_problem(dtype, seed=0, shape=(B, H, D)):
    B, H, D = shape
    rng = np.random.default_rng(seed)
    x = np.zeros((T, B, D), dtype)
    W_xh = rng.standard_normal((H, D)).astype(dtype)
    W_hh = (3 * orthogonal(H, rng)).astype(dtype)
    b_h = np.zeros(H, dtype)
    h0 = np.zeros((B, H), dtype)
    G = np.zeros((T, B, H))
    g = rng.standard_normal((B, H))
    G[-1] = G_NORM * g / np.linalg.norm(g)
    return x, W_xh, W_hh, b_h, h0, G.astype(dtype)


def test_the_chosen_step_is_where_float32_overflows():
    # the reasoning above, checked against the numpy reference computed in float32
    assert (K, T_FAIL) == (81, 18)
    for seed in range(5):
        x, W_xh, W_hh, b_h, h0, G = exploding_problem(np.float32, seed)
        ref = backward(x, np.zeros((T, B, H), np.float32), G, W_xh, W_hh, b_h, h0)
        assert ref["t_fail"] == T_FAIL


@pytest.mark.parametrize("seed", range(3))
def test_float32_overflow_raises_at_the_right_step(seed):
    x, W_xh, W_hh, b_h, h0, G = exploding_problem(np.float32, seed)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    assert not h.any()
    with pytest.raises(rnnx.GradientOverflowError) as info:
        rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.time_step == T_FAIL
    assert not math.isfinite(err.norm)
    # the norms reached before the failure: 3^k ||g|| at lag k; NaN where BPTT never got
    n = err.delta_norms
    assert n.shape == (T,) and n.dtype == np.float64
    assert np.all(np.isnan(n[:T_FAIL]))
    assert not np.isfinite(n[T_FAIL])
    lags = np.arange(T - 1 - (T_FAIL + 1), -1, -1)
    np.testing.assert_allclose(n[T_FAIL + 1:], G_NORM * 3.0 ** lags, rtol=1e-4)
    msg = str(err)
    assert f"t={T_FAIL}" in msg
    assert "clip" in msg                                # it suggests a fix


@pytest.mark.parametrize("shape", SHAPES)
def test_float64_does_not_overflow_and_grows_by_exactly_3(shape):
    x, W_xh, W_hh, b_h, h0, G = exploding_problem(np.float64, shape=shape)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0)
    n = g.delta_norms
    assert np.all(np.isfinite(n))
    np.testing.assert_allclose(n[:-1] / n[1:], 3.0, rtol=1e-12)
    assert n[-1] == pytest.approx(G_NORM, rel=1e-14)
    assert np.all(np.isfinite(g.dW_xh)) and np.all(np.isfinite(g.dh0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("max_norm", [1e3, 1e20, 7.5e30])
@pytest.mark.parametrize("shape", SHAPES)
def test_max_norm_stops_at_the_first_step_over_it(dtype, max_norm, shape):
    x, W_xh, W_hh, b_h, h0, G = exploding_problem(dtype, shape=shape)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    # the first lag k with 3^k ||g|| > max_norm; the margin keeps rounding out of it
    k = math.floor(math.log(max_norm / G_NORM) / math.log(3)) + 1
    assert G_NORM * 3.0 ** (k - 1) < 0.99 * max_norm < 1.01 * max_norm < G_NORM * 3.0 ** k
    t = T - 1 - k
    with pytest.raises(rnnx.GradientOverflowError) as info:
        rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, max_norm=max_norm)
    err = info.value
    assert err.time_step == t
    assert err.norm == pytest.approx(G_NORM * 3.0 ** k, rel=1e-4)
    assert err.norm > max_norm
    assert err.max_norm == max_norm
    n = err.delta_norms
    assert np.all(np.isnan(n[:t]))
    assert n[t] == err.norm
    np.testing.assert_allclose(n[t:], G_NORM * 3.0 ** np.arange(k, -1, -1), rtol=1e-4)
    assert f"t={t}" in str(err) and "max_norm" in str(err)


def test_max_norm_not_reached_changes_nothing(rng):
    x = rng.standard_normal((8, 2, 3))
    W_xh, W_hh, b_h = rng.standard_normal((4, 3)), 0.5 * orthogonal(4, rng), np.zeros(4)
    G = rng.standard_normal((8, 2, 4))
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h)
    gm = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, max_norm=g.delta_norms.max() * 1.001)
    for name in ("dW_xh", "dW_hh", "db_h", "dx", "dh0", "delta_norms"):
        np.testing.assert_array_equal(getattr(gm, name), getattr(g, name), err_msg=name)


def test_max_norm_on_the_last_step():
    # grad_h[T-1] alone is over the threshold: the pass stops before any recurrence
    x, W_xh, W_hh, b_h, h0, G = exploding_problem(np.float64)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    with pytest.raises(rnnx.GradientOverflowError) as info:
        rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, max_norm=G_NORM / 2)
    assert info.value.time_step == T - 1
    assert np.all(np.isnan(info.value.delta_norms[:-1]))


def test_clip_delta_tames_the_float32_explosion():
    x, W_xh, W_hh, b_h, h0, G = exploding_problem(np.float32)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, clip_delta=1.0)
    assert np.all(np.isfinite(g.delta_norms))
    assert g.delta_norms.max() <= math.sqrt(B * H) * (1 + 1e-6)
    assert np.all(np.isfinite(g.dW_hh)) and np.all(np.isfinite(g.dx))


def test_constructor_and_attributes():
    norms = np.array([np.nan, 5.0, 1.0])
    err = rnnx.GradientOverflowError(1, 5.0, max_norm=2.0, delta_norms=norms, step=7)
    assert isinstance(err, FloatingPointError)
    assert (err.time_step, err.norm, err.max_norm, err.step) == (1, 5.0, 2.0, 7)
    assert err.delta_norms is norms
    assert "t=1" in str(err) and "training step 7" in str(err) and "max_norm" in str(err)
    bare = rnnx.GradientOverflowError(3, float("inf"))
    assert bare.step is None and bare.delta_norms is None and bare.max_norm is None
    assert "non-finite" in str(bare) and "t=3" in str(bare)
    with pytest.raises(FloatingPointError):
        raise bare
