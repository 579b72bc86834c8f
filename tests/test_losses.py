"""Losses against numpy formulas, central finite differences and torch."""
import numpy as np
import pytest
from _reference import padded_batch

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
        softmax_cross_entropy(np.ones((2, 3)), np.array([0, -2]))
    with pytest.raises(ValueError, match="no sample has a label"):
        softmax_cross_entropy(np.ones((2, 3)), np.array([-1, -1]))
    with pytest.raises(ValueError, match="no entry has a target"):
        mse(np.ones((2, 1)), np.full((2, 1), np.nan))
    with pytest.raises(ValueError, match="logits"):
        softmax_cross_entropy(np.ones((2, 0)), np.array([0, 1]))


# --- entries without a target: what a batch of sequences of different lengths needs ---------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_leaves_nan_targets_out(dtype):
    """The mean runs over the entries that have a target; the others get gradient 0."""
    rng = np.random.default_rng(3)
    y = rng.standard_normal((6, 4, 2)).astype(dtype)
    t = rng.standard_normal((6, 4, 2))
    t[rng.random((6, 4, 2)) < 0.6] = np.nan
    t[0, 0, 0] = 1.0                                         # at least one target
    has = ~np.isnan(t)
    loss, dy = mse(y, t)
    assert dy.dtype == dtype
    ref = np.mean((y[has].astype(np.float64) - t[has]) ** 2)
    assert loss == pytest.approx(ref, rel=1e-6 if dtype == np.float32 else 1e-14)
    assert not dy[~has].any()
    y64 = y.astype(np.float64)
    np.testing.assert_allclose(dy, fd(lambda a: mse(a, t)[0], y64),
                               rtol=1e-5 if dtype == np.float32 else 1e-7, atol=1e-9)


@pytest.mark.parametrize("shape", [(5, 3, 4), (4, 3), (1, 2)])
def test_cross_entropy_leaves_ignored_labels_out(shape):
    rng = np.random.default_rng(4)
    logits = rng.standard_normal(shape)
    labels = rng.integers(0, shape[-1], shape[:-1])
    labels.reshape(-1)[1::2] = -1                            # every other sample unlabelled
    kept = labels != -1
    loss, d = softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(ref_ce(logits[kept], labels[kept]), rel=1e-12)
    assert not d[~kept].any()
    np.testing.assert_allclose(d, fd(lambda a: softmax_cross_entropy(a, labels)[0], logits),
                               rtol=1e-6, atol=1e-10)


def test_last_step_targets_of_padded_sequences_give_each_sequences_own_gradient():
    """A right-padded batch with a target only at each sequence's last step (readout
    "all") has exactly the loss and gradients of the sequences run one by one (readout
    "last"), averaged: the padded steps contribute nothing."""
    import rnnx
    rng = np.random.default_rng(5)
    lengths = np.array([4, 7, 5])
    L, B = lengths.max(), len(lengths)
    x, values, target = padded_batch(lengths, 2, rng)
    padded = rnnx.RNN(2, 5, 1, readout="all", dtype="float64", seed=1)
    padded.params["b_h"][:] = rng.standard_normal(5)    # padding would move h if it ran
    one = padded.copy()
    one.readout = "last"
    g = padded.loss_and_gradients(x, target)
    runs = [one.loss_and_gradients(x[:n, b:b + 1], values[b:b + 1, None])
            for b, n in enumerate(lengths)]
    assert g.loss == pytest.approx(np.mean([r.loss for r in runs]), rel=1e-12)
    for k in g.grads:
        np.testing.assert_allclose(g.grads[k], np.mean([r.grads[k] for r in runs], axis=0),
                                   rtol=1e-10, atol=1e-14, err_msg=k)
    labels = np.full((L, B), -1)
    labels[lengths - 1, np.arange(B)] = [0, 1, 0]
    clf = rnnx.RNN(2, 5, 2, readout="all", dtype="float64", seed=2)
    one = clf.copy()
    one.readout = "last"
    g = clf.loss_and_gradients(x, labels, loss="cross_entropy")
    runs = [one.loss_and_gradients(x[:n, b:b + 1], labels[n - 1, b:b + 1],
                                   loss="cross_entropy") for b, n in enumerate(lengths)]
    assert g.loss == pytest.approx(np.mean([r.loss for r in runs]), rel=1e-12)
    for k in g.grads:
        np.testing.assert_allclose(g.grads[k], np.mean([r.grads[k] for r in runs], axis=0),
                                   rtol=1e-10, atol=1e-14, err_msg=k)
