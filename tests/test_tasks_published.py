"""The generators against the published definitions.

Each random choice is checked for its law (the exact set of values it takes, all of them
reached, from many draws) and each sequence is rebuilt from its choices by a transcription
of the definition -- Pascanu et al.'s code (pascanur/trainingRNNs: addition.py,
multiplication.py, tempOrder.py, tempOrder3bit.py, permutation.py, memorization.py) or
Hochreiter & Schmidhuber's (1997) text (experiments 4 and 6) -- and compared exactly.
"""
import numpy as np
import pytest

from rnnx import tasks


def draws(fn, T, n_batches, B, **kw):
    rng = np.random.default_rng(1234)
    return [fn(T, B, rng, dtype=np.float64, **kw) for _ in range(n_batches)]


# --- Pascanu et al.'s code ---------------------------------------------------------------

def code_marked_pair_laws(length):
    """addition.py / multiplication.py: l = length + randint(int(length * .1)),
    p0 = randint(int(l * .1)), p1 = randint(int(l * .4)) + int(l * .1)."""
    return {l: (set(range(int(l * .1))), set(range(int(l * .1), int(l * .1) + int(l * .4))))
            for l in range(length, length + int(length * .1))}


def code_marked_pair(values, p0, p1, combine):
    """The code's data and target for given values (l, B) and marker positions."""
    l, B = values.shape
    data = np.zeros((l, B, 2))
    data[:, :, 1] = values
    data[p0, np.arange(B), 0] = 1.0
    data[p1, np.arange(B), 0] = 1.0
    return data, combine(values[p0, np.arange(B)], values[p1, np.arange(B)]).reshape(-1, 1)


@pytest.mark.parametrize("T", [10, 19, 50, 100])
@pytest.mark.parametrize("fn, combine", [(tasks.addition, lambda u, v: (u + v) / 2),
                                         (tasks.multiplication, lambda u, v: u * v)])
def test_addition_and_multiplication_are_the_codes(T, fn, combine):
    laws = code_marked_pair_laws(T)
    seen = {l: (set(), set()) for l in laws}
    for x, target in draws(fn, T, 300, 20):
        l, B = x.shape[:2]
        assert l in laws                               # one length for the whole batch
        p = np.array([np.flatnonzero(x[:, b, 0] == 1) for b in range(B)])
        assert p.shape == (B, 2)
        seen[l][0].update(p[:, 0])
        seen[l][1].update(p[:, 1])
        assert np.all((x[..., 1] >= 0) & (x[..., 1] < 1))
        want_x, want_t = code_marked_pair(x[..., 1], p[:, 0], p[:, 1], combine)
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_allclose(target, want_t, rtol=1e-15)
    assert seen == laws          # every length and position the code can draw, no other


def test_second_marker_bound_differs_from_half_the_length():
    """At L = 52 and 54 the code's int(.1 L) + int(.4 L) is L/2 - 1: the last step it can
    mark is L/2 - 2."""
    for L in (52, 54):
        assert int(L * .1) + int(L * .4) == L // 2 - 1
    laws = code_marked_pair_laws(50)
    assert max(laws[52][1]) == 24 and max(laws[54][1]) == 25 and 54 in laws
    assert 55 not in laws                  # the longest is T + int(.1 T) - 1


def code_temporal_order_windows(l, n_bits):
    """tempOrder.py / tempOrder3bit.py: p_i = randint(int(l * .1)) + int(l * s_i)."""
    starts = (.1, .5) if n_bits == 2 else (.1, .3, .6)
    return [set(range(int(l * s), int(l * s) + int(l * .1))) for s in starts]


@pytest.mark.parametrize("T", [10, 23, 50, 70, 100])
@pytest.mark.parametrize("fn, n_bits", [(tasks.temporal_order, 2),
                                        (tasks.temporal_order_3bit, 3)])
