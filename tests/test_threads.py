"""Threads: concurrent calls (the kernels release the GIL and keep their scratch per
thread), and the rule that decides how many threads each call's BLAS products use
(rnnx.core.plan's blas_threads, rnnx.core.threads' blas_limit, product_blocks, matmul):
which calls run on one BLAS thread, not how fast (benchmarks/threads.py times them)."""
import threading

import numpy as np
import pytest
import rnnx
from rnnx.core import plan, threads
from threadpoolctl import threadpool_limits
from _reference import random_problem

N_THREADS, N_CALLS = 4, 20


def run(problem):
    """rnn_forward + rnn_backward (and the Jacobian log-norms): every array they return."""
    x, W_xh, W_hh, b_h, h0, G = problem
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, clip_delta=5.0, return_delta=True)
    L = rnnx.jacobian_log_norms(x, W_xh, W_hh, b_h, h0)
    return [h, g.dW_xh, g.dW_hh, g.db_h, g.dx, g.dh0, g.delta_norms, g.delta, L]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threads_match_serial_calls(dtype):
    rng = np.random.default_rng(3)
    # each thread its own data; shapes differ between threads (so do the scratch sizes)
    # and cover the GEMV (B = 1), small-GEMM (B >= 4, H = 32) and BLAS paths
    shapes = [(20, 1, 3, 8), (12, 4, 5, 32), (15, 3, 4, 17), (10, 5, 2, 64)]
    problems = [[random_problem(*shapes[i], rng=rng, dtype=dtype, scale=1.3)
                 for _ in range(N_CALLS)] for i in range(N_THREADS)]
    serial = [[run(p) for p in ps] for ps in problems]

    results = [None] * N_THREADS
    errors = []
    start = threading.Barrier(N_THREADS)

    def worker(i):
        try:
            start.wait()
            results[i] = [run(p) for p in problems[i]]
        except BaseException as exc:          # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    for i in range(N_THREADS):
        for c in range(N_CALLS):
            for got, want in zip(results[i][c], serial[i][c]):
                np.testing.assert_array_equal(got, want, err_msg=f"thread {i}, call {c}")


