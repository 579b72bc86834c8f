"""Fixtures shared by the core tests."""
import sys
from pathlib import Path

import numpy as np
import pytest
import rnnx

# The tests import the numpy reference (tests/_reference.py) by its bare name. The default
# import mode puts tests/ on sys.path for them; --import-mode=importlib does not, so this
# conftest (imported first) does, for every mode.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from _reference import TOL, assert_close, backward, forward  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


@pytest.fixture(scope="session")
def check_core():
    """check(x, W_xh, W_hh, b_h, h0, G, clip=None) runs rnnx's forward and backward and
    compares h, every gradient, delta_norms and delta with the float64 numpy reference
    computed from the same (possibly float32-rounded) inputs. Returns (h, g, ref).

    Session-scoped so that hypothesis tests may use it too.
    """
    def check(x, W_xh, W_hh, b_h, h0, G, *, clip=None):
        dtype = x.dtype
        rtol = TOL[dtype]
        h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
        up = [None if a is None else a.astype(np.float64) for a in (x, W_xh, W_hh, b_h, h0, G)]
        x64, W_xh64, W_hh64, b_h64, h064, G64 = up
        h_ref = forward(x64, W_xh64, W_hh64, b_h64, h064)
        assert h.dtype == dtype
        assert_close(h, h_ref, rtol, "h")

        g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, clip_delta=clip, return_delta=True)
        ref = backward(x64, h_ref, G64, W_xh64, W_hh64, b_h64, h064, clip=clip)
        assert ref["t_fail"] is None
        for name in ("dW_xh", "dW_hh", "db_h", "dx", "dh0", "delta"):
            got = getattr(g, name)
            assert got.dtype == dtype, name
            assert_close(got, ref[name], rtol, name)
        assert g.delta_norms.dtype == np.float64
        assert_close(g.delta_norms, ref["delta_norms"], rtol, "delta_norms")
        return h, g, ref

    return check