def test_temporal_order_is_the_codes(T, fn, n_bits):
    windows = code_temporal_order_windows(T, n_bits)
    seen = [set() for _ in windows]
    labels_seen = set()
    for x, labels in draws(fn, T, 100, 20):
        assert x.shape == (T, 20, 6)                   # never length-jittered
        vals = x.argmax(-1)
        np.testing.assert_array_equal(x.sum(-1), 1.0)
        for b in range(20):
            p = np.flatnonzero(vals[:, b] < 2)
            assert len(p) == n_bits
            for i, pos in enumerate(p):
                seen[i].add(pos)
            v = vals[p, b]
            assert labels[b] == sum(int(v[i]) * 2 ** i for i in range(n_bits))  # v0 + v1*2 ..
        assert set(np.unique(vals)) <= set(range(6))
        labels_seen.update(labels)
    assert seen == windows and labels_seen == set(range(2 ** n_bits))


def test_random_permutation_is_the_codes():
    """permutation.py: length steps; the first symbol val in {0, 1}, the others in 2..99;
    the target is val."""
    firsts, others = set(), set()
    for x, labels in draws(tasks.random_permutation, 12, 100, 20):
        assert x.shape == (12, 20, 100)
        s = x.argmax(-1)
        np.testing.assert_array_equal(x.sum(-1), 1.0)
        np.testing.assert_array_equal(s[0], labels)
        firsts.update(s[0])
        others.update(s[1:].ravel())
    assert firsts == {0, 1} and others == set(range(2, 100))


@pytest.mark.parametrize("T, n_values, n_pos", [(25, 5, 10), (1, 2, 1), (7, 3, 4)])
def test_noiseless_memorization_is_the_codes(T, n_values, n_pos):
    """memorization.py, transcribed for a given pattern: inputs blank (channel -2) from
    n_pos on, the trigger (channel -1) instead at step T + n_pos; targets the blank class
    (n_values) but the pattern over the last n_pos steps."""
    digits = set()
    for x, labels in draws(tasks.noiseless_memorization, T, 20, 50, n_values=n_values,
                           n_pos=n_pos):
        B = x.shape[1]
        pattern = x[:n_pos, :, :n_values]
        inp = np.zeros((T + 2 * n_pos, B, n_values + 2))
        targ = np.zeros((T + 2 * n_pos, B, n_values + 1))
        targ[:-n_pos, :, -1] = 1
        inp[n_pos:, :, -2] = 1
        inp[T + n_pos, :, -2] = 0
        inp[T + n_pos, :, -1] = 1
        inp[:n_pos, :, :n_values] = pattern
        targ[-n_pos:, :, :n_values] = pattern
        np.testing.assert_array_equal(x, inp)
        np.testing.assert_array_equal(labels, targ.argmax(-1))
        np.testing.assert_array_equal(pattern.sum(-1), 1.0)
        digits.update(pattern.argmax(-1).ravel())
    assert digits == set(range(n_values))


# --- Hochreiter & Schmidhuber's text -----------------------------------------------------

def hs_adding(values, length, marked):
    """Experiment 4 for one sequence: pairs (value, marker); marker 1 at the two marked
    pairs, -1 at the first and the final pair when unmarked, 0 elsewhere; a marked first
    pair gets the value 0; target 0.5 + (X1 + X2) / 4."""
    x = np.zeros((length, 2))
    x[:, 0] = values[:length]
    x[0, 1] = x[-1, 1] = -1.0
    x[list(marked), 1] = 1.0
    if 0 in marked:
        x[0, 0] = 0.0
    return x, 0.5 + x[list(marked), 0].sum() / 4


