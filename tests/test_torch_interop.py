"""rnnx.RNN <-> torch.nn.RNN (+ Linear): round trip and agreeing forward passes."""
import numpy as np
import pytest
from rnnx.model.rnn import RNN
from rnnx.diagnostics.lyapunov import diagnose

torch = pytest.importorskip("torch")

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def _torch_modules(D, H, O, dtype, bias=True):
    torch.manual_seed(0)
    tdtype = getattr(torch, np.dtype(dtype).name)
    rnn = torch.nn.RNN(D, H, nonlinearity="tanh", bias=bias, dtype=tdtype)
    lin = torch.nn.Linear(H, O, dtype=tdtype)
    return rnn, lin


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,B,D,H,O", [(7, 3, 2, 5, 4), (1, 1, 1, 1, 1), (13, 2, 3, 17, 2)])
def test_forward_agrees(dtype, T, B, D, H, O):
    rnn, lin = _torch_modules(D, H, O, dtype)
    x = np.random.default_rng(T).standard_normal((T, B, D)).astype(dtype)
    out, _ = rnn(torch.from_numpy(x))
    model = RNN.from_torch(rnn, lin, outputs="all")
    assert model.dtype == dtype and model.readout == "all"
    y, h = model.forward(x)
    np.testing.assert_allclose(h, out.detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(y, lin(out).detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    last = RNN.from_torch(rnn, lin).predict(x)
    np.testing.assert_allclose(last, lin(out[-1]).detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(dtype):
    model = RNN(3, 6, 2, dtype=np.dtype(dtype).name, spectral_radius=1.2, seed=1)
    model.params["b_h"][:] = 0.25
    rnn, lin = model.to_torch()
    back = RNN.from_torch(rnn, lin)
    for k, v in model.params.items():
        assert back.params[k].dtype == dtype
        np.testing.assert_array_equal(back.params[k], v)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(dtype)
    out, _ = rnn(torch.from_numpy(x))
    np.testing.assert_allclose(lin(out[-1]).detach().numpy(), model.predict(x),
                               rtol=TOL[dtype], atol=TOL[dtype])
    assert model.to_torch(batch_first=True)[0].batch_first


def test_no_readout_and_no_bias():
    rnn, _ = _torch_modules(2, 4, 1, np.float32, bias=False)
    model = RNN.from_torch(rnn)
    assert model.output_size == 4
    np.testing.assert_array_equal(model.params["b_h"], 0)
    x = np.ones((3, 1, 2), np.float32)
    out, _ = rnn(torch.from_numpy(x))
    np.testing.assert_allclose(model.predict(x), out[-1].detach().numpy(), rtol=1e-5, atol=1e-6)
    assert diagnose(model, x).exponents.shape == (4,)


def test_rejects_what_rnnx_cannot_run():
    with pytest.raises(ValueError, match="num_layers=2"):
        RNN.from_torch(torch.nn.RNN(2, 3, num_layers=2))
    with pytest.raises(ValueError, match="bidirectional"):
        RNN.from_torch(torch.nn.RNN(2, 3, bidirectional=True))
    with pytest.raises(ValueError, match="relu"):
        RNN.from_torch(torch.nn.RNN(2, 3, nonlinearity="relu"))
    with pytest.raises(TypeError, match="torch.nn.RNN"):
        RNN.from_torch(torch.nn.GRU(2, 3))
    with pytest.raises(TypeError, match="float32 or float64"):
        RNN.from_torch(torch.nn.RNN(2, 3).half())
    with pytest.raises(ValueError, match="in_features"):
        RNN.from_torch(torch.nn.RNN(2, 3), torch.nn.Linear(4, 1))
    with pytest.raises(TypeError, match="Linear"):
        RNN.from_torch(torch.nn.RNN(2, 3), torch.nn.Conv1d(3, 1, 1))
    with pytest.raises(ValueError, match="outputs"):
        RNN.from_torch(torch.nn.RNN(2, 3), outputs="first")
    rnn = torch.nn.RNN(2, 3)
    with torch.no_grad():
        rnn.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(ValueError, match="W_hh"):
        RNN.from_torch(rnn)
