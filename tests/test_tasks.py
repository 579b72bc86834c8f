"""rnnx.tasks: shapes, determinism, hand-checked examples and the success criteria."""
import numpy as np
import pytest

from rnnx import tasks

GENERATORS = [tasks.adding, tasks.addition, tasks.multiplication, tasks.temporal_order,
              tasks.temporal_order_3bit, tasks.temporal_order_hs, tasks.temporal_order_3bit_hs,
              tasks.random_permutation, tasks.noiseless_memorization]


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B", [1, 7])
def test_shapes_and_dtypes(name, dtype, B):
    T = 23
    task = tasks.make(name, T, dtype=dtype)
    x, target = task.sample(B, 0)
    assert x.dtype == dtype and x.ndim == 3 and x.shape[1] == B
    assert x.shape[2] == task.input_size
    L = x.shape[0]
    if name in ("addition", "multiplication"):
        assert T <= L <= T + int(T * 0.1) - 1
        assert target.shape == (B, 1) and target.dtype == dtype
        assert task.loss == "mse" and task.readout == "last"
    elif name == "adding":               # per-sequence lengths: right-padded, NaN-marked
        assert T <= L <= T + T // 10
        assert target.shape == (L, B, 1) and target.dtype == dtype
        assert np.count_nonzero(~np.isnan(target)) == B
        assert task.loss == "mse" and task.readout == "all"
    elif name.endswith("_hs"):
        assert T <= L <= T + T // 10 and target.shape == (L, B) and target.dtype.kind == "i"
        assert np.count_nonzero(target >= 0) == B and task.readout == "all"
        assert target.max() < task.output_size
    elif name == "noiseless_memorization":
        assert L == T + 20 and target.shape == (L, B) and target.dtype.kind == "i"
        assert task.readout == "all" and target.max() < task.output_size
    else:
        assert L == T and target.shape == (B,) and target.dtype.kind == "i"
        assert 0 <= target.min() and target.max() < task.output_size


@pytest.mark.parametrize("fn", GENERATORS)
def test_deterministic_by_seed(fn):
    a = fn(30, 5, np.random.default_rng(3))
    b = fn(30, 5, 3)
    c = fn(30, 5, 4)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(a, c) if u.shape == v.shape)


