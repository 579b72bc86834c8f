"""Regressions of the training layer's faults (issue 11, items 9-13 and 17): corrupt
checkpoints, the log rewrite on resume, unwritable locations, stale temp files and file
modes, overwrite and resume footguns, the progress bar's last figures; and the fit state
that must not outlive fit."""
import logging
import os
import re
import stat

import numpy as np
import pytest

import rnnx
from rnnx import tasks
from rnnx.cli.main import main
from rnnx.model.rnn import RNN
from rnnx.optim.optimizers import SGD, Adam
from rnnx.training import Rollback, Skip
from rnnx.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnx.training.files import stale_temp_files
from rnnx.training.history import load_history
from rnnx.training.loop import Trainer


@pytest.fixture(autouse=True)
def quiet(caplog):
    caplog.set_level(logging.ERROR, logger="rnnx")


def _trainer(model=None, opt=None, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("seed", 0)
    return Trainer(model or RNN(2, 8, 1, seed=0), opt or SGD(0.01), **kw)


def _params(trainer):
    return {k: v.copy() for k, v in trainer.model.params.items()}


# --- item 9: corrupt checkpoints ---------------------------------------------------------

def _tamper(state, how):
    """A checkpoint state damaged in one way (see CORRUPTIONS)."""
    if how == "missing config":
        del state["config"]
    elif how == "missing W_hh":
        del state["params"]["W_hh"]
    elif how == "scalar W_hh":
        state["params"]["W_hh"] = np.float32(0.5)
    elif how == "W_hh of another dtype":
        state["params"]["W_hh"] = state["params"]["W_hh"].astype(np.float64)
    elif how == "W_hh of another shape":
        state["params"]["W_hh"] = np.zeros((3, 3), np.float32)
    elif how == "optimizer buffer of another shape":
        state["optimizer"]["exp_avg.W_hh"] = np.zeros(2, np.float32)
    elif how == "non-finite W_xh":
        state["params"]["W_xh"][0, 0] = np.nan
    elif how == "torn history":
        state["history"]["delta_lengths"] = state["history"]["delta_lengths"][:-1]
    elif how == "carry of another shape":
        state["carry"] = np.zeros((2, 99), np.float32)
    elif how == "snapshot W_hh scalar":
        state["policies"]["policy"]["snapshots"][0]["params"]["W_hh"] = np.float32(1)
    elif how == "damaged rng state":
        state["rng"] = {"bit_generator": "PCG64", "state": {"state": -1}}
    return state


STRUCTURAL = ["missing config", "missing W_hh", "scalar W_hh", "W_hh of another dtype",
              "W_hh of another shape", "optimizer buffer of another shape",
              "non-finite W_xh", "torn history", "carry of another shape",
              "snapshot W_hh scalar", "damaged rng state"]
BYTES = ["empty", "truncated", "random bytes", "torn settings document"]


def _damage_bytes(path, how):
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "torn settings document":
        state = load_checkpoint(path)
        arrays = dict(np.load(path))
        arrays["__meta__"] = np.array(str(arrays["__meta__"])[:-40])
        np.savez(path, **arrays)
        assert state                                    # it was whole before


def _resumable_run(tmp_path):
    ckpt = tmp_path / "ck.npz"
    argv = ["train", "--steps", "4", "--hidden", "6", "--length", "8", "--optimizer",
            "adam", "--lr", "0.01", "--policy", "rollback", "--checkpoint", str(ckpt),
            "--quiet"]
    assert main(argv) == 0
    return ckpt


@pytest.mark.parametrize("how", STRUCTURAL + BYTES)
def test_resume_from_a_corrupt_checkpoint_is_one_clear_line(tmp_path, capsys, how):
    ckpt = _resumable_run(tmp_path)
    if how in BYTES:
        _damage_bytes(ckpt, how)
    else:
        save_checkpoint(ckpt, _tamper(load_checkpoint(ckpt), how))
    capsys.readouterr()
    code = main(["train", "--checkpoint", str(ckpt), "--resume", "--steps", "6", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0, how
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(ckpt) in lines[0] and "pickle" not in lines[0], lines[0]


@pytest.mark.parametrize("how", STRUCTURAL)
def test_load_checkpoint_validates_every_array_before_changing_anything(tmp_path, how):
    def make():
        return _trainer(RNN(2, 8, 1, seed=0), Adam(1e-2), policy="rollback",
                        checkpoint_path=tmp_path / "c.npz")
    trainer = make()
    trainer.fit(tasks.make("adding", 6, jitter="batch"), steps=3, batch_size=2)
    trainer.save_checkpoint()
    save_checkpoint(tmp_path / "c.npz", _tamper(load_checkpoint(tmp_path / "c.npz"), how))
    fresh = make()
    before = _params(fresh)
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "c.npz"))):
        fresh.load_checkpoint(tmp_path / "c.npz")
    assert fresh.step == 0 and len(fresh.history) == 0 and fresh.optimizer.t == 0
    for k, v in before.items():
        np.testing.assert_array_equal(fresh.model.params[k], v)


