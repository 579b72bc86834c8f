"""Clipping transformations against hand-computed references."""
import numpy as np
import pytest

from rnnx.optim.clipping import (ClipReport, adaptive_clip, autoclip, chain, clip_by_global_norm,
                           clip_by_parameter_norm, clip_by_value, global_norm)


def grads3():
    # global norm sqrt(9 + 16 + 144) = 13
    return {"W": np.array([[3.0, 0.0], [0.0, 4.0]]), "b": np.array([12.0])}


def frozen(d):
    return {k: v.copy() for k, v in d.items()}


def assert_unmutated(before, after):
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_global_norm():
    assert global_norm(grads3()) == 13.0
    assert global_norm({}) == 0.0 and global_norm({"a": np.zeros(3)}) == 0.0
    # No overflow for huge entries, no underflow for tiny ones.
    assert global_norm({"a": np.array([3e200]), "b": np.array([4e200])}) == pytest.approx(5e200)
    assert global_norm({"a": np.float32([3e-30, 4e-30])}) == pytest.approx(5e-30, rel=1e-6)
    assert global_norm({"a": np.float32([3e30, 4e30])}) == pytest.approx(5e30, rel=1e-6)
    assert np.isnan(global_norm({"a": np.array([1.0, np.inf]), "b": np.array([np.nan])}))
    assert global_norm({"a": np.array([1.0, -np.inf])}) == np.inf
    with pytest.raises(TypeError, match="dict"):
        global_norm([np.ones(2)])


def test_clip_by_global_norm():
    g = grads3()
    keep = frozen(g)
    new, r = clip_by_global_norm(6.5)(g)
    assert_unmutated(keep, g)
    np.testing.assert_allclose(new["W"], keep["W"] * 0.5, rtol=1e-15)
    np.testing.assert_allclose(new["b"], [6.0], rtol=1e-15)
    assert isinstance(r, ClipReport)
    assert (r.norm_before, r.norm_after, r.coefficient) == pytest.approx((13, 6.5, 0.5))
    new, r = clip_by_global_norm(13.0)(g)              # at the threshold: unchanged
    assert r == ClipReport(13.0, 13.0, 1.0)
    np.testing.assert_array_equal(new["W"], keep["W"])
    f32 = {"a": np.float32([30.0, 40.0])}
    new, r = clip_by_global_norm(5.0)(f32)
    assert new["a"].dtype == np.float32
    np.testing.assert_allclose(new["a"], [3.0, 4.0], rtol=1e-6)


def test_clip_by_value():
    g = grads3()
    keep = frozen(g)
    new, r = clip_by_value(3.5)(g)
    assert_unmutated(keep, g)
    np.testing.assert_array_equal(new["W"], [[3.0, 0.0], [0.0, 3.5]])
    np.testing.assert_array_equal(new["b"], [3.5])
    after = np.sqrt(9 + 3.5**2 + 3.5**2)
    assert (r.norm_before, r.norm_after, r.coefficient) == pytest.approx((13, after, after / 13))
    assert clip_by_value(1.0)({"a": np.float32([-2, 0.5])})[0]["a"].dtype == np.float32


def test_clip_by_parameter_norm():
    g = grads3()                                  # ||W|| = 5, ||b|| = 12
    new, r = clip_by_parameter_norm(6.0)(g)
    np.testing.assert_array_equal(new["W"], g["W"])
    np.testing.assert_allclose(new["b"], [6.0], rtol=1e-15)
    assert r.norm_after == pytest.approx(np.sqrt(25 + 36))


def test_adaptive_clip_unit_wise():
    params = {"W": np.array([[1.0, 0.0], [0.0, 0.0]]),   # row norms 1 and 0 (-> eps)
              "b": np.array([2.0, 1e-6])}
    g = {"W": np.array([[0.3, 0.4], [0.3, 0.4]]),         # row norms 0.5
         "b": np.array([0.1, 0.5])}
    keep = frozen(g)
    new, r = adaptive_clip(clipping=0.1, eps=1e-3)(g, params)
    assert_unmutated(keep, g)
    # Row 0: limit 0.1 * 1 = 0.1 -> scale 0.2. Row 1: limit 0.1 * 1e-3 -> scale 2e-4.
    np.testing.assert_allclose(new["W"], [[0.06, 0.08], [0.3 * 2e-4, 0.4 * 2e-4]], rtol=1e-12)
    # Bias entries are units: |0.1| <= 0.1*2 stays; |0.5| > 0.1*1e-3 -> 1e-4 (sign kept).
    np.testing.assert_allclose(new["b"], [0.1, 1e-4], rtol=1e-12)
    assert r.norm_before == pytest.approx(global_norm(keep))
    assert r.norm_after == pytest.approx(global_norm(new))
    with pytest.raises(ValueError, match="needs params"):
        adaptive_clip()(g)
    with pytest.raises(ValueError, match=r"params\['b'\]"):
        adaptive_clip()(g, {"W": params["W"]})