def test_adding_hand_checked():
    for seed in range(20):
        x, target = tasks.adding(12, 9, seed, jitter="batch", dtype=np.float64)
        L = x.shape[0]
        value, marker = x[..., 0], x[..., 1]
        assert np.all((value >= -1) & (value <= 1))
        for b in range(9):
            marked = np.flatnonzero(marker[:, b] == 1)
            assert len(marked) == 2
            assert marked.min() < 10 and marked.max() < max(10, 12 // 2 - 1)
            assert marked.max() < 10 or marked.min() < 12 // 2 - 1
            for t in (0, L - 1):
                if t not in marked:
                    assert marker[t, b] == -1
            others = np.setdiff1d(np.arange(L), np.r_[marked, 0, L - 1])
            assert np.all(marker[others, b] == 0)
            if 0 in marked:
                assert value[0, b] == 0
            assert target[b, 0] == pytest.approx(0.5 + value[marked, b].sum() / 4)


@pytest.mark.parametrize("fn,combine", [(tasks.addition, lambda u, v: (u + v) / 2),
                                        (tasks.multiplication, lambda u, v: u * v)])
def test_marked_pair_hand_checked(fn, combine):
    x, target = fn(40, 16, 1, dtype=np.float64)
    L = x.shape[0]
    for b in range(16):
        p = np.flatnonzero(x[:, b, 0] == 1)
        assert len(p) == 2 and p[0] < L // 10 <= p[1] < L // 2
        assert target[b, 0] == pytest.approx(combine(*x[p, b, 1]))
    assert np.all((x[..., 1] >= 0) & (x[..., 1] <= 1))


@pytest.mark.parametrize("fn,starts", [(tasks.temporal_order, (0.1, 0.5)),
                                       (tasks.temporal_order_3bit, (0.1, 0.3, 0.6))])
def test_temporal_order_hand_checked(fn, starts):
    T = 50
    x, labels = fn(T, 32, 2, dtype=np.float64)
    assert np.all(x.sum(-1) == 1)
    symbols = x.argmax(-1)
    for b in range(32):
        p = np.flatnonzero(symbols[:, b] < 2)
        assert len(p) == len(starts)
        for i, (pos, s) in enumerate(zip(p, starts)):
            assert s * T <= pos < s * T + T // 10
        bits = symbols[p, b]
        assert labels[b] == sum(int(v) << i for i, v in enumerate(bits))


def test_random_permutation_hand_checked():
    x, labels = tasks.random_permutation(15, 10, 0)
    symbols = x.argmax(-1)
    np.testing.assert_array_equal(symbols[0], labels)
    assert set(labels) <= {0, 1} and symbols[1:].min() >= 2 and x.shape[-1] == 100


def test_noiseless_memorization_hand_checked():
    T, n_values, n_pos = 8, 3, 4
    x, labels = tasks.noiseless_memorization(T, 5, 0, n_values=n_values, n_pos=n_pos)
    symbols = x.argmax(-1)
    blank, trigger = n_values, n_values + 1
    assert np.all(symbols[:n_pos] < n_values)
    assert np.all(symbols[n_pos:T + n_pos] == blank) and np.all(symbols[T + n_pos] == trigger)
    assert np.all(symbols[T + n_pos + 1:] == blank)
    np.testing.assert_array_equal(labels[-n_pos:], symbols[:n_pos])
    assert np.all(labels[:-n_pos] == blank)


def test_criteria_on_hand_made_predictions():
    target = np.array([[0.5], [0.2], [0.9], [0.0]])
    y = target + np.array([[0.039], [-0.041], [0.0], [0.2]])
    assert tasks.adding_accuracy(y, target) == 0.5
    # Pascanu: squared error <= 0.04, i.e. |error| <= 0.2
    y = target + np.array([[0.19], [-0.21], [0.0], [0.15]])
    assert tasks.regression_accuracy(y, target) == 0.75
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    assert tasks.sequence_accuracy(logits, np.array([0, 1])) == 0.5
    per_step = np.zeros((3, 2, 2))
    per_step[:, :, 1] = 1.0                   # predicts class 1 everywhere
    labels = np.array([[1, 1], [1, 0], [1, 1]])
    assert tasks.sequence_accuracy(per_step, labels) == 0.5   # sequence 1 has one miss
    task = tasks.make("temporal_order", 20)
    assert task.solved(0.995) and not task.solved(0.99)


def test_evaluate_uses_fresh_sequences():
    task = tasks.make("temporal_order", 20)

    class Oracle:
        def predict(self, x):
            symbols = x.argmax(-1)
            logits = np.zeros((x.shape[1], 4))
            for b in range(x.shape[1]):
                v = symbols[symbols[:, b] < 2, b]
                logits[b, v[0] + 2 * v[1]] = 1
            return logits

    assert task.evaluate(Oracle(), n=2500, rng=0, batch_size=1000) == 1.0


def test_char_text():
    text = "abcabcabd" * 5
    c = tasks.CharText(text, dtype=np.float64)
    assert c.vocab == ["a", "b", "c", "d"] and c.decode(c.encode("dab")) == "dab"
    x, y = c.windows(6, 3, 0)
    assert x.shape == (6, 3, 4) and y.shape == (6, 3)
    ids = x.argmax(-1)
    np.testing.assert_array_equal(ids[1:], y[:-1])       # the label is the next character
    windows = list(c.stream(4, 2))
    n = (len(text) - 1) // 2
    assert len(windows) == n // 4
    first = np.concatenate([w[0].argmax(-1)[:, 0] for w in windows])
    np.testing.assert_array_equal(first, c.ids[:len(first)])
    second = np.concatenate([w[1][:, 1] for w in windows])
    np.testing.assert_array_equal(second, c.ids[n + 1:n + 1 + len(second)])


@pytest.mark.parametrize("call,error,match", [
    (lambda: tasks.adding(5, 2), ValueError, "T must be an int >= 6"),
    (lambda: tasks.temporal_order(9, 2), ValueError, "T must be an int >= 10"),
    (lambda: tasks.addition(10, 0), ValueError, "batch_size"),
    (lambda: tasks.addition(10.0, 2), ValueError, "T must be an int"),
    (lambda: tasks.addition(10, 2, "seed"), TypeError, "rng must be"),
    (lambda: tasks.addition(10, 2, dtype=np.int32), ValueError, "dtype"),
    (lambda: tasks.make("nope", 10), ValueError, "unknown task"),
    (lambda: tasks.make("adding", 10, n_pos=3), TypeError, "takes the options"),
    (lambda: tasks.make("addition", 10, jitter="batch"), TypeError, "takes the options"),
    (lambda: tasks.adding(10, 2, jitter="step"), ValueError, "jitter"),
    (lambda: tasks.addition(9, 2), ValueError, "T must be an int >= 10"),
    (lambda: tasks.temporal_order_hs(19, 2), ValueError, "T must be an int >= 20"),
    (lambda: tasks.noiseless_memorization(5, 2, n_values=1), ValueError, "n_values"),
    (lambda: tasks.CharText("a"), ValueError, "at least 2"),
    (lambda: tasks.CharText(b"ab"), TypeError, "str"),
    (lambda: tasks.CharText("abc").windows(3, 1), ValueError, "window"),
    (lambda: tasks.CharText("abc").encode("z"), ValueError, "not in the vocabulary"),
    (lambda: tasks.adding_accuracy(np.zeros(3), np.zeros(4)), ValueError, "same shape"),
    (lambda: tasks.sequence_accuracy(np.zeros((3, 2)), np.zeros(2, int)), ValueError,
     "logits must be"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
