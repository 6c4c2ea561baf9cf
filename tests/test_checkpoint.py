"""ModelCheckpoint, CSVLogger, BackupAndRestore files: fields, atomic writes, unwritable paths."""
import errno
import math
import os
import warnings

import numpy as np
import pytest

import cutedl
from cutedl import Model, Session, checkpoint, layers, listeners


def _fit(lst, epochs=4, val=True, **kwargs):
    cutedl.set_seed(8)
    rs = np.random.default_rng(1)
    x = rs.standard_normal((90, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 0] * x[:, 1] > 0).astype(int)]
    model = Model([layers.Dense(6, inshape=4, activation="tanh"), layers.Dense(2, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", "adam", metrics=["accuracy"])
    h = sess.fit((x[:70], y[:70]), epochs=epochs, batch_size=16, val_data=(x[70:], y[70:]) if val else None,
                 listeners=lst, verbose=0, **kwargs)
    return sess, h


def test_model_checkpoint_fills_path_fields(tmp_path):
    mc = listeners.ModelCheckpoint(tmp_path / "m" / "e{epoch:02d}-s{step}-{val_loss:.4f}.npz")
    sess, h = _fit([mc])
    want = [str(tmp_path / "m" / f"e{e:02d}-s{s}-{v:.4f}.npz") for e, s, v in zip(h["epoch"], h["step"],
                                                                                   h["val_loss"])]
    assert mc.saved == want and all(os.path.exists(p) for p in want)
    last = Model.load(want[-1])
    for p, q in zip(last.params, sess.model.params):
        np.testing.assert_array_equal(p.value, q.value)
    assert not [f for f in os.listdir(tmp_path / "m") if f.startswith(".tmp")]


def test_model_checkpoint_save_best_only_and_weights_only(tmp_path):
    mc = listeners.ModelCheckpoint(tmp_path / "best.npz", monitor="val_accuracy", save_best_only=True,
                                   save_weights_only=True)

    class Recorder(listeners.Listener):
        weights = []

        def on_val_end(self, step, logs=None):
            self.weights.append(self.model.get_weights())

    rec = Recorder.weights
    sess, h = _fit([Recorder(), mc], epochs=6)
    acc = h["val_accuracy"]
    best_i = max(range(len(acc)), key=lambda i: (acc[i], -i))  # first check reaching the max
    assert mc.best == acc[best_i] and len(mc.saved) == sum(
        acc[i] > max(acc[:i], default=-math.inf) for i in range(len(acc)))
    fresh = Model([layers.Dense(6, inshape=4, activation="tanh"), layers.Dense(2, activation="softmax")]).assemble()
    checkpoint.load_weights(fresh, tmp_path / "best.npz")
    for got, want in zip(fresh.get_weights(), rec[best_i]):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="is not a cutedl weights file"):
        checkpoint.load_weights(fresh, _saved_model(tmp_path, sess.model))


def _saved_model(tmp_path, model):
    path = tmp_path / "model.npz"
    model.save(path)
    return path


def test_model_checkpoint_errors():
    with pytest.raises(ValueError, match="names the field 'val_acc'"):
        _fit([listeners.ModelCheckpoint("x/{val_acc:.2f}.npz")])
    with pytest.raises(ValueError, match="monitor 'val_loss' will never appear"):
        _fit([listeners.ModelCheckpoint("x.npz", save_best_only=True)], val=False)
    with pytest.raises(ValueError, match="mode must be"):
        listeners.ModelCheckpoint("x.npz", mode="up")


def test_a_crash_mid_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "state.npz"
    checkpoint.save_state(path, {"format": "t", "a": np.arange(3.0)})
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_state(path, {"format": "t", "a": np.arange(4.0)})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["state.npz"]
    np.testing.assert_array_equal(checkpoint.load_state(path)["a"], np.arange(3.0))


@pytest.mark.parametrize("make", [
    lambda d: listeners.CSVLogger(d / "log.csv"),
    lambda d: listeners.ModelCheckpoint(d / "m{epoch}.npz"),
    lambda d: listeners.BackupAndRestore(d / "backup"),
    lambda d: listeners.FitReport(d / "r.png", budget=0),
])
def test_unwritable_files_warn_once_and_training_goes_on(tmp_path, make):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.warns(UserWarning, match="could not write") as rec:
        _, h = _fit([make(blocker)], epochs=3)
    assert h.stop_reason == "completed" and len(h) == 3
    assert len([w for w in rec if "could not write" in str(w.message)]) == 1


def test_disk_full_while_appending_csv_warns_once(tmp_path, monkeypatch):
    csv = listeners.CSVLogger(tmp_path / "log.csv")
    real_open = open
    calls = {"n": 0}

    def flaky_open(path, mode="r", *args, **kwargs):
        if os.fspath(path) == str(tmp_path / "log.csv") and mode == "a":
            calls["n"] += 1
            if calls["n"] >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", flaky_open)
    with pytest.warns(UserWarning, match="No space left") as rec:
        _, h = _fit([csv], epochs=4)
    assert len(h) == 4 and len(rec) == 1
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 2  # header + the first row


def test_csv_logger_writes_the_history_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    _, h = _fit([listeners.CSVLogger(path)], epochs=2)
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == list(h.keys())
    assert [float(v) for v in lines[2].split(",")] == [h[k][1] for k in h.keys()]  # exact floats
    _, h2 = _fit([listeners.CSVLogger(path, append=True)], epochs=2)
    assert len(path.read_text().splitlines()) == 5
    _, h3 = _fit([listeners.CSVLogger(path, separator=";")], epochs=1)  # append=False starts anew
    assert path.read_text().splitlines()[0] == ";".join(h3.keys())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="separator must be"):
            listeners.CSVLogger(path, separator="")


def test_checkpoint_rejects_unsavable_state(tmp_path):
    with pytest.raises(TypeError, match="cannot save a value of type object"):
        checkpoint.save_state(tmp_path / "x.npz", {"a": object()})
    with pytest.raises(TypeError, match="cannot save an array of dtype object"):
        checkpoint.save_state(tmp_path / "x.npz", {"a": np.array([None])})
    assert not os.path.exists(tmp_path / "x.npz")
