import math

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, History, Model, Session, layers, listeners, optimizers


class FakeModel:
    def __init__(self):
        self.w = [np.zeros(2)]

    def get_weights(self):
        return [a.copy() for a in self.w]

    def set_weights(self, w):
        self.w = [a.copy() for a in w]


class FakeSession:
    """Just enough of a Session to drive EarlyStopping by hand."""

    def __init__(self, keys=("loss", "val_loss", "accuracy", "val_accuracy")):
        self.model = FakeModel()
        self.history = History()
        self.stopped = None
        self._keys = list(keys)

    def log_keys(self):
        return self._keys

    def direction(self, key):
        return "max" if "accuracy" in key else "min"

    def stop_fit(self, reason="stop_fit"):
        self.stopped = self.stopped or reason


def drive(es, values, monitor="val_loss", epochs=None):
    """Feed checks with the given values; return the 1-based check index where it stopped."""
    s = FakeSession()
    es.set_session(s)
    es.on_fit_start()
    for i, v in enumerate(values, 1):
        s.model.w = [np.full(2, float(i))]  # weights remember which check they belong to
        es.on_val_end(i * 10, {monitor: v, "epoch": epochs[i - 1] if epochs else i})
        if s.stopped:
            break
    es.on_fit_end()
    return s, (i if s.stopped else None)


def test_patience_counts_checks_without_improvement():
    s, stop = drive(listeners.EarlyStopping(patience=2), [1.0, 0.9, 0.95, 0.91, 0.8])
    assert stop == 4  # two checks (3 and 4) without beating 0.9
    assert s.history.best == {"monitor": "val_loss", "mode": "min", "value": 0.9, "step": 20, "epoch": 2}


def test_patience_zero_stops_at_first_non_improvement():
    _, stop = drive(listeners.EarlyStopping(patience=0), [1.0, 0.9, 0.95])
    assert stop == 3


def test_min_delta():
    # improvements of 0.05 do not count with min_delta=0.1
    _, stop = drive(listeners.EarlyStopping(patience=2, min_delta=0.1), [1.0, 0.95, 0.9, 0.5])
    assert stop == 3


def test_mode_max_and_auto_uses_metric_direction():
    vals = [0.5, 0.6, 0.55, 0.58]
    _, stop = drive(listeners.EarlyStopping("val_accuracy", patience=2), vals, monitor="val_accuracy")
    assert stop == 4
    _, stop = drive(listeners.EarlyStopping("val_accuracy", patience=2, mode="max"), vals, monitor="val_accuracy")
    assert stop == 4
    # forcing 'min' on an accuracy: 0.5 stays best
    _, stop = drive(listeners.EarlyStopping("val_accuracy", patience=2, mode="min"), vals, monitor="val_accuracy")
    assert stop == 3


def test_restore_best_weights_whatever_ends_training():
    s, stop = drive(listeners.EarlyStopping(patience=5), [1.0, 0.5, 0.7])  # never stops
    assert stop is None
    np.testing.assert_array_equal(s.model.w[0], [2.0, 2.0])
    assert s.history.restored == {"step": 20, "epoch": 2}
    s, _ = drive(listeners.EarlyStopping(patience=5, restore_best_weights=False), [1.0, 0.5, 0.7])
    np.testing.assert_array_equal(s.model.w[0], [3.0, 3.0])
    assert s.history.restored is None


def test_start_from_epoch_ignores_warmup():
    _, stop = drive(listeners.EarlyStopping(patience=1, start_from_epoch=2), [0.1, 0.5, 0.9, 0.95, 1.0])
    assert stop == 4  # check 3 sets best 0.9, check 4 does not improve


def test_baseline_must_be_beaten():
    s, stop = drive(listeners.EarlyStopping(patience=2, baseline=0.5), [0.9, 0.8, 0.7])
    assert stop == 2 and s.history.best is None


def test_nan_never_improves():
    _, stop = drive(listeners.EarlyStopping(patience=1), [1.0, math.nan])
    assert stop == 2


def test_unknown_monitor_lists_keys():
    es = listeners.EarlyStopping("val_acc")
    es.set_session(FakeSession())
    with pytest.raises(ValueError, match="'val_acc' will never appear.*val_accuracy"):
        es.on_fit_start()


