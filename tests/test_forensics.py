"""Explosion forensics: the float64 second opinion and the blame (parameter, time step,
batch elements) on constructed cases and a real run."""
import math

import numpy as np
import pytest

import rnnx
from rnnx.diagnostics.blame import Blame, blame_parameter, blame_rows, blame_time_step
from rnnx.training.forensics import forensics_summary
from rnnx.training.shadow import second_opinion


class Events(rnnx.Callback):
    def __init__(self):
        self.events = []

    def on_event(self, trainer, event):
        self.events.append(event)


# --- blame on constructed gradients -------------------------------------------------------

def test_blame_parameter_names_the_nonfinite_gradient_first():
    params = {"W_xh": np.ones((2, 2)), "W_hh": np.ones((2, 2)), "b_h": np.zeros(2)}
    grads = {"W_xh": np.full((2, 2), 1e3), "W_hh": np.array([[1, np.inf], [0, 0]]),
             "b_h": np.zeros(2)}
    assert blame_parameter(grads, params) == "W_hh"


def test_blame_parameter_is_relative_to_the_weight():
    # ||g|| / max(||w||, 1): W_xh 8/4 = 2 beats W_hh 10/100 = 0.1; b_h 1.5/1 = 1.5
    params = {"W_xh": np.full((2, 2), 2.0), "W_hh": np.full((2, 2), 50.0),
              "b_h": np.zeros(2)}
    grads = {"W_xh": np.full((2, 2), 4.0), "W_hh": np.full((2, 2), 5.0),
             "b_h": np.array([1.5, 0.0])}
    assert blame_parameter(grads, params) == "W_xh"


def test_blame_time_step_first_overflow_in_backward_order_else_peak():
    # BPTT runs from t = T-1 down: the first non-finite norm it met is the largest t
    assert blame_time_step([np.nan, np.inf, np.inf, 5.0, 1.0]) == 2
    assert blame_time_step([1.0, 7.0, 3.0]) == 1
    assert blame_time_step([np.nan, np.nan]) == -1


def test_blame_rows():
    d = np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 3.0], [np.inf, 0.0]])
    assert blame_rows(d) == (1, 3)
    d = np.array([[1.0, 0.0], [0.0, 4.0], [3.0, 0.0], [0.0, 1.9]])
    assert blame_rows(d) == (1, 2)            # norms >= half of the largest, largest first
    assert blame_rows(d * 1e200) == (1, 2)    # squares beyond float64's range


def test_blame_describe_is_one_line():
    text = Blame("W_hh", 12, (3, 7)).describe()
    assert text == "blame W_hh, time step t=12, batch elements [3, 7]"


# --- the float64 second opinion -----------------------------------------------------------

def _artefact_case():
    """T = 2, H = D = B = O = 1, exact powers of two. h[0] = tanh(30) = 1 exactly in both
    dtypes; x[1] cancels W_hh h[0] so h[1] = 0. BPTT: delta[1] = dL/dh[1] = 2 * W_hy
    (~3.7e19), delta[0] = delta[1] * W_hh (~2.7e39): beyond float32's range, finite in
    float64. The gradient reaches no further (1 - h[0]^2 = 0), so its float64 norm is
    ||dW_xh|| = delta[1] |x[1]| ~ 3.2e29: inside float32's range -- an artefact."""
    m = rnnx.RNN(1, 1, 1, seed=0)
    w, u = 2.0 ** 66, 2.0 ** 33
    m.params.update(W_xh=np.array([[u]], np.float32), W_hh=np.array([[w]], np.float32),
                    b_h=np.zeros(1, np.float32), W_hy=np.array([[2.0 ** 64]], np.float32),
                    b_y=np.ones(1, np.float32))
    x = np.array([[[30 / u]], [[-w / u]]], np.float32)
    return m, x, np.zeros((1, 1), np.float32)


def test_float32_overflow_that_float64_computes_is_an_artefact():
    m, x, y = _artefact_case()
    with pytest.raises(rnnx.GradientOverflowError):
        m.loss_and_gradients(x, y)
    g64 = m.copy()
    g64.dtype = np.dtype(np.float64)
    ref = g64.loss_and_gradients(x.astype(np.float64), y)
    norm = math.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in ref.grads.values()))
    assert np.isfinite(norm) and norm < np.finfo(np.float32).max
    events = Events()
    tr = rnnx.Trainer(m, rnnx.SGD(0.1), policy="skip", progress=False, callbacks=[events])
    before = {k: v.copy() for k, v in m.params.items()}
    rec = tr.train_step(x, y)
    assert rec["nonfinite"] and rec["skipped"]
    assert rec["shadow_verdict"] == "artefact"
    assert rec["shadow_norm"] == pytest.approx(norm, rel=1e-6)
    assert rec["blame_t"] == 0 and rec["blame_rows"] == "0"
    event = next(e for e in events.events if e["event"] == "nonfinite")
    assert event["shadow_verdict"] == "artefact" and event["time_step"] == 0
    assert event["batch_elements"] == [0]
    assert "float64 says artefact" in event["message"]
    for k in before:                                      # nothing changed
        np.testing.assert_array_equal(m.params[k], before[k])
    assert forensics_summary(tr.history)["artefact"] == 1


