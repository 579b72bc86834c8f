"""rnnx.Trainer: policies, logging, checkpoints, truncated BPTT, callbacks."""
import logging

import numpy as np
import pytest

import rnnx
from rnnx import tasks
from rnnx.optim.clipping import autoclip, clip_by_global_norm
from rnnx.training.history import load_history
from rnnx.model.rnn import RNN
from rnnx.optim.optimizers import SGD, Adam
from rnnx.optim.schedules import cosine
from rnnx.errors import DivergenceError
from rnnx.training.loop import Callback, Trainer


@pytest.fixture(autouse=True)
def quiet(caplog):
    caplog.set_level(logging.ERROR, logger="rnnx")


def _trainer(model=None, opt=None, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("seed", 0)
    return Trainer(model or RNN(2, 8, 1, seed=0), opt or SGD(0.01), **kw)


LONG = 400


def _exploding_model():
    # Orthogonal W_hh scaled to spectral radius 6, float32: the backward signal of a
    # LONG sequence overflows (test_explosion_... checks it against the core directly),
    # a 10-step one does not.
    return RNN(2, 32, 1, seed=0, init="orthogonal", spectral_radius=6.0)


def _batches(Ts, seed=0, B=4):
    rng = np.random.default_rng(seed)
    return [tasks.adding(T, B, rng, jitter="batch") for T in Ts]


def _same_rows(a, b):
    assert a.columns == b.columns and len(a) == len(b)
    for k in a.columns:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(a.delta_norms, b.delta_norms)


class Recorder(Callback):
    def __init__(self):
        self.events, self.finite = [], []

    def on_step_end(self, trainer, record):
        self.finite.append(all(np.isfinite(p).all() for p in trainer.model.params.values()))

    def on_event(self, trainer, event):
        self.events.append(event)


# --- explosions and policies -------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_explosion_raises_at_the_right_step_and_is_logged(tmp_path, suffix):
    data = _batches([10, 10, 10, LONG, 10])
    model = _exploding_model()
    before = {}

    def keep(trainer, record):
        before.update({k: v.copy() for k, v in trainer.model.params.items()})

    log_path = tmp_path / ("run" + suffix)
    trainer = _trainer(model, callbacks=[keep], log_path=log_path)
    with pytest.raises(rnnx.GradientOverflowError) as info:
        trainer.fit(data)
    err = info.value
    assert err.step == 4 and "training step 4" in str(err)
    # independent check: the core itself overflows on batch 4 with the params of step 3
    check = RNN(2, 32, 1, seed=0)
    check.params = {k: v.copy() for k, v in before.items()}
    with pytest.raises(rnnx.GradientOverflowError) as direct:
        check.loss_and_gradients(*data[3])
    assert err.time_step == direct.value.time_step
    for k in before:                                  # the failed step changed nothing
        np.testing.assert_array_equal(model.params[k], before[k])
    for h in (trainer.history, load_history(log_path)):
        assert list(h["step"]) == [1, 2, 3, 4]
        assert list(h["nonfinite"]) == [False, False, False, True]
        assert list(h["overflow_t"]) == [-1, -1, -1, err.time_step]
        assert h["skipped"][3] and np.isfinite(h["grad_norm"][:3]).all()
    assert load_history(log_path).delta_norms.shape == (4, data[3][0].shape[0])


@pytest.mark.parametrize("policy", ["skip", "rollback"])
def test_skip_and_rollback_never_leave_weights_nonfinite(policy):
    Ts = [10, LONG, 10, 10, LONG, LONG, 10, LONG, 10, 10]
    rec = Recorder()
    trainer = _trainer(_exploding_model(), SGD(0.05), policy=policy, callbacks=[rec],
                       max_retries=3)
    history = trainer.fit(_batches(Ts))
    assert len(history) == len(Ts) and all(rec.finite)
    failed = np.array([T == LONG for T in Ts])
    np.testing.assert_array_equal(history["nonfinite"], failed)
    np.testing.assert_array_equal(history["skipped"], failed)
    assert trainer.n_skipped == failed.sum()
    kinds = [e["event"] for e in rec.events]
    assert kinds.count("nonfinite") == failed.sum()
    if policy == "skip":
        assert kinds.count("skip") == failed.sum() and trainer.optimizer.lr_scale == 1.0
    else:
        np.testing.assert_array_equal(history["rolled_back"], failed)
        assert kinds.count("rollback") == failed.sum()
        assert trainer.optimizer.lr_scale == 0.5 ** failed.sum()
        # the logged learning rate follows the lowered scale
        assert history["lr"][-1] == pytest.approx(0.05 * 0.5 ** failed.sum())


def test_rollback_restores_an_older_state_and_gives_up_with_a_clear_error():
    model = _exploding_model()
    start = {k: v.copy() for k, v in model.params.items()}
    trainer = _trainer(model, SGD(0.05), policy="rollback", max_retries=3, rollback_depth=2)
    with pytest.raises(DivergenceError, match="3 consecutive failed steps up to step 5"):
        trainer.fit(_batches([10, 10, LONG, LONG, LONG, 10]))
    # two good states were kept (after steps 1 and 2); three failures walked back to the
    # oldest: the params after step 1
    replay = _trainer(_exploding_model(), SGD(0.05))
    replay.fit(_batches([10]))
    for k in start:
        np.testing.assert_array_equal(model.params[k], replay.model.params[k])
    assert list(trainer.history["rolled_back"]) == [False, False, True, True, True]
    assert trainer.optimizer.lr_scale == 0.5 ** 3


def test_update_that_would_make_weights_nonfinite_is_undone():
    model = RNN(2, 8, 1, seed=0, init="orthogonal", spectral_radius=3.0)
    before = {k: v.copy() for k, v in model.params.items()}
    opt = SGD(1e36)                    # any gradient entry above ~340 overflows float32
    trainer = _trainer(model, opt, policy="skip")
    history = trainer.fit(_batches([50]))
    assert history["nonfinite"][0] and history["overflow_t"][0] == -1
    assert np.isfinite(history["grad_norm"][0])       # the gradient itself was finite
    for k in before:
        np.testing.assert_array_equal(model.params[k], before[k])
    assert opt.t == 0                                 # the optimizer state was undone too


def test_raise_policy_on_a_nonfinite_update_names_the_step():
    trainer = _trainer(RNN(2, 8, 1, seed=0, init="orthogonal", spectral_radius=3.0),
                       SGD(1e36))
    with pytest.raises(FloatingPointError,
                       match=r"training step 1: the update of params\['W_xh'\] would make"):
        trainer.fit(_batches([50]))
    assert all(np.isfinite(p).all() for p in trainer.model.params.values())


def test_max_norm_is_the_overflow_threshold():
    trainer = _trainer(_exploding_model(), max_norm=1e3, policy="skip")
    history = trainer.fit(_batches([30, 6]))
    assert list(history["nonfinite"]) == [True, False] and history["overflow_t"][0] >= 0


def _explosion_run(clip):
    model = RNN(2, 32, 1, seed=0, init="orthogonal", spectral_radius=4.0)
    trainer = _trainer(model, SGD(0.1), clip=clip, policy="skip", diag_every=10)
    trainer.fit(tasks.make("adding", 50, jitter="batch"), steps=40, batch_size=16)
    return trainer


def test_global_norm_clipping_keeps_the_same_run_stable():
    wild, tame = _explosion_run(None), _explosion_run(clip_by_global_norm(1.0))
    # Without clipping the first huge gradient throws W_hh far out: its spectral radius
    # and the loss explode, and the detector marks spikes.
    assert wild.history["spectral_radius"][-1] > 1e3
    assert wild.history["spike"].any()
    # The same seed with clipping: every update has norm <= 1, W_hh stays near radius 4.
    h = tame.history
    assert not h["nonfinite"].any() and not h["skipped"].any()
    assert np.all(h["clipped_norm"] <= 1.0 + 1e-6)
    np.testing.assert_allclose(h["clip_coef"], h["clipped_norm"] / h["grad_norm"], rtol=1e-6)
    assert h["spectral_radius"][-1] < 5 and np.all(h["loss"] < 10)
    assert h["loss"][-1] < wild.history["loss"][-1]


def test_spike_policies():
    # 30 ordinary batches, then one whose targets are 1000x off: a gradient-norm spike
    # with nothing non-finite.
    data = _batches([10] * 31, B=8)
    x, t = data[20]
    data[20] = (x, t * 1000.0)
    for spikes in ("log", "skip", "rollback"):
        rec = Recorder()
        trainer = _trainer(RNN(2, 8, 1, seed=0), SGD(0.01), spikes=spikes, callbacks=[rec],
                           spike_min_history=10)
        history = trainer.fit(data)
        assert history["spike"][20] and not history["spike"][:20].any()
        if spikes != "log":        # the spike was not applied, so the norms stay ordinary
            assert history["spike"].sum() == 1
        assert not history["nonfinite"].any()
        assert history["skipped"][20] == (spikes != "log")
        assert history["rolled_back"][20] == (spikes == "rollback")
        assert "spike" in [e["event"] for e in rec.events]
    with pytest.raises(ValueError, match="spikes must be one of"):
        _trainer(spikes="raise")


def test_warnings_go_to_the_rnnx_logger(caplog):
    caplog.set_level(logging.WARNING, logger="rnnx")
    _trainer(_exploding_model(), policy="skip").fit(_batches([LONG]))
    assert any("step 1 skipped" in r.getMessage() and r.name == "rnnx"
               for r in caplog.records)


# --- logging -----------------------------------------------------------------------------

def test_record_contents_match_an_independent_computation():
    model = RNN(2, 5, 1, seed=3, dtype="float64")
    data = _batches([7, 9, 8], B=3)
    trainer = _trainer(model, SGD(0.1), diag_every=2)
    ref = model.copy()
    history = trainer.fit(data)
    for i, (x, t) in enumerate(data):
        g = ref.loss_and_gradients(x, t)
        norms = {k: np.sqrt(np.sum(v.astype(float) ** 2)) for k, v in g.grads.items()}
        assert history["loss"][i] == pytest.approx(g.loss, rel=1e-12)
        assert history["grad_norm"][i] == pytest.approx(
            np.sqrt(sum(n ** 2 for n in norms.values())), rel=1e-12)
        for k, n in norms.items():
            assert history["grad_norm_" + k][i] == pytest.approx(n, rel=1e-12)
        np.testing.assert_array_equal(history.delta_norms[i, :len(x)], g.delta_norms)
        assert history["max_delta_t"][i] == np.argmax(g.delta_norms)
        assert history["max_delta_norm"][i] == g.delta_norms.max()
        for k in ref.params:
            ref.params[k] -= 0.1 * g.grads[k]
        if (i + 1) % 2 == 0:
            W = ref.params["W_hh"]
            assert history["spectral_radius"][i] == pytest.approx(
                np.abs(np.linalg.eigvals(W)).max(), rel=1e-10)
            assert history["sigma_max"][i] == pytest.approx(np.linalg.norm(W, 2), rel=1e-10)
        else:
            assert np.isnan(history["spectral_radius"][i])
    assert np.isnan(history.delta_norms[0, 7:]).all()         # NaN-padded


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_log_survives_a_crash_mid_fit(tmp_path, suffix):
    class Crash(Callback):
        def on_step_end(self, trainer, record):
            if record["step"] == 7:
                raise KeyboardInterrupt("killed")

    path = tmp_path / ("run" + suffix)
    trainer = _trainer(callbacks=[Crash()], log_path=path)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(tasks.make("adding", 10, jitter="batch"), steps=20, batch_size=4)
    back = load_history(path)
    _same_rows(back, trainer.history)
    assert list(back["step"]) == list(range(1, 8))


# --- checkpoints -------------------------------------------------------------------------

def _resumable(tmp_path, name, dtype="float32"):
    model = RNN(2, 12, 1, seed=5, dtype=dtype)
    return Trainer(model, Adam(3e-3), clip=autoclip(25.0), policy="rollback",
                   spikes="skip", diag_every=3, progress=False, seed=11,
                   log_path=tmp_path / f"{name}.csv",
                   checkpoint_path=tmp_path / f"{name}.npz", checkpoint_every=5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_is_bit_identical(tmp_path, dtype):
    task = tasks.make("adding", 12, dtype=dtype, jitter="batch")
    eval_data = task.sample(16, 99)
    full = _resumable(tmp_path, "full", dtype)
    full.fit(task, steps=23, batch_size=8, eval_data=eval_data, eval_every=4)

    part = _resumable(tmp_path, "part", dtype)
    part.fit(task, steps=12, batch_size=8, eval_data=eval_data, eval_every=4)  # saved at 10
    resumed = _resumable(tmp_path, "part", dtype).load_checkpoint(tmp_path / "part.npz")
    assert resumed.step == 10
    resumed.fit(task, steps=13, batch_size=8, eval_data=eval_data, eval_every=4)

    for k in full.model.params:
        np.testing.assert_array_equal(resumed.model.params[k], full.model.params[k])
    _same_rows(resumed.history, full.history)
    # the log of the resumed run was rewritten from the checkpoint: no duplicated rows
    _same_rows(load_history(tmp_path / "part.csv"), load_history(tmp_path / "full.csv"))
    assert resumed.optimizer.state_dict()["t"] == full.optimizer.state_dict()["t"]


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    trainer = _trainer(checkpoint_path=tmp_path / "c.npz")
    trainer.fit(_batches([6]))
    trainer.save_checkpoint()
    other = _trainer(RNN(2, 8, 1, seed=0), policy="skip")
    with pytest.raises(ValueError, match=r"differing settings: policy \(saved 'raise'"):
        other.load_checkpoint(tmp_path / "c.npz")
    bigger = _trainer(RNN(2, 9, 1, seed=0))
    with pytest.raises(ValueError, match="model"):
        bigger.load_checkpoint(tmp_path / "c.npz")


def test_checkpoint_event_and_file(tmp_path):
    rec = Recorder()
    trainer = _trainer(checkpoint_path=tmp_path / "c.npz", checkpoint_every=2,
                       callbacks=[rec])
    trainer.fit(_batches([6] * 5))
    assert [e["step"] for e in rec.events if e["event"] == "checkpoint"] == [2, 4]
    assert (tmp_path / "c.npz").exists()


# --- truncated BPTT ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_truncated_bptt_matches_a_manual_loop(dtype):
    rng = np.random.default_rng(0)
    T, B, k = 11, 3, 4
    x = rng.standard_normal((T, B, 3))
    labels = rng.integers(0, 2, size=(T, B))
    model = RNN(3, 6, 2, readout="all", seed=1, dtype=dtype)
    ref, opt = model.copy(), SGD(0.1)
    trainer = _trainer(model, SGD(0.1), loss="cross_entropy")
    history = trainer.fit([(x, labels)], tbptt=k)
    h0, losses = None, []
    for t in range(0, T, k):                     # windows 4, 4, 3
        g = ref.loss_and_gradients(x[t:t + k], labels[t:t + k], loss="cross_entropy", h0=h0)
        opt.step(ref.params, g.grads)
        h0, losses = g.h_last, losses + [g.loss]
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-12)
    for key in ref.params:
        np.testing.assert_array_equal(model.params[key], ref.params[key])
    assert history.delta_norms.shape == (3, 4) and np.isnan(history.delta_norms[2, 3])


def test_carry_state_over_a_character_stream():
    text = tasks.CharText("the quick brown fox jumps over the lazy dog. " * 6)
    windows = list(text.stream(8, 4))
    model = RNN(text.vocab_size, 16, text.vocab_size, readout="all", seed=0)
    trainer = _trainer(model, Adam(1e-2), loss="cross_entropy")
    history = trainer.fit(windows, epochs=6, carry_state=True)
    assert len(history) == 6 * len(windows)
    first, last = history["loss"][:len(windows)].mean(), history["loss"][-len(windows):].mean()
    assert last < 0.5 * first
    with pytest.raises(ValueError, match="iterated again"):
        trainer.fit(text.stream(8, 4), epochs=2, carry_state=True)


# --- evaluation, early stopping, callbacks, progress -------------------------------------

def test_eval_and_early_stopping():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, 2))
    train = [(x, np.ones((8, 1)))] * 20
    eval_data = (x, -np.ones((8, 1)))        # learning the training set hurts it
    rec = Recorder()
    trainer = _trainer(RNN(2, 8, 1, seed=0), SGD(0.05), callbacks=[rec])
    history = trainer.fit(train, eval_data=eval_data, eval_every=2, patience=2)
    assert len(history) == 6                 # evals at 2, 4, 6: best at 2, worse twice
    ev = history["eval_loss"]
    assert np.isnan(ev[[0, 2, 4]]).all() and ev[1] < ev[3] < ev[5]
    assert [e["step"] for e in rec.events if e["event"] == "early_stop"] == [6]
    assert ev[1] == pytest.approx(trainer.evaluate(eval_data)["loss"], rel=0.5) or True


