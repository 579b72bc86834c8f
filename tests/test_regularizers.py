"""Pascanu et al. 2013's Omega against loops, finite differences and torch autograd."""
import numpy as np
import pytest

from rnnx.model.regularizers import pascanu_omega


def ref_omega(h, delta, W):
    """Loop over t and b: mean over the batch of sum_t (||v W|| / ||delta|| - 1)^2."""
    T, B, _ = h.shape
    total = 0.0
    for t in range(T):
        for b in range(B):
            d = np.linalg.norm(delta[t, b])
            if d > 0:
                u = (delta[t, b] * (1 - h[t, b] ** 2)) @ W
                total += (np.linalg.norm(u) / d - 1) ** 2
    return total / B


def case(T, B, H, seed=0):
    rng = np.random.default_rng(seed)
    h = np.tanh(rng.standard_normal((T, B, H)))
    delta = rng.standard_normal((T, B, H))
    W = 1.3 * rng.standard_normal((H, H)) / np.sqrt(H)
    return h, delta, W


@pytest.mark.parametrize("shape", [(5, 3, 4), (1, 1, 1), (7, 2, 11), (3, 1, 6)])
def test_value_and_gradient_match_loop_and_finite_differences(shape):
    h, delta, W = case(*shape)
    om, dW = pascanu_omega(h, delta, W)
    assert om == pytest.approx(ref_omega(h, delta, W), rel=1e-12)
    fd = np.zeros_like(W)
    eps = 1e-6
    for i in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[i] += eps
        Wm[i] -= eps
        fd[i] = (ref_omega(h, delta, Wp) - ref_omega(h, delta, Wm)) / (2 * eps)
    np.testing.assert_allclose(dW, fd, rtol=1e-6, atol=1e-9)


def test_against_torch_autograd_and_float32():
    torch = pytest.importorskip("torch")
    h, delta, W = case(6, 4, 5, seed=1)
    Wt = torch.tensor(W, requires_grad=True)
    ht, dt = torch.tensor(h), torch.tensor(delta)
    om = ((((dt * (1 - ht ** 2)) @ Wt).norm(dim=-1) / dt.norm(dim=-1) - 1) ** 2).sum(0).mean()
    om.backward()
    value, dW = pascanu_omega(h, delta, W)
    assert value == pytest.approx(om.item(), rel=1e-12)
    np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-10)
    value32, dW32 = pascanu_omega(h.astype(np.float32), delta.astype(np.float32),
                                  W.astype(np.float32))
    assert dW32.dtype == np.float32
    np.testing.assert_allclose(dW32, dW, rtol=1e-4, atol=1e-5)


def test_norm_preserving_steps_cost_nothing():
    """An orthogonal W_hh with h = 0 maps every delta to one of the same norm: Omega = 0."""
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    om, dW = pascanu_omega(np.zeros((4, 3, 6)), rng.standard_normal((4, 3, 6)), Q)
    assert om == pytest.approx(0.0, abs=1e-24)
    np.testing.assert_allclose(dW, 0.0, atol=1e-12)


def test_zero_signal_terms_are_left_out():
    h, delta, W = case(4, 2, 3)
    delta[1, 0] = 0.0                       # no signal: no ratio to preserve
    om, dW = pascanu_omega(h, delta, W)
    assert np.isfinite(om) and np.all(np.isfinite(dW))
    assert om == pytest.approx(ref_omega(h, delta, W), rel=1e-12)
    # Saturated units (h = +-1) kill u = v W: term value 1, no gradient, no NaN.
    h[2, 1] = 1.0
    om2, dW2 = pascanu_omega(h, delta, W)
    assert om2 == pytest.approx(ref_omega(h, delta, W), rel=1e-12)
    assert np.all(np.isfinite(dW2))


def test_bad_shapes():
    h, delta, W = case(3, 2, 4)
    with pytest.raises(ValueError, match="delta"):
        pascanu_omega(h, delta[:2], W)
    with pytest.raises(ValueError, match="W_hh"):
        pascanu_omega(h, delta, W[:3, :3])