def _real_case(B=4):
    """W_hy = 1e20: the readout's gradient alone is ~1e20 and the float64 gradient norm
    ~1e40 does not fit float32 either: a real explosion."""
    rng = np.random.default_rng(0)
    m = rnnx.RNN(2, 4, 1, spectral_radius=0.5, seed=0)
    m.params["W_hy"][:] = 1e20
    x = rng.standard_normal((6, B, 2)).astype(np.float32)
    x[:, 2] *= 3.0                                        # batch element 2 carries most
    return m, x, np.zeros((B, 1), np.float32)


def test_explosion_in_both_dtypes_is_real_and_raise_carries_the_blame():
    m, x, y = _real_case()
    tr = rnnx.Trainer(m, rnnx.SGD(0.1), policy="raise", progress=False)
    with pytest.raises(rnnx.GradientOverflowError) as info:
        tr.train_step(x, y)
    e = info.value
    assert e.verdict == "real" and e.norm64 > float(np.finfo(np.float32).max)
    assert e.parameter in m.params and e.batch_elements
    assert e.step == 1 and e.time_step == 5
    text = str(e)
    assert "\n" not in text and f"Blame: {e.parameter}" in text and "float64 says real" in text
    rec = tr.history.records()[-1]
    assert rec["shadow_verdict"] == "real" and rec["blame_t"] == 5
    assert forensics_summary(tr.history) == {"real": 1, "disputed": 0, "artefact": 0,
                                             "warnings": 0}


def test_max_norm_overflow_real_when_float64_delta_also_passes_it():
    m, x, y = _real_case()
    m.params["W_hy"][:] = 1.0
    opinion = second_opinion(m, "mse", (x, y, None), kind="overflow", norm32=math.nan,
                             too_large=lambda norm, delta: delta > 1e-3, time_step=5)
    assert opinion.verdict == "real"
    opinion = second_opinion(m, "mse", (x, y, None), kind="overflow", norm32=math.nan,
                             too_large=lambda norm, delta: delta > 1e6, time_step=5)
    assert opinion.verdict == "artefact"
    # at t = T-1 readout "last" makes delta[T-1] = dL/dy W_hy, so row b's norm is
    # proportional to |y_b - target_b|: the rows within half of the largest, largest first
    r = np.abs(m.predict(x.astype(np.float64))[:, 0] - y[:, 0])
    want = tuple(int(b) for b in np.argsort(-r) if r[b] >= 0.5 * r.max())
    assert opinion.blame.time_step == 5 and opinion.blame.rows == want


def test_disputed_when_float32_norm_disagrees():
    m, x, y = _real_case()
    m.params["W_hy"][:] = 1.0
    opinion = second_opinion(m, "mse", (x, y, None), kind="spike", norm32=1e9,
                             too_large=lambda norm, delta: True)
    assert opinion.verdict == "disputed" and math.isfinite(opinion.norm64)


def test_float64_models_get_the_blame_without_a_second_opinion():
    m, x, y = _real_case()
    m.dtype = np.dtype(np.float64)
    m.params = {k: v.astype(np.float64) for k, v in m.params.items()}
    m.params["W_hy"][:] = 1e200
    tr = rnnx.Trainer(m, rnnx.SGD(0.1), policy="skip", progress=False)
    rec = tr.train_step(x.astype(np.float64), y)
    assert rec["nonfinite"] and rec["shadow_verdict"] == "" and rec["blame_param"] != ""


def test_shadow_off():
    m, x, y = _real_case()
    tr = rnnx.Trainer(m, rnnx.SGD(0.1), policy="skip", progress=False, shadow=False)
    rec = tr.train_step(x, y)
    assert rec["shadow_verdict"] == "" and math.isnan(rec["shadow_norm"])
    assert rec["blame_param"] != ""
    with pytest.raises(ValueError, match="shadow"):
        rnnx.Trainer(m, rnnx.SGD(0.1), shadow="yes")


# --- on a real run ------------------------------------------------------------------------

