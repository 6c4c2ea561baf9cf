"""EarlyStopping.replay: hand-worked answers, and agreement with the live listener on real runs."""
import math

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, History, Model, Session, layers, listeners, optimizers


class WeightRecorder(listeners.Listener):
    """A copy of the weights at every check: ``weights[i]`` belongs to History row i."""

    def on_fit_start(self, logs=None):
        self.weights = []

    def on_val_end(self, step, logs=None):
        self.weights.append(self.model.get_weights())


def hand_history(values, key="val_loss"):
    h = History()
    for i, v in enumerate(values):
        h.append({"step": 10 * (i + 1), "epoch": i + 1, key: v})
    return h


# Expected answers worked out by hand from EarlyStopping's documented rules.
VALUES = [1.0, 0.9, 0.95, 0.89, 0.92, 0.93]


@pytest.mark.parametrize("patience, min_delta, stop_epoch, restored_epoch", [
    (0, 0.0, 3, 2),      # 0.95 is no improvement on 0.9: stop at once
    (1, 0.0, 3, 2),
    (2, 0.0, 6, 4),      # 0.89 improves (wait reset), then 0.92, 0.93: two misses
    (2, 0.02, 4, 2),     # 0.89 is not below 0.9 - 0.02: second miss in a row
    (3, 0.0, 6, 4),      # never stops: the last check, as for a completed fit
])
def test_replay_by_hand(patience, min_delta, stop_epoch, restored_epoch):
    r = listeners.EarlyStopping.replay(hand_history(VALUES), "val_loss", patience, min_delta, "min")
    assert (r.stop_epoch, r.restored_epoch) == (stop_epoch, restored_epoch)
    assert r.stopped == (patience < 3)
    assert r.stop_step == 10 * stop_epoch and r.restored_index == restored_epoch - 1


def test_replay_max_mode_nan_baseline_warmup():
    replay = listeners.EarlyStopping.replay
    acc = hand_history([0.5, 0.6, math.nan, 0.6, 0.7], key="val_accuracy")
    # 'auto' reads accuracy as higher-is-better; NaN and a tie are misses.
    r = replay(acc, "val_accuracy", patience=2)
    assert (r.stop_epoch, r.restored_epoch, r.best) == (4, 2, 0.6)
    # Nothing beats the baseline 0.65 until epoch 5: four misses first.
    r = replay(acc, "val_accuracy", patience=5, baseline=0.65)
    assert (r.stopped, r.restored_epoch) == (False, 5)
    r = replay(acc, "val_accuracy", patience=4, baseline=0.65)
    assert (r.stopped, r.stop_epoch, r.restored_epoch) == (True, 4, None)
    # Warm-up: epochs 1-2 are ignored, so epoch 3's NaN is the first miss... and epoch 4 the best.
    r = replay(acc, "val_accuracy", patience=1, start_from_epoch=2)
    assert (r.stop_epoch, r.restored_epoch) == (3, None)
    r = replay(acc, "val_accuracy", patience=1, start_from_epoch=3)
    assert (r.stopped, r.restored_epoch) == (False, 5)


def test_replay_errors():
    h = hand_history(VALUES)
    with pytest.raises(ValueError, match="monitor 'val_acc' is not in the history"):
        listeners.EarlyStopping.replay(h, "val_acc")
    with pytest.raises(ValueError, match="patience must be a non-negative integer"):
        listeners.EarlyStopping.replay(h, "val_loss", patience=-1)
    with pytest.raises(ValueError, match="mode must be"):
        listeners.EarlyStopping.replay(h, "val_loss", mode="down")
    with pytest.raises(TypeError, match="expected a cutedl History"):
        listeners.EarlyStopping.replay({"val_loss": [1.0]}, "val_loss")


def _noisy_fit(seed, listener_list, val_steps=0):
    """A tiny fit on random labels: validation loss soon rises, so early stopping has work to do."""
    rs = np.random.default_rng(7)
    x = rs.standard_normal((160, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rs.integers(0, 3, 160)]
    cutedl.set_seed(seed)
    model = Model([layers.Dense(16, inshape=8, activation="relu"),
                   layers.Dense(3, activation="softmax")]).assemble()
    sess = Session(model, loss="categorical_crossentropy", optimizer=optimizers.Adam(0.01),
                   metrics=["accuracy"])
    history = sess.fit(Dataset(x[:120], y[:120], batch_size=32), epochs=25, val_data=(x[120:], y[120:]),
                       val_steps=val_steps, listeners=listener_list, verbose=0)
    return model, history


@pytest.mark.parametrize("monitor, patience, min_delta, kwargs, must_stop", [
    ("val_loss", 0, 0.0, {}, True),
    ("val_loss", 2, 0.0, {"val_steps": 3}, True),       # checks every 3 steps, mid-epoch stops
    ("val_loss", 3, 0.0, {"val_steps": 3, "start_from_epoch": 2}, True),
    ("val_loss", 2, 0.0, {}, True),
    ("val_loss", 3, 0.01, {}, True),
    ("val_loss", 1, 0.0, {"start_from_epoch": 4}, True),
    ("val_loss", 2, 0.0, {"baseline": 0.5}, True),
    ("val_accuracy", 2, 0.0, {}, None),
    ("val_accuracy", 1, 0.02, {"mode": "max"}, None),
    ("loss", 2, 0.0, {}, None),
    ("val_loss", 100, 0.0, {}, False),
])
def test_replay_matches_live_early_stopping(monitor, patience, min_delta, kwargs, must_stop):
    kwargs = dict(kwargs)
    val_steps = kwargs.pop("val_steps", 0)
    live_es = listeners.EarlyStopping(monitor, patience=patience, min_delta=min_delta, **kwargs)
    live_model, live = _noisy_fit(3, [live_es], val_steps)
    recorder = WeightRecorder()
    _, full = _noisy_fit(3, [recorder], val_steps)
    assert full.stop_reason == "completed" and len(recorder.weights) == len(full)
    assert len(full) == (25 if not val_steps else math.ceil(25 * 4 / val_steps))

    r = listeners.EarlyStopping.replay(full, monitor, patience, min_delta, **kwargs)
    if must_stop is not None:
        assert (live.stop_reason == "early_stopping") == must_stop
    assert r.stopped == (live.stop_reason == "early_stopping")
    assert (r.stop_epoch, r.stop_step) == (live.stopped_epoch, live.stopped_step)
    if live.restored is None:
        assert r.restored_index is None
    else:
        assert (r.restored_epoch, r.restored_step) == (live.restored["epoch"], live.restored["step"])
        # The recorded weights of the restored check are the very weights live restored.
        for got, want in zip(live_model.get_weights(), recorder.weights[r.restored_index]):
            np.testing.assert_array_equal(got, want)
    # The recorded run is the live run up to the stop, check for check.
    n = len(live)
    np.testing.assert_array_equal(np.asarray(full[monitor][:n]), np.asarray(live[monitor]))
