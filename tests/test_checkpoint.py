"""rnnx.training.checkpoint: exact round trips and atomic writes."""
import os

import numpy as np
import pytest

from rnnx.training.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(7)
    rng.random(3)
    state = {
        "params": {"W": rng.standard_normal((3, 2)).astype(np.float32),
                   "b": rng.standard_normal(1)},
        "optimizer": {"t": np.int64(4), "lr_scale": np.float64(0.25), "m.W": np.zeros((3, 2))},
        "step": 12, "lr": 0.1 + 0.2, "name": "adam", "none": None, "flag": True,
        "inf": float("inf"), "list": [1, 2.5, {"deep": np.arange(3)}],
        "empty": {}, "rng": rng.bit_generator.state,
    }
    path = tmp_path / "ck.npz"
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert back["params"]["W"].dtype == np.float32
    np.testing.assert_array_equal(back["params"]["W"], state["params"]["W"])
    np.testing.assert_array_equal(back["params"]["b"], state["params"]["b"])
    assert type(back["optimizer"]["t"]) is np.int64 and back["optimizer"]["t"] == 4
    assert back["lr"] == 0.1 + 0.2 and back["step"] == 12 and back["name"] == "adam"
    assert back["none"] is None and back["flag"] is True and back["inf"] == float("inf")
    np.testing.assert_array_equal(back["list"][2]["deep"], np.arange(3))
    assert back["empty"] == {}
    other = np.random.default_rng()
    other.bit_generator.state = back["rng"]
    assert other.random() == rng.random()          # the generator continues identically


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"a": np.ones(2)})
    real = np.savez

    def crash(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"a": np.zeros(2)})
    np.testing.assert_array_equal(load_checkpoint(path)["a"], np.ones(2))
    assert os.listdir(tmp_path) == ["ck.npz"]        # no temporary file left behind


@pytest.mark.parametrize("state,error,match", [
    ([1], TypeError, "state must be a dict"),
    ({"a/b": 1}, TypeError, "keys must be str"),
    ({1: 1}, TypeError, "keys must be str"),
    ({"a": object()}, TypeError, "unsupported type"),
    ({"a": np.array([object()])}, TypeError, "object array"),
])
def test_bad_states(tmp_path, state, error, match):
    with pytest.raises(error, match=match):
        save_checkpoint(tmp_path / "ck.npz", state)


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match=".npz"):
        save_checkpoint(tmp_path / "ck.bin", {})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(1))
    with pytest.raises(ValueError, match="not an rnnx checkpoint"):
        load_checkpoint(tmp_path / "other.npz")


@pytest.mark.parametrize("content", ["empty", "truncated", "random", "npy", "torn meta"])
def test_unreadable_files_are_one_checkpoint_error_naming_the_file(tmp_path, content):
    from rnnx.training.checkpoint import CheckpointError
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"a": np.arange(100.0), "b": {"c": 1}})
    data = path.read_bytes()
    if content == "empty":
        path.write_bytes(b"")
    elif content == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(1000))
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    else:
        arrays = dict(np.load(path))
        arrays["__meta__"] = np.array(str(arrays["__meta__"])[:-5])
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    with pytest.raises(CheckpointError, match="ck.npz") as info:
        load_checkpoint(path)
    assert "pickle" not in str(info.value) and "\n" not in str(info.value)