# --- item 10: the log rewrite on resume is atomic ----------------------------------------

def test_a_resume_killed_while_rewriting_the_log_leaves_it_whole(tmp_path, monkeypatch):
    log_path, ckpt = tmp_path / "run.csv", tmp_path / "run.npz"
    first = _trainer(log_path=log_path, checkpoint_path=ckpt)
    first.fit(tasks.make("adding", 6, jitter="batch"), steps=10, batch_size=2)
    first.save_checkpoint()
    rows = load_history(log_path)
    assert len(rows) == 10
    resumed = _trainer(log_path=log_path, checkpoint_path=ckpt).load_checkpoint(ckpt)
    writes = []
    original = rnnx.training.history.LogWriter.write

    def write_then_die(self, record):
        writes.append(1)
        if len(writes) == 4:
            raise KeyboardInterrupt("killed mid-rewrite")
        original(self, record)

    monkeypatch.setattr(rnnx.training.history.LogWriter, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        resumed.fit(tasks.make("adding", 6, jitter="batch"), steps=5, batch_size=2)
    back = load_history(log_path)
    assert len(back) == 10
    np.testing.assert_array_equal(back["loss"], rows["loss"])
    assert not stale_temp_files(log_path)


# --- item 11: unwritable locations are reported before step 1 ----------------------------

@pytest.mark.parametrize("what", ["checkpoint_path", "log_path"])
def test_an_unwritable_location_fails_before_step_1(tmp_path, what):
    where = tmp_path / "no" / "such" / ("ck.npz" if what == "checkpoint_path" else "run.csv")
    kw = {what: where}
    if what == "checkpoint_path":
        kw["checkpoint_every"] = 2
    trainer = _trainer(**kw)
    with pytest.raises(FileNotFoundError, match=what):
        trainer.fit(tasks.make("adding", 6, jitter="batch"), steps=5, batch_size=2)
    assert trainer.step == 0 and len(trainer.history) == 0


def test_cli_bad_checkpoint_folder_fails_at_once_naming_it(tmp_path, capsys):
    where = tmp_path / "no" / "dir" / "ck.npz"
    code = main(["train", "--steps", "50", "--length", "6", "--checkpoint", str(where),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert str(where) in err and ".tmp" not in err


# --- item 12: stale temp files, file modes -----------------------------------------------

def test_stale_temp_files_are_removed_by_the_next_save(tmp_path):
    ckpt = tmp_path / "ck.npz"
    stale = [tmp_path / "ck.npz.deadbeef.tmp", tmp_path / "ck.npz.0badf00d.tmp"]
    for s in stale:
        s.write_bytes(b"left by a killed run")
    other = tmp_path / "other.npz.deadbeef.tmp"       # another file's: not ours to remove
    other.write_bytes(b"x")
    trainer = _trainer(checkpoint_path=ckpt)
    trainer.fit(tasks.make("adding", 6, jitter="batch"), steps=1, batch_size=2)
    trainer.save_checkpoint()
    assert not any(s.exists() for s in stale) and other.exists() and ckpt.exists()


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_files_are_created_with_the_users_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        trainer = _trainer(checkpoint_path=tmp_path / "ck.npz", log_path=tmp_path / "r.csv")
        trainer.fit(tasks.make("adding", 6, jitter="batch"), steps=2, batch_size=2)
        trainer.save_checkpoint()
    finally:
        os.umask(old)
    for name in ("ck.npz", "r.csv", "r.delta_norms.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name


# --- item 13: overwrite and resume --------------------------------------------------------

def test_cli_refuses_to_replace_a_checkpoint_without_overwrite(tmp_path, capsys):
    ckpt = _resumable_run(tmp_path)
    saved = ckpt.read_bytes()
    assert main(["train", "--steps", "2", "--checkpoint", str(ckpt), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and ckpt.read_bytes() == saved
    assert main(["train", "--steps", "2", "--checkpoint", str(ckpt), "--quiet",
                 "--overwrite"]) == 0
    assert load_checkpoint(ckpt)["step"] == 2


def test_cli_resume_reads_the_settings_from_the_checkpoint(tmp_path):
    flags = ["--hidden", "6", "--length", "8", "--optimizer", "adam", "--lr", "0.01",
             "--policy", "rollback", "--quiet"]
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    assert main(["train", "--steps", "7", "--checkpoint", str(full)] + flags) == 0
    assert main(["train", "--steps", "4", "--checkpoint", str(part)] + flags) == 0
    # no flag restated but --steps
    assert main(["train", "--checkpoint", str(part), "--resume", "--steps", "7",
                 "--quiet"]) == 0
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["step"] == b["step"] == 7
    for k in a["params"]:
        np.testing.assert_array_equal(a["params"][k], b["params"][k])


def test_cli_resume_refuses_a_changed_setting_and_accepts_a_new_policy(tmp_path, capsys):
    ckpt = _resumable_run(tmp_path)
    capsys.readouterr()
    assert main(["train", "--checkpoint", str(ckpt), "--resume", "--steps", "6", "--lr",
                 "0.5", "--quiet"]) == 2
    assert "--lr" in capsys.readouterr().err
    assert main(["train", "--checkpoint", str(ckpt), "--resume", "--steps", "6",
                 "--policy", "skip", "--quiet"]) == 0
    assert load_checkpoint(ckpt)["config"]["policy"] == "skip"


def test_load_weights_only(tmp_path):
    trainer = _trainer(RNN(2, 8, 1, seed=0), Adam(1e-2), checkpoint_path=tmp_path / "c.npz")
    trainer.fit(tasks.make("adding", 6, jitter="batch"), steps=3, batch_size=2)
    trainer.save_checkpoint()
    other = Trainer(RNN(2, 8, 1, seed=7), SGD(0.1), policy="skip", progress=False)
    other.load_checkpoint(tmp_path / "c.npz", weights_only=True)
    for k, v in trainer.model.params.items():
        np.testing.assert_array_equal(other.model.params[k], v)
    assert other.step == 0 and len(other.history) == 0 and other.optimizer.t == 0
    with pytest.raises(CheckpointError, match="params/W_xh"):
        _trainer(RNN(2, 9, 1)).load_checkpoint(tmp_path / "c.npz", weights_only=True)


def test_a_checkpoint_of_another_policy_needs_new_policy(tmp_path):
    trainer = _trainer(policy=Rollback(0.5, 3), checkpoint_path=tmp_path / "c.npz")
    trainer.fit(tasks.make("adding", 6, jitter="batch"), steps=3, batch_size=2)
    trainer.save_checkpoint()
    skip = _trainer(policy="skip")
    with pytest.raises(ValueError, match="new_policy=True"):
        skip.load_checkpoint(tmp_path / "c.npz")
    skip.load_checkpoint(tmp_path / "c.npz", new_policy=True)
    assert skip.step == 3 and skip.policy == "skip"
    for k, v in trainer.model.params.items():
        np.testing.assert_array_equal(skip.model.params[k], v)
    # and back: a rollback trainer resuming a skip run starts a fresh ring of good states
    skip.checkpoint_path = tmp_path / "s.npz"
    skip.save_checkpoint()
    again = _trainer(policy="rollback").load_checkpoint(tmp_path / "s.npz", new_policy=True)
    again.fit(tasks.make("adding", 6, jitter="batch"), steps=2, batch_size=2)
    assert again.step == 5


# --- item 17: the progress bar's last figures ----------------------------------------------

def test_progress_bar_ends_with_the_last_steps_loss(capsys):
    pytest.importorskip("tqdm")
    trainer = _trainer(RNN(2, 8, 1, seed=0), SGD(0.5), progress=True)
    trainer.fit(tasks.make("adding", 8, jitter="batch"), steps=3, batch_size=4)
    err = capsys.readouterr().err
    last = re.split(r"[\r\n]", err.strip())[-1]
    losses = trainer.history["loss"]
    assert f"loss={losses[-1]:.4g}" in last and f"{losses[0]:.4g}" != f"{losses[-1]:.4g}"


# --- fit's settings end with fit ----------------------------------------------------------

def test_eval_data_and_patience_do_not_outlive_fit():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, 2))
    train = [(x, np.ones((8, 1)))] * 4
    trainer = _trainer(RNN(2, 8, 1, seed=0), SGD(0.05))
    trainer.fit(train, eval_data=(x, -np.ones((8, 1))), eval_every=1, patience=1)
    n = len(trainer.history)
    for _ in range(3):
        record = trainer.train_step(x, np.ones((8, 1)))
        assert np.isnan(record["eval_loss"])
    assert len(trainer.history) == n + 3


# --- policy objects -----------------------------------------------------------------------

LONG = 400


def _exploding():
    return RNN(2, 32, 1, seed=0, init="orthogonal", spectral_radius=6.0)


def _batches(Ts, B=4):
    rng = np.random.default_rng(0)
    return [tasks.adding(T, B, rng, jitter="batch") for T in Ts]


def test_policy_objects_equal_their_shorthands():
    data = _batches([10, LONG, 10, LONG, 10])
    for obj, name in ((Skip(), "skip"), (Rollback(0.5, 5, 3), "rollback")):
        a = _trainer(_exploding(), SGD(0.05), policy=obj)
        b = _trainer(_exploding(), SGD(0.05), policy=name)
        a.fit(data)
        b.fit(data)
        for k in a.model.params:
            np.testing.assert_array_equal(a.model.params[k], b.model.params[k])
        np.testing.assert_array_equal(a.history["rolled_back"], b.history["rolled_back"])
        assert a.policy == b.policy == name


def test_rollback_object_settings_are_its_own():
    trainer = _trainer(_exploding(), SGD(0.05), policy=Rollback(0.25, max_retries=2, depth=1))
    with pytest.raises(rnnx.DivergenceError, match="2 consecutive failed steps"):
        trainer.fit(_batches([10, LONG, LONG, 10]))
    assert trainer.optimizer.lr_scale == 0.25 ** 2
    assert trainer.config["rollback_factor"] == 0.25 and trainer.config["max_retries"] == 2


def test_a_custom_policy_decides_and_the_step_is_logged_first():
    class Halve(rnnx.training.Policy):
        name = "halve"

        def __call__(self, trainer, failure, record):
            trainer.optimizer.lr_scale *= 0.5
            if trainer.optimizer.lr_scale < 0.3:
                return RuntimeError(f"gave up at step {trainer.step}: {failure.kind}")
            return None

    trainer = _trainer(_exploding(), SGD(0.05), policy=Halve())
    with pytest.raises(RuntimeError, match="gave up at step 4: overflow"):
        trainer.fit(_batches([10, LONG, 10, LONG, 10]))
    assert list(trainer.history["nonfinite"]) == [False, True, False, True]
    with pytest.raises(ValueError, match="spikes only"):
        _trainer(policy=rnnx.training.Log())


def test_a_version_1_checkpoint_still_resumes_bit_identically(tmp_path):
    """Version 1 was written when the Trainer was one class: its rollback ring, failure
    count and early-stopping state were top-level entries."""
    def make(name):
        return Trainer(RNN(2, 12, 1, seed=5), Adam(3e-3), policy="rollback", spikes="skip",
                       progress=False, seed=11, checkpoint_path=tmp_path / name)
    task = tasks.make("adding", 12, jitter="batch")
    full = make("full.npz")
    full.fit(task, steps=20, batch_size=8)
    part = make("part.npz")
    part.fit(task, steps=10, batch_size=8)
    part.save_checkpoint()
    state = load_checkpoint(tmp_path / "part.npz")
    ring = state.pop("policies")["policy"]
    early = state.pop("callbacks")["early_stopping"]
    state.update(version=1, failures=ring["failures"], snapshots=ring["snapshots"],
                 best_eval=early["best_eval"], bad_evals=early["bad_evals"],
                 lr_scale=float(state["optimizer"]["lr_scale"]))
    save_checkpoint(tmp_path / "v1.npz", state)
    resumed = make("v1.npz").load_checkpoint(tmp_path / "v1.npz")
    resumed.fit(task, steps=10, batch_size=8)
    for k in full.model.params:
        np.testing.assert_array_equal(resumed.model.params[k], full.model.params[k])


def test_a_rollback_shared_by_failures_and_spikes_resumes_bit_identically(tmp_path):
    data = _batches([10, 10, 10, 10, 10, LONG, 10, LONG, 10])

    def make():
        return _trainer(_exploding(), SGD(0.05), policy="rollback", spikes="rollback",
                        checkpoint_path=tmp_path / "c.npz")
    full = make()
    full.fit(data)
    part = make()
    part.fit(data[:5])
    part.save_checkpoint()
    assert "spikes" not in load_checkpoint(tmp_path / "c.npz")["policies"]   # saved once
    resumed = make().load_checkpoint(tmp_path / "c.npz")
    assert resumed.on_failure is resumed.on_spike
    resumed.fit(data[5:])
    assert list(resumed.history["rolled_back"]) == list(full.history["rolled_back"])
    assert full.history["rolled_back"].sum() == 2
    for k in full.model.params:
        np.testing.assert_array_equal(resumed.model.params[k], full.model.params[k])