def hs_adding_marker_pairs(T):
    """The marked pairs experiment 4 can draw: X1 one of the first ten pairs (the first
    min(10, T - 1) for T <= 10, so that the final pair stays free), X2 one of the first
    T//2 - 1 pairs still unmarked; as sorted positions (which one is X1 is not visible)."""
    pairs = set()
    for x1 in range(min(10, T - 1)):
        unmarked = [p for p in range(T) if p != x1][:T // 2 - 1]
        pairs.update(tuple(sorted((x1, x2))) for x2 in unmarked)
    return pairs


@pytest.mark.parametrize("T", [6, 11, 30, 100])
def test_adding_is_hochreiter_schmidhubers(T):
    """Lengths per sequence in [T, T + T//10]; the marked pairs as the text draws them;
    each sequence rebuilt from its values, length and marks."""
    law = hs_adding_marker_pairs(T)
    lengths_seen, pairs_seen, mixed = set(), set(), False
    for x, target in draws(tasks.adding, T, 150, 20):
        L, B = x.shape[:2]
        lens = np.array([np.flatnonzero(target[:, b, 0] == target[:, b, 0])[0] + 1
                         for b in range(B)])
        assert np.isnan(target).sum() == L * B - B     # one target per sequence, at its end
        assert lens.max() == L
        mixed |= len(set(lens)) > 1
        lengths_seen.update(lens)
        for b in range(B):
            n = lens[b]
            assert not x[n:, b].any()                  # right-padded with zeros
            marked = np.flatnonzero(x[:n, b, 1] == 1)
            assert len(marked) == 2
            pairs_seen.add(tuple(marked))
            want_x, want_t = hs_adding(x[:, b, 0], n, marked)
            np.testing.assert_array_equal(x[:n, b], want_x)
            assert target[n - 1, b, 0] == pytest.approx(want_t, rel=1e-15)
            assert np.all(np.abs(x[:n, b, 0]) <= 1)
    assert (mixed or T < 10) and lengths_seen == set(range(T, T + T // 10 + 1))
    assert pairs_seen <= law
    if len(law) < 300:                   # 3000 draws reach every pair of the small laws
        assert pairs_seen == law


def test_adding_batch_jitter_gives_last_step_targets():
    x, target = tasks.adding(20, 8, 0, jitter="batch")
    assert target.shape == (8, 1) and 20 <= x.shape[0] <= 22
    np.testing.assert_array_equal(x[-1, :, 1], -1.0)
    task = tasks.make("adding", 20, jitter="batch")
    assert task.readout == "last"
    assert tasks.make("adding", 20).readout == "all"


@pytest.mark.parametrize("fn, starts, n_classes", [
    (tasks.temporal_order_hs, (10, 50), 4), (tasks.temporal_order_3bit_hs, (10, 33, 66), 8)])
def test_temporal_order_hs_at_the_papers_T_100(fn, starts, n_classes):
    """Experiment 6 at T = 100 as printed: length 100..110, E first, B last, a..d
    elsewhere but X or Y at t1 in 10..20, t2 in 50..60 (6b: 10..20, 33..43, 66..76),
    1-based; classes by the X/Y order, XX.. = Q = 0 first."""
    X, A, E, Btrig = 0, 2, 6, 7
    lengths_seen, pos_seen, labels_seen = set(), [set() for _ in starts], set()
    for x, labels in draws(fn, 100, 40, 25):
        L, B, D = x.shape
        assert D == 8
        for b in range(B):
            n = np.flatnonzero(labels[:, b] >= 0)
            assert len(n) == 1
            n = n[0] + 1
            lengths_seen.add(n)
            assert not x[n:, b].any() and np.all(labels[n:, b] == -1)
            np.testing.assert_array_equal(x[:n, b].sum(-1), 1.0)
            s = x[:n, b].argmax(-1)
            assert s[0] == E and s[-1] == Btrig
            rel = np.flatnonzero(s < A)
            assert len(rel) == len(starts)
            middle = np.setdiff1d(np.arange(1, n - 1), rel)
            assert np.all((s[middle] >= A) & (s[middle] < A + 4))
            bits = s[rel] - X
            for i, pos in enumerate(rel + 1):              # 1-based
                pos_seen[i].add(pos)
            assert labels[n - 1, b] == int("".join(map(str, bits)), 2)
            labels_seen.add(labels[n - 1, b])
    assert lengths_seen == set(range(100, 111))
    assert pos_seen == [set(range(s, s + 11)) for s in starts]
    assert labels_seen == set(range(n_classes))


# --- criteria, evaluation and training on padded batches ---------------------------------

def test_criteria_by_name():
    p, h = tasks.CRITERIA["pascanu2013"], tasks.CRITERIA["hochreiter1997"]
    assert (p.n, h.n) == (10_000, 2_560)
    assert p.solved(1 - 99 / 10_000) and not p.solved(1 - 100 / 10_000)
    assert h.solved(1.0) and not h.solved(1 - 1 / 2560)
    task = tasks.make("adding", 20, criterion="hochreiter1997")
    assert task.criterion is h and not task.solved(0.9999)
    with pytest.raises(ValueError, match="criterion"):
        tasks.make("adding", 20, criterion="hs")


def test_padded_criteria_read_only_each_sequences_last_step():
    target = np.full((4, 3, 1), np.nan)
    target[[3, 1, 2], [0, 1, 2], 0] = [0.5, 0.2, 0.9]
    y = np.where(np.isnan(target), 100.0, target)           # wrong only where no target
    y[1, 1, 0] += 0.05                                       # sequence 1: |error| 0.05
    assert tasks.adding_accuracy(y, target) == pytest.approx(2 / 3)
    assert tasks.regression_accuracy(y, target) == 1.0       # 0.0025 <= 0.04
    labels = np.full((4, 2), -1)
    labels[[3, 2], [0, 1]] = [1, 0]
    logits = np.zeros((4, 2, 2))
    logits[..., 1] = 1.0                                     # class 1 everywhere
    assert tasks.sequence_accuracy(logits, labels) == 0.5


class _Oracle:
    """Answers the H&S temporal order from the inputs at each sequence's end."""

    def predict(self, x):
        s = x.argmax(-1)
        has = x.any(-1)
        logits = np.zeros(x.shape[:2] + (4,))
        for b in range(x.shape[1]):
            n = np.flatnonzero(has[:, b])[-1] + 1
            bits = s[:n, b][s[:n, b] < 2]
            logits[n - 1, b, 2 * bits[0] + bits[1]] = 1.0
        return logits


def test_evaluate_on_padded_batches_uses_the_criterions_n():
    task = tasks.make("temporal_order_hs", 20, criterion="hochreiter1997")
    assert task.evaluate(_Oracle(), rng=0, batch_size=1000) == 1.0
    assert task.solved(1.0)


def test_trainer_fits_and_evaluates_a_padded_task():
    import rnnx
    task = tasks.make("adding", 10)
    model = rnnx.RNN(task.input_size, 8, task.output_size, readout=task.readout, seed=0)
    trainer = rnnx.Trainer(model, rnnx.SGD(0.05), progress=False, seed=0)
    eval_data = task.sample(50, 1)
    trainer.fit(task, steps=5, batch_size=4, eval_data=eval_data, eval_every=5)
    assert np.isfinite(trainer.history["loss"]).all()
    result = trainer.evaluate(eval_data, accuracy=task.accuracy)
    y = model.predict(eval_data[0])
    has = ~np.isnan(eval_data[1])
    assert result["loss"] == pytest.approx(np.mean((y[has] - eval_data[1][has]) ** 2),
                                           rel=1e-5)
    assert 0 <= result["accuracy"] <= 1


@pytest.mark.parametrize("name, nin, nout, readout", [
    ("addition", 2, 1, "last"), ("multiplication", 2, 1, "last"),
    ("temporal_order", 6, 4, "last"), ("temporal_order_3bit", 6, 8, "last"),
    ("random_permutation", 100, 100, "last"), ("noiseless_memorization", 7, 6, "all"),
    ("adding", 2, 1, "all"), ("temporal_order_hs", 8, 4, "all"),
    ("temporal_order_3bit_hs", 8, 8, "all")])
def test_sizes_are_the_publisheds(name, nin, nout, readout):
    """The code's nin / nout (MemTask with its defaults n_values=5, n_pos=10) and H&S's
    input and output units."""
    task = tasks.make(name, 50)
    assert (task.input_size, task.output_size, task.readout) == (nin, nout, readout)