def test_errors_in_one_thread_do_not_disturb_another():
    # one thread keeps overflowing (float32, W_hh = 10 I) while another computes
    rng = np.random.default_rng(4)
    good = random_problem(50, 3, 4, 9, rng=rng)
    expected = run(good)
    T, B, H = 60, 2, 4
    x = np.zeros((T, B, 3), np.float32)
    bad = (x, np.ones((H, 3), np.float32), 10 * np.eye(H, dtype=np.float32),
           np.zeros(H, np.float32), None, np.ones((T, B, H), np.float32))
    h_bad = rnnx.rnn_forward(*bad[:5])
    failures, outputs = [], []

    def explode():
        for _ in range(N_CALLS):
            try:
                rnnx.rnn_backward(x, h_bad, bad[5], *bad[1:4])
            except rnnx.GradientOverflowError as err:
                failures.append(err.time_step)

    def compute():
        outputs.extend(run(good) for _ in range(N_CALLS))

    threads = [threading.Thread(target=explode), threading.Thread(target=compute)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # h = 0 and grad_h = 1 everywhere: delta at lag k is 1 + 10 + ... + 10^k = 1.1 * 10^k,
    # which passes FLT_MAX = 3.4e38 first at k = 39
    assert failures == [T - 1 - 39] * N_CALLS
    for out in outputs:
        for got, want in zip(out, expected):
            np.testing.assert_array_equal(got, want)


# --- the rule: which calls run on one BLAS thread -------------------------------------------

class _AnyCPU:
    """Stands in for rnnx._core on a CPU with AVX-512: the register-blocked kernel's rule
    on shapes."""

    @staticmethod
    def small_gemm_fits(m, n):
        return m >= 4 and n % 32 == 0


class _NoKernelCPU:
    """Stands in for rnnx._core on a CPU where the register-blocked kernel never runs."""

    @staticmethod
    def small_gemm_fits(m, n):
        return False


def _blas_threads(monkeypatch, core, T, B, D, H, threads=2):
    monkeypatch.setattr(plan, "_core", core)
    # kernel: a variant in force, so that the stand-in decides (where none runs, as with
    # MSVC, the plan would not ask it)
    return plan.make_plan(T, B, D, H, np.float32, threads=threads,
                          kernel="avx512").blas_threads


def test_the_plan_leaves_blas_alone_where_the_core_makes_no_blas_call(monkeypatch):
    # blocks of rows (their loops make every product themselves)
    assert _blas_threads(monkeypatch, _AnyCPU, 100, 32, 2, 128) is None
    assert _blas_threads(monkeypatch, _AnyCPU, 50, 64, 2, 512) is None
    # one block where the register-blocked kernel makes every product (D = 32 fits)
    assert _blas_threads(monkeypatch, _AnyCPU, 12, 8, 32, 64) is None


def test_the_plan_puts_small_blas_products_on_one_thread(monkeypatch):
    # Pascanu's sizes where the kernel does not tile H = 50: per-step BLAS GEMMs
    for T in (50, 100, 200):
        assert _blas_threads(monkeypatch, _AnyCPU, T, 20, 2, 50) == 1
        assert _blas_threads(monkeypatch, _NoKernelCPU, T, 20, 2, 50) == 1
    # one block with the kernel for the steps but BLAS for dx (D = 8 is not tiled)
    assert _blas_threads(monkeypatch, _AnyCPU, 12, 8, 8, 64) == 1
    # B * H * H = 2^21 - 1 < THREADED_PRODUCT on a CPU without the kernel
    assert _blas_threads(monkeypatch, _NoKernelCPU, 10, 1, 3, 1448) == 1
    assert 1448 * 1448 < plan.THREADED_PRODUCT


@pytest.mark.parametrize("threads", [2, 3])
def test_the_plan_gives_large_per_step_products_to_blas_threads(monkeypatch, threads):
    # one block (B = 4 < 8) of a large product: BLAS's threads make every step's
    assert _blas_threads(monkeypatch, _AnyCPU, 10, 4, 8, 1024, threads) == threads
    assert _blas_threads(monkeypatch, _NoKernelCPU, 10, 64, 8, 256, threads) == threads
    # a budget of one thread: one thread
    assert _blas_threads(monkeypatch, _NoKernelCPU, 10, 64, 8, 256, 1) == 1


def test_product_blocks():
    big = threads.SPLIT_WORK
    assert threads.product_blocks(1000, big - 1, threads=2) == ((0, 1000),)   # small work
    assert threads.product_blocks(1000, big, threads=1) == ((0, 1000),)       # one thread
    assert threads.product_blocks(63, big, threads=2) == ((0, 63),)           # few rows
    assert threads.product_blocks(64, big, threads=2) == ((0, 32), (32, 64))
    for n in (2, 3, 4):
        for rows in (64, 100, 1001, 3200):
            got = threads.product_blocks(rows, 10 * big, threads=n)
            assert len(got) == min(n, rows // threads.MIN_SPLIT_ROWS)
            assert got[0][0] == 0 and got[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(got, got[1:]))
            assert all(i1 - i0 >= threads.MIN_SPLIT_ROWS for i0, i1 in got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (3, 1, 5), (4097, 70, 61), (61, 70, 4097),
                                     (64, 4096, 64), (257, 129, 255)])
def test_matmul_is_the_product_split_or_not(monkeypatch, dtype, m, k, n):
    rng = np.random.default_rng(m * k * n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for budget in (1, 2, 3):
        monkeypatch.setattr(threads, "SPLIT_WORK", 0 if budget > 1 else 1 << 62)
        old = threads.set_thread_budget(budget)
        try:
            got = threads.matmul(a, b)
            got_t = threads.matmul(b.T, a.T)      # transposed views, split the other way
        finally:
            threads.set_thread_budget(old)
        assert got.dtype == dtype and got.shape == (m, n)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.sqrt(k))
        np.testing.assert_allclose(got_t, want.T, rtol=tol, atol=tol * np.sqrt(k))


def _counts():
    """The thread counts of the OpenBLAS libraries rnnx calls (numpy's and scipy's)."""
    return [get() for get, _ in threads._setters()[0]]


needs_limits = pytest.mark.skipif(not threads.can_serialise(),
                                  reason="no OpenBLAS whose thread count can be set quietly")


@pytest.fixture
def two_blas_threads():
    """Every BLAS rnnx calls on 2 threads (the default on a 2-core machine)."""
    with threadpool_limits(limits=2, user_api="blas"):
        yield


@needs_limits
def test_blas_limit_nests_and_restores(two_blas_threads):
    assert len(_counts()) >= 1
    assert _counts() == [2] * len(_counts())
    with threads.serial_blas():
        assert _counts() == [1] * len(_counts())
        with threads.blas_limit(3):          # never above the count before the first
            assert _counts() == [2] * len(_counts())
            with threads.blas_limit(None):   # leaves it alone
                assert _counts() == [2] * len(_counts())
        assert _counts() == [1] * len(_counts())
        with pytest.raises(ZeroDivisionError):
            with threads.blas_limit(1):
                1 / 0
        assert _counts() == [1] * len(_counts())
    assert _counts() == [2] * len(_counts())


@needs_limits
def test_blas_limit_restores_after_sections_of_several_threads(two_blas_threads):
    barrier, errors = threading.Barrier(4), []

    def work(i):
        try:
            for _ in range(200):
                with threads.blas_limit(1 + i % 2):
                    barrier.wait(timeout=30) if _ == 0 else None
        except BaseException as exc:          # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors, errors
    assert _counts() == [2] * len(_counts())


def _spy(monkeypatch, module, name, seen):
    """Wrap module.name so that each call records the BLAS thread counts it ran under."""
    original = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append((name, _counts()))
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, spy)


