"""Checkpoints are validated whole before anything is applied; what cannot be saved says so."""
import math
import os

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, History, Model, Session, layers, listeners, optimizers
from cutedl.training import checkpoint


def data(n=48):
    rs = np.random.default_rng(0)
    x = rs.standard_normal((n, 5)).astype(np.float32)
    return x, np.eye(2, dtype=np.float32)[rs.integers(0, 2, n)]


def session():
    cutedl.set_seed(7)
    m = Model([layers.Dense(6, inshape=5, activation="relu"), layers.Dense(2, activation="softmax")]).assemble()
    return Session(m, "categorical_crossentropy", optimizers.Adam(0.01))


class StopAt(listeners.Listener):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, step, logs=None):
        if step == self.step:
            self.session.stop_fit("interrupted")


def interrupted_checkpoint(tmp_path, extra=()):
    x, y = data()
    s = session()
    b = listeners.BackupAndRestore(tmp_path / "bk", every=1)
    s.fit(Dataset(x, y, batch_size=8, seed=1), epochs=3, val_data=(x, y),
          listeners=[listeners.EarlyStopping(patience=9), b, *extra, StopAt(8)], verbose=0)
    return b.path


@pytest.mark.parametrize("where, value", [
    (("position", "batches_done"), 1.5),
    (("session", "step"), -3),
    (("listeners", 0, "state", "best"), {}),
    (("listeners", 0, "state", "wait"), "x"),
    (("rng", "global", "cutedl", "state", "state"), 10**40),
    (("model", "weights", 0), np.zeros((2, 2), np.float32)),
    (("optimizer", "class"), "SGD"),
])
def test_a_corrupt_checkpoint_changes_nothing_and_names_the_file(tmp_path, where, value):
    path = interrupted_checkpoint(tmp_path)
    state = checkpoint.load_state(path)
    node = state
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    checkpoint.save_state(path, state)
    x, y = data()
    s = session()
    before = s.model.get_weights()
    opt_before = s.optimizer.get_state()
    es = listeners.EarlyStopping(patience=9)
    with pytest.raises(ValueError, match="bk"):
        s.fit(Dataset(x, y, batch_size=8, seed=1), epochs=3, val_data=(x, y),
              listeners=[es, listeners.BackupAndRestore(tmp_path / "bk", every=1)], verbose=0)
    for a, b in zip(before, s.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert s.optimizer.get_state()["iterations"] == opt_before["iterations"]
    assert es.best is None and s.state.step == 0


def test_a_user_augmenter_with_its_own_generator_resumes_exactly(tmp_path):
    class Noise:
        def __init__(self):
            self.gen = np.random.default_rng(11)

        def __call__(self, xb):
            return xb + self.gen.standard_normal(xb.shape).astype(xb.dtype)

    x, y = data()

    def run(dirname, stop=None):
        s = session()
        ds = Dataset(x, y, batch_size=8, seed=1, transform=Noise())
        extra = [StopAt(stop)] if stop else []
        h = s.fit(ds, epochs=3, listeners=[listeners.BackupAndRestore(tmp_path / dirname, every=1), *extra],
                  verbose=0)
        return s.model.get_weights(), h

    straight, _ = run("a")
    run("b", stop=9)
    resumed, h = run("b")
    for u, v in zip(straight, resumed):
        np.testing.assert_array_equal(u, v)


def test_a_listener_state_a_checkpoint_cannot_hold_names_the_listener(tmp_path):
    class Bad(listeners.Listener):
        def get_state(self):
            return {"seen": {1, 2}}

    with pytest.raises(TypeError, match=r"Bad\(\)\.get_state\(\)"):
        interrupted_checkpoint(tmp_path, extra=[Bad()])


def test_a_keyerror_in_a_hook_keeps_its_type_and_names_the_listener():
    class Boom(listeners.Listener):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyError("missing")

    x, y = data()
    with pytest.raises(KeyError, match="Boom"):
        session().fit(x, y, epochs=1, listeners=[Boom()], verbose=0)


def test_history_with_infinities_round_trips(tmp_path):
    h = History()
    h.append({"step": 1, "epoch": 1, "loss": math.inf, "val_loss": math.nan})
    h.append({"step": 2, "epoch": 1, "loss": -math.inf, "val_loss": 0.5})
    h.save(tmp_path / "h.json")
    back = History.load(tmp_path / "h.json")
    assert back.history["loss"] == [math.inf, -math.inf]
    assert math.isnan(back.history["val_loss"][0]) and back.history["val_loss"][1] == 0.5


def test_csvlogger_refuses_to_append_to_a_file_with_other_columns(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,acc\n1,0.5\n")
    x, y = data()
    with pytest.raises(ValueError, match=r"has the columns \['epoch', 'acc'\]"):
        session().fit(x, y, epochs=1, listeners=[listeners.CSVLogger(path, append=True)], verbose=0)
    assert path.read_text() == "epoch,acc\n1,0.5\n"  # nothing lost


@pytest.mark.parametrize("template", ["m-{epoch.__class__}.npz", "m-{epoch.nope}.npz", "m-{epoch[0]}.npz",
                                      "m-{epoch!r}.npz", "m-{epoch"])
def test_modelcheckpoint_templates_allow_plain_fields_only(tmp_path, template):
    with pytest.raises(ValueError, match="ModelCheckpoint"):
        listeners.ModelCheckpoint(tmp_path / template)


def test_modelcheckpoint_plain_fields_with_specs_work(tmp_path):
    x, y = data()
    mc = listeners.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{loss:.3f}.npz"))
    session().fit(x, y, epochs=2, listeners=[mc], verbose=0)
    assert [os.path.basename(p)[:5] for p in mc.saved] == ["m-01-", "m-02-"]


def test_a_report_that_matplotlib_rejects_never_ends_training(tmp_path):
    x, y = data()

    class Huge(listeners.Listener):
        def on_val_end(self, step, logs=None):
            self.session.history.history["loss"][-1] = 1.6e308

    with pytest.warns(UserWarning, match="FitReport could not write"):
        h = session().fit(x, y, epochs=2, verbose=0,
                          listeners=[Huge(), listeners.FitReport(tmp_path / "r.png", budget=0)])
    assert len(h) == 2


def test_a_stateful_rnn_resumes_bit_exact(tmp_path):
    rs = np.random.default_rng(3)
    x = rs.standard_normal((32, 4, 3)).astype(np.float32)
    y = rs.standard_normal((32, 2)).astype(np.float32)

    def run(d, stop=None):
        cutedl.set_seed(9)
        m = Model([layers.LSTM(2, inshape=(4, 3), stateful=True)]).assemble()
        s = Session(m, "mse", optimizers.Adam(0.01))
        extra = [StopAt(stop)] if stop else []
        s.fit(Dataset(x, y, batch_size=8, shuffle=False), epochs=2, verbose=0,
              listeners=[listeners.BackupAndRestore(tmp_path / d, every=1), *extra])
        return m

    straight = run("a")
    run("b", stop=3)
    resumed = run("b")
    for u, v in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(u, v)
    for u, v in zip(straight.layers[0].states, resumed.layers[0].states):
        np.testing.assert_array_equal(u, v)
