"""Regressions of issue 11 for the core: no non-finite gradient returned silently, h that is
not a tanh output rejected, forward overflow caught, results that do not depend on other
threads, no hang or lost BLAS setting after fork, bounded scratch memory, Ctrl-C within
about a second, and batch_first."""
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest
import rnnx
from threadpoolctl import threadpool_limits

from rnnx.core import threads
from _reference import random_problem

f32 = np.float32


def _raises_on(output, x, W_xh, W_hh, b_h, grad_h, h0=None):
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    with pytest.raises(rnnx.GradientOverflowError) as info:
        rnnx.rnn_backward(x, h, grad_h, W_xh, W_hh, b_h, h0)
    err = info.value
    assert err.output == output
    assert output in str(err) and "non-finite" in str(err)
    assert isinstance(err, FloatingPointError)
    assert np.isfinite(err.delta_norms).all()       # the backward signal stayed finite
    return err


# --- 1. every output of the backward kernel is checked, and named --------------------------

def test_dh0_that_overflows_is_named():
    # the case: W_hh = 3e38 is not used forward (T = 1, h0 = 0), but
    # dh0 = dz[0] @ W_hh sums four products of 0.79 * 3e38
    x, W = np.full((1, 1, 1), .5, f32), np.ones((4, 1), f32)
    U, b = np.full((4, 4), 3e38, f32), np.zeros(4, f32)
    h = rnnx.rnn_forward(x, W, U, b)
    err = _raises_on("dh0", x, W, U, b, np.ones_like(h))
    assert err.index == (0, 0) and err.time_step == 0 and err.norm == np.inf
    assert "dh0[0, 0]" in str(err)


@pytest.mark.parametrize("H", [16, 32])
def test_dx_that_overflows_is_named(H):
    # pre-activation 1e-38 * 3e37 = 0.3 (no saturation), dx = dz @ W_xh sums H products
    # of 0.91 * 3e37 > FLT_MAX; H = 32 with B = 4, D = 32 takes the fused backward loop
    B, D = (4, 32) if H == 32 else (1, 1)
    x = np.full((1, B, D), 1e-38 / D, f32)
    W_xh, W_hh, b = np.full((H, D), 3e37, f32), np.zeros((H, H), f32), np.zeros(H, f32)
    err = _raises_on("dx", x, W_xh, W_hh, b, np.ones((1, B, H), f32))
    assert err.index == (0, 0, 0) and err.time_step == 0


def test_db_h_that_overflows_is_named():
    # T = 2, h = 0: dz[t] = grad_h[t] = 3e38 at both steps, db_h their sum
    x, W_xh = np.zeros((2, 1, 1), f32), np.full((1, 1), 1e-3, f32)
    W_hh, b = np.zeros((1, 1), f32), np.zeros(1, f32)
    err = _raises_on("db_h", x, W_xh, W_hh, b, np.full((2, 1, 1), 3e38, f32))
    assert err.index == (0,) and err.time_step == -1


def test_dW_hh_that_overflows_is_named():
    # h[0] = tanh(1), h[1] = 0: dW_hh = dz[1]^T h[0] sums 4 rows of 3e38 * 0.76; the
    # norm of delta over the batch (6e38) is taken in float64 and stays finite
    x = np.zeros((2, 4, 1), f32)
    x[0] = 1
    W_xh, W_hh, b = np.ones((1, 1), f32), np.zeros((1, 1), f32), np.zeros(1, f32)
    G = np.zeros((2, 4, 1), f32)
    G[1] = 3e38
    err = _raises_on("dW_hh", x, W_xh, W_hh, b, G)
    assert err.index == (0, 0) and err.time_step == -1


def test_dW_xh_that_overflows_is_named():
    # pre-activation 1e35 * 1e-35 = 1, dz = 1e4 * (1 - tanh(1)^2) = 4.2e3, and
    # dW_xh = dz^T x sums 4 rows of 4.2e3 * 1e35
    x = np.full((1, 4, 1), 1e35, f32)
    W_xh, W_hh, b = np.full((1, 1), 1e-35, f32), np.zeros((1, 1), f32), np.zeros(1, f32)
    err = _raises_on("dW_xh", x, W_xh, W_hh, b, np.full((1, 4, 1), 1e4, f32))
    assert err.index == (0, 0)


