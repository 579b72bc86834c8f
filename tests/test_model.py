"""rnnx.RNN against a plain-numpy loop, central finite differences and torch autograd."""
import numpy as np
import pytest

import rnnx
from rnnx.model.rnn import RNN, Gradients

KEYS = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")


# ---------------------------------------------------------------- independent references
def ref_forward(p, x, h0, readout):
    """Plain numpy loop over time in float64."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    T, B, _ = x.shape
    h_prev = np.zeros((B, p["W_hh"].shape[0])) if h0 is None else np.asarray(h0, np.float64)
    hs = []
    for t in range(T):
        h_prev = np.tanh(x[t] @ p["W_xh"].T + h_prev @ p["W_hh"].T + p["b_h"])
        hs.append(h_prev)
    h = np.stack(hs)
    top = h[-1] if readout == "last" else h
    return top @ p["W_hy"].T + p["b_y"], h


def ref_loss(p, x, target, loss, readout, h0=None):
    y, _ = ref_forward(p, x, h0, readout)
    if loss == "mse":
        return np.mean((y - target) ** 2)
    z = y - y.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.mean(np.take_along_axis(logp, target[..., None], axis=-1))


def make_case(readout, loss, *, T=4, B=3, D=2, H=5, O=3, seed=0, dtype="float64",
              with_h0=True, **kw):
    rng = np.random.default_rng(seed)
    model = RNN(D, H, O, readout=readout, dtype=dtype, seed=seed, **kw)
    # Non-zero biases so their gradients are exercised away from the initial zeros.
    model.params["b_h"] = (0.3 * rng.standard_normal(H)).astype(dtype)
    model.params["b_y"] = (0.3 * rng.standard_normal(O)).astype(dtype)
    x = rng.standard_normal((T, B, D))
    h0 = 0.5 * rng.standard_normal((B, H)) if with_h0 else None
    lead = (B,) if readout == "last" else (T, B)
    target = rng.integers(0, O, lead) if loss == "cross_entropy" else rng.standard_normal(
        lead + (O,))
    return model, x, target, h0


def fd_grads(model, x, target, loss, h0, eps=1e-6):
    p = {k: v.astype(np.float64) for k, v in model.params.items()}
    out = {}
    for k in KEYS:
        g = np.zeros_like(p[k])
        for i in np.ndindex(p[k].shape):
            old = p[k][i]
            p[k][i] = old + eps
            up = ref_loss(p, x, target, loss, model.readout, h0)
            p[k][i] = old - eps
            down = ref_loss(p, x, target, loss, model.readout, h0)
            p[k][i] = old
            g[i] = (up - down) / (2 * eps)
        out[k] = g
    return out


# ---------------------------------------------------------------------------- forward
@pytest.mark.parametrize("readout", ["last", "all"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(4, 3, 2, 5, 3), (1, 1, 1, 1, 1), (7, 3, 5, 11, 2)])
def test_forward_matches_numpy_loop(readout, dtype, shape):
    T, B, D, H, O = shape
    model, x, _, h0 = make_case(readout, "mse", T=T, B=B, D=D, H=H, O=O, dtype=dtype)
    y, h = model.forward(x, h0)
    x_cast = x.astype(dtype).astype(np.float64)      # the model computes in its dtype
    y_ref, h_ref = ref_forward(model.params, x_cast, h0.astype(dtype), readout)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    assert y.dtype == np.dtype(dtype) and h.dtype == np.dtype(dtype)
    assert y.shape == ((B, O) if readout == "last" else (T, B, O)) and h.shape == (T, B, H)
    np.testing.assert_allclose(h, h_ref, **tol)
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_array_equal(model.predict(x, h0), y)


# -------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("readout", ["last", "all"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("with_h0", [True, False])
def test_gradients_match_finite_differences(readout, loss, with_h0):
    model, x, target, h0 = make_case(readout, loss, with_h0=with_h0)
    g = model.loss_and_gradients(x, target, loss=loss, h0=h0)
    assert isinstance(g, Gradients)
    assert g.loss == pytest.approx(ref_loss(model.params, x, target, loss, readout, h0),
                                   rel=1e-12)
    fd = fd_grads(model, x, target, loss, h0)
    for k in KEYS:
        assert g.grads[k].shape == model.params[k].shape
        assert g.grads[k].dtype == model.params[k].dtype
        np.testing.assert_allclose(g.grads[k], fd[k], rtol=1e-6, atol=1e-8, err_msg=k)


@pytest.mark.parametrize("readout", ["last", "all"])
def test_gradients_tiny_shapes(readout):
    """T = B = D = H = O = 1 for both losses (cross-entropy needs O >= 1 only)."""
    for loss in ("mse", "cross_entropy"):
        model, x, target, h0 = make_case(readout, loss, T=1, B=1, D=1, H=1, O=1)
        g = model.loss_and_gradients(x, target, loss=loss, h0=h0)
        fd = fd_grads(model, x, target, loss, h0)
        for k in KEYS:
            np.testing.assert_allclose(g.grads[k], fd[k], rtol=1e-6, atol=1e-8)


def test_gradients_fields():
    model, x, target, h0 = make_case("all", "mse", T=6, B=2)
    g = model.loss_and_gradients(x, target, h0=h0)
    _, h = model.forward(x, h0)
    assert g.delta_norms.shape == (6,) and g.delta_norms.dtype == np.float64
    np.testing.assert_array_equal(g.h_last, h[-1])
    assert g.omega == 0.0 and isinstance(g.loss, float)
    # h_last is a copy: the caller may keep it while the model runs again.
    assert not np.shares_memory(g.h_last, h)


def torch_loss(torch, tp, x, target, loss, readout, h0):
    """The same model written with torch ops; tp: dict of leaf tensors."""
    F = torch.nn.functional
    T, B, _ = x.shape
    h = torch.zeros(B, tp["W_hh"].shape[0], dtype=tp["W_hh"].dtype) if h0 is None else h0
    hs = []
    for t in range(T):
        h = torch.tanh(x[t] @ tp["W_xh"].T + h @ tp["W_hh"].T + tp["b_h"])
        hs.append(h)
    top = hs[-1] if readout == "last" else torch.stack(hs)
    y = top @ tp["W_hy"].T + tp["b_y"]
    if loss == "mse":
        return F.mse_loss(y, target)
    return F.cross_entropy(y.reshape(-1, y.shape[-1]), target.reshape(-1))


@pytest.mark.parametrize("readout", ["last", "all"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_match_torch_autograd(readout, loss, dtype):
    torch = pytest.importorskip("torch")
    model, x, target, h0 = make_case(readout, loss, T=9, B=4, D=3, H=7, O=4, dtype=dtype)
    g = model.loss_and_gradients(x, target, loss=loss, h0=h0)
    # Reference in float64 from the same (dtype-rounded) inputs.
    tp = {k: torch.tensor(v.astype(np.float64), requires_grad=True)
          for k, v in model.params.items()}
    xt = torch.tensor(x.astype(dtype).astype(np.float64))
    h0t = torch.tensor(h0.astype(dtype).astype(np.float64))
    tt = torch.tensor(target) if loss == "cross_entropy" else torch.tensor(target)
    L = torch_loss(torch, tp, xt, tt, loss, readout, h0t)
    L.backward()
    rtol = 1e-10 if dtype == "float64" else 1e-4
    assert g.loss == pytest.approx(L.item(), rel=rtol)
    for k in KEYS:
        ref = tp[k].grad.numpy()
        np.testing.assert_allclose(g.grads[k], ref, rtol=rtol,
                                   atol=rtol * np.abs(ref).max(), err_msg=k)


# --------------------------------------------------------------------- Omega (Pascanu)
def ref_omega_grad(h, delta, W):
    """Loops over t and b: Omega averaged over the batch and dOmega/dW_hh."""
    T, B, H = h.shape
    total, dW = 0.0, np.zeros((H, H))
    for t in range(T):
        for b in range(B):
            d = np.linalg.norm(delta[t, b])
            if d == 0:
                continue
            v = delta[t, b] * (1 - h[t, b] ** 2)
            u = v @ W
            n = np.linalg.norm(u)
            total += (n / d - 1) ** 2 / B
            dW += 2 * (n / d - 1) / d * np.outer(v, u / n) / B
    return total, dW


@pytest.mark.parametrize("readout", ["last", "all"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_omega_adds_pascanu_regulariser_to_W_hh_only(readout, loss):
    alpha = 0.7
    model, x, target, h0 = make_case(readout, loss, T=6, B=3)
    model.omega_form = "eq9"   # the form ref_omega_grad transcribes (the code's: test_regularizers)
    plain = model.loss_and_gradients(x, target, loss=loss, h0=h0)
    reg = model.loss_and_gradients(x, target, loss=loss, h0=h0, omega=alpha)
    _, h = ref_forward(model.params, x, h0, readout)
    delta = rnnx.rnn_backward(x, h, _grad_h(model, x, target, loss, h0), model.params["W_xh"],
                              model.params["W_hh"], model.params["b_h"], h0,
                              return_delta=True).delta
    om, dW = ref_omega_grad(h, delta, model.params["W_hh"])
    assert om > 0
    assert reg.omega == pytest.approx(om, rel=1e-10)
    assert reg.loss == pytest.approx(plain.loss + alpha * om, rel=1e-12)
    np.testing.assert_allclose(reg.grads["W_hh"] - plain.grads["W_hh"], alpha * dW,
                               rtol=1e-8, atol=1e-12)
    for k in ("W_xh", "b_h", "W_hy", "b_y"):
        np.testing.assert_array_equal(reg.grads[k], plain.grads[k])
    np.testing.assert_array_equal(reg.delta_norms, plain.delta_norms)


def _grad_h(model, x, target, loss, h0):
    """dL/dh[t] of the readout + loss alone (the part BPTT starts from), by hand."""
    p = {k: v.astype(np.float64) for k, v in model.params.items()}
    y, h = ref_forward(p, x, h0, model.readout)
    if loss == "mse":
        dy = 2 * (y - target) / y.size
    else:
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        dy = e / e.sum(axis=-1, keepdims=True)
        dy[tuple(np.indices(target.shape)) + (target,)] -= 1   # each sample's label
        dy /= target.size
    G = np.zeros_like(h)
    if model.readout == "last":
        G[-1] = dy @ p["W_hy"]
    else:
        G[:] = dy @ p["W_hy"]
    return G


def test_omega_float32_and_torch():
    torch = pytest.importorskip("torch")
    model, x, target, h0 = make_case("all", "mse", T=5, B=2, H=6, dtype="float32")
    model.omega_form = "eq9"
    plain = model.loss_and_gradients(x, target, h0=h0)
    reg = model.loss_and_gradients(x, target, h0=h0, omega=1.0)
    assert reg.grads["W_hh"].dtype == np.float32
    _, h = model.forward(x, h0)
    p = model.params
    delta = rnnx.rnn_backward(x.astype(np.float32), h, _grad_h(model, x.astype(np.float32),
                              target, "mse", h0.astype(np.float32)).astype(np.float32),
                              p["W_xh"], p["W_hh"], p["b_h"], h0.astype(np.float32),
                              return_delta=True).delta
    # Omega in torch with h and delta held constant, as in the paper.
    W = torch.tensor(p["W_hh"].astype(np.float64), requires_grad=True)
    ht = torch.tensor(h.astype(np.float64))
    dt = torch.tensor(delta.astype(np.float64))
    u = (dt * (1 - ht ** 2)) @ W
    om = ((u.norm(dim=-1) / dt.norm(dim=-1) - 1) ** 2).sum(0).mean()
    om.backward()
    assert reg.omega == pytest.approx(om.item(), rel=1e-4)
    np.testing.assert_allclose(reg.grads["W_hh"] - plain.grads["W_hh"], W.grad.numpy(),
                               rtol=1e-3, atol=1e-4 * np.abs(W.grad.numpy()).max())


# ------------------------------------------------------------- overflow, clip_delta
def test_gradient_overflow_error_propagates():
    model = RNN(2, 8, 1, dtype="float32", spectral_radius=5.0, seed=3)
    x = np.zeros((50, 2, 2), np.float32)
    model.params["b_h"][:] = 0
    with pytest.raises(rnnx.GradientOverflowError) as info:
        model.loss_and_gradients(x, np.ones((2, 1)), max_norm=1e-3,
                                 h0=np.full((2, 8), 1e-3))
    assert info.value.time_step >= 0
    assert isinstance(info.value, FloatingPointError)


def test_clip_delta_is_passed_to_the_core():
    model, x, target, h0 = make_case("all", "mse", T=8, B=2, H=5, spectral_radius=3.0)
    g = model.loss_and_gradients(x, target, h0=h0, clip_delta=1e-3)
    p = model.params
    _, h = model.forward(x, h0)
    direct = rnnx.rnn_backward(x, h, _grad_h(model, x, target, "mse", h0), p["W_xh"],
                               p["W_hh"], p["b_h"], h0, clip_delta=1e-3)
    np.testing.assert_allclose(g.delta_norms, direct.delta_norms, rtol=1e-6)
    assert np.all(g.delta_norms <= 1e-3 * np.sqrt(2 * 5) * (1 + 1e-12))


# --------------------------------------------------------- construction, params, misc
def test_seeded_and_deterministic():
    a = RNN(3, 6, 2, seed=42)
    b = RNN(3, 6, 2, seed=42)
    c = RNN(3, 6, 2, seed=43)
    for k in KEYS:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W_hh"], c.params["W_hh"])
    assert a.dtype == np.float32 and a.params["W_hh"].dtype == np.float32
    assert (a.input_size, a.hidden_size, a.output_size, a.readout) == (3, 6, 2, "last")
    assert {k: v.shape for k, v in a.params.items()} == {
        "W_xh": (6, 3), "W_hh": (6, 6), "b_h": (6,), "W_hy": (2, 6), "b_y": (2,)}


@pytest.mark.parametrize("init", ["orthogonal", "gaussian", "identity", "smart_tanh"])
def test_spectral_radius_and_diagnostics(init):
    model = RNN(2, 20, 1, init=init, spectral_radius=1.5, dtype="float64", seed=0)
    d = model.diagnostics()
    W = model.params["W_hh"]
    assert d["spectral_radius"] == pytest.approx(1.5, rel=1e-9)
    assert d["spectral_radius"] == pytest.approx(np.abs(np.linalg.eigvals(W)).max(), rel=1e-12)
    s = np.linalg.svd(W, compute_uv=False)
    np.testing.assert_allclose(d["singular_values"], s, rtol=1e-12)
    assert d["sigma_max"] == pytest.approx(s[0], rel=1e-12)
    assert np.all(np.diff(d["singular_values"]) <= 0)


def test_params_are_a_plain_dict_users_can_set():
    model = RNN(2, 3, 1, dtype="float64", seed=0)
    x = np.ones((2, 1, 2))
    model.params["W_hh"] = np.zeros((3, 3))
    model.params["W_xh"] = np.zeros((3, 2))
    model.params["W_hy"] = np.ones((1, 3))
    model.params["b_h"] = np.full(3, 0.5)
    model.params["b_y"] = np.array([1.0])
    np.testing.assert_allclose(model.predict(x), [[1 + 3 * np.tanh(0.5)]], rtol=1e-15)
    model.params["W_hh"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match=r"params\['W_hh'\]"):
        model.predict(x)
    model.params["W_hh"] = np.full((3, 3), np.nan)
    with pytest.raises(ValueError, match=r"params\['W_hh'\].*NaN"):
        model.predict(x)
    del model.params["b_y"]
    with pytest.raises(KeyError, match="b_y"):
        model.predict(x)


def test_copy_is_deep():
    model = RNN(2, 3, 1, seed=0)
    twin = model.copy()
    twin.params["W_hh"][0, 0] += 1.0
    assert model.params["W_hh"][0, 0] != twin.params["W_hh"][0, 0]
    assert isinstance(twin, RNN) and twin.readout == model.readout


def test_float32_model_casts_float64_inputs():
    model = RNN(2, 3, 2, seed=0)
    g = model.loss_and_gradients(np.ones((3, 2, 2)), np.zeros((2, 2)))
    assert all(v.dtype == np.float32 for v in g.grads.values())


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(input_size=0), ValueError, "input_size"),
    (dict(hidden_size=2.5), ValueError, "hidden_size"),
    (dict(output_size=True), ValueError, "output_size"),
    (dict(readout="first"), ValueError, "readout"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(init="xavier"), ValueError, "init"),
    (dict(spectral_radius=0), ValueError, "spectral_radius"),
    (dict(spectral_radius=-1.5), ValueError, "spectral_radius"),
    (dict(spectral_radius=float("nan")), ValueError, "spectral_radius"),
    (dict(std=0.1), ValueError, "std"),                       # std with orthogonal
    (dict(init="gaussian", std=-1), ValueError, "std"),
    (dict(seed="abc"), TypeError, "seed"),
])
def test_bad_constructor_arguments(kwargs, exc, pattern):
    args = dict(input_size=2, hidden_size=3, output_size=1)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        RNN(args.pop("input_size"), args.pop("hidden_size"), args.pop("output_size"), **args)


def test_bad_call_arguments():
    model = RNN(2, 3, 4, seed=0)
    seq = RNN(2, 3, 4, seed=0, readout="all")
    x = np.ones((5, 2, 2))
    with pytest.raises(ValueError, match="x"):
        model.forward(np.ones((5, 2, 3)))                     # D mismatch
    with pytest.raises(ValueError, match="x"):
        model.forward(np.ones((5, 2)))
    with pytest.raises(ValueError, match="h0"):
        model.forward(x, h0=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="loss"):
        model.loss_and_gradients(x, np.zeros((2, 4)), loss="hinge")
    with pytest.raises(ValueError, match=r"target.*\(B, O\)"):
        model.loss_and_gradients(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"target.*\(T, B\)"):
        seq.loss_and_gradients(x, np.zeros((2,), int), loss="cross_entropy")
    with pytest.raises(TypeError, match="integer class labels"):
        model.loss_and_gradients(x, np.zeros(2), loss="cross_entropy")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        model.loss_and_gradients(x, np.array([0, 4]), loss="cross_entropy")
    for bad in (-0.1, float("inf"), "1", True):
        with pytest.raises(ValueError, match="omega"):
            model.loss_and_gradients(x, np.zeros((2, 4)), omega=bad)
    with pytest.raises(ValueError, match="max_norm"):
        model.loss_and_gradients(x, np.zeros((2, 4)), max_norm=-1)


@pytest.mark.filterwarnings("ignore:.*encountered:RuntimeWarning")
@pytest.mark.parametrize("readout", ["last", "all"])
def test_nonfinite_readout_raises_gradient_overflow(readout):
    """A finite but huge W_hy overflows y in float32: one exception type for the caller."""
    model = RNN(2, 3, 2, seed=0, readout=readout)
    model.params["W_hy"][:] = 3e38
    x = np.ones((4, 2, 2))
    target = np.zeros((2, 2)) if readout == "last" else np.zeros((4, 2, 2))
    with pytest.raises(rnnx.GradientOverflowError) as info:
        model.loss_and_gradients(x, target)
    assert info.value.time_step == 3
    assert info.value.delta_norms.shape == (4,)
    with pytest.raises(rnnx.GradientOverflowError):
        model.loss_and_gradients(x, np.zeros(x.shape[:2] if readout == "all" else 2, int),
                                 loss="cross_entropy")


def test_params_of_another_dtype_or_layout_are_stored_back_converted():
    """The optimizer updates params in place: what the model computes with must be the very
    arrays in params, so a list, a float64 array in a float32 model, a Fortran-ordered or
    read-only array is converted once and stored back."""
    model = RNN(2, 4, 1, seed=0)
    ref = model.copy()
    frozen = np.array(model.params["b_y"])
    frozen.flags.writeable = False
    model.params.update(W_xh=model.params["W_xh"].tolist(),
                        W_hh=np.asfortranarray(model.params["W_hh"]),
                        b_h=model.params["b_h"].astype(np.float64), b_y=frozen)
    x = np.random.default_rng(0).standard_normal((5, 3, 2)).astype(np.float32)
    target = np.ones((3, 1), np.float32)
    g = model.loss_and_gradients(x, target)
    assert g.loss == ref.loss_and_gradients(x, target).loss
    for k, p in model.params.items():
        assert type(p) is np.ndarray and p.dtype == np.float32, k
        assert p.flags.c_contiguous and p.flags.writeable, k
        np.testing.assert_array_equal(p, ref.params[k])
    kept = model.params["W_hh"]
    model.loss_and_gradients(x, target)
    assert model.params["W_hh"] is kept                  # converted once, then used as is


# --- batch_first (issue 11, item 16) -------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("readout,loss", [("last", "mse"), ("all", "mse"),
                                          ("all", "cross_entropy"), ("last", "cross_entropy")])
@pytest.mark.parametrize("T,B", [(5, 3), (1, 1), (4, 1)])
def test_batch_first_is_the_time_major_computation_transposed(dtype, readout, loss, T, B):
    rng = np.random.default_rng(1)
    model = RNN(3, 4, 2, readout=readout, seed=0, dtype=dtype)
    x = rng.standard_normal((T, B, 3))
    h0 = rng.standard_normal((B, 4)) * 0.1
    if loss == "mse":
        target = rng.standard_normal((T, B, 2) if readout == "all" else (B, 2))
    else:
        target = rng.integers(0, 2, size=(T, B) if readout == "all" else (B,))
    xb = x.transpose(1, 0, 2).copy()
    tb = target.swapaxes(0, 1).copy() if readout == "all" else target
    y, h = model.forward(x, h0)
    yb, hb = model.forward(xb, h0, batch_first=True)
    np.testing.assert_array_equal(hb, h.transpose(1, 0, 2))
    np.testing.assert_array_equal(yb, y.swapaxes(0, 1) if readout == "all" else y)
    np.testing.assert_array_equal(model.predict(xb, h0, batch_first=True), yb)
    g = model.loss_and_gradients(x, target, loss=loss, h0=h0)
    gb = model.loss_and_gradients(xb, tb, loss=loss, h0=h0, batch_first=True)
    assert gb.loss == g.loss
    for k in g.grads:
        np.testing.assert_array_equal(gb.grads[k], g.grads[k], err_msg=k)
    np.testing.assert_array_equal(gb.delta_norms, g.delta_norms)
    np.testing.assert_array_equal(gb.h_last, g.h_last)


def test_batch_first_shape_errors_name_the_layout():
    model = RNN(3, 4, 2, readout="all", seed=0)
    with pytest.raises(ValueError, match="x must"):
        model.predict(np.zeros((2, 5, 4)), batch_first=True)       # D = 4, not 3
    with pytest.raises(ValueError, match="batch-first"):
        model.loss_and_gradients(np.zeros((2, 5, 3)), np.zeros(2, int),
                                 loss="cross_entropy", batch_first=True)