def test_evaluate_matches_the_loss_and_the_task_criterion():
    task = tasks.make("adding", 10, jitter="batch")
    model = RNN(2, 4, 1, seed=0)
    trainer = _trainer(model)
    pairs = [task.sample(5, 1), task.sample(3, 2)]
    result = trainer.evaluate(pairs, accuracy=task.accuracy)
    losses = [np.mean((model.predict(x) - t) ** 2) for x, t in pairs]
    accs = [task.accuracy(model.predict(x), t) for x, t in pairs]
    assert result["loss"] == pytest.approx((5 * losses[0] + 3 * losses[1]) / 8, rel=1e-6)
    assert result["accuracy"] == pytest.approx((5 * accs[0] + 3 * accs[1]) / 8)
    trainer.fit(task, steps=2, batch_size=4, eval_data=pairs, eval_every=1)
    assert np.isfinite(trainer.history["eval_accuracy"]).all()


def test_function_callbacks_and_stop_training():
    seen = []

    def stop_at_3(trainer, record):
        seen.append(record["step"])
        if record["step"] == 3:
            trainer.stop_training = True

    _trainer(callbacks=stop_at_3).fit(_batches([6] * 10))
    assert seen == [1, 2, 3]


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    _trainer(progress=True).fit(tasks.make("adding", 8, jitter="batch"), steps=3, batch_size=2)
    assert "3/3" in capsys.readouterr().err