# --- 2. an h that is not a tanh output ------------------------------------------------------

@pytest.mark.parametrize("bad", [1e300, 1.5, -1.0000001, np.nan, -np.inf])
def test_h_outside_the_unit_interval_is_rejected(rng, bad):
    x, W_xh, W_hh, b_h, h0, G = random_problem(3, 2, 2, 4, rng=rng)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    h[1, 0, 2] = bad
    with pytest.raises(ValueError, match=r"h must be rnn_forward's output.*\[-1, 1\]"
                                         r".*h\[1, 0, 2\]"):
        rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0)


def test_h_at_exactly_one_is_a_tanh_output():
    x = np.full((2, 1, 1), 50.0)
    W_xh, W_hh, b = np.ones((1, 1)), np.zeros((1, 1)), np.zeros(1)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b)
    assert (h == 1).all()
    g = rnnx.rnn_backward(x, h, np.ones_like(h), W_xh, W_hh, b)
    assert np.isfinite(g.dx).all()


# --- 3. the forward pre-activation overflows (inf before tanh) ------------------------------

@pytest.mark.parametrize("H, B", [(3, 1), (32, 4)])        # BLAS and the kernel's path
def test_forward_preactivation_overflow_raises(H, B):
    x = np.tile(np.array([1e20, -1e20], f32), (1, B, 1))     # exact value tanh(0) = 0
    W_xh, W_hh, b = np.full((H, 2), 1e20, f32), np.zeros((H, H), f32), np.zeros(H, f32)
    with pytest.raises(FloatingPointError, match="time step t=0"):
        rnnx.rnn_forward(x, W_xh, W_hh, b)
    with pytest.raises(FloatingPointError, match="float32"):
        rnnx.rnn_forward(x[..., :1], W_xh[:, :1], W_hh, b)   # 1e40: inf, not NaN


def test_forward_overflow_through_the_recurrence_names_the_step():
    # h[0] = tanh(1); at t = 1, h[0] @ W_hh^T = 4 * 0.76 * 3e38 overflows
    x = np.zeros((3, 1, 1), f32)
    x[0] = 1
    W_xh, W_hh, b = np.ones((4, 1), f32), np.full((4, 4), 3e38, f32), np.zeros(4, f32)
    with pytest.raises(FloatingPointError, match="time step t=1"):
        rnnx.rnn_forward(x, W_xh, W_hh, b)


# --- 4. a longdouble beyond float64 -----------------------------------------------------------

@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="longdouble is float64 here")
def test_longdouble_beyond_float64_says_so():
    x = np.zeros((2, 1, 1), np.longdouble)
    x[1, 0, 0] = np.longdouble("1e400")
    with pytest.raises(ValueError, match="does not fit float64") as info:
        rnnx.rnn_forward(x, np.ones((1, 1)), np.zeros((1, 1)), np.zeros(1))
    assert "pass x as float64" not in str(info.value)
    assert "(1, 0, 0)" in str(info.value)


# --- 5. fork() while other threads run rnnx -------------------------------------------------

