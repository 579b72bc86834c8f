"""Optimizers against hand-written references, torch.optim, and exact state round trips."""
import numpy as np
import pytest

from rnnx.optim.optimizers import SGD, Adagrad, Adam, RMSprop
from rnnx.optim.schedules import step_decay

CONFIGS = [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (Adam, dict(lr=0.01)),
    (Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    (RMSprop, dict(lr=0.01)),
    (RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-6)),
    (Adagrad, dict(lr=0.1)),
]


def problem(dtype=np.float64, seed=0, steps=5):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((3, 4)).astype(dtype),
              "b": rng.standard_normal(3).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
             for _ in range(steps)]
    return params, grads


def reference(cls, kw, x, gs):
    """The textbook update rules, element-wise over one flat array, written out by hand."""
    x = x.astype(np.float64).copy()
    lr = kw["lr"]
    a, b = np.zeros_like(x), np.zeros_like(x)
    for t, g in enumerate(gs, start=1):
        if cls is SGD:
            mu = kw.get("momentum", 0.0)
            if mu:
                a = g.copy() if t == 1 else mu * a + g
                d = g + mu * a if kw.get("nesterov") else a
            else:
                d = g
            x = x - lr * d
        elif cls is Adam:
            b1, b2 = kw.get("betas", (0.9, 0.999))
            a = b1 * a + (1 - b1) * g
            b = b2 * b + (1 - b2) * g * g
            m_hat, v_hat = a / (1 - b1 ** t), b / (1 - b2 ** t)
            x = x - lr * m_hat / (np.sqrt(v_hat) + kw.get("eps", 1e-8))
        elif cls is RMSprop:
            al = kw.get("alpha", 0.99)
            a = al * a + (1 - al) * g * g
            x = x - lr * g / (np.sqrt(a) + kw.get("eps", 1e-8))
        else:
            a = a + g * g
            x = x - lr * g / (np.sqrt(a) + 1e-10)
    return x


@pytest.mark.parametrize("cls, kw", CONFIGS)
def test_matches_hand_written_reference(cls, kw):
    params, grads = problem()
    start = {k: v.copy() for k, v in params.items()}
    W_obj = params["W"]
    opt = cls(**kw)
    for g in grads:
        opt.step(params, g)
    assert params["W"] is W_obj                       # updated in place
    assert opt.t == len(grads)
    for k in params:
        ref = reference(cls, kw, start[k], [g[k] for g in grads])
        np.testing.assert_allclose(params[k], ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls, kw", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch_optim(cls, kw, dtype):
    torch = pytest.importorskip("torch")
    params, grads = problem(dtype)
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    tkw = dict(kw)
    topt = getattr(torch.optim, cls.__name__)(list(tparams.values()), **tkw)
    opt = cls(**kw)
    for g in grads:
        opt.step(params, g)
        for k, p in tparams.items():
            p.grad = torch.tensor(g[k])
        topt.step()
    rtol = 1e-13 if dtype == np.float64 else 1e-6
    for k in params:
        assert params[k].dtype == dtype
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=rtol,
                                   atol=rtol)


def test_defaults():
    assert (SGD().schedule(0), SGD().momentum, SGD().nesterov) == (0.01, 0.0, False)
    assert (Adam().schedule(0), Adam().betas, Adam().eps) == (1e-3, (0.9, 0.999), 1e-8)
    assert (RMSprop().schedule(0), RMSprop().alpha, RMSprop().eps) == (1e-3, 0.99, 1e-8)
    assert (Adagrad().schedule(0), Adagrad().eps) == (1e-2, 1e-10)