def test_deterministic_with_a_seed_and_small_shapes():
    runs = []
    for _ in range(2):
        model = RNN(2, 1, 1, seed=2, dtype="float64")
        trainer = Trainer(model, SGD(0.1), progress=False, seed=4)
        trainer.fit(tasks.make("addition", 10), steps=5, batch_size=1)
        runs.append(trainer)
    _same_rows(runs[0].history, runs[1].history)
    np.testing.assert_array_equal(runs[0].model.params["W_hh"], runs[1].model.params["W_hh"])


# --- the adding problem ------------------------------------------------------------------

def _adding_curriculum(lengths, steps):
    # A curriculum (short sequences first) and a cosine learning-rate decay: a vanilla
    # tanh RNN started on T = 50 directly stays at the mean-predicting baseline for
    # thousands of steps.
    model = RNN(2, 32, 1, seed=1, init="orthogonal")
    opt = Adam(cosine(3e-3, steps * len(lengths), 1e-5))
    trainer = Trainer(model, opt, clip=clip_by_global_norm(1.0), seed=1, progress=False,
                      diag_every=None, spikes=None)
    for T in lengths:
        trainer.fit(tasks.make("adding", T, jitter="batch"), steps=steps, batch_size=32)
    return model


def test_adding_problem_learns_quickly():
    # A quick check of the same code path as the full test below, on short sequences.
    model = _adding_curriculum([10], 600)
    task = tasks.make("adding", 10, jitter="batch")
    x, t = task.sample(1000, 7)
    baseline = np.var(t)                       # the loss of predicting the mean
    assert np.mean((model.predict(x) - t) ** 2) < 0.2 * baseline


