"""Learning-rate schedules against their formulas and torch.optim.lr_scheduler."""
import math

import pytest

from rnnx.optim.schedules import constant, cosine, step_decay


def test_constant():
    s = constant(0.3)
    assert [s(k) for k in (0, 1, 10**9)] == [0.3, 0.3, 0.3]


def test_step_decay():
    s = step_decay(1.0, step_size=3, gamma=0.5)
    assert [s(k) for k in range(8)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_cosine():
    s = cosine(1.0, total_steps=4, min_lr=0.2)
    want = [0.2 + 0.4 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    assert [s(k) for k in range(5)] == pytest.approx(want, rel=1e-15)
    assert s(0) == 1.0 and s(4) == pytest.approx(0.2) and s(100) == pytest.approx(0.2)


def test_against_torch_schedulers():
    torch = pytest.importorskip("torch")
    for ours, make in [
        (step_decay(0.1, 5, 0.3), lambda o: torch.optim.lr_scheduler.StepLR(o, 5, 0.3)),
        (cosine(0.1, 12, 0.01),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 12, eta_min=0.01)),
    ]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched = make(opt)
        for k in range(13):
            assert ours(k) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
            opt.step()
            sched.step()


@pytest.mark.parametrize("make, pattern", [
    (lambda: constant(0), "lr"),
    (lambda: constant("0.1"), "lr"),
    (lambda: step_decay(0.1, 0), "step_size"),
    (lambda: step_decay(0.1, 2, gamma=-1), "gamma"),
    (lambda: cosine(0.1, 0), "total_steps"),
    (lambda: cosine(0.1, 10, min_lr=0.2), "min_lr"),
    (lambda: cosine(0.1, 10, min_lr=-0.1), "min_lr"),
    (lambda: constant(0.1)(-1), "step"),
    (lambda: step_decay(0.1, 2)(1.5), "step"),
])
def test_bad_arguments(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()
