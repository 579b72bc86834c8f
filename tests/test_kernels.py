"""Every build of the register-blocked kernel this machine runs (rnnx.set_kernel, the
RNNX_KERNEL environment variable), and BLAS, against the numpy reference: both dtypes,
hidden and input sizes that are not multiples of the panel or of any tile, one row, and
the blocks of rows on threads giving the same bits as one block."""
import os
import subprocess
import sys

import numpy as np
import pytest
import rnnx
from rnnx import _core
from rnnx.core import kernels, plan, threads
from _reference import random_problem

RUNS = rnnx.available_kernels()


@pytest.fixture(params=RUNS)
def kernel(request):
    old = rnnx.set_kernel(request.param)
    yield request.param
    rnnx.set_kernel(old)


@pytest.mark.skipif(not os.environ.get("RNNX_EXPECT_KERNELS"),
                    reason="RNNX_EXPECT_KERNELS is set by the wheel builds only")
def test_the_wheel_carries_the_expected_variants():
    """The wheel builds (.github/workflows/wheels.yml) name the variants each platform's
    wheel must carry; "none (...)" for a build without any."""
    expected = os.environ["RNNX_EXPECT_KERNELS"]
    assert (" ".join(_core.KERNELS) or "none") == expected.split(" (")[0], _core.KERNELS


def test_auto_is_the_fastest_this_machine_runs():
    old = rnnx.set_kernel("auto")
    try:
        assert kernels.kernel_in_force() == RUNS[0]
    finally:
        rnnx.set_kernel(old)
    assert RUNS[-1] == "blas"
    assert set(RUNS) <= set(kernels.KERNEL_NAMES)


# shapes around the panel (32 columns) and the tiles (4 to 12 rows, 4 to 32 columns), with
# H and D below, at and past a multiple, B of one row to a few tiles and a remainder; H of
# 260 and 515, whose weight gradients copy their operands first (rows of 2 KiB or more in
# float64, in float32 too for 515)
SHAPES = [(3, 1, 3, 16), (4, 5, 17, 17), (3, 7, 20, 50), (2, 13, 33, 33),
          (3, 4, 16, 100), (2, 9, 40, 64), (2, 3, 1, 130), (2, 14, 21, 260), (2, 5, 17, 515)]


