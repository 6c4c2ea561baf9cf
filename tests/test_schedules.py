"""Learning-rate schedules, LearningRateScheduler and ReduceLROnPlateau."""
import json
import math

import numpy as np
import pytest

from cutedl import Dataset, Model, Session, layers, listeners, optimizers, reports, schedules
from cutedl.layers.base import Param
from cutedl.schedules import CosineDecay, ExponentialDecay, PiecewiseConstantDecay, StepDecay


# ---------------------------------------------------------------------------- values by hand
def test_step_decay():
    s = StepDecay(0.1, decay_steps=3, decay_rate=0.5)
    assert [s(i) for i in range(8)] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025]


def test_exponential_decay():
    s = ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5)
    assert s(0) == 1.0 and s(10) == 0.5 and s(20) == 0.25
    assert s(5) == pytest.approx(math.sqrt(0.5), rel=1e-15)
    st = ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [st(9), st(10), st(19), st(20)] == [1.0, 0.5, 0.5, 0.25]


def test_exponential_decay_has_no_overflow():
    # a rate > 1 used to be accepted and raised a bare OverflowError at step 5000; now it is refused
    # up front, and any accepted rate stays finite at any step (it may underflow to 0)
    with pytest.raises(ValueError, match=r"decay_rate must be a finite number in \(0, 1\], got 2"):
        ExponentialDecay(0.1, decay_steps=1, decay_rate=2)
    assert ExponentialDecay(0.1, decay_steps=1, decay_rate=1.0)(10 ** 9) == 0.1
    assert ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)(10 ** 9) == 0.0
    assert ExponentialDecay(1e308, decay_steps=1, decay_rate=1e-300, staircase=True)(5000) == 0.0


def test_piecewise_constant_decay_boundaries_are_inclusive_on_the_left_piece():
    s = PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1])
    assert [s(i) for i in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]


def test_cosine_decay_without_and_with_warmup():
    s = CosineDecay(1.0, decay_steps=4, alpha=0.2)
    # 0.8 * 0.5 * (1 + cos(pi * t)) + 0.2 at t = 0, 1/4, 1/2, 1, then flat
    want = [1.0, 0.8 * 0.5 * (1 + math.sqrt(0.5)) + 0.2, 0.6, 0.8 * 0.5 * (1 - math.sqrt(0.5)) + 0.2, 0.2, 0.2]
    np.testing.assert_allclose([s(i) for i in range(6)], want, rtol=1e-14)
    w = CosineDecay(0.0, decay_steps=2, warmup_steps=4, warmup_target=2.0)
    np.testing.assert_allclose([w(i) for i in range(8)], [0.0, 0.5, 1.0, 1.5, 2.0, 1.0, 0.0, 0.0], atol=1e-15)