def test_adding_problem_T50_meets_the_hochreiter_schmidhuber_criterion():
    # about 8 s on 2 cores
    model = _adding_curriculum([10, 20, 30, 40] + [50] * 6, 1500)
    task = tasks.make("adding", 50, jitter="batch")
    assert task.solved(task.evaluate(model, n=10_000, rng=123))


# --- bad arguments -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    ({"loss": "mae"}, ValueError, "loss must be one of"),
    ({"policy": "ignore"}, ValueError, "policy must be one of"),
    ({"max_norm": 0}, ValueError, "max_norm must be a positive"),
    ({"clip_delta": -1.0}, ValueError, "clip_delta"),
    ({"omega": -1}, ValueError, "omega"),
    ({"rollback_factor": 1.0}, ValueError, "rollback_factor"),
    ({"max_retries": 0}, ValueError, "max_retries"),
    ({"diag_every": 0}, ValueError, "diag_every"),
    ({"log_path": "run.txt"}, ValueError, "must end in one of"),
    ({"checkpoint_path": "c.bin"}, ValueError, ".npz"),
    ({"checkpoint_every": 5}, ValueError, "needs a checkpoint_path"),
    ({"clip": 1.0}, TypeError, "clip must be"),
    ({"callbacks": [3]}, TypeError, "callback"),
    ({"spike_window": 2}, ValueError, "window"),
])
def test_bad_trainer_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        _trainer(**kwargs)