@pytest.mark.parametrize("T, B, D, H", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_kernel_matches_the_reference(kernel, check_core, T, B, D, H, dtype, rng):
    p = plan.make_plan(T, B, D, H, dtype)
    # fewer rows than a tile: BLAS (GEMV, and one GEMM per weight gradient)
    assert p.kernel == (kernel if B >= 4 else "blas")
    assert p.step_kernel == (p.kernel != "blas")
    problem = random_problem(T, B, D, H, rng=rng, dtype=dtype)
    check_core(*problem)
    check_core(*problem, clip=0.3)


@pytest.mark.parametrize("T, B, D, H", [(3, 7, 20, 50), (1, 6, 17, 33), (2, 14, 21, 260),
                                        (2, 5, 17, 515), (2, 9, 3, 300)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hoist", [0, float("inf")], ids=["dW_hh after", "dW_hh in loop"])
def test_weight_gradients_in_the_loop_or_after_it_match_the_reference(
        kernel, check_core, monkeypatch, T, B, D, H, dtype, hoist, rng):
    """dW_hh added up in the backward loop, or one GEMM after it (the plan's choice by its
    size per row of the block: HOIST_BYTES_PER_ROW), with h0 and without, on every path."""
    monkeypatch.setattr(plan, "HOIST_BYTES_PER_ROW", hoist)
    p = plan.make_plan(T, B, D, H, dtype)
    assert p.dW_hh_in_loop == (kernel != "blas" and hoist > 0)
    assert p.all_in_loop == (p.dW_hh_in_loop and D >= 16)
    assert p.kernel == kernel                      # the steps' products are the kernel's
    for with_h0 in (True, False):
        problem = random_problem(T, B, D, H, rng=rng, dtype=dtype, with_h0=with_h0)
        check_core(*problem)


def test_the_plan_makes_a_large_dW_hh_after_the_loop_for_blocks_of_few_rows():
    """In the loop while dW_hh is small for the block's rows (H * H * itemsize <=
    rows * HOIST_BYTES_PER_ROW), else after it; the register-blocked kernel makes every
    step's products either way."""
    run = RUNS[0]
    if run == "blas":
        pytest.skip("no register-blocked kernel here")
    per_row = plan.HOIST_BYTES_PER_ROW
    for dtype in (np.float32, np.float64):
        size = np.dtype(dtype).itemsize
        for B, H in [(16, 300), (32, 300), (64, 500), (32, 512), (16, 200), (32, 256)]:
            p = plan.make_plan(50, B, 100, H, dtype, threads=1, kernel=run)
            assert p.step_kernel and p.kernel == run
            assert p.dW_hh_in_loop == (H * H * size <= B * per_row), (B, H, dtype)
            assert p.all_in_loop == p.dW_hh_in_loop
            assert p.blas_threads == (None if p.all_in_loop else 1)
    # blocks of 32 rows at H = 512: each block's loop leaves dW_hh (1 MiB) to the GEMMs
    # after it, and makes no BLAS call itself
    p = plan.make_plan(50, 64, 128, 512, np.float32, threads=2, kernel=run)
    assert len(p.blocks) == 2 and p.step_kernel and not p.dW_hh_in_loop
    assert p.blas_threads is None


def test_the_gradients_after_the_loop_split_into_parts_give_the_whole(rng):
    """backward_gemms' parts (one per block's thread) make disjoint shares of every output
    that together are the whole."""
    T, B, D, H = 3, 5, 7, 9
    x, W_xh, W_hh, _, h0, G = random_problem(T, B, D, H, rng=rng)
    h = np.tanh(rng.standard_normal((T, B, H)))
    work = rng.standard_normal(T * B * H)

    def outputs():
        return dict(dW_xh=np.full((H, D), np.nan), dx=np.full((T, B, D), np.nan),
                    dh0=np.full((B, H), np.nan), dW_hh=np.full((H, H), np.nan))

    whole = outputs()
    _core.backward_gemms(x, h, work, W_xh, W_hh, h0=h0, **whole)
    dz = work.reshape(T, B, H)
    want = {"dW_xh": dz.reshape(-1, H).T @ x.reshape(-1, D),
            "dx": dz @ W_xh, "dh0": dz[0] @ W_hh,
            "dW_hh": dz[1:].reshape(-1, H).T @ h[:-1].reshape(-1, H) + dz[0].T @ h0}
    for parts in (2, 4, 11):                        # more parts than B or H: empty shares
        split = outputs()
        for part in range(parts):
            _core.backward_gemms(x, h, work, W_xh, W_hh, h0=h0, part=part, parts=parts,
                                 **split)
        for name, value in want.items():
            np.testing.assert_allclose(whole[name], value, rtol=1e-12, err_msg=name)
            np.testing.assert_allclose(split[name], value, rtol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match="part must be"):
        _core.backward_gemms(x, h, work, W_xh, W_hh, part=2, parts=2, **outputs())
    with pytest.raises(ValueError, match="dW_xh must be"):
        wrong = dict(outputs(), dh0=np.empty((B, D)))
        _core.backward_gemms(x, h, work, W_xh, W_hh, **wrong)


@pytest.mark.parametrize("D, H", [(5, 50), (40, 36), (20, 100)])
def test_blocks_give_the_bits_of_one_block(kernel, D, H, rng):
    """Blocks split the rows between tiles differently from one block: every entry is the
    same chain of multiply-adds all the same."""
    if kernel == "blas":
        pytest.skip("blocks need a register-blocked kernel")
    x, W_xh, W_hh, b_h, h0, G = random_problem(6, 22, D, H, rng=rng, dtype=np.float32)
    old = threads.set_thread_budget(1)
    try:
        h1 = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
        g1 = rnnx.rnn_backward(x, h1, G, W_xh, W_hh, b_h, h0, return_delta=True)
        threads.set_thread_budget(3)
        plan_ = plan.make_plan(6, 22, D, H, np.float32, min_work=0)
        assert len(plan_.blocks) == 3
        saved = plan.MIN_WORK
        plan.MIN_WORK = 0
        try:
            h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
            g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, return_delta=True)
        finally:
            plan.MIN_WORK = saved
    finally:
        threads.set_thread_budget(old)
    np.testing.assert_array_equal(h, h1)
    np.testing.assert_array_equal(g.delta, g1.delta)


@pytest.mark.parametrize("n", [16, 17, 31, 32, 33, 50, 64, 100, 129])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_panels_pad_the_last_one_with_zeros(n, dtype):
    M = np.arange(5 * n, dtype=dtype).reshape(5, n) + 1
    P = _core.panels(M)
    count = -(-n // 32)
    assert P.shape == (count, 5, 32) and P.dtype == dtype and P.flags.c_contiguous
    np.testing.assert_array_equal(P.transpose(1, 0, 2).reshape(5, -1)[:, :n], M)
    assert not P.transpose(1, 0, 2).reshape(5, -1)[:, n:].any()


def test_an_unknown_or_foreign_kernel_is_refused_clearly():
    with pytest.raises(ValueError, match="kernel must be one of"):
        rnnx.set_kernel("avx1024")
    with pytest.raises(ValueError, match="kernel must be one of"):
        rnnx.set_kernel(3)
    foreign = [k for k in ("avx512", "avx2", "generic") if k not in RUNS]
    for name in foreign:
        with pytest.raises(ValueError, match="cannot run here"):
            rnnx.set_kernel(name)
    assert kernels.kernel_in_force() in RUNS            # nothing changed


def test_the_core_refuses_a_kernel_this_cpu_does_not_run(rng):
    T, B, D, H = 2, 4, 3, 32
    x, W_xh, W_hh, b_h, _, _ = random_problem(T, B, D, H, rng=rng)
    W_xh_T, W_hh_T = np.ascontiguousarray(W_xh.T), np.ascontiguousarray(W_hh.T)
    with pytest.raises(ValueError, match="kernel must be"):
        _core.recur(x, np.empty((T, B, H)), W_hh_T, b_h, r0=0, r1=B, W_xh_T=W_xh_T,
                    W_xh_P=_core.panels(W_xh_T), W_hh_P=_core.panels(W_hh_T),
                    kernel="sse9")
    with pytest.raises(ValueError, match="in panels"):       # panels without a kernel
        _core.recur(x, np.empty((T, B, H)), W_hh_T, b_h, r0=0, r1=B, W_xh_T=W_xh_T,
                    W_xh_P=_core.panels(W_xh_T), W_hh_P=_core.panels(W_hh_T))


@pytest.mark.parametrize("value, ok", [("blas", True), ("generic", True), ("nope", False)])
def test_the_environment_variable_forces_a_kernel(value, ok, tmp_path):
    code = ("import numpy as np, rnnx\n"
            "from rnnx.core import plan\n"
            "print(plan.make_plan(5, 4, 3, 64, np.float32).kernel)\n")
    env = dict(os.environ, RNNX_KERNEL=value)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    if ok and value in RUNS:
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == value
    elif not ok:
        assert run.returncode != 0
        assert "RNNX_KERNEL must be one of" in run.stderr