@pytest.mark.parametrize("kwargs,match", [({"patience": -1}, "patience"), ({"mode": "up"}, "mode"),
                                          ({"min_delta": -0.1}, "min_delta")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        listeners.EarlyStopping(**kwargs)


def data(n=64, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((n, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)) + 0.1 * rs.standard_normal((n, 1)).astype(np.float32)
    return x, y


def test_live_early_stopping_restores_the_best_epoch_weights():
    x, y = data(12)
    cutedl.set_seed(0)
    m = Model([layers.Dense(64, inshape=3, activation="relu"), layers.Dense(1)]).assemble()
    snaps = {}
    rec = listeners.FitListener("val_end", callback=lambda s, logs: snaps.__setitem__(logs["epoch"], s.model.get_weights()))
    # 12 noisy samples and 64 hidden units: the model overfits and val_loss turns up
    xv, yv = data(32, seed=1)
    es = listeners.EarlyStopping(patience=2)
    h = Session(m, "mse", optimizers.Adam(0.02)).fit(Dataset(x, y, batch_size=4), epochs=200,
                                                                  val_data=(xv, yv), listeners=[rec, es], verbose=0)
    assert h.stop_reason == "early_stopping"
    best_epoch = h.best["epoch"]
    assert h.best["value"] == min(h["val_loss"])
    assert h.restored["epoch"] == best_epoch
    for a, b in zip(m.get_weights(), snaps[best_epoch]):
        np.testing.assert_array_equal(a, b)
    assert len(h) == h.stopped_epoch and h.stopped_epoch - best_epoch == 2


def test_terminate_on_nan_keeps_finite_weights():
    x, y = data()
    cutedl.set_seed(0)
    m = Model([layers.Dense(8, inshape=3), layers.Dense(1)]).assemble()
    with np.errstate(all="ignore"):
        h = Session(m, "mse", optimizers.SGD(50.0)).fit(Dataset(x, y, batch_size=8), epochs=20,
                                                       listeners=[listeners.TerminateOnNaN()], verbose=0)
    assert h.stop_reason == "nan"
    assert all(np.isfinite(w).all() for w in m.get_weights())


def test_fit_listener_and_lambda_listener():
    x, y = data(16)
    seen, ends = [], []
    fl = listeners.FitListener("val_end", "epoch_end", callback=lambda s, logs: seen.append(logs["step"]))
    ll = listeners.LambdaListener(on_epoch_end=lambda epoch, logs: ends.append(epoch))
    m = Model([layers.Dense(1, inshape=3)]).assemble()
    Session(m, "mse", "sgd").fit(Dataset(x, y, batch_size=8), epochs=2, listeners=[fl, ll], verbose=0)
    assert seen == [2, 2, 4, 4] and ends == [1, 2]
    with pytest.raises(ValueError, match="unknown event"):
        listeners.FitListener("val_ends", callback=print)
    with pytest.raises(ValueError, match="unknown hook"):
        listeners.LambdaListener(on_epoch_finish=print)


def test_fit_report_writes_a_png_during_and_after_training(tmp_path):
    import matplotlib.image

    x, y = data(32)
    path = tmp_path / "r" / "report.png"
    rep = listeners.FitReport(path, title="t", budget=0)
    m = Model([layers.Dense(4, inshape=3, activation="relu"), layers.Dense(1)]).assemble()
    Session(m, "mse", "adam", metrics=["mae"]).fit(Dataset(x, y, batch_size=8), epochs=3, val_data=(x, y),
                                                    listeners=[rep, listeners.EarlyStopping(patience=5)], verbose=0)
    assert rep.draws == 4  # 3 checks + the final draw
    img = matplotlib.image.imread(path)
    assert img.shape[0] >= 300 and img.shape[1] >= 500 and img.std() > 0


def test_fit_report_paces_redraws(tmp_path):
    x, y = data(32)
    rep = listeners.FitReport(tmp_path / "r.png", budget=1e9)
    m = Model([layers.Dense(1, inshape=3)]).assemble()
    Session(m, "mse", "sgd").fit(Dataset(x, y, batch_size=8), epochs=5, listeners=[rep], verbose=0)
    assert rep.draws == 2  # the first check and the end


def test_unwritable_report_warns_once_and_training_goes_on(tmp_path):
    x, y = data(32)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rep = listeners.FitReport(blocker / "r.png", budget=0)
    m = Model([layers.Dense(1, inshape=3)]).assemble()
    with pytest.warns(UserWarning, match="could not write") as rec:
        h = Session(m, "mse", "sgd").fit(Dataset(x, y, batch_size=8), epochs=3, listeners=[rep], verbose=0)
    assert len([w for w in rec if "could not write" in str(w.message)]) == 1
    assert h.stop_reason == "completed" and len(h) == 3
