"""The training core's seams: custom steps, public state, transfers, and the bugs fixed with them."""
import json
import math
import os
import shutil
import signal

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, backend, layers, listeners, optimizers
from cutedl.training import checkpoint
from cutedl.training.state import TrainingState

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


def blobs(n=40, d=6, c=3, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((n, d)).astype(np.float32)
    y = np.eye(c, dtype=np.float32)[rs.integers(0, c, n)]
    return x, y


def mlp(dropout=0.0):
    extra = [layers.Dropout(dropout)] if dropout else []
    return Model([layers.Dense(8, inshape=6, activation="relu"), *extra,
                  layers.Dense(3, activation="softmax")]).assemble()


# ---------------------------------------------------------------- bugs fixed with the refactor
def test_fit_takes_x_and_y_like_keras():
    x, y = blobs()
    cutedl.set_seed(0)
    a = Session(mlp(), "categorical_crossentropy", "sgd").fit(x, y, epochs=2, batch_size=8, shuffle=False,
                                                               verbose=0)
    cutedl.set_seed(0)
    b = Session(mlp(), "categorical_crossentropy", "sgd").fit((x, y), epochs=2, batch_size=8, shuffle=False,
                                                               verbose=0)
    assert a.history["loss"] == b.history["loss"] and len(a) == 2


def test_fit_with_epochs_as_second_positional_teaches():
    x, y = blobs()
    sess = Session(mlp(), "categorical_crossentropy", "sgd")
    with pytest.raises(TypeError, match=r"fit\(data, epochs=5\)"):
        sess.fit(Dataset(x, y), 5, verbose=0)
    with pytest.raises(TypeError, match="already holds its labels"):
        sess.fit(Dataset(x, y), y, verbose=0)


def test_continued_history_best_is_over_all_rows():
    x, y = blobs(n=64)
    sess = Session(mlp(), "categorical_crossentropy", optimizers.Adam(0.05))
    h = sess.fit(x, y, epochs=2, val_data=(x, y), batch_size=16, verbose=0)
    first_best = h.best["value"]
    sess.fit(x, y, epochs=8, val_data=(x, y), batch_size=16, history=h, verbose=0)
    col = h.history["val_loss"]
    i = int(np.argmin(col))
    assert min(col) < first_best  # the later epochs did better: best must move
    assert h.best == {"monitor": "val_loss", "mode": "min", "value": col[i], "step": h.history["step"][i],
                      "epoch": h.history["epoch"][i]}


def test_stateful_rnn_fit_is_not_disturbed_by_the_shape_check():
    rs = np.random.default_rng(1)
    x = rs.standard_normal((32, 5, 3)).astype(np.float32)
    y = rs.standard_normal((32, 4)).astype(np.float32)

    def build():
        cutedl.set_seed(5)
        return Model([layers.SimpleRNN(4, inshape=(5, 3), stateful=True)]).assemble()

    # batch_size=16 used to fail: the pre-flight probe left a state for a batch of 2
    m1 = build()
    Session(m1, "mse", optimizers.SGD(0.1)).fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    m2 = build()
    s2 = Session(m2, "mse", optimizers.SGD(0.1))
    for i in range(0, 32, 16):
        s2.train_on_batch(x[i:i + 16], y[i:i + 16])
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
    # batch_size=2 ran before, but the probe's state leaked into the first batch
    m3, m4 = build(), build()
    Session(m3, "mse", optimizers.SGD(0.1)).fit(x[:4], y[:4], epochs=1, batch_size=2, shuffle=False, verbose=0)
    s4 = Session(m4, "mse", optimizers.SGD(0.1))
    s4.train_on_batch(x[:2], y[:2])
    s4.train_on_batch(x[2:4], y[2:4])
    for a, b in zip(m3.get_weights(), m4.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- transfers
def test_a_step_copies_the_batch_once_and_brings_back_only_logged_scalars():
    x, y = blobs()
    sess = Session(mlp(), "categorical_crossentropy", "adam", metrics=["accuracy"])
    sess.fit(x, y, epochs=1, batch_size=8, verbose=0)  # warm up
    with backend.count_transfers() as t:
        sess.train_on_batch(x[:8], y[:8])
    assert (t.to_device, t.to_host) == (2, 2)  # x and y in; loss and accuracy out

    counts = []

    class Count(listeners.Listener):
        def on_batch_start(self, step, logs=None):
            self.t0 = (backend.transfers.to_device, backend.transfers.to_host)

        def on_batch_end(self, step, logs=None):
            counts.append((backend.transfers.to_device - self.t0[0], backend.transfers.to_host - self.t0[1]))

    sess.fit(x, y, epochs=2, batch_size=8, listeners=[Count()], verbose=0)
    assert counts == [(2, 2)] * 10


# ---------------------------------------------------------------- custom steps
def test_train_step_function_and_subclass_drive_fit_listeners_and_reports(tmp_path):
    x, y = blobs()
    seen = []

    def step(session, batch):
        xb, yb = batch
        loss, logs = session.compute_grads(xb, yb)
        session.apply_grads()
        seen.append(len(xb))
        return {"loss": loss, "double": 2 * loss}

    cutedl.set_seed(2)
    sess = Session(mlp(), "categorical_crossentropy", optimizers.SGD(0.1), train_step=step)
    h = sess.fit(x, y, epochs=3, batch_size=10, val_data=(x, y), verbose=0,
                 listeners=[listeners.EarlyStopping(patience=5), listeners.CSVLogger(tmp_path / "log.csv")])
    assert seen == [10] * 12
    np.testing.assert_allclose(h.history["double"], 2 * np.array(h.history["loss"]), rtol=1e-12)

    class Plain(Session):
        def train_step(self, batch):
            return super().train_step(batch)

    cutedl.set_seed(2)
    h2 = Plain(mlp(), "categorical_crossentropy", optimizers.SGD(0.1)).fit(
        x, y, epochs=3, batch_size=10, val_data=(x, y), verbose=0)
    assert h2.history["loss"] == h.history["loss"] and h2.history["val_loss"] == h.history["val_loss"]
    with pytest.raises(TypeError, match="train_step must be a function"):
        Session(mlp(), "mse", train_step="nope")


def _two_model_session(tmp_path, every):
    """A custom step that trains a second model with its own optimizer (a GAN's shape)."""
    cutedl.set_seed(4)
    a = Model([layers.Dense(4, inshape=6, activation="tanh"), layers.Dropout(0.3), layers.Dense(3)]).assemble()
    b = Model([layers.Dense(3, inshape=6)]).assemble()
    b_opt = optimizers.Adam(0.01)

    def step(session, batch):
        xb, yb = batch
        loss, _ = session.compute_grads(xb, yb)
        session.apply_grads()
        out = b.forward(xb, training=True)
        g = 2 * (out - yb) / out.size
        b_loss = float(((out - yb) ** 2).mean())
        b.backward(g)
        b_opt.step(b.trainable_params)
        return {"loss": loss, "b_loss": b_loss}

    sess = Session(a, "mse", optimizers.Adam(0.01), train_step=step).track(b=b, b_opt=b_opt)
    backup = listeners.BackupAndRestore(tmp_path / "bk", every=every)
    return sess, a, b, backup


def test_tracked_models_and_optimizers_resume_bit_exact(tmp_path):
    x, y = blobs(n=48)
    sess, a, b, backup = _two_model_session(tmp_path / "one", 1)
    h = sess.fit(Dataset(x, y, batch_size=8, seed=3), epochs=3, listeners=[backup], verbose=0)
    straight = (a.get_weights(), b.get_weights(), h.history["b_loss"])

    class StopAt(listeners.Listener):
        def on_batch_end(self, step, logs=None):
            if step == 8:
                self.session.stop_fit("interrupted")

    sess, a, b, backup = _two_model_session(tmp_path / "two", 1)
    sess.fit(Dataset(x, y, batch_size=8, seed=3), epochs=3, listeners=[backup, StopAt()], verbose=0)
    assert os.path.exists(backup.path)
    sess, a, b, backup = _two_model_session(tmp_path / "two", 1)
    h = sess.fit(Dataset(x, y, batch_size=8, seed=3), epochs=3, listeners=[backup], verbose=0)
    assert backup.restored["batches_done"] == 2 and backup.restored["epoch"] == 2
    for u, v in zip(straight[0] + straight[1], a.get_weights() + b.get_weights()):
        np.testing.assert_array_equal(u, v)
    assert h.history["b_loss"][-1] == straight[2][-1]


def test_resume_refuses_other_tracked_objects_and_changes_nothing(tmp_path):
    x, y = blobs(n=48)
    sess, a, b, backup = _two_model_session(tmp_path, 1)

    class Stop(listeners.Listener):
        def on_batch_end(self, step, logs=None):
            if step == 3:
                self.session.stop_fit("interrupted")

    sess.fit(Dataset(x, y, batch_size=8, seed=3), epochs=2, listeners=[backup, Stop()], verbose=0)
    sess2, a2, b2, backup2 = _two_model_session(tmp_path, 1)
    sess2.tracked.pop("b_opt")
    before = a2.get_weights()
    with pytest.raises(ValueError, match="tracks"):
        sess2.fit(Dataset(x, y, batch_size=8, seed=3), epochs=2, listeners=[backup2], verbose=0)
    for u, v in zip(before, a2.get_weights()):
        np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------- public state
def test_training_state_round_trips_and_rejects_corruption():
    st = TrainingState(samples=40, initial_epoch=0, batches_per_epoch=5)
    st.step, st.epoch, st.batches_done, st.epoch_done = 12, 3, 2, False
    st.accumulator.add({"loss": 0.5}, 8)
    d = st.to_dict()
    new = TrainingState()
    new.load_dict(json.loads(json.dumps(d)))
    assert new.position() == st.position() and new.step == 12 and new.accumulator.means() == {"loss": 0.5}
    for path, bad in ((("position", "batches_done"), 1.5), (("session", "step"), -1), (("position", "epoch_done"), 1),
                      (("session", "elapsed"), math.inf), (("accumulator", "sums"), {"loss": "x"})):
        broken = json.loads(json.dumps(d))
        broken[path[0]][path[1]] = bad
        with pytest.raises(ValueError, match="corrupt"):
            TrainingState().load_dict(broken, "here")


def test_listeners_see_the_public_state_at_boundaries():
    x, y = blobs()
    seen = []

    class Watch(listeners.Listener):
        def on_boundary(self, state, final=False, logs=None):
            seen.append((state.step, state.epoch, state.batches_done, state.epoch_done, state.at_boundary))

    Session(mlp(), "categorical_crossentropy", "sgd").fit(x, y, epochs=2, batch_size=20, listeners=[Watch()],
                                                          verbose=0)
    assert seen == [(1, 1, 1, False, True), (2, 1, 2, False, True), (2, 1, 2, True, True),
                    (3, 2, 1, False, True), (4, 2, 2, False, True), (4, 2, 2, True, True)]


def test_single_listener_is_accepted():
    x, y = blobs()
    h = Session(mlp(), "categorical_crossentropy", "sgd").fit(x, y, epochs=3, listeners=listeners.TerminateOnNaN(),
                                                              verbose=0)
    assert len(h) == 3
    with pytest.raises(TypeError, match="Listener or a list"):
        Session(mlp(), "categorical_crossentropy", "sgd").fit(x, y, listeners="early", verbose=0)


# ---------------------------------------------------------------- files from before the refactor
def test_model_saved_before_the_refactor_loads():
    m = Model.load(os.path.join(FIXTURES, "model_v1.npz"))
    x, _ = blobs()
    np.testing.assert_array_equal(m.predict(x), np.load(os.path.join(FIXTURES, "model_v1_pred.npy")))


def test_checkpoint_written_before_the_refactor_resumes_bit_exact(tmp_path):
    """tests/fixtures/ckpt_v1 was written by cutedl before the training core moved; resuming it
    must give the weights and History the old code gave (ckpt_v1_resumed_*)."""
    shutil.copytree(os.path.join(FIXTURES, "ckpt_v1"), tmp_path / "c")
    x, y = blobs()
    m = Model([layers.Dense(8, inshape=6, activation="relu"), layers.Dropout(0.2),
               layers.Dense(3, activation="softmax")]).assemble()
    sess = Session(m, "categorical_crossentropy", optimizers.Adam(1e-2), metrics=["accuracy"])
    backup = listeners.BackupAndRestore(tmp_path / "c", every=1)
    h = sess.fit(Dataset(x, y, batch_size=8, seed=1), epochs=3, val_data=(x[:16], y[:16]),
                 listeners=[listeners.EarlyStopping(patience=5), backup], verbose=0)
    assert backup.restored == {"epoch": 2, "batches_done": 2, "epoch_done": False, "samples": 40}
    want = np.load(os.path.join(FIXTURES, "ckpt_v1_resumed_weights.npz"))
    for i, w in enumerate(m.get_weights()):
        np.testing.assert_array_equal(w, want[f"arr_{i}"])
    hist = json.load(open(os.path.join(FIXTURES, "ckpt_v1_resumed_history.json")))
    for k, col in hist.items():
        assert h.history[k] == col, k
    state = checkpoint.read(os.path.join(FIXTURES, "ckpt_v1", "training-state.npz"))
    assert state["position"]["epoch"] == 2


# ---------------------------------------------------------------- Ctrl-C at the very end
@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs SIGINT")
def test_interrupt_in_the_closing_check_or_fit_end_keeps_the_history():
    x, y = blobs()
    ran = []

    class RaiseAtEnd(listeners.Listener):
        def on_fit_end(self, logs=None):
            raise KeyboardInterrupt

    class After(listeners.Listener):
        def on_fit_end(self, logs=None):
            ran.append(True)

    es = listeners.EarlyStopping("loss", patience=10)
    sess = Session(mlp(), "categorical_crossentropy", optimizers.SGD(0.1))
    h = sess.fit(x, y, epochs=3, batch_size=20, listeners=[es, RaiseAtEnd(), After()], verbose=0)
    assert h.stop_reason == "interrupted" and ran == [True] and h.restored is not None and len(h) == 3


def test_unscaled_inputs_warn_once_at_fit_start():
    x, y = blobs()
    sess = Session(mlp(), "categorical_crossentropy", "sgd")
    with pytest.warns(UserWarning, match=r"\|x\| = 255.*x / 255"):
        sess.fit(np.abs(x) * 0 + 255.0, y, epochs=1, verbose=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sess.fit(x, y, epochs=1, verbose=0)  # scaled data: no warning


def test_a_custom_step_declares_its_log_keys_needs_no_loss_or_labels_and_keeps_its_generators(tmp_path):
    rs = np.random.default_rng(0)
    x = rs.standard_normal((48, 6)).astype(np.float32)
    noise = np.random.default_rng(5)  # a generator the step draws from (a closure)

    def build():
        cutedl.set_seed(1)
        m = Model([layers.Dense(6, inshape=6)]).assemble()
        opt = optimizers.SGD(0.05)

        def step(session, batch):
            xb, yb = batch
            assert yb is None  # unlabeled data
            out = m.forward(xb + noise.standard_normal(xb.shape).astype(xb.dtype), training=True)
            g = 2 * (out - xb) / out.size
            m.backward(g)
            opt.step(m.trainable_params)
            return {"recon": float(((out - xb) ** 2).mean())}

        return m, Session(m, train_step=step, optimizer=opt, log_keys=["recon"])

    m, sess = build()
    csv = tmp_path / "log.csv"
    h = sess.fit(Dataset(x, batch_size=8, seed=2), epochs=3, verbose=0,
                 listeners=[listeners.EarlyStopping("recon", patience=5, mode="min"), listeners.CSVLogger(csv)])
    assert "recon" in h.history and h.best["monitor"] == "recon"
    assert csv.read_text().splitlines()[0] == "step,epoch,recon,lr,time"
    straight = m.get_weights()

    class Stop(listeners.Listener):
        def on_batch_end(self, step, logs=None):
            if step == 8:
                self.session.stop_fit("interrupted")

    noise.bit_generator.state = np.random.default_rng(5).bit_generator.state
    m, sess = build()
    sess.fit(Dataset(x, batch_size=8, seed=2), epochs=3, verbose=0,
             listeners=[listeners.BackupAndRestore(tmp_path / "bk", every=1), Stop()])
    noise.random(100)  # the closure's generator moves on: the resume must put it back
    m, sess = build()
    sess.fit(Dataset(x, batch_size=8, seed=2), epochs=3, verbose=0,
             listeners=[listeners.BackupAndRestore(tmp_path / "bk", every=1)])
    for a, b in zip(straight, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="only a custom train_step"):
        Session(m)


def test_track_takes_a_generator():
    gen = np.random.default_rng(1)
    sess = Session(mlp(), "categorical_crossentropy").track(noise=gen)
    assert sess.tracked["noise"] is gen
    with pytest.raises(TypeError, match="Model, an Optimizer or a numpy Generator"):
        sess.track(bad=3)
