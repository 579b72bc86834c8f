"""The compiled reductions that training runs every step: non-finite scans, norms, the
median and MAD of the spike detector; against numpy."""
import numpy as np
import pytest

from rnnx import _reductions


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 99, 100, 101])
def test_median_and_mad_match_numpy(n):
    rng = np.random.default_rng(n)
    for values in (rng.lognormal(size=n), rng.integers(0, 3, size=n).astype(float),
                   np.full(n, 2.5), np.sort(rng.standard_normal(n))[::-1].copy()):
        median, mad = _reductions.median_and_mad(values)
        assert median == np.median(values)
        assert mad == np.median(np.abs(values - np.median(values)))


def test_median_and_mad_leave_the_input_alone_and_refuse_empty():
    values = np.array([3.0, 1.0, 2.0, 10.0])
    assert _reductions.median_and_mad(values) == (2.5, 1.0)
    np.testing.assert_array_equal(values, [3.0, 1.0, 2.0, 10.0])
    with pytest.raises(ValueError, match="at least one"):
        _reductions.median_and_mad(np.empty(0))


def test_first_nonfinite():
    a32 = np.ones((3, 4), np.float32)
    a64 = np.ones(5)
    assert _reductions.first_nonfinite([a32, a64, np.empty((0, 2))]) == -1
    assert _reductions.first_nonfinite([]) == -1
    for bad in (np.nan, np.inf, -np.inf):
        b = a64.copy()
        b[-1] = bad
        assert _reductions.first_nonfinite([a32, b, a32]) == 1
    c = a32.copy()
    c[2, 3] = np.nan                      # the last entry, past any vector-width boundary
    assert _reductions.first_nonfinite([c]) == 0


@pytest.mark.parametrize("bad", [np.ones((4, 4))[:, ::2], np.ones(3, int), np.ones(3, np.float16),
                                 [1.0, 2.0]])
def test_reductions_refuse_what_they_cannot_read(bad):
    with pytest.raises((ValueError, TypeError)):
        _reductions.first_nonfinite([bad])
    with pytest.raises((ValueError, TypeError)):
        _reductions.l2_norms([bad])


def test_l2_norms_match_numpy_without_overflow():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal(11),
              np.empty(0), np.full(4, 1e200), np.array([3.0, np.inf]), np.array([np.nan, 1.0])]
    norms = _reductions.l2_norms(arrays)
    np.testing.assert_allclose(norms[:3], [np.linalg.norm(a.astype(np.float64))
                                           for a in arrays[:3]], rtol=1e-6)
    assert norms[3] == pytest.approx(2e200, rel=1e-12)
    assert norms[4] == np.inf and np.isnan(norms[5])
