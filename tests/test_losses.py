"""Losses against numpy formulas, central finite differences and torch."""
import numpy as np
import pytest

from rnnx.model.losses import mse, softmax_cross_entropy


def fd(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[i] += eps
        down[i] -= eps
        g[i] = (f(up) - f(down)) / (2 * eps)
    return g


@pytest.mark.parametrize("shape", [(4, 3), (1, 1), (5, 2, 3)])
def test_mse_value_and_gradient(shape):
    rng = np.random.default_rng(0)
    y, t = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, dy = mse(y, t)
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.mean((y - t) ** 2), rel=1e-14)
    np.testing.assert_allclose(dy, fd(lambda a: mse(a, t)[0], y), rtol=1e-7, atol=1e-10)


def ref_ce(logits, labels):
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return -np.mean(np.log(np.take_along_axis(p, labels[..., None], -1)))


@pytest.mark.parametrize("shape", [(4, 3), (1, 1), (1, 5), (5, 2, 3)])
def test_cross_entropy_value_and_gradient(shape):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal(shape)
    labels = rng.integers(0, shape[-1], shape[:-1])
    loss, d = softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(ref_ce(logits, labels), rel=1e-12)
    np.testing.assert_allclose(d, fd(lambda a: softmax_cross_entropy(a, labels)[0], logits),
                               rtol=1e-6, atol=1e-10)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    loss, d = softmax_cross_entropy(logits, np.array([1, 2]))
    # sample 0: log-sum-exp = 1e4, so -log p[1] = 1e4; sample 1: ties, -log p = ln 2.
    assert loss == pytest.approx((1e4 + np.log(2)) / 2, rel=1e-14)
    np.testing.assert_allclose(d, [[0.5, -0.5, 0.0], [0.0, 0.25, -0.25]], atol=1e-15)
    assert softmax_cross_entropy(np.float32([[1e30, -1e30]]), np.array([0]))[0] == 0.0


def test_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((3, 4, 5))
    labels = rng.integers(0, 5, (3, 4))
    lt = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(lt.reshape(-1, 5), torch.tensor(labels).reshape(-1))
    ref.backward()
    loss, d = softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(d, lt.grad.numpy(), rtol=1e-12, atol=1e-16)
    y, t = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    yt = torch.tensor(y, requires_grad=True)
    ref = F.mse_loss(yt, torch.tensor(t))
    ref.backward()
    loss, dy = mse(y, t)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(dy, yt.grad.numpy(), rtol=1e-12)


def test_float32_gradients_stay_float32():
    y = np.ones((2, 3), np.float32)
    assert mse(y, np.zeros((2, 3)))[1].dtype == np.float32
    assert softmax_cross_entropy(y, np.array([0, 2]))[1].dtype == np.float32
    assert mse(np.ones((2, 1), int), np.zeros((2, 1)))[1].dtype == np.float64


def test_bad_arguments():
    with pytest.raises(ValueError, match="target must have the prediction's shape"):
        mse(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(TypeError, match="y must be a real numeric array"):
        mse(np.array(["a"]), np.array(["a"]))
    with pytest.raises(TypeError, match="labels must be integer"):
        softmax_cross_entropy(np.ones((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        softmax_cross_entropy(np.ones((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        softmax_cross_entropy(np.ones((2, 3)), np.array([0, -1]))
    with pytest.raises(ValueError, match="logits"):
        softmax_cross_entropy(np.ones((2, 0)), np.array([0, 1]))