def test_autoclip_percentile_of_history():
    t = autoclip(percentile=50.0)
    norms = []
    for scale in (1.0, 3.0, 2.0, 10.0):
        g = {"a": np.array([scale, 0.0])}
        new, r = t(g)
        norms.append(scale)
        threshold = np.percentile(norms, 50.0)        # the current norm included
        assert r.norm_after == pytest.approx(min(scale, threshold))
        np.testing.assert_allclose(new["a"][0], min(scale, threshold))
    np.testing.assert_array_equal(t.history, [1.0, 3.0, 2.0, 10.0])
    # The first call never clips: its threshold is its own norm.
    assert autoclip(10.0)({"a": np.array([7.0])})[1].coefficient == 1.0


def test_autoclip_window_and_state_round_trip():
    t = autoclip(percentile=0.0, window=2)
    for s in (5.0, 1.0, 4.0):
        t({"a": np.array([s])})
    np.testing.assert_array_equal(t.history, [1.0, 4.0])
    state = t.state_dict()
    twin = autoclip(percentile=0.0, window=2)
    twin.load_state_dict(state)
    a, ra = t({"a": np.array([3.0])})
    b, rb = twin({"a": np.array([3.0])})
    assert ra == rb and a["a"][0] == b["a"][0] == 3.0      # window now [4, 3]: min 3
    np.testing.assert_array_equal(t.history, twin.history)
    with pytest.raises(KeyError, match="history"):
        twin.load_state_dict({})


@pytest.mark.parametrize("make", [
    lambda: clip_by_global_norm(1.0), lambda: clip_by_value(1.0),
    lambda: clip_by_parameter_norm(1.0), lambda: adaptive_clip(), lambda: autoclip(),
    lambda: chain(clip_by_value(1.0), clip_by_global_norm(1.0)),
])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_grads_pass_through_unchanged(make, bad):
    g = {"W": np.array([[1.0, bad], [2.0, 3.0]]), "b": np.array([5.0])}
    params = {"W": np.ones((2, 2)), "b": np.ones(1)}
    t = make()
    new, r = t(g, params)
    assert new is not g
    np.testing.assert_array_equal(new["W"], g["W"])
    np.testing.assert_array_equal(new["b"], g["b"])
    if bad == np.inf:
        assert r.norm_before == np.inf and r.norm_after == np.inf
    else:
        assert np.isnan(r.norm_before) and np.isnan(r.norm_after)
    assert r.coefficient == 1.0
    if isinstance(t, autoclip):
        assert t.history.size == 0                  # not recorded in the history


def test_chain():
    g = grads3()
    t = chain(clip_by_value(5.0), clip_by_global_norm(2.0), autoclip(50.0))
    new, r = t(g)
    # clip_by_value: W stays, b -> 5; norm sqrt(50); then rescaled to 2; autoclip: 1st call.
    step1 = {"W": g["W"], "b": np.array([5.0])}
    expected = {k: v * (2.0 / np.sqrt(50.0)) for k, v in step1.items()}
    for k in g:
        np.testing.assert_allclose(new[k], expected[k], rtol=1e-12)
    assert (r.norm_before, r.norm_after, r.coefficient) == pytest.approx((13, 2, 2 / 13))
    state = t.state_dict()
    assert list(state) == ["2.history"]
    twin = chain(clip_by_value(5.0), clip_by_global_norm(2.0), autoclip(50.0))
    twin.load_state_dict(state)
    np.testing.assert_array_equal(twin.transforms[2].history, [2.0])
    assert chain()(g)[1] == ClipReport(13.0, 13.0, 1.0)
    with pytest.raises(KeyError, match="unexpected key"):
        twin.load_state_dict({"7.history": np.ones(1)})
    with pytest.raises(TypeError, match="chain argument 1"):
        chain(clip_by_value(1.0), lambda g, p: g)


def test_zero_grads():
    new, r = clip_by_global_norm(1.0)({"a": np.zeros(3)})
    assert r == ClipReport(0.0, 0.0, 1.0)


def test_stateless_state_dict():
    t = clip_by_global_norm(1.0)
    assert t.state_dict() == {}
    t.load_state_dict({})
    with pytest.raises(KeyError, match="stateless"):
        t.load_state_dict({"x": 1})


@pytest.mark.parametrize("make, pattern", [
    (lambda: clip_by_global_norm(0), "max_norm"),
    (lambda: clip_by_global_norm(float("inf")), "max_norm"),
    (lambda: clip_by_value(-1), "limit"),
    (lambda: clip_by_parameter_norm("1"), "max_norm"),
    (lambda: adaptive_clip(clipping=0), "clipping"),
    (lambda: adaptive_clip(eps=-1), "eps"),
    (lambda: autoclip(percentile=101), "percentile"),
    (lambda: autoclip(window=0), "window"),
])
def test_bad_arguments(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()