@pytest.mark.parametrize("make, match", [
    (lambda: StepDecay(0.1, 0), "decay_steps must be an integer >= 1"),
    (lambda: StepDecay(-0.1, 10), "initial_lr must be a finite number >= 0"),
    (lambda: StepDecay(0.1, 10, decay_rate=2.0), r"decay_rate must be a finite number in \[0, 1\], got 2.0"),
    (lambda: ExponentialDecay(0.1, 10, 0.0), r"decay_rate must be a finite number in \(0, 1\], got 0.0"),
    (lambda: ExponentialDecay(0.1, 1, 2), r"ExponentialDecay: decay_rate must be a finite number in \(0, 1\], got 2\. "
                                          r"A rate above 1 makes the lr grow exponentially until it overflows.*0\.5.*"
                                          r"CosineDecay\(warmup_steps"),
    (lambda: ExponentialDecay(0.1, 1, float("inf")), r"decay_rate must be a finite number in \(0, 1\], got inf"),
    (lambda: ExponentialDecay("0.1", 10, 0.5), "initial_lr must be a finite number >= 0, got str '0.1'"),
    (lambda: PiecewiseConstantDecay([5, 2], [1, 2, 3]), "strictly increasing"),
    (lambda: PiecewiseConstantDecay([5], [1]), "one more entry than boundaries"),
    (lambda: CosineDecay(0.1, 10, alpha=1.5), "alpha must be"),
    (lambda: CosineDecay(0.1, 10, warmup_steps=-1), "warmup_steps must be an integer >= 0"),
])
def test_schedule_errors(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_schedule_rejects_bad_step():
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        StepDecay(0.1, 10)(-1)


# ---------------------------------------------------------------------------- in an optimizer
def test_schedule_drives_sgd_step_by_step():
    sched = PiecewiseConstantDecay([1], [0.5, 0.25])
    opt = optimizers.SGD(lr=sched)
    p = Param("w", np.zeros(3, dtype=np.float32))
    p.grad = np.ones(3, dtype=np.float32)
    lrs = []
    for _ in range(4):
        lrs.append(opt.current_lr)
        opt.step([p])
    # steps 0 and 1 use 0.5, steps 2 and 3 use 0.25: w = -(0.5 + 0.5 + 0.25 + 0.25)
    assert lrs == [0.5, 0.5, 0.25, 0.25]
    np.testing.assert_array_equal(p.value, np.full(3, -1.5, dtype=np.float32))


@pytest.mark.parametrize("sched", [StepDecay(0.1, 5, 0.3), ExponentialDecay(0.1, 7, 0.9, staircase=True),
                                   PiecewiseConstantDecay([3, 9], [0.1, 0.01, 0.001]),
                                   CosineDecay(0.0, 100, alpha=0.1, warmup_steps=10, warmup_target=0.01)])
def test_schedule_survives_optimizer_config_as_json(sched):
    opt = optimizers.Adam(lr=sched, clipnorm=1.0)
    text = json.dumps(optimizers.serialize(opt))
    clone = optimizers.registry.deserialize(json.loads(text))
    assert type(clone.lr) is type(sched) and clone.lr == sched
    assert [clone.lr(i) for i in range(0, 120, 7)] == [sched(i) for i in range(0, 120, 7)]
    assert repr(opt).startswith(f"Adam(lr={sched!r}")


def test_schedules_get_by_config_and_unknown_name():
    s = schedules.get({"class_name": "step_decay", "config": {"initial_lr": 0.1, "decay_steps": 2}})
    assert s == StepDecay(0.1, 2)
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'linear'"):
        schedules.get({"class_name": "linear", "config": {}})


# ---------------------------------------------------------------------------- in fit
def _data():
    rs = np.random.default_rng(0)
    x = rs.standard_normal((64, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]
    return x, y


def _session(lr):
    model = Model([layers.Dense(8, inshape=4, activation="relu"), layers.Dense(2, activation="softmax")]).assemble()
    return Session(model, "categorical_crossentropy", optimizers.SGD(lr=lr))


def test_lr_schedule_is_logged_and_drawn(tmp_path):
    x, y = _data()
    sess = _session(StepDecay(0.1, decay_steps=4, decay_rate=0.5))
    h = sess.fit(Dataset(x, y, batch_size=16), epochs=3, verbose=0)
    # 4 steps per epoch; the row's lr is the one the next step uses (steps done: 4, 8, 12)
    assert h["lr"] == [0.05, 0.025, 0.0125]
    assert "lr" in reports._layout(h)
    reports.fit_report(h, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_learning_rate_scheduler_sets_lr_per_epoch():
    x, y = _data()
    seen = []

    def fn(epoch, lr):
        seen.append((epoch, lr))
        return 0.1 / epoch

    sess = _session(0.1)
    h = sess.fit(Dataset(x, y, batch_size=32), epochs=3, listeners=[listeners.LearningRateScheduler(fn)], verbose=0)
    assert seen == [(1, 0.1), (2, 0.1), (3, 0.05)]
    assert h["lr"] == [0.1, 0.05, pytest.approx(0.1 / 3)]
    sess = _session(0.1)
    h = sess.fit(Dataset(x, y, batch_size=32), epochs=2,
                 listeners=[listeners.LearningRateScheduler(lambda epoch: 0.01 * epoch)], verbose=0)
    assert h["lr"] == [0.01, 0.02]


def test_learning_rate_scheduler_errors():
    x, y = _data()
    with pytest.raises(TypeError, match="schedule must be a function"):
        listeners.LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="already a schedule"):
        _session(StepDecay(0.1, 2)).fit((x, y), listeners=[listeners.LearningRateScheduler(lambda e: 0.1)],
                                        verbose=0)
    with pytest.raises(ValueError, match="returned -1 for epoch 1"):
        _session(0.1).fit((x, y), listeners=[listeners.LearningRateScheduler(lambda e: -1)], verbose=0)


class _StubSession:
    def __init__(self, lr):
        self.optimizer = optimizers.SGD(lr=lr)

    def log_keys(self):
        return ["step", "epoch", "loss", "val_loss"]

    def direction(self, key):
        return "min"


def test_reduce_lr_on_plateau_by_hand():
    r = listeners.ReduceLROnPlateau("val_loss", factor=0.5, patience=2, min_lr=0.02, cooldown=1, min_delta=0.0)
    stub = _StubSession(0.1)
    r.set_session(stub)
    r.on_fit_start()
    values = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
    lrs = []
    for i, v in enumerate(values):
        r.on_val_end(i + 1, {"val_loss": v})
        lrs.append(stub.optimizer.lr)
    # check 3: 2nd miss -> 0.05; check 4's miss falls in the cooldown; 5, 6 -> 0.025; 7 improves;
    # 8, 9 -> 0.02 (floor: not 0.0125); then lr stays at min_lr
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02, 0.02, 0.02, 0.02, 0.02]
    assert r.reductions == [(3, 0.1, 0.05), (6, 0.05, 0.025), (9, 0.025, 0.02)]


def test_reduce_lr_on_plateau_in_fit_and_errors():
    x, y = _data()
    sess = _session(0.1)
    # monitor the training loss with a tiny patience and a huge min_delta: every check is a miss
    red = listeners.ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=10.0)
    h = sess.fit(Dataset(x, y, batch_size=32), epochs=3, listeners=[red], verbose=0)
    # the row records the lr its check was made with; the reduction comes right after
    assert h["lr"] == [0.1, 0.1, 0.05]
    assert red.reductions == [(4, 0.1, 0.05), (6, 0.05, 0.025)] and sess.optimizer.lr == 0.025
    with pytest.raises(ValueError, match="factor must be in"):
        listeners.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="monitor 'val_loss' will never appear"):
        _session(0.1).fit((x, y), listeners=[listeners.ReduceLROnPlateau()], verbose=0)
    with pytest.raises(ValueError, match="already a schedule"):
        _session(StepDecay(0.1, 2)).fit((x, y), listeners=[listeners.ReduceLROnPlateau("loss")], verbose=0)
