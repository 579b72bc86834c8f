"""The time loops on several threads, one block of batch rows each (the blocks of
rnnx.core.plan, run by rnnx.core.threads): the same results as one block, checked against
the numpy reference; overflow and max_norm found across blocks; the BLAS thread count
untouched."""
import multiprocessing
import os
import threading

import numpy as np
import pytest
import rnnx
from rnnx import _core
from rnnx.core import plan, threads
from _reference import backward, orthogonal, random_problem


@pytest.fixture(params=[2, 3], ids=["2 threads", "3 threads"])
def blocks(request, monkeypatch):
    """Blocks for every shape, with a thread budget of 2 or 3 whatever the machine has."""
    if rnnx.available_kernels()[0] == "blas":
        pytest.skip("blocks need a register-blocked kernel")
    monkeypatch.setattr(plan, "MIN_WORK", 0)
    monkeypatch.setattr(plan, "MIN_ROWS_FLOAT64", plan.MIN_ROWS)    # float64 as float32
    old = threads.set_thread_budget(request.param)
    yield request.param
    threads.set_thread_budget(old)


def _split(T, B, H, n):
    got = plan.make_plan(T, B, 1, H, np.float64).blocks
    assert len(got) == n and got[0][0] == 0 and got[-1][1] == B
    assert all(r1 - r0 >= 4 for r0, r1 in got)


@pytest.mark.parametrize("T, B, D, H", [(7, 12, 3, 32), (1, 12, 5, 64), (9, 13, 1, 32),
                                        (4, 25, 6, 32), (7, 12, 32, 32), (3, 13, 64, 32)])
@pytest.mark.parametrize("with_h0", [True, False])
def test_blocks_match_the_reference(blocks, check_core, T, B, D, H, with_h0, rng):
    _split(T, B, H, blocks)
    for dtype in (np.float64, np.float32):
        problem = random_problem(T, B, D, H, rng=rng, dtype=dtype, with_h0=with_h0)
        check_core(*problem)
        check_core(*problem, clip=0.3)


@pytest.mark.parametrize("T, B, D, H", [(7, 12, 3, 40), (1, 12, 5, 64), (4, 25, 20, 33)])
@pytest.mark.parametrize("with_h0", [True, False])
def test_blocks_with_dW_hh_after_the_loop_match_the_reference(
        blocks, check_core, monkeypatch, T, B, D, H, with_h0, rng):
    """The blocks' loops leave dW_hh, dW_xh, dx and dh0 to GEMMs after them, a share of
    each on each block's thread (as where dW_hh is too large for a block's rows)."""
    monkeypatch.setattr(plan, "HOIST_BYTES_PER_ROW", 0)
    p = plan.make_plan(T, B, D, H, np.float32)
    assert len(p.blocks) == blocks and not p.dW_hh_in_loop and not p.all_in_loop
    for dtype in (np.float64, np.float32):
        problem = random_problem(T, B, D, H, rng=rng, dtype=dtype, with_h0=with_h0)
        check_core(*problem)
        check_core(*problem, clip=0.3)


def test_blocks_and_one_block_agree(blocks, monkeypatch, rng):
    x, W_xh, W_hh, b_h, h0, G = random_problem(20, 16, 4, 64, rng=rng, dtype=np.float32)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, return_delta=True)
    threads.set_thread_budget(1)
    h1 = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    g1 = rnnx.rnn_backward(x, h1, G, W_xh, W_hh, b_h, h0, return_delta=True)
    np.testing.assert_array_equal(h, h1)           # the same per-row arithmetic
    np.testing.assert_array_equal(g.delta, g1.delta)
    np.testing.assert_allclose(g.delta_norms, g1.delta_norms, rtol=1e-6)
    # partial sums add in another order; blocks make dx by plain loops where one block
    # uses BLAS (D = 4 is not a multiple of 32)
    for k in ("dW_xh", "dW_hh", "db_h", "dh0", "dx"):
        want = getattr(g1, k)
        np.testing.assert_allclose(getattr(g, k), want, rtol=1e-5,
                                   atol=1e-6 * np.abs(want).max(), err_msg=k)