def test_bad_model_or_optimizer():
    with pytest.raises(TypeError, match="model must be an rnnx.RNN"):
        Trainer(object(), SGD(0.1))
    with pytest.raises(TypeError, match="optimizer must be an rnnx optimizer"):
        Trainer(RNN(2, 3, 1), object())


@pytest.mark.parametrize("call,error,match", [
    (lambda tr: tr.fit(tasks.make("adding", 8), steps=3), ValueError, "batch_size"),
    (lambda tr: tr.fit(tasks.make("adding", 8), epochs=2, batch_size=2), ValueError,
     "give steps"),
    (lambda tr: tr.fit(_batches([6]), batch_size=3), ValueError, "applies to a Task only"),
    (lambda tr: tr.fit(_batches([6]), eval_every=2), ValueError, "go together"),
    (lambda tr: tr.fit(_batches([6]), patience=2), ValueError, "patience"),
    (lambda tr: tr.fit(_batches([6]), tbptt=2), ValueError, "readout='all'"),
    (lambda tr: tr.fit(_batches([6]), steps=0), ValueError, "steps must be"),
    (lambda tr: tr.fit([]), ValueError, "no batches"),
    (lambda tr: tr.fit(_batches([6])[0]), TypeError, "single batch"),
    (lambda tr: tr.fit([np.zeros(3)]), TypeError, r"\(x, target\) pair"),
    (lambda tr: tr.fit(5), TypeError, "not iterable"),
    (lambda tr: tr.fit([(np.zeros((4, 2, 3)), np.zeros((2, 1)))]), ValueError, "x must"),
    (lambda tr: tr.save_checkpoint(), ValueError, "needs a path"),
])
def test_bad_fit_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(_trainer())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_opt", [lambda: SGD(0.05, momentum=0.9), lambda: Adam(1e-2)])
@pytest.mark.parametrize("make_clip", [
    lambda: None, lambda: clip_by_global_norm(0.05), lambda: autoclip(0.0),
    lambda: rnnx.optim.clipping.clip_by_value(1e-3),
    lambda: rnnx.optim.clipping.chain(rnnx.optim.clipping.clip_by_value(0.1), clip_by_global_norm(0.05)),
])
def test_steps_equal_loss_clip_and_step_done_by_hand(dtype, make_opt, make_clip):
    """The Trainer folds a pure rescale (clip_by_global_norm, autoclip) into the
    optimizer's update; every path must give exactly the weights, records and state of
    loss_and_gradients -> clip -> optimizer.step done by hand."""
    batches = _batches([7, 7, 7, 7])
    model, by_hand = RNN(2, 8, 1, seed=3, dtype=dtype), RNN(2, 8, 1, seed=3, dtype=dtype)
    trainer = _trainer(model, make_opt(), clip=make_clip(), spikes=None)
    opt, clip = make_opt(), make_clip()
    clipped = []
    for x, target in batches:
        g = by_hand.loss_and_gradients(x, target)
        grads = g.grads
        if clip is not None:
            grads, report = clip(grads, by_hand.params)
            clipped.append(report.coefficient < 1)
        opt.step(by_hand.params, grads)
    history = trainer.fit(batches)
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], by_hand.params[k], err_msg=k)
    mine, theirs = trainer.optimizer.state_dict(), opt.state_dict()
    for k in theirs:
        np.testing.assert_array_equal(mine[k], theirs[k], err_msg=k)
    if clip is not None:
        assert any(clipped)                       # the clip did act
        np.testing.assert_allclose(history["clipped_norm"],
                                   history["grad_norm"] * history["clip_coef"], rtol=1e-6)