def _fork_during_calls(n_forks, timeout=30.0):
    """Forks n_forks children while two threads of the parent run rnnx (one of them inside
    serial_blas, as a caller's own threads may be): (hangs, failed children). Each child
    checks that it has the parent's original BLAS thread count, that its own split call
    gives the parent's result, and that serial_blas is usable."""
    rng = np.random.default_rng(5)
    problem = random_problem(100, 32, 8, 64, rng=rng, dtype=f32)[:5]   # blocks
    expected = rnnx.rnn_forward(*problem)
    original = threads.blas_threads()
    stop = threading.Event()

    def work(serial):
        while not stop.is_set():
            if serial:
                with threads.serial_blas():
                    rnnx.rnn_forward(*problem)
            else:
                rnnx.rnn_forward(*problem)

    workers = [threading.Thread(target=work, args=(s,)) for s in (False, True)]
    for w in workers:
        w.start()
    hangs = failed = 0
    try:
        for _ in range(n_forks):
            time.sleep(0.001)
            pid = os.fork()
            if pid == 0:                                   # the child
                code = 2
                try:
                    ok = threads.blas_threads() == original
                    ok = ok and np.array_equal(rnnx.rnn_forward(*problem), expected)
                    with threads.serial_blas():
                        pass
                    ok = ok and threads.blas_threads() == original
                    code = 0 if ok else 1
                finally:
                    os._exit(code)
            deadline = time.monotonic() + timeout
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    failed += os.waitstatus_to_exitcode(status) != 0
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    hangs += 1
                    break
                time.sleep(0.001)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert threads.blas_threads() == original
    return hangs, failed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_forks_during_calls_do_not_hang():
    assert _fork_during_calls(30) == (0, 0)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_300_forks_during_calls_do_not_hang():
    assert _fork_during_calls(300) == (0, 0)


# --- 6. results that do not depend on other threads -----------------------------------------

# blocks of rows (T*B*H*H >= 2^25), the BLAS products of one block (B*H*H >= 2^21, B < 8),
# and the register-blocked kernel with every gradient in the loop (D = 32)
DETERMINISM_SHAPES = [(400, 32, 8, 64), (6, 4, 8, 1024), (12, 8, 32, 64)]


def _run(problem):
    x, W_xh, W_hh, b_h, h0, G = problem
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, return_delta=True)
    return [h, g.dW_xh, g.dW_hh, g.db_h, g.dx, g.dh0, g.delta_norms, g.delta]


@pytest.mark.parametrize("dtype", [f32, np.float64])
def test_results_do_not_depend_on_other_threads(dtype):
    """Four threads run the same calls while a fifth toggles threadpool_limits: every
    result is bit-identical to the one computed alone, and the BLAS thread count is the
    original once they are done."""
    rng = np.random.default_rng(6)
    problems = [random_problem(*s, rng=rng, dtype=dtype) for s in DETERMINISM_SHAPES]
    expected = [_run(p) for p in problems]
    original = threads.blas_threads()
    stop = threading.Event()
    mismatches, errors = [], []

    def toggle():
        while not stop.is_set():
            with threadpool_limits(1, user_api="blas"):
                time.sleep(0.0005)
            time.sleep(0.0005)

    def work(i):
        try:
            for _ in range(4):
                for k, (p, want) in enumerate(zip(problems, expected)):
                    for j, (got, w) in enumerate(zip(_run(p), want)):
                        if not np.array_equal(got, w):
                            mismatches.append((i, DETERMINISM_SHAPES[k], j))
        except BaseException as exc:              # reported by the main thread
            errors.append(exc)

    toggler = threading.Thread(target=toggle)
    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    toggler.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    stop.set()
    toggler.join()
    assert not any(w.is_alive() for w in workers), "a thread hung"
    assert not errors, errors
    assert not mismatches, mismatches[:5]
    assert threads.blas_threads() == original


def test_the_plan_does_not_read_the_blas_thread_count():
    before = rnnx.core.plan.make_plan(100, 32, 8, 64, f32)
    with threadpool_limits(1, user_api="blas"):
        assert rnnx.core.plan.make_plan(100, 32, 8, 64, f32) == before


# --- 7. scratch memory ------------------------------------------------------------------------

def test_scratch_of_a_large_call_is_not_kept():
    # D = 3: the backward loop keeps dz of every step, a (T, B, H) buffer of 10 MB here
    rng = np.random.default_rng(7)
    x, W_xh, W_hh, b_h, h0, G = random_problem(200, 64, 3, 100, rng=rng)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    kept = []

    def call():            # a fresh thread: no buffer of an earlier test
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0)
            del g
            gc.collect()
            kept.append(tracemalloc.get_traced_memory()[0] - base)
        finally:
            tracemalloc.stop()

    t = threading.Thread(target=call)
    t.start()
    t.join()
    assert kept[0] < 1 << 20, f"{kept[0] / 2**20:.1f} MiB kept after the call"