@pytest.mark.parametrize("D", [3, 32])
def test_overflow_in_one_block_is_found(blocks, D):
    """delta explodes (W_hh = 3 Q, h = 0) in the rows of the last block only; the step
    is where the reference's delta first becomes non-finite."""
    T, B, H = 100, 12, 32
    rng = np.random.default_rng(1)
    x, b_h = np.zeros((T, B, D), np.float32), np.zeros(H, np.float32)
    W_xh = rng.standard_normal((H, D)).astype(np.float32)
    W_hh = (3 * orthogonal(H, rng)).astype(np.float32)
    G = np.zeros((T, B, H), np.float32)
    G[-1, -4:] = 1e-3 * rng.standard_normal((4, H))
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
    ref = backward(x, h, G, W_xh, W_hh, b_h)
    before = threads.blas_threads()
    with pytest.raises(rnnx.GradientOverflowError) as info:
        rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h)
    assert info.value.time_step == ref["t_fail"] and ref["t_fail"] > 0
    assert np.isnan(info.value.delta_norms[:ref["t_fail"]]).all()
    assert threads.blas_threads() == before            # untouched, also after the error


@pytest.mark.parametrize("D", [2, 32])
def test_max_norm_counts_every_block(blocks, D):
    """Two equal halves of the batch: each block's part of ||delta[t]|| is 1/sqrt(2) of
    the whole, so a threshold between the two is passed only by the whole."""
    T, B, H = 30, 16, 32
    rng = np.random.default_rng(2)
    x, b_h = np.zeros((T, B, D)), np.zeros(H)
    W_xh, W_hh = rng.standard_normal((H, D)), 1.5 * orthogonal(H, rng)
    G = np.zeros((T, B, H))
    G[-1] = np.tile(rng.standard_normal((1, H)), (B, 1))   # every row alike
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h)
    norms = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h).delta_norms   # 1.5^k growth
    t = 10
    threshold = norms[t] * 0.9            # the whole passes it at t, no block's part does
    assert norms[t + 1] < threshold and norms[t] / np.sqrt(2) < threshold
    with pytest.raises(rnnx.GradientOverflowError) as info:
        rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, max_norm=threshold)
    assert info.value.time_step == t
    assert info.value.norm == pytest.approx(norms[t], rel=1e-12)


def test_threads_of_callers_and_blocks_together(blocks, rng):
    """Several callers at once, each splitting its batch: every result correct, and the
    BLAS thread count unchanged once all are done."""
    problems = [random_problem(15, 12, 3, 32, rng=rng) for _ in range(4)]
    expected = [rnnx.rnn_forward(*p[:5]) for p in problems]
    before = threads.blas_threads()
    results = [None] * len(problems)

    def work(i):
        for _ in range(20):
            results[i] = rnnx.rnn_forward(*problems[i][:5])

    callers = [threading.Thread(target=work, args=(i,)) for i in range(len(problems))]
    for th in callers:
        th.start()
    for th in callers:
        th.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)
    assert threads.blas_threads() == before


