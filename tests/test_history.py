"""rnnx.training.history: in-memory columns, streaming CSV / JSON-lines logs and their loader."""
import json
import math

import numpy as np
import pytest

from rnnx.training.history import History, LogWriter, delta_norms_path, load_history


def _record(step, **extra):
    return {"step": step, "loss": 1.0 / step, "grad_norm": 2.0 * step, "overflow_t": -1,
            "nonfinite": step % 2 == 0, "spectral_radius": math.nan if step % 3 else 1.5,
            "grad_norm_W_hh": 0.1 * step, **extra}


def _history(n=5):
    h = History()
    for step in range(1, n + 1):
        h.append(_record(step), np.arange(step, dtype=float))   # T varies: NaN-padded
    return h


def test_columns_are_typed_arrays():
    h = _history()
    assert len(h) == 5 and "loss" in h and "nope" not in h
    np.testing.assert_array_equal(h["step"], np.arange(1, 6))
    assert h["step"].dtype == np.int64 and h["nonfinite"].dtype == np.bool_
    assert h["grad_norm_W_hh"].dtype == np.float64
    np.testing.assert_array_equal(h["nonfinite"], [False, True, False, True, False])
    assert np.isnan(h["spectral_radius"][0]) and h["spectral_radius"][2] == 1.5
    with pytest.raises(KeyError, match="no column 'nope'"):
        h["nope"]


def test_delta_norms_matrix_is_nan_padded():
    d = _history(3).delta_norms
    assert d.shape == (3, 3)
    np.testing.assert_array_equal(d[2], [0, 1, 2])
    assert np.isnan(d[0]).all() is np.False_ or np.isnan(d[0, 1:]).all()
    assert d[1, 1] == 1 and np.isnan(d[1, 2])


def test_records_must_keep_their_keys():
    h = _history(1)
    with pytest.raises(ValueError, match="differ from the history's columns"):
        h.append({"step": 2})


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_log_round_trip(tmp_path, suffix):
    h = _history(6)
    path = tmp_path / ("run" + suffix)
    h.save(path)
    assert delta_norms_path(path) == tmp_path / "run.delta_norms.npy"
    back = load_history(path)
    assert back.columns == h.columns
    for k in h.columns:
        np.testing.assert_array_equal(back[k], h[k])
        assert back[k].dtype == h[k].dtype
    np.testing.assert_array_equal(back.delta_norms, h.delta_norms)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_every_row_is_on_disk_before_close_and_a_torn_line_is_dropped(tmp_path, suffix):
    path = tmp_path / ("run" + suffix)
    writer = LogWriter(path)
    for step in range(1, 4):
        writer.write(_record(step))
        # flushed after each record: another reader sees it while the writer is open
        assert len(load_history(path)) == step
    with open(path, "a") as f:   # a run killed in the middle of a line
        f.write("4,0.25,8.0" if suffix == ".csv" else '{"step": 4, "lo')
    assert len(load_history(path)) == 3
    writer.close()


def test_jsonl_is_one_object_per_line(tmp_path):
    path = tmp_path / "run.jsonl"
    with LogWriter(path) as w:
        w.write(_record(1, loss_inf=math.inf))
    row = json.loads(path.read_text().splitlines()[0])
    assert row["nonfinite"] is False and row["loss_inf"] == math.inf


def test_append_mode_writes_one_header(tmp_path):
    path = tmp_path / "run.csv"
    with LogWriter(path) as w:
        w.write(_record(1))
    with LogWriter(path, "a") as w:
        w.write(_record(2))
    assert path.read_text().count("step") == 1
    np.testing.assert_array_equal(load_history(path)["step"], [1, 2])


def test_state_dict_round_trip():
    h = _history(4)
    back = History.from_state_dict(h.state_dict())
    assert back.records() == [r for r in h.records()] or all(
        all((a == b) or (a != a and b != b) for a, b in zip(r1.values(), r2.values()))
        for r1, r2 in zip(back.records(), h.records()))
    np.testing.assert_array_equal(back.delta_norms, h.delta_norms)


def test_to_dataframe():
    pd = pytest.importorskip("pandas")
    df = _history(3).to_dataframe()
    assert isinstance(df, pd.DataFrame) and list(df["step"]) == [1, 2, 3]


def test_to_dataframe_without_pandas(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("no pandas")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pip install pandas"):
        _history(1).to_dataframe()


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="must end in one of"):
        LogWriter(tmp_path / "run.txt")
    with pytest.raises(FileNotFoundError, match="no log file"):
        load_history(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="mode"):
        LogWriter(tmp_path / "run.csv", "x")