@needs_limits
@pytest.mark.parametrize("readout", ["last", "all"])
def test_a_training_step_at_pascanus_sizes_runs_on_one_blas_thread(
        monkeypatch, two_blas_threads, readout):
    """Every BLAS call of a Trainer step -- the core, the readout, Omega's products -- runs
    under one thread, and the counts are the user's again after the step."""
    from rnnx.core import recurrence
    from rnnx.model import regularizers, rnn
    seen = []
    for module, name in [(rnn, "forward_checked"), (rnn, "backward_checked"),
                         (rnn, "matmul"), (regularizers, "matmul"),
                         (recurrence, "forward_checked")]:
        _spy(monkeypatch, module, name, seen)
    old = threads.set_thread_budget(2)
    try:
        model = rnnx.RNN(2, 50, 1, readout=readout, seed=0)
        trainer = rnnx.Trainer(model, rnnx.SGD(1e-3), omega=2.0, progress=False)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((100, 20, 2)).astype(np.float32)
        y = rng.standard_normal((100, 20, 1) if readout == "all" else (20, 1))
        trainer.train_step(x, y.astype(np.float32))
        rnnx.rnn_forward(x, *[model.params[k] for k in ("W_xh", "W_hh", "b_h")])
    finally:
        threads.set_thread_budget(old)
    names = {name for name, _ in seen}
    assert {"forward_checked", "backward_checked", "matmul"} <= names
    assert all(counts == [1] * len(counts) for _, counts in seen), seen
    assert _counts() == [2] * len(_counts())


@pytest.mark.parametrize("form", ["code", "eq9"])
def test_omega_does_not_depend_on_the_thread_budget(monkeypatch, form):
    """Omega's products split over rnnx's threads give one thread's to rounding (OpenBLAS
    may make a block's edge rows in another order than the whole product's)."""
    from rnnx.model.regularizers import OMEGA_FORMS
    rng = np.random.default_rng(7)
    T, B, H = 20, 16, 96
    h = np.tanh(rng.standard_normal((T, B, H))).astype(np.float32)
    delta = rng.standard_normal((T, B, H)).astype(np.float32)
    W = (rng.standard_normal((H, H)) / np.sqrt(H)).astype(np.float32)
    results = []
    for budget, split in ((1, 1 << 62), (2, 0), (3, 0)):
        monkeypatch.setattr(threads, "SPLIT_WORK", split)
        old = threads.set_thread_budget(budget)
        try:
            results.append(OMEGA_FORMS[form](h, delta, W))
        finally:
            threads.set_thread_budget(old)
    value1, grad1 = results[0]
    for value, grad in results[1:]:
        assert value == pytest.approx(value1, rel=1e-12)
        np.testing.assert_allclose(grad, grad1, rtol=1e-6, atol=1e-7 * np.abs(grad1).max())


@needs_limits
def test_the_models_lapack_calls_run_on_one_blas_thread(monkeypatch, two_blas_threads):
    """The initialisation's QR and W_hh's diagnostics (eigenvalues, singular values) of an
    (H, H) matrix run on one BLAS thread; the counts are the user's again afterwards."""
    seen = []
    for name in ("qr", "svd", "eigvals"):
        _spy(monkeypatch, np.linalg, name, seen)
    model = rnnx.RNN(3, 64, 2, init="orthogonal", seed=0)
    model.diagnostics()
    assert {"qr", "svd", "eigvals"} <= {name for name, _ in seen}
    assert all(counts == [1] * len(counts) for _, counts in seen), seen
    assert _counts() == [2] * len(_counts())