def _split_forward_in_child(problem, expected):
    os._exit(0 if np.array_equal(rnnx.rnn_forward(*problem), expected) else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_child_makes_its_own_threads(blocks, rng):
    """The parent's worker threads do not exist in a fork()ed child: its calls must not
    wait for them forever."""
    problem = random_problem(15, 12, 3, 32, rng=rng)[:5]
    expected = rnnx.rnn_forward(*problem)                # the parent's pool now exists
    child = multiprocessing.get_context("fork").Process(
        target=_split_forward_in_child, args=(problem, expected))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0


def _blocks(T, B, H, dtype, threads=2, min_work=None, kernel=None):
    return plan.make_plan(T, B, 1, H, dtype, threads=threads, min_work=min_work,
                          kernel=kernel).blocks


def test_one_block_where_threads_do_not_pay():
    for dtype in (np.float32, np.float64):
        assert _blocks(100, 7, 64, dtype) == ((0, 7),)               # fewer than 8 rows
        assert _blocks(2, 32, 32, dtype) == ((0, 32),)               # too little work
        assert _blocks(10 ** 6, 32, 15, dtype) == ((0, 32),)         # H < 16: BLAS
        assert _blocks(10 ** 6, 32, 64, dtype, kernel="blas") == ((0, 32),)
        assert _blocks(10 ** 6, 32, 64, dtype, threads=1) == ((0, 32),)


class _AnyCPU:
    """Stands in for rnnx._core on a CPU where a register-blocked kernel runs: a rule on
    shapes stricter than the kernel's own."""

    @staticmethod
    def small_gemm_fits(m, n):
        return m >= 4 and n % 32 == 0


def _any_cpu(monkeypatch):
    monkeypatch.setattr(plan, "_core", _AnyCPU)
    monkeypatch.setattr(plan, "kernel_in_force", lambda: "avx512")


def test_float64_work_counts_double(monkeypatch):
    # T*B*H*H = 200*32*64*64 = 2.6e7 is below the threshold in float32 and, doubled,
    # above it in float64
    _any_cpu(monkeypatch)
    assert 200 * 32 * 64 * 64 < plan.MIN_WORK <= 2 * 200 * 32 * 64 * 64
    assert _blocks(200, 32, 64, np.float32) == ((0, 32),)
    assert _blocks(200, 32, 64, np.float64) == ((0, 16), (16, 32))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_float64_blocks_are_at_least_two_of_its_tiles_high(n, monkeypatch):
    """A float64 block of 8 rows is a tile of 6 and a third: fewer than 2 * 12 rows stay
    one block, more split into blocks of at least MIN_ROWS_FLOAT64 rows."""
    _any_cpu(monkeypatch)
    least = plan.MIN_ROWS_FLOAT64
    assert least == 12
    for B in range(8, 100):
        got = _blocks(100, B, 32, np.float64, threads=n, min_work=0)
        assert len(got) == max(1, min(n, B // least)), (B, got)
        assert got[0][0] == 0 and got[-1][1] == B
        assert all(a[1] == b[0] for a, b in zip(got, got[1:]))
        assert len(got) == 1 or all(r1 - r0 >= least for r0, r1 in got), (B, got)
    # sizes like issue 17's (100, 20, 1, 100) and (200, 16, 3, 200), with an H this
    # stand-in CPU fits, and 2 threads: one float64 block (two of 8 rows before)
    assert _blocks(100, 20, 96, np.float64) == ((0, 20),)
    assert _blocks(200, 16, 192, np.float64) == ((0, 16),)
    assert _blocks(200, 16, 192, np.float32) == ((0, 8), (8, 16))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_blocks_cover_the_batch_in_tiles_of_at_least_4_rows(n, monkeypatch):
    _any_cpu(monkeypatch)
    for B in range(8, 100):
        got = _blocks(100, B, 32, np.float32, threads=n, min_work=0)
        assert len(got) == min(n, B // 4)
        assert got[0][0] == 0 and got[-1][1] == B
        assert all(a[1] == b[0] for a, b in zip(got, got[1:]))
        assert all(r1 - r0 >= 4 for r0, r1 in got), (B, got)


def test_the_plan_of_blocks_uses_the_kernel_everywhere(monkeypatch):
    """Blocks make no BLAS call in their time loops: each step's products, and where D
    fits the weight gradients and dx, are the register-blocked kernel's."""
    _any_cpu(monkeypatch)
    p = plan.make_plan(100, 64, 64, 256, np.float32, threads=2)
    assert len(p.blocks) == 2 and p.step_kernel and p.all_in_loop and p.dx_kernel
    # D = 8: plain loops make the products by W_xh in the blocks' loops; one block
    # leaves them to GEMMs after its loop
    p = plan.make_plan(100, 64, 8, 256, np.float32, threads=2)
    assert p.step_kernel and p.all_in_loop and not p.dx_kernel
    assert not plan.make_plan(100, 64, 8, 256, np.float32, threads=2,
                              min_work=float("inf")).all_in_loop
    # one block of a large product: BLAS's threads make it, unless the budget is 1
    assert not plan.make_plan(10, 4, 8, 1024, np.float32, threads=2).step_kernel
    assert plan.make_plan(10, 4, 8, 1024, np.float32, threads=1).step_kernel