def test_schedule_and_lr_scale():
    """Step k uses schedule(k) * lr_scale: plain SGD moves by exactly that times g."""
    opt = SGD(lr=step_decay(1.0, step_size=2, gamma=0.5))
    p = {"w": np.zeros(1)}
    moves = []
    for k in range(5):
        if k == 3:
            opt.lr_scale *= 0.1
        before = p["w"][0]
        assert opt.learning_rate == pytest.approx([1, 1, 0.5, 0.05, 0.025][k], rel=1e-15)
        opt.step(p, {"w": np.ones(1)})
        moves.append(before - p["w"][0])
    np.testing.assert_allclose(moves, [1, 1, 0.5, 0.05, 0.025], rtol=1e-12)


@pytest.mark.parametrize("cls, kw", CONFIGS)
def test_state_dict_round_trip_is_exact_through_npz(cls, kw, tmp_path):
    params, grads = problem(np.float32, steps=6)
    opt = cls(**kw)
    for g in grads[:3]:
        opt.step(params, g)
    opt.lr_scale = 0.37
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    saved = {k: v.copy() for k, v in params.items()}
    with np.load(tmp_path / "opt.npz") as f:
        loaded = {k: f[k] for k in f.files}
    resumed = cls(**kw)
    resumed.load_state_dict(loaded)
    assert resumed.t == 3 and resumed.lr_scale == 0.37
    for g in grads[3:]:
        opt.step(params, g)
        resumed.step(saved, g)
    for k in params:
        np.testing.assert_array_equal(params[k], saved[k])
    a, b = opt.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype


def test_state_dict_is_a_copy():
    params, grads = problem()
    opt = Adam()
    opt.step(params, grads[0])
    d = opt.state_dict()
    d["exp_avg.W"][:] = 123.0
    assert not np.any(opt.state["exp_avg"]["W"] == 123.0)


def test_nonfinite_or_bad_grads_change_nothing():
    params, grads = problem()
    opt = Adam()
    opt.step(params, grads[0])
    before = {k: v.copy() for k, v in params.items()}
    state = opt.state_dict()
    bad = {"W": grads[1]["W"], "b": np.full(3, np.nan)}
    with pytest.raises(ValueError, match=r"grads\['b'\] contains NaN"):
        opt.step(params, bad)
    with pytest.raises(ValueError, match=r"grads\['W'\] must have shape \(3, 4\)"):
        opt.step(params, {"W": np.ones((4, 3))})
    with pytest.raises(KeyError, match="'V'"):
        opt.step(params, {"V": np.ones(2)})
    with pytest.raises(TypeError, match="writeable float"):
        opt.step({"W": np.ones((3, 4), int)}, {"W": np.ones((3, 4))})
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.t == 1
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


