"""Pascanu et al.'s code's replacement of an untrusted gradient, against its definition:
g(W_hh) = 0.02 W_hh and 0 elsewhere when the norm is NaN, inf, negative or above 1e10."""
import math

import numpy as np
import pytest

from rnnx.optim.pascanu_fallback import pascanu_fallback, untrustworthy

KEYS = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")


def model_params(dtype, D=3, H=4, O=2, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"W_xh": (H, D), "W_hh": (H, H), "b_h": (H,), "W_hy": (O, H), "b_y": (O,)}
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def reference(grads, params, norm):
    """RNN.py's switch, transcribed: new_cond = isnan | isinf | norm < 0 | norm > 1e10."""
    new_cond = math.isnan(norm) or math.isinf(norm) or norm < 0 or norm > 1e10
    if not new_cond:
        return grads
    return {k: (0.02 * params[k] if k == "W_hh" else np.zeros_like(g))
            for k, g in grads.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm", [0.0, 1.0, 1e10, np.nextafter(1e10, np.inf), 1e30,
                                  math.inf, -math.inf, math.nan, -1.0])
def test_matches_the_codes_switch(dtype, norm):
    params = model_params(dtype)
    grads = model_params(dtype, seed=1)
    before = {k: v.copy() for k, v in grads.items()}
    got = pascanu_fallback(grads, params, norm)
    want = reference(grads, params, norm)
    assert set(got) == set(KEYS)
    for k in KEYS:
        assert got[k].dtype == dtype and got[k].shape == params[k].shape
        np.testing.assert_allclose(got[k], want[k], rtol=1e-7)
        np.testing.assert_array_equal(grads[k], before[k])      # input untouched
    assert (got is grads) == (not untrustworthy(norm))


def test_sgd_step_with_the_replacement_shrinks_W_hh_only():
    params = model_params(np.float64)
    grads = {k: np.full_like(v, np.inf) for k, v in params.items()}
    lr = 0.01
    g = pascanu_fallback(grads, params, math.inf)
    new = {k: params[k] - lr * g[k] for k in KEYS}
    np.testing.assert_allclose(new["W_hh"], (1 - 0.02 * lr) * params["W_hh"], rtol=1e-15)
    for k in ("W_xh", "b_h", "W_hy", "b_y"):
        np.testing.assert_array_equal(new[k], params[k])


def test_no_gradient_at_all_after_an_aborted_backward():
    params = model_params(np.float32)
    g = pascanu_fallback(None, params, math.nan)
    np.testing.assert_allclose(g["W_hh"], 0.02 * params["W_hh"], rtol=1e-7)
    assert g["W_hh"].dtype == np.float32
    assert not any(g[k].any() for k in ("W_xh", "b_h", "W_hy", "b_y"))
    with pytest.raises(ValueError, match="grads is None"):
        pascanu_fallback(None, params, 1.0)


def test_cutoff_and_shrink_can_be_changed():
    params = model_params(np.float64)
    grads = model_params(np.float64, seed=1)
    assert pascanu_fallback(grads, params, 5.0, cutoff=10.0) is grads
    g = pascanu_fallback(grads, params, 11.0, cutoff=10.0, shrink=0.5)
    np.testing.assert_allclose(g["W_hh"], 0.5 * params["W_hh"])


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda p, g: pascanu_fallback(g, p, "big"), TypeError, "norm"),
    (lambda p, g: pascanu_fallback(g, p, True), TypeError, "norm"),
    (lambda p, g: pascanu_fallback(g, p, 1.0, cutoff=0), ValueError, "cutoff"),
    (lambda p, g: pascanu_fallback(g, p, math.inf, shrink=-1), ValueError, "shrink"),
    (lambda p, g: pascanu_fallback(g, {k: p[k] for k in p if k != "W_hh"}, math.inf),
     KeyError, "W_hh"),
    (lambda p, g: pascanu_fallback({"W_hh": g["W_hh"]}, p, math.inf), KeyError, "keys"),
    (lambda p, g: pascanu_fallback([1.0], p, math.inf), TypeError, "grads"),
    (lambda p, g: pascanu_fallback(g, [1.0], math.inf), TypeError, "params"),
])
def test_bad_arguments(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(model_params(np.float64), model_params(np.float64, seed=1))