def test_blame_on_a_real_spike_names_the_recurrent_weights_and_the_peak():
    """A stable run, then W_hh scaled up: the gradient spikes, and the blame points at a
    recurrent parameter and at the time step where ||delta[t]|| peaks in float64."""
    task = rnnx.tasks.make("adding", 30)
    m = rnnx.RNN(task.input_size, 16, task.output_size, readout=task.readout,
                 spectral_radius=0.9, seed=1)
    events = Events()
    tr = rnnx.Trainer(m, rnnx.SGD(0.01), spikes="skip", progress=False, seed=0,
                      callbacks=[events], spike_min_history=5)
    tr.fit(task, steps=15, batch_size=8)
    m.params["W_hh"] *= 4.0
    x, y = task.sample(8, np.random.default_rng(5))
    rec = tr.train_step(x, y)
    assert rec["spike"] and rec["skipped"]
    assert rec["blame_param"] in ("W_hh", "W_xh", "b_h")
    g64 = m.copy()
    g64.dtype = np.dtype(np.float64)
    ref = g64.loss_and_gradients(x.astype(np.float64), y)
    assert rec["blame_t"] == int(np.argmax(ref.delta_norms))
    assert rec["shadow_verdict"] == "real"
    spike = [e for e in events.events if e["event"] == "spike"][-1]
    assert spike["parameter"] == rec["blame_param"] and spike["batch_elements"]
    assert "blame " in spike["message"]


def test_forensics_columns_round_trip_through_the_log(tmp_path):
    m, x, y = _real_case()
    log = tmp_path / "run.csv"
    tr = rnnx.Trainer(m, rnnx.SGD(0.1), policy="skip", progress=False, log_path=log)
    tr.fit([(x, y)], steps=1)
    back = rnnx.load_history(log)
    assert back["shadow_verdict"][0] == "real"
    assert back["blame_param"][0] == tr.history["blame_param"][0]
    assert back["blame_t"][0] == 5


@pytest.mark.parametrize("readout,loss,clip_delta,omega", [
    ("last", "mse", None, 0.0), ("all", "mse", None, 0.0),
    ("last", "cross_entropy", None, 0.0), ("all", "cross_entropy", 0.5, 0.0),
    ("last", "mse", None, 0.1)])
def test_second_opinion_norm_is_the_float64_gradient_norm(readout, loss, clip_delta, omega):
    """The one float64 pass that serves the verdict and the blame gives the same global
    gradient norm and peak ||delta[t]|| as the model's own float64 loss_and_gradients."""
    rng = np.random.default_rng(5)
    T, B, D, H, O = 7, 3, 2, 5, 4
    m = rnnx.RNN(D, H, O, readout=readout, spectral_radius=1.5, seed=2)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    shape = (B,) if readout == "last" else (T, B)
    y = (rng.integers(0, O, shape) if loss == "cross_entropy"
         else rng.standard_normal(shape + (O,)).astype(np.float32))
    h0 = rng.standard_normal((B, H)).astype(np.float32) * 0.1
    opinion = second_opinion(m, loss, (x, y, h0), kind="spike", norm32=1.0,
                             too_large=lambda norm, delta: False, clip_delta=clip_delta,
                             omega=omega)
    m64 = m.copy()
    m64.dtype = np.dtype(np.float64)
    m64.params = {k: v.astype(np.float64) for k, v in m.params.items()}
    g = m64.loss_and_gradients(x.astype(np.float64), y, loss=loss, h0=h0.astype(np.float64),
                               clip_delta=clip_delta, omega=omega)
    want = math.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in g.grads.values()))
    assert opinion.verdict == "artefact"
    assert opinion.norm64 == pytest.approx(want, rel=1e-12)
    assert opinion.max_delta64 == pytest.approx(float(g.delta_norms.max()), rel=1e-12)


def test_blame_time_step_where_delta_squares_pass_float64s_range():
    """||delta[t]|| of 1e159 (squares past float64's range): the core's norms stay finite,
    so the time step is still the peak (t = T-1 with a contracting W_hh, readout
    "last"), against the norms of delta recomputed here overflow-safely."""
    from rnnx.diagnostics.blame import safe_norms
    from rnnx.training.shadow import blame_step
    m = rnnx.RNN(2, 4, 1, spectral_radius=0.5, seed=0, dtype="float64")
    m.params["W_hy"][:] = 1e80
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3, 2)), rng.standard_normal((3, 1))
    with np.errstate(over="ignore"):
        b = blame_step(m, "mse", (x, y, None))
        _, h = m.forward(x)
        grad_h = np.zeros_like(h)
        grad_h[-1] = (m.predict(x) - y) * 2 / y.size @ m.params["W_hy"]
    d = rnnx.rnn_backward(x, h, grad_h, m.params["W_xh"], m.params["W_hh"], m.params["b_h"],
                          return_delta=True).delta
    norms = safe_norms(d, axis=(1, 2))
    assert norms.max() > 1e155 and b.time_step == int(np.argmax(norms)) == 5