@pytest.mark.parametrize("make, pattern", [
    (lambda: SGD(lr=0), "lr"),
    (lambda: SGD(lr=-1), "lr"),
    (lambda: SGD(lr=float("nan")), "lr"),
    (lambda: SGD(momentum=1.0), "momentum"),
    (lambda: SGD(nesterov=True), "nesterov"),
    (lambda: Adam(betas=(0.9,)), "betas"),
    (lambda: Adam(betas=(0.9, 1.0)), r"betas\[1\]"),
    (lambda: Adam(eps=0), "eps"),
    (lambda: RMSprop(alpha=-0.1), "alpha"),
    (lambda: Adagrad(eps=-1), "eps"),
])
def test_bad_hyperparameters(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_bad_state_dicts_and_lr_scale():
    opt = SGD(momentum=0.9)
    with pytest.raises(KeyError, match="missing"):
        opt.load_state_dict({"t": 1})
    with pytest.raises(KeyError, match="exp_avg"):
        opt.load_state_dict({"t": 1, "lr_scale": 1.0, "exp_avg.W": np.ones(2)})
    with pytest.raises(ValueError, match="lr_scale"):
        opt.lr_scale = 0.0
    opt.lr_scale = np.array(0.25)                  # a 0-d array from an .npz
    assert opt.lr_scale == 0.25 and type(opt.lr_scale) is float
    params, grads = problem()
    opt.load_state_dict({"t": 1, "lr_scale": 1.0, "momentum_buffer.W": np.ones((4, 3))})
    with pytest.raises(ValueError, match="another model"):
        opt.step(params, grads[0])


def numpy_rule(cls, kw, params, grads_seq):
    """The update rules as numpy expressions, in the compiled kernels' order of operations:
    the kernels must round exactly like this, in float32 and float64."""
    state = {}
    for t, grads in enumerate(grads_seq, start=1):
        for k, g in grads.items():
            p = params[k]
            if cls is SGD:
                mu = kw.get("momentum", 0.0)
                d = g
                if mu:
                    buf = state.setdefault(k, g.copy() if t == 1 else None)
                    if t > 1:
                        buf *= mu
                        buf += g
                    d = g + mu * buf if kw.get("nesterov") else buf
                p -= kw["lr"] * d
            elif cls is Adam:
                b1, b2 = kw.get("betas", (0.9, 0.999))
                m, v = state.setdefault(k, (np.zeros_like(p), np.zeros_like(p)))
                m += (1 - b1) * (g - m)
                v *= b2
                v += (1 - b2) * g * g
                denom = np.sqrt(v) / (1 - b2 ** t) ** 0.5 + kw.get("eps", 1e-8)
                p -= kw["lr"] / (1 - b1 ** t) * (m / denom)
            elif cls is RMSprop:
                al = kw.get("alpha", 0.99)
                v = state.setdefault(k, np.zeros_like(p))
                v *= al
                v += (1 - al) * g * g
                p -= kw["lr"] * (g / (np.sqrt(v) + kw.get("eps", 1e-8)))
            else:
                s = state.setdefault(k, np.zeros_like(p))
                s += g * g
                p -= kw["lr"] * (g / (np.sqrt(s) + 1e-10))


@pytest.mark.parametrize("cls, kw", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_rules_round_like_numpy(cls, kw, dtype):
    params, grads = problem(dtype, steps=7)
    expected = {k: v.copy() for k, v in params.items()}
    numpy_rule(cls, kw, expected, grads)
    opt = cls(**kw)
    for g in grads:
        opt.step(params, g)
    for k in params:
        np.testing.assert_array_equal(params[k], expected[k])


@pytest.mark.parametrize("cls, kw", CONFIGS)
def test_an_update_that_would_overflow_changes_nothing(cls, kw):
    """float32: the step would make b infinite (SGD, from weights near the top of the
    range) or the adaptive rules' sum of squared gradients infinite (g = 1e30)."""
    params, grads = problem(np.float32)
    opt = cls(**kw)
    opt.step(params, grads[0])
    if cls is SGD:
        params["b"][:] = -3.3e38
    before = {k: v.copy() for k, v in params.items()}
    state = opt.state_dict()
    huge = {"W": grads[1]["W"], "b": np.full(3, 3e38 if cls is SGD else 1e30, np.float32)}
    with pytest.raises(FloatingPointError, match=r"params\['b'\].*nothing was changed"):
        opt.step(params, huge)
    for k in params:                   # W comes first and was not written either
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.t == 1
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


def test_non_contiguous_params_are_updated_in_place():
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    params = {"W": base[:, ::2], "V": base.T[1::2]}       # strided views, disjoint
    grads = {"W": np.ones((4, 3)), "V": np.ones((3, 4))}
    expected = {k: v - 0.5 for k, v in params.items()}
    SGD(lr=0.5).step(params, grads)
    for k in params:
        np.testing.assert_array_equal(params[k], expected[k])
    np.testing.assert_array_equal(base, np.arange(24).reshape(4, 6) - 0.5)   # through views


def test_params_must_be_float32_or_float64():
    with pytest.raises(TypeError, match=r"params\['W'\] must be a writeable float32 or float64"):
        SGD().step({"W": np.ones(3, np.float16)}, {"W": np.ones(3)})
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="writeable"):
        SGD().step({"W": frozen}, {"W": np.ones(3)})
