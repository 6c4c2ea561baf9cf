"""Exact resume: N epochs straight == k epochs, a kill, and a resume, bit for bit.

The resumed runs start from a scrambled process state (another global seed, a freshly
initialised model, new optimizer, listeners and Dataset objects), as a new process would: all
that must come back from the checkpoint.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import cutedl
from cutedl import Dataset, History, Model, Session, checkpoint, layers, listeners, optimizers, reports, schedules

ROOT = Path(__file__).resolve().parents[1]


class Kill(listeners.Listener):
    """Simulates a crash: raises at the end of step ``at`` (None: never)."""

    def __init__(self, at=None):
        self.at = at

    def on_batch_end(self, step, logs=None):
        if self.at is not None and step == self.at:
            raise RuntimeError("simulated crash")


def _data():
    rs = np.random.default_rng(11)
    x = rs.standard_normal((150, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[(x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)]
    return x[:118], y[:118], x[118:], y[118:]


def _run(tmp, kill_at=None, seed=5, every="epoch", val_steps=0, val_epochs=1, lr="schedule", epochs=5):
    """One fit of a small Dropout MLP with stateful listeners; returns (session, history or error)."""
    cutedl.set_seed(seed)
    x, y, xv, yv = _data()
    model = Model([layers.Dense(16, inshape=6, activation="relu"), layers.Dropout(0.3),
                   layers.Dense(3, activation="softmax")]).assemble()
    if lr == "schedule":
        opt = optimizers.Adam(lr=schedules.CosineDecay(1e-3, decay_steps=30, warmup_steps=5, warmup_target=1e-2))
        lr_listener = listeners.EarlyStopping("val_accuracy", patience=50)
    else:
        opt = optimizers.SGD(lr=0.2, momentum=0.9)
        lr_listener = listeners.ReduceLROnPlateau("val_loss", factor=0.5, patience=1, min_delta=0.0)
    sess = Session(model, "categorical_crossentropy", opt, metrics=["accuracy"])
    lst = [listeners.EarlyStopping("val_loss", patience=100), lr_listener,
           listeners.CSVLogger(tmp / "log.csv", append=True),
           listeners.BackupAndRestore(tmp / "backup", every=every), Kill(kill_at)]
    # (x, y) tuples: fit builds the Datasets itself, drawing their seeds from the global generator
    try:
        h = sess.fit((x, y), epochs=epochs, batch_size=16, val_data=(xv, yv), val_steps=val_steps,
                     val_epochs=val_epochs, listeners=lst, verbose=0)
    except RuntimeError as err:
        return sess, err
    return sess, h


def _same_history(a: History, b: History):
    assert set(a.keys()) == set(b.keys())
    for k in a.keys():
        if k != "time":
            np.testing.assert_array_equal(np.asarray(a[k], dtype=float), np.asarray(b[k], dtype=float), err_msg=k)
    assert (a.stop_reason, a.stopped_step, a.stopped_epoch, a.best, a.restored) == \
           (b.stop_reason, b.stopped_step, b.stopped_epoch, b.best, b.restored)


def _same_weights(sa, sb):
    for p, q in zip(sa.model.params, sb.model.params):
        np.testing.assert_array_equal(p.value, q.value, err_msg=p.name)
    ga, gb = sa.optimizer.get_state(), sb.optimizer.get_state()
    assert ga["iterations"] == gb["iterations"]
    for name, st in ga["state"].items():
        for k, v in st.items():
            np.testing.assert_array_equal(v, gb["state"][name][k])


def _csv_without_time(path):
    lines = Path(path).read_text().splitlines()
    header = lines[0].split(",")
    t = header.index("time")
    return [[c for i, c in enumerate(line.split(",")) if i != t] for line in lines]


@pytest.mark.parametrize("case", [
    dict(kill_at=19),                                   # every epoch; crash mid epoch 3 (8 steps/epoch)
    dict(kill_at=16),                                   # crash at the very end of epoch 2's last batch
    dict(kill_at=22, every=3, val_steps=5),             # checkpoints every 3 steps, checks every 5
    dict(kill_at=27, every=4, val_epochs=2, lr="plateau"),
    dict(kill_at=30, every=1, lr="plateau", val_steps=3),
])
def test_kill_and_resume_is_bit_for_bit(tmp_path, case):
    case = dict(case)
    kill_at = case.pop("kill_at")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight, h_straight = _run(tmp_path / "a", **case)
    assert isinstance(h_straight, History) and h_straight.stop_reason == "completed"
    assert not (tmp_path / "a" / "backup" / "training-state.npz").exists()  # deleted when done

    crashed, err = _run(tmp_path / "b", kill_at=kill_at, **case)
    assert isinstance(err, RuntimeError) and "Kill" in str(err) and "simulated crash" in str(err)
    ckpt = tmp_path / "b" / "backup" / "training-state.npz"
    saved = checkpoint.read(ckpt)
    assert saved["session"]["step"] <= kill_at
    # the checkpoint's history is a prefix of the straight run's
    h_saved = checkpoint.history_of(ckpt)
    n = len(h_saved)
    assert h_saved["step"] == h_straight["step"][:n]

    resumed, h = _run(tmp_path / "b", seed=999, **case)
    assert isinstance(h, History), h
    backup = [lst for lst in resumed.listeners if isinstance(lst, listeners.BackupAndRestore)][0]
    assert backup.restored is not None and backup.restored == saved["position"]
    _same_history(h_straight, h)
    _same_weights(straight, resumed)
    assert h["time"] == sorted(h["time"])  # wall-clock time goes on from the checkpoint
    assert _csv_without_time(tmp_path / "a" / "log.csv") == _csv_without_time(tmp_path / "b" / "log.csv")
    assert not ckpt.exists()


def test_resume_refuses_another_model(tmp_path):
    _, err = _run(tmp_path, kill_at=12)
    assert isinstance(err, RuntimeError)
    cutedl.set_seed(0)
    x, y, xv, yv = _data()
    model = Model([layers.Dense(8, inshape=6, activation="relu"), layers.Dropout(0.3),
                   layers.Dense(3, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", "adam")
    with pytest.raises(ValueError, match="written for another model"):
        sess.fit((x, y), epochs=3, listeners=[listeners.BackupAndRestore(tmp_path / "backup")], verbose=0)


def test_history_save_load_and_report(tmp_path):
    sess, h = _run(tmp_path, epochs=4)
    h.save(tmp_path / "h.json")
    loaded = History.load(tmp_path / "h.json")
    _same_history(h, loaded)
    assert loaded["time"] == h["time"] and loaded.params == h.params
    assert len(set(loaded["lr"])) > 1 and "lr" in reports._layout(loaded)  # the cosine schedule
    reports.fit_report(loaded, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 5000


def test_fit_continues_a_history():
    x, y, xv, yv = _data()
    cutedl.set_seed(3)
    model = Model([layers.Dense(4, inshape=6, activation="relu"), layers.Dense(3, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", "adam")
    h1 = sess.fit((x, y), epochs=2, batch_size=40, verbose=0)
    h2 = sess.fit((x, y), epochs=4, batch_size=40, history=sess.history, verbose=0)
    assert h2 is h1 and h2["epoch"] == [1, 2, 3, 4] and h2["step"] == [3, 6, 9, 12]
    assert h2["time"] == sorted(h2["time"])
    # a loaded history continues on a new session too: epochs and steps keep counting
    loaded = History.from_dict(json.loads(json.dumps(h2.to_dict())))
    other = Session(model, "categorical_crossentropy", "adam")
    h3 = other.fit((x, y), epochs=5, batch_size=40, history=loaded, verbose=0)
    assert h3["epoch"] == [1, 2, 3, 4, 5] and h3["step"][-1] == 15
    with pytest.raises(ValueError, match="initial_epoch=5 must be smaller than epochs=5"):
        other.fit((x, y), epochs=5, history=h3, verbose=0)
    with pytest.raises(TypeError, match="history must be a cutedl History"):
        other.fit((x, y), epochs=5, history={"epoch": [1]}, verbose=0)


# ---------------------------------------------------------------------------- a real kill
WORKER = r'''
import json, os, signal, sys
import numpy as np
import cutedl
from cutedl import Model, Session, layers, listeners, optimizers

out, kill_at = sys.argv[1], int(sys.argv[2])

class SelfKill(listeners.Listener):
    def on_batch_end(self, step, logs=None):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

cutedl.set_seed(int(sys.argv[3]))
rs = np.random.default_rng(0)
x = rs.standard_normal((96, 5)).astype(np.float32)
y = np.eye(2, dtype=np.float32)[(x.sum(1) > 0).astype(int)]
model = Model([layers.Dense(8, inshape=5, activation="tanh"), layers.Dropout(0.2),
               layers.Dense(2, activation="softmax")]).assemble()
sess = Session(model, "categorical_crossentropy", optimizers.RMSProp(0.01))
h = sess.fit((x, y), epochs=4, batch_size=12, validation_split=0.25,
             listeners=[listeners.BackupAndRestore(os.path.join(out, "backup"), every=5), SelfKill()], verbose=0)
np.savez(os.path.join(out, "weights.npz"), *model.get_weights())
h.save(os.path.join(out, "history.json"))
'''


def _worker(out, kill_at, seed):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", WORKER, str(out), str(kill_at), str(seed)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_sigkilled_process_resumes_bit_for_bit(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    r = _worker(a, -1, 1)
    assert r.returncode == 0, r.stderr
    r = _worker(b, 13, 1)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert (b / "backup" / "training-state.npz").exists() and not (b / "history.json").exists()
    assert checkpoint.read(b / "backup" / "training-state.npz")["session"]["step"] == 10
    r = _worker(b, -1, 2)  # another seed: everything must come from the checkpoint
    assert r.returncode == 0, r.stderr
    wa, wb = np.load(a / "weights.npz"), np.load(b / "weights.npz")
    for k in wa.files:
        np.testing.assert_array_equal(wa[k], wb[k])
    _same_history(History.load(a / "history.json"), History.load(b / "history.json"))


def test_training_state_only_at_boundaries(tmp_path):
    x, y, _, _ = _data()
    model = Model([layers.Dense(3, inshape=6, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", "sgd")
    with pytest.raises(RuntimeError, match="before the first fit"):
        sess.training_state()
    seen = []
    grab = listeners.LambdaListener(on_batch_end=lambda step, logs: seen.append(_try_state(sess)))
    sess.fit((x, y), epochs=1, batch_size=64, listeners=[grab], verbose=0)
    assert seen == ["between two boundaries"] * 2
    state = sess.training_state()  # after fit: the end of the last epoch
    assert state["position"] == {"epoch": 1, "batches_done": 2, "epoch_done": True, "samples": 118}


def _try_state(sess):
    try:
        sess.training_state()
    except RuntimeError as err:
        return "between two boundaries" if "between two boundaries" in str(err) else str(err)
    return "saved"


def test_resume_may_train_longer(tmp_path):
    """A run stopped after 2 of 3 epochs can be resumed with epochs=5: it continues to epoch 5."""
    _, err = _run(tmp_path, kill_at=20, epochs=3)  # checkpoint after epoch 2 (16 steps)
    assert isinstance(err, RuntimeError)
    sess, h = _run(tmp_path, epochs=5)
    assert h["epoch"] == [1, 2, 3, 4, 5] and h.params["epochs"] == 5 and sess.step == 40


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(every=st.sampled_from(["epoch", 1, 2, 5, 7]), val_steps=st.sampled_from([0, 3, 8]),
       lr=st.sampled_from(["schedule", "plateau"]), data=st.data())
def test_resume_is_exact_for_any_kill_point(tmp_path_factory, every, val_steps, lr, data):
    """Property: whatever the checkpoint cadence, the check schedule and the step of the crash."""
    # the crash must come after the first checkpoint: the end of epoch 1 (8 steps) or step `every`
    # (a crash in step N's on_batch_end comes before step N's boundary)
    first = 9 if every == "epoch" else every + 1
    kill_at = data.draw(st.integers(first, 39), label="kill_at")
    tmp = tmp_path_factory.mktemp("prop")
    (tmp / "a").mkdir(), (tmp / "b").mkdir()
    straight, h_straight = _run(tmp / "a", every=every, val_steps=val_steps, lr=lr)
    _, err = _run(tmp / "b", kill_at=kill_at, every=every, val_steps=val_steps, lr=lr)
    assert isinstance(err, RuntimeError)
    resumed, h = _run(tmp / "b", seed=4321, every=every, val_steps=val_steps, lr=lr)
    _same_history(h_straight, h)
    _same_weights(straight, resumed)
