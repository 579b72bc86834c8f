"""Pascanu et al. 2013's Omega, the published code's form and eq. 9's, against loop
transcriptions of their definitions, finite differences and torch autograd."""
import numpy as np
import pytest
from _reference import padded_batch

import rnnx
from rnnx.model.regularizers import OMEGA_FORMS, pascanu_omega, pascanu_omega_eq9


def ref_omega_code(h, delta, W, bound=1e-20):
    """RNN.py's graph, step by step: per step t the batch mean of
    (switch(||delta||^2 >= bound, ||v W||^2 / ||delta||^2, 1) - 1)^2, summed over t and
    divided by the sum over t of the batch fraction of live pairs."""
    T, B, _ = h.shape
    reg_sum = live_sum = 0.0
    for t in range(T):
        reg_t = live_t = 0.0
        for b in range(B):
            tmp_y = float(np.sum(delta[t, b] ** 2))
            tmp_x = float(np.sum(((delta[t, b] * (1 - h[t, b] ** 2)) @ W) ** 2))
            ratio = tmp_x / tmp_y if tmp_y >= bound else 1.0
            reg_t += (ratio - 1.0) ** 2
            live_t += tmp_y >= bound
        reg_sum += reg_t / B
        live_sum += live_t / B
    return reg_sum / live_sum


def ref_omega_eq9(h, delta, W):
    """Eq. 9 as printed: sum_t (||delta dh[t]/dh[t-1]|| / ||delta|| - 1)^2, batch mean."""
    T, B, _ = h.shape
    total = 0.0
    for t in range(T):
        for b in range(B):
            d = np.linalg.norm(delta[t, b])
            if d > 0:
                u = (delta[t, b] * (1 - h[t, b] ** 2)) @ W
                total += (np.linalg.norm(u) / d - 1) ** 2
    return total / B


FORMS = [(pascanu_omega, ref_omega_code), (pascanu_omega_eq9, ref_omega_eq9)]


def case(T, B, H, seed=0):
    rng = np.random.default_rng(seed)
    h = np.tanh(rng.standard_normal((T, B, H)))
    delta = rng.standard_normal((T, B, H))
    W = 1.3 * rng.standard_normal((H, H)) / np.sqrt(H)
    return h, delta, W


def finite_differences(f, W, eps=1e-6):
    fd = np.zeros_like(W)
    for i in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[i] += eps
        Wm[i] -= eps
        fd[i] = (f(Wp) - f(Wm)) / (2 * eps)
    return fd


@pytest.mark.parametrize("form, ref", FORMS)
@pytest.mark.parametrize("shape", [(5, 3, 4), (1, 1, 1), (7, 2, 11), (3, 1, 6)])
def test_value_and_gradient_match_transcription_and_finite_differences(form, ref, shape):
    h, delta, W = case(*shape)
    om, dW = form(h, delta, W)
    assert om == pytest.approx(ref(h, delta, W), rel=1e-12)
    fd = finite_differences(lambda V: ref(h, delta, V), W)
    np.testing.assert_allclose(dW, fd, rtol=1e-6, atol=1e-9)


def test_code_form_is_a_mean_over_time_and_eq9_a_sum():
    """Repeating the sequence leaves the code's value unchanged and doubles eq. 9's: the
    two differ by a factor that grows with T, so alpha does not carry over."""
    h, delta, W = case(12, 4, 5, seed=3)
    h2, delta2 = np.concatenate([h, h]), np.concatenate([delta, delta])
    assert pascanu_omega(h2, delta2, W)[0] == pytest.approx(pascanu_omega(h, delta, W)[0],
                                                            rel=1e-12)
    assert pascanu_omega_eq9(h2, delta2, W)[0] == pytest.approx(
        2 * pascanu_omega_eq9(h, delta, W)[0], rel=1e-12)


def test_against_torch_autograd():
    torch = pytest.importorskip("torch")
    h, delta, W = case(6, 4, 5, seed=1)
    ht, dt = torch.tensor(h), torch.tensor(delta)
    for form, ratio_minus_1, reduce in [
            (pascanu_omega, lambda u: (u ** 2).sum(-1) / (dt ** 2).sum(-1) - 1,
             lambda r: r.mean()),
            (pascanu_omega_eq9, lambda u: u.norm(dim=-1) / dt.norm(dim=-1) - 1,
             lambda r: r.sum(0).mean())]:
        Wt = torch.tensor(W, requires_grad=True)
        om = reduce(ratio_minus_1((dt * (1 - ht ** 2)) @ Wt) ** 2)
        om.backward()
        value, dW = form(h, delta, W)
        assert value == pytest.approx(om.item(), rel=1e-12)
        np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("form, ref", FORMS)
def test_float32_inputs_give_float32_gradient(form, ref):
    h, delta, W = case(6, 4, 5, seed=1)
    value, dW = form(h, delta, W)
    value32, dW32 = form(h.astype(np.float32), delta.astype(np.float32), W.astype(np.float32))
    assert dW32.dtype == np.float32 and dW.dtype == np.float64
    assert value32 == pytest.approx(value, rel=1e-5)
    np.testing.assert_allclose(dW32, dW, rtol=1e-4, atol=1e-5 * np.abs(dW).max())


