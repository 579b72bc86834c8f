"""rnnx.training.spikes.SpikeDetector against a plain-numpy robust z-score."""
import math

import numpy as np
import pytest

from rnnx.training.spikes import SpikeDetector


def _reference_z(past, x):
    med = np.median(past)
    mad = np.median(np.abs(np.asarray(past) - med))
    return (x - med) / (1.4826 * mad)


def test_score_matches_reference_over_a_rolling_window():
    rng = np.random.default_rng(0)
    norms = rng.lognormal(0.0, 0.3, size=60)
    det = SpikeDetector(window=20, threshold=5.0, min_history=5)
    for i, n in enumerate(norms):
        past = norms[max(0, i - 20):i]
        if len(past) < 5:
            assert det.score(n) == 0.0
        else:
            assert det.score(n) == pytest.approx(_reference_z(past, n), rel=1e-12)
        det.observe(n)


def test_flags_a_jump_but_not_noise_and_only_upwards():
    rng = np.random.default_rng(1)
    det = SpikeDetector(window=50, threshold=6.0, min_history=10)
    for n in rng.normal(1.0, 0.05, size=50):
        assert not det.is_spike(n)
        det.observe(n)
    assert det.is_spike(3.0)
    assert not det.is_spike(0.01)          # a collapse is not an explosion
    assert det.is_spike(math.inf)
    assert not det.is_spike(math.nan)      # non-finite norms are the trainer's business


def test_constant_window_uses_a_relative_floor():
    det = SpikeDetector(window=10, threshold=10.0, min_history=3)
    for _ in range(10):
        det.observe(2.0)
    assert not det.is_spike(2.0 * (1 + 1e-3))      # z = 1
    assert det.is_spike(2.0 * 1.1)                 # z = 100


def test_non_finite_norms_are_not_observed_and_state_round_trips():
    det = SpikeDetector(window=5, min_history=3)
    for n in (1.0, math.inf, 2.0, math.nan, 3.0, 4.0, 5.0, 6.0):
        det.observe(n)
    state = det.state_dict()
    np.testing.assert_array_equal(state["norms"], [2.0, 3.0, 4.0, 5.0, 6.0])
    other = SpikeDetector(window=5, min_history=3)
    other.load_state_dict(state)
    assert other.score(9.0) == det.score(9.0)
    for n in (7.0, 8.0, 9.5):             # past the end of the ring: oldest ones drop out
        det.observe(n)
        other.observe(n)
        np.testing.assert_array_equal(det.state_dict()["norms"], other.state_dict()["norms"])
    np.testing.assert_array_equal(det.state_dict()["norms"], [5.0, 6.0, 7.0, 8.0, 9.5])
    assert other.score(20.0) == det.score(20.0)
    short = SpikeDetector(window=5, min_history=3)
    short.load_state_dict({"norms": np.arange(8.0)})          # a longer saved window
    np.testing.assert_array_equal(short.state_dict()["norms"], [3.0, 4.0, 5.0, 6.0, 7.0])


@pytest.mark.parametrize("kwargs,match", [
    ({"window": 2}, "window"), ({"window": 5.0}, "window"), ({"min_history": 2}, "min_history"),
    ({"window": 5, "min_history": 6}, "must not exceed"), ({"threshold": 0}, "threshold"),
    ({"threshold": math.inf}, "threshold"), ({"threshold": True}, "threshold"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpikeDetector(**kwargs)