# --- 8. Ctrl-C during a long call -------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time, traceback
    import numpy as np
    import rnnx
    T, B, H = 5000, 1, 2048
    x, W_xh = np.zeros((T, B, 1), np.float32), np.zeros((H, 1), np.float32)
    W_hh, b = np.full((H, H), 1e-4, np.float32), np.zeros(H, np.float32)
    h = np.zeros((T, B, H), np.float32) if sys.argv[1] == "backward" else None  # tanh(0)
    print("start", flush=True)
    t0 = time.monotonic()
    try:
        if h is None:
            rnnx.rnn_forward(x, W_xh, W_hh, b)
        else:
            rnnx.rnn_backward(x, h, np.ones_like(h), W_xh, W_hh, b)
    except KeyboardInterrupt as exc:
        # raised by the kernel itself, not after it returned: the frames from the call in
        print("interrupted in", *(f.filename for f in traceback.extract_tb(exc.__traceback__)))
        sys.exit(3)
    print("finished %.2f" % (time.monotonic() - t0), flush=True)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
@pytest.mark.parametrize("which", ["forward", "backward"])
def test_ctrl_c_stops_a_long_call(which, tmp_path):
    # cwd away from the checkout, whose rnnx/ (no compiled core) would shadow the install
    child = subprocess.Popen([sys.executable, "-c", CHILD, which], stdout=subprocess.PIPE,
                             text=True, cwd=tmp_path)
    try:
        assert child.stdout.readline().strip() == "start"
        time.sleep(0.3)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("the call ignored SIGINT for 5 s")
        waited = time.monotonic() - sent
        out = child.stdout.read()
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 3, out          # KeyboardInterrupt, before the call ended
    # raised by the kernel itself: at the look for signals in its time loop
    # (src/_interrupts.pxd), re-raised by the kernel (src/_core.pyx) once it has the GIL
    frames = out.split()
    assert frames[-1].endswith("_interrupts.pxd") and frames[-2].endswith("_core.pyx"), out
    assert waited < 3.0, waited    # about a second, and the child's exit, on a busy machine


# --- 16. batch_first --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [f32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3, 2, 4), (1, 1, 1, 1), (7, 9, 32, 32)])
def test_batch_first_is_the_transposed_layout(rng, dtype, shape):
    x, W_xh, W_hh, b_h, h0, G = random_problem(*shape, rng=rng, dtype=dtype)
    h = rnnx.rnn_forward(x, W_xh, W_hh, b_h, h0)
    hb = rnnx.rnn_forward(x.swapaxes(0, 1), W_xh, W_hh, b_h, h0, batch_first=True)
    np.testing.assert_array_equal(hb, h.swapaxes(0, 1))
    g = rnnx.rnn_backward(x, h, G, W_xh, W_hh, b_h, h0, return_delta=True)
    gb = rnnx.rnn_backward(x.swapaxes(0, 1), hb, G.swapaxes(0, 1), W_xh, W_hh, b_h, h0,
                           return_delta=True, batch_first=True)
    for name in ("dW_xh", "dW_hh", "db_h", "dh0", "delta_norms"):
        np.testing.assert_array_equal(getattr(gb, name), getattr(g, name), err_msg=name)
    np.testing.assert_array_equal(gb.dx, g.dx.swapaxes(0, 1))
    np.testing.assert_array_equal(gb.delta, g.delta.swapaxes(0, 1))


def test_batch_first_shapes_in_messages(rng):
    x, W_xh, W_hh, b_h, _, _ = random_problem(5, 3, 2, 4, rng=rng)
    with pytest.raises(ValueError, match=r"x must be 3-D with shape \(B, T, D\)"):
        rnnx.rnn_forward(x[0], W_xh, W_hh, b_h, batch_first=True)
    hb = rnnx.rnn_forward(x.swapaxes(0, 1), W_xh, W_hh, b_h, batch_first=True)
    with pytest.raises(ValueError, match=r"grad_h must have shape \(3, 5, 4\)"):
        rnnx.rnn_backward(x.swapaxes(0, 1), hb, np.ones((5, 3, 4)), W_xh, W_hh, b_h,
                          batch_first=True)
