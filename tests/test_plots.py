"""Figures: written, valid PNG, failures kept visible."""
import numpy as np
import pytest
from rnnx.training.history import History
from rnnx.diagnostics.lyapunov import diagnose
from rnnx.model.rnn import RNN

pytest.importorskip("matplotlib")
from rnnx.cli import demo_figures, plots  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _history(n=20, T=6, failed=(5, 9)):
    h = History()
    rng = np.random.default_rng(0)
    for s in range(1, n + 1):
        bad = s in failed
        norm = np.nan if bad else float(rng.uniform(1, 10)) * (100 if s == 12 else 1)
        h.append({"step": s, "loss": np.nan if bad else 1.0 / s, "grad_norm": norm,
                  "clipped_norm": min(norm, 5.0), "clip_coef": min(1.0, 5.0 / norm) if not bad else np.nan,
                  "spike": s == 12, "skipped": bad, "nonfinite": bad, "overflow_t": 3 if bad else -1},
                 np.where(np.arange(T) < 3, np.nan, 1.0) if bad else rng.uniform(0.1, 10, T))
    return h


def _png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def test_grad_norm_plot_pins_failures():
    ax = plots.plot_grad_norms({"a": _history(), "b": _history(failed=())})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("non-finite" in t and "(2)" in t for t in labels)
    assert any("spike" in t for t in labels) and any("clipping" in t for t in labels)
    assert ax.get_yscale() == "log" and ax.get_xlabel() and ax.get_ylabel()
    pins = [c for c in ax.collections if "non-finite" in c.get_label()][0]
    top = pins.get_offsets()[:, 1]
    assert np.all(top > 1000)          # above the largest finite norm, on the axis


def test_save_run_figures(tmp_path):
    m = RNN(2, 4, 1, seed=0)
    x = np.random.default_rng(0).standard_normal((8, 3, 2)).astype(np.float32)
    import rnnx
    L = rnnx.jacobian_log_norms(x, m.params["W_xh"], m.params["W_hh"], m.params["b_h"])
    paths = plots.save_run_figures(tmp_path, {"run": _history(), "other": _history(T=1)},
                                   {"init": (L, 1.0)})
    names = sorted(p.name for p in paths)
    assert names == sorted(["grad_norms.png", "delta_heatmap.png", "losses.png",
                            "jacobian.png", "overview.png"])
    assert all(_png(p) for p in paths)
    one = plots.save_run_figures(tmp_path / ".", {"solo": _history(n=1, failed=(1,))},
                                 prefix="solo_")
    assert all(_png(p) for p in one) and len(one) == 3


def test_diagnosis_figure(tmp_path):
    d = diagnose(RNN(2, 5, 1, seed=0, spectral_radius=1.3), np.ones((10, 2, 2), np.float32))
    path = plots.save_diagnosis_figure(tmp_path / "d.png", d)
    assert _png(path)


def test_missing_matplotlib_message(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "rnnx\[plot\]"'):
        plots.require_matplotlib()


def test_heatmap_zooms_on_the_steps_asked():
    d = np.arange(1, 1 + 50 * 4, dtype=float).reshape(50, 4)
    ax = plots.plot_delta_heatmap(d, steps=(11, 20))
    image = ax.get_images()[0]
    assert image.get_array().shape == (4, 10)           # time steps x the 10 steps shown
    assert image.get_extent()[:2] == [10.5, 20.5]
    assert image.get_array()[0, 0] == d[10, 0]


def test_backward_signal_draws_the_sigma_max_bound():
    T = 12
    d = 0.5 * 1.3 ** (T - 1 - np.arange(T))
    ax = demo_figures.plot_backward_signal({"spike": (d, 1.5), "calm": (d[::-1], None)})
    lines = {line.get_label(): line for line in ax.get_lines()}
    bound = [v for k, v in lines.items() if "sigma_max" in k][0]
    t, y = bound.get_data()
    np.testing.assert_allclose(y, 0.5 * 1.5 ** (T - 1 - np.asarray(t)))
    assert ax.get_yscale() == "log" and len(lines) == 3


def test_demo_figures(tmp_path):
    from rnnx.cli.story import read_story
    h = _history(n=40, T=6, failed=(30,))
    h2 = _history(n=40, T=6, failed=())
    facts = {"unclipped": {"history": h, "story": read_story(h), "calm": (10, 0.9, -0.2),
                           "spike": (12, 2.0, 0.1)},
             "clipped": {"history": h2, "story": read_story(h2)}}
    paths = demo_figures.save_demo_figures(tmp_path, facts, baseline=(1.386, 0.25),
                                    task="temporal_order")
    assert sorted(p.name for p in paths) == sorted(
        [f"{n}.png" for n in demo_figures.DEMO_PANELS.values()] + ["overview.png"])
    assert all(_png(p) for p in paths)