@pytest.mark.parametrize("form, ref", FORMS)
def test_norm_preserving_steps_cost_nothing(form, ref):
    """An orthogonal W_hh with h = 0 maps every delta to one of the same norm: Omega = 0."""
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    om, dW = form(np.zeros((4, 3, 6)), rng.standard_normal((4, 3, 6)), Q)
    assert om == pytest.approx(0.0, abs=1e-24)
    np.testing.assert_allclose(dW, 0.0, atol=1e-12)


@pytest.mark.parametrize("form, ref", FORMS)
def test_dead_pairs_are_left_out(form, ref):
    h, delta, W = case(4, 2, 3)
    delta[1, 0] = 0.0                       # no signal: no ratio to preserve
    delta[3, 1] = 1e-12                     # ||delta||^2 = 3e-24 < the code's bound
    om, dW = form(h, delta, W)
    assert np.isfinite(om) and np.all(np.isfinite(dW))
    assert om == pytest.approx(ref(h, delta, W), rel=1e-10)
    fd = finite_differences(lambda V: ref(h, delta, V), W)
    np.testing.assert_allclose(dW, fd, rtol=1e-6, atol=1e-9)
    # Saturated units (h = +-1) kill u = v W: the term's value is 1, no NaN.
    h[2, 1] = 1.0
    om2, dW2 = form(h, delta, W)
    assert om2 == pytest.approx(ref(h, delta, W), rel=1e-10)
    assert np.all(np.isfinite(dW2))


def test_code_bound_and_no_live_pair():
    h, delta, W = case(3, 2, 4)
    om, dW = pascanu_omega(h, delta, W, bound=1e30)       # every pair dead
    assert om == 0.0 and not dW.any()
    d2 = np.sum(delta ** 2, axis=-1)
    bound = float(np.median(d2))
    assert pascanu_omega(h, delta, W, bound=bound)[0] == pytest.approx(
        ref_omega_code(h, delta, W, bound), rel=1e-12)
    with pytest.raises(ValueError, match="bound"):
        pascanu_omega(h, delta, W, bound=0)


@pytest.mark.parametrize("form", [pascanu_omega, pascanu_omega_eq9])
def test_bad_shapes(form):
    h, delta, W = case(3, 2, 4)
    with pytest.raises(ValueError, match="delta"):
        form(h, delta[:2], W)
    with pytest.raises(ValueError, match="W_hh"):
        form(h, delta, W[:3, :3])


@pytest.mark.parametrize("omega_form", [None, "code", "eq9"])
def test_rnn_adds_the_form_it_names_code_by_default(omega_form):
    rng = np.random.default_rng(5)
    model = rnnx.RNN(3, 6, 2, dtype="float64", seed=0)
    if omega_form is not None:
        model.omega_form = omega_form
    x, target = rng.standard_normal((7, 4, 3)), rng.standard_normal((4, 2))
    plain = model.loss_and_gradients(x, target)
    reg = model.loss_and_gradients(x, target, omega=0.5)
    y, h = model.forward(x)
    grad_h = np.zeros_like(h)
    grad_h[-1] = (2 * (y - target) / y.size) @ model.params["W_hy"]
    p = model.params
    delta = rnnx.rnn_backward(x, h, grad_h, p["W_xh"], p["W_hh"], p["b_h"],
                              return_delta=True).delta
    form = OMEGA_FORMS[omega_form or "code"]
    om, dW = form(h, delta, p["W_hh"])
    assert reg.omega == pytest.approx(om, rel=1e-12)
    assert reg.loss == pytest.approx(plain.loss + 0.5 * om, rel=1e-12)
    np.testing.assert_allclose(reg.grads["W_hh"] - plain.grads["W_hh"], 0.5 * dW,
                               rtol=1e-8, atol=1e-14)
    model.omega_form = "paper"
    with pytest.raises(ValueError, match="omega_form"):
        model.loss_and_gradients(x, target, omega=0.5)


@pytest.mark.parametrize("omega_form", ["code", "eq9"])
def test_padded_steps_of_shorter_sequences_are_left_out(omega_form):
    """On a right-padded batch (targets at each sequence's last step only) dL/dh is 0 on
    the padded steps, so Omega sees exactly the pairs of the sequences run one by one:
    the code's form their mean, eq. 9's form their sum over time averaged over the batch."""
    rng = np.random.default_rng(6)
    lengths = np.array([5, 9, 7])
    L, B = lengths.max(), len(lengths)
    x, values, target = padded_batch(lengths, 2, rng)
    model = rnnx.RNN(2, 6, 1, readout="all", dtype="float64", seed=3)
    model.params["b_h"][:] = 0.3 * rng.standard_normal(6)
    model.omega_form = omega_form
    g = model.loss_and_gradients(x, target, omega=1.0)
    one = model.copy()
    one.readout = "last"
    hs, deltas = [], []
    for b, n in enumerate(lengths):
        xb = x[:n, b:b + 1]
        y, h = one.forward(xb)
        grad_h = np.zeros_like(h)
        grad_h[-1] = 2 * (y - values[b]) @ one.params["W_hy"]
        p = one.params
        hs.append(h)
        deltas.append(rnnx.rnn_backward(xb, h, grad_h, p["W_xh"], p["W_hh"], p["b_h"],
                                        return_delta=True).delta)
    om, _ = OMEGA_FORMS[omega_form](np.concatenate(hs), np.concatenate(deltas),
                                    model.params["W_hh"])
    assert g.omega == pytest.approx(om / (B if omega_form == "eq9" else 1), rel=1e-10)