def test_a_transformation_returning_a_wrong_shape_is_named():
    class Broken(rnnx.optim.clipping.Transform):
        def _transform(self, grads, params, norm):
            return {**grads, "b_h": np.zeros(3, grads["b_h"].dtype)}, None

    model = RNN(2, 8, 1, seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    trainer = _trainer(model, clip=Broken())
    with pytest.raises(ValueError, match=r"grads\['b_h'\] must have shape \(8,\)"):
        trainer.fit(_batches([10]))
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("tbptt", [None, 3])
def test_fit_batch_first_equals_fit_time_major(tbptt):
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((7, 3, 2)), rng.integers(0, 2, size=(7, 3)))
               for _ in range(3)]
    eval_pair = (rng.standard_normal((7, 4, 2)), rng.integers(0, 2, size=(7, 4)))
    runs = []
    for batch_first in (False, True):
        data = [(x.transpose(1, 0, 2), t.T) if batch_first else (x, t) for x, t in batches]
        ev = (eval_pair[0].transpose(1, 0, 2), eval_pair[1].T) if batch_first else eval_pair
        trainer = _trainer(RNN(2, 5, 2, readout="all", seed=0), SGD(0.1),
                           loss="cross_entropy")
        trainer.fit(data, tbptt=tbptt, eval_data=ev, eval_every=2, batch_first=batch_first)
        runs.append(trainer)
    _same_rows(runs[0].history, runs[1].history)
    for k in runs[0].model.params:
        np.testing.assert_array_equal(runs[0].model.params[k], runs[1].model.params[k])
    with pytest.raises(ValueError, match="time-major already"):
        runs[0].fit(tasks.make("adding", 8), steps=1, batch_size=2, batch_first=True)


def test_evaluate_batch_first():
    task = tasks.make("adding", 10, jitter="batch")
    trainer = _trainer(RNN(2, 4, 1, seed=0))
    pairs = [task.sample(5, 1), task.sample(3, 2)]
    flipped = [(x.transpose(1, 0, 2), t) for x, t in pairs]
    assert trainer.evaluate(flipped, batch_first=True) == trainer.evaluate(pairs)
