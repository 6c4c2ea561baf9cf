"""Stateful metrics accumulate over a check's batches (not a mean of per-batch values) and resume."""
import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, metrics, optimizers


class CountPositives(metrics.Metric):
    """Share of predicted positives over everything seen since reset: a ratio of sums."""

    stateful = True
    registry_name = "share_pos_test"
    direction = "max"

    def reset(self):
        self.pos, self.n = 0, 0

    def update(self, y_true, y_pred, mask=None):
        pred = np.asarray(y_pred).argmax(-1)
        self.pos += int((pred == 1).sum())
        self.n += len(pred)

    def result(self):
        return self.pos / max(self.n, 1)

    def get_state(self):
        return {"pos": self.pos, "n": self.n}

    def set_state(self, st):
        self.pos, self.n = st["pos"], st["n"]


def data(n=50):
    rs = np.random.default_rng(0)
    x = rs.standard_normal((n, 3)).astype(np.float32)
    return x, np.eye(2, dtype=np.float32)[rs.integers(0, 2, n)]


def session():
    cutedl.set_seed(2)
    m = Model([layers.Dense(2, inshape=3, activation="softmax")]).assemble()
    return Session(m, "categorical_crossentropy", optimizers.SGD(0.0), metrics=["accuracy", CountPositives()])


def test_stateful_metric_is_a_ratio_of_sums_over_the_check():
    x, y = data()
    sess = session()
    h = sess.fit(x, y, epochs=2, batch_size=16, val_data=(x, y), verbose=0)  # lr 0: outputs never change
    want = float((sess.predict(x).argmax(-1) == 1).mean())
    assert h.history["share_pos_test"] == [pytest.approx(want)] * 2
    assert h.history["val_share_pos_test"] == [pytest.approx(want)] * 2
    assert sess.evaluate((x, y), batch_size=7)["share_pos_test"] == pytest.approx(want)


def test_stateful_metric_state_survives_a_resume(tmp_path):
    x, y = data()

    class Stop(listeners.Listener):
        def on_batch_end(self, step, logs=None):
            if step == 2:
                self.session.stop_fit("interrupted")

    straight = session().fit(Dataset(x, y, batch_size=16, seed=1), epochs=2, verbose=0)
    session().fit(Dataset(x, y, batch_size=16, seed=1), epochs=2, verbose=0,
                  listeners=[listeners.BackupAndRestore(tmp_path, every=1), Stop()])
    resumed = session().fit(Dataset(x, y, batch_size=16, seed=1), epochs=2, verbose=0,
                            listeners=[listeners.BackupAndRestore(tmp_path, every=1)])
    assert resumed.history["share_pos_test"] == straight.history["share_pos_test"]
