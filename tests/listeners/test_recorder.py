"""ValidationRecorder / ValidationRecord: per-sample values against the library's losses, the file,
resume, bootstrap intervals, flips, confusion matrices, and EarlyStopping.replay scored on snapshots."""
import math

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, losses, optimizers
from cutedl.listeners.early_stopping import ReplayTable, replay_grid
from cutedl.listeners.recorder import ValidationRecord, ValidationRecorder, per_sample_losses


def _probs(rs, n, c):
    z = rs.standard_normal((n, c))
    return (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("loss, kind", [
    ("categorical_crossentropy", "onehot"), (losses.CategoricalCrossentropy(from_logits=True), "onehot_logits"),
    (losses.CategoricalCrossentropy(label_smoothing=0.1), "onehot"),
    ("sparse_categorical_crossentropy", "labels"), (losses.SparseCategoricalCrossentropy(from_logits=True), "labels_logits"),
    ("binary_crossentropy", "binary"), (losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2), "binary_logits"),
    ("mse", "regression"), ("mae", "regression"), (losses.Huber(delta=0.5), "regression"),
])
def test_per_sample_losses_match_the_loss_on_each_sample(loss, kind):
    rs = np.random.default_rng(0)
    n = 12
    labels = rs.integers(0, 4, n)
    if kind.startswith("onehot"):
        y = np.eye(4, dtype=np.float32)[labels]
        p = rs.standard_normal((n, 4)).astype(np.float32) * 3 if "logits" in kind else _probs(rs, n, 4)
        p[0] = [1, 0, 0, 0] if "logits" not in kind else p[0]  # a clipped probability
    elif kind.startswith("labels"):
        y = labels
        p = rs.standard_normal((n, 4)).astype(np.float32) * 3 if "logits" in kind else _probs(rs, n, 4)
    elif kind.startswith("binary"):
        y = (rs.random((n, 3)) > 0.5).astype(np.float32)
        p = rs.standard_normal((n, 3)).astype(np.float32) * 4 if "logits" in kind else \
            rs.random((n, 3)).astype(np.float32)
    else:
        y = rs.standard_normal((n, 2)).astype(np.float32)
        p = rs.standard_normal((n, 2)).astype(np.float32)
    fn = losses.get(loss)
    got = per_sample_losses(fn, y, p)
    assert got.shape == (n,)
    want = [fn(y[i:i + 1], p[i:i + 1]) for i in range(n)]  # the library's loss, one sample at a time
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(got.mean(), fn(y, p), rtol=2e-5)


def _task(seed=0, n=300):
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((n, 8)).astype(np.float32)
    lab = (x @ rs.standard_normal((8, 3))).argmax(1)
    x += rs.standard_normal(x.shape).astype(np.float32)  # noisy labels: validation loss rises later
    return x, lab


class WeightRecorder(listeners.Listener):
    def on_fit_start(self, logs=None):
        self.weights = []

    def on_val_end(self, step, logs=None):
        self.weights.append(self.model.get_weights())


def _fit(path, loss="categorical_crossentropy", epochs=6, extra=(), val_steps=0, seed=3, **rec_kwargs):
    x, lab = _task()
    y = np.eye(3, dtype=np.float32)[lab] if loss == "categorical_crossentropy" else lab
    cutedl.set_seed(seed)
    model = Model([layers.Dense(16, inshape=8, activation="relu"), layers.Dense(3, activation="softmax")]).assemble()
    sess = Session(model, loss, optimizers.Adam(0.05), metrics=["accuracy"])
    rec = ValidationRecorder(path, **rec_kwargs)
    weights = WeightRecorder()
    h = sess.fit(Dataset(x[:160], y[:160], batch_size=32), epochs=epochs, val_data=(x[160:240], y[160:240]),
                 val_steps=val_steps, listeners=[rec, weights, *extra], verbose=0)
    return model, sess, h, rec, weights, (x[240:], y[240:])


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_record_agrees_with_the_history_and_the_weights(tmp_path, loss):
    model, sess, h, rec, weights, _ = _fit(tmp_path / "rec.npz", loss=loss)
    r = ValidationRecord.load(tmp_path / "rec.npz")
    assert len(r) == len(h) == 6 and r.num_samples == 80 and r.classes == 3
    assert r.steps.tolist() == h["step"] and r.epochs.tolist() == h["epoch"]
    assert r.losses.dtype == np.float16 and r.predictions.dtype == np.int16 and r.snapshots.dtype == np.float16
    np.testing.assert_allclose(r.mean_losses(), h["val_loss"], rtol=2e-3)
    np.testing.assert_allclose(r.accuracies(), h["val_accuracy"], atol=1e-9)
    np.testing.assert_allclose(r.logs["val_loss"], h["val_loss"])
    x, lab = _task()
    np.testing.assert_array_equal(r.targets, lab[160:240])
    np.testing.assert_array_equal(r.predictions[-1], model.predict(x[160:240]).argmax(1))
    for k, ws in enumerate(weights.weights):
        for got, want in zip(r.weights_at(k), ws):
            np.testing.assert_array_equal(got, want.astype(np.float16))
    assert r.restored_step is None and rec.record.steps.tolist() == r.steps.tolist()


def test_every_and_no_snapshots(tmp_path):
    *_, rec, _, _ = _fit(tmp_path / "rec.npz", snapshot_weights=False, every=2, epochs=5)
    r = ValidationRecord.load(tmp_path / "rec.npz")
    assert r.epochs.tolist() == [1, 3, 5] and r.snapshots is None
    with pytest.raises(ValueError, match="no weight snapshots"):
        r.weights_at(0)
    with pytest.raises(ValueError, match="no check recorded at epoch 2"):
        r.index_of(epoch=2)


def test_restored_check_is_recorded_whatever_the_listener_order(tmp_path):
    for first in (True, False):
        es = listeners.EarlyStopping(patience=1)
        path = tmp_path / f"rec{first}.npz"
        x, lab = _task()
        cutedl.set_seed(3)
        model = Model([layers.Dense(16, inshape=8, activation="relu"), layers.Dense(3, activation="softmax")]).assemble()
        sess = Session(model, "sparse_categorical_crossentropy", optimizers.Adam(0.2))
        rec = ValidationRecorder(path, snapshot_weights=False)
        h = sess.fit((x[:160], lab[:160]), epochs=30, batch_size=32, val_data=(x[160:], lab[160:]),
                     listeners=[es, rec] if first else [rec, es], verbose=0)
        r = ValidationRecord.load(path)
        assert h.restored is not None and r.restored_step == h.restored["step"]
        assert r.restored_index == r.index_of(step=h.restored["step"])


def test_regression_and_binary_records(tmp_path):
    rs = np.random.default_rng(1)
    x = rs.standard_normal((90, 4)).astype(np.float32)
    for loss, act, y in [("mse", None, x[:, :2] * 2), ("binary_crossentropy", "sigmoid", (x[:, :1] > 0) * 1.0)]:
        model = Model([layers.Dense(y.shape[1], inshape=4, activation=act)]).assemble()
        sess = Session(model, loss, optimizers.SGD(0.1))
        path = tmp_path / f"{loss}.npz"
        h = sess.fit((x[:60], y[:60]), epochs=3, batch_size=20, val_data=(x[60:], y[60:]),
                     listeners=[ValidationRecorder(path)], verbose=0)
        r = ValidationRecord.load(path)
        np.testing.assert_allclose(r.mean_losses(), h["val_loss"], rtol=2e-3)
        if loss == "mse":
            assert r.classes is None and r.predictions.dtype == np.float16 and r.predictions.shape == (3, 30, 2)
            with pytest.raises(ValueError, match="holds scores"):
                r.flips()
        else:
            assert r.classes == 2 and r.predictions.shape == (3, 30)
            want = (model.predict(x[60:])[:, 0] > 0.5) == (y[60:, 0] > 0.5)
            assert r.accuracies()[-1] == pytest.approx(want.mean())


def _hand_record(losses_, predictions, targets, classes=3):
    c = len(losses_)
    return ValidationRecord(np.arange(1, c + 1) * 10, np.arange(1, c + 1), losses_, predictions, targets, classes)


def test_flips_confusion_and_class_accuracies_by_hand():
    targets = np.array([0, 1, 2, 2])
    preds = np.array([[0, 1, 2, 0],     # right, right, right, wrong
                      [1, 1, 2, 2],     # sample 0 flips (forgotten), sample 3 flips (learnt)
                      [0, 1, 1, 2],     # 0 flips back, 2 flips (forgotten)
                      [0, 1, 1, 2]])
    r = _hand_record(np.ones((4, 4)), preds, targets)
    f = r.flips()
    assert f.counts.tolist() == [2, 0, 1, 1] and f.indices.tolist() == [0, 2, 3]
    assert f.per_check.tolist() == [2, 2, 0] and f.forgotten.tolist() == [1, 0, 1, 0]
    assert r.confusion(1).tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 2]]
    np.testing.assert_allclose(r.class_accuracies()[2], [1.0, 1.0, 0.5])
    np.testing.assert_allclose(r.accuracies(), [0.75, 0.75, 0.75, 0.75])


def test_best_check_interval():
    rs = np.random.default_rng(0)
    n = 500
    # check 2 is better than the others by far more than the sampling noise: always the winner
    base = rs.random(n)
    clear = np.stack([base + 0.5, base + 0.3, base, base + 0.2])
    b = _hand_record(clear, np.zeros((4, n), dtype=int), np.zeros(n, dtype=int)).best_check_interval()
    assert (b.best_index, b.low_index, b.high_index, b.low_epoch, b.high_epoch) == (2, 2, 2, 3, 3)
    assert b.share[2] == 1.0
    assert str(b).startswith("with this validation set, the best epoch is 3 at 95 %")
    # checks 1 and 2 differ by less than the noise of 500 samples: the interval spans both
    noisy = np.stack([rs.random(n) + 0.5, rs.random(n), rs.random(n), rs.random(n) + 0.5])
    b = _hand_record(noisy, np.zeros((4, n), dtype=int), np.zeros(n, dtype=int)).best_check_interval(boots=400)
    assert (b.low_index, b.high_index) == (1, 2) and str(b).startswith("with this validation set, the best epoch is 2-3")
    assert b.share.sum() == pytest.approx(1.0) and b.share[0] == b.share[3] == 0
    # the same share by a plain loop over resamples drawn independently
    wins = np.zeros(4)
    draws = np.random.default_rng(9)
    for _ in range(400):
        idx = draws.integers(0, n, n)
        wins[noisy[:, idx].astype(np.float16).astype(float).mean(1).argmin()] += 1
    assert abs(wins[1] / 400 - b.share[1]) < 0.12
    # accuracy: higher is better
    right = np.stack([rs.random(n) < q for q in (0.5, 0.9, 0.6)]).astype(int)
    acc = _hand_record(np.ones((3, n)), 1 - right, np.zeros(n, dtype=int), classes=2)
    assert acc.best_check_interval("val_accuracy", confidence=0.9).best_epoch == 2
    with pytest.raises(ValueError, match="metric must be"):
        acc.best_check_interval("val_f1")


def test_resume_cuts_the_record_back(tmp_path):
    class Kill(listeners.Listener):
        def __init__(self, at):
            self.at = at

        def on_batch_end(self, step, logs=None):
            if step == self.at:
                raise RuntimeError("simulated crash")

    *_, straight, _, _ = _fit(tmp_path / "a.npz", epochs=3)
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError, match="simulated crash"):  # checkpoint at step 8, before epoch 1's check
        _fit(tmp_path / "b.npz", epochs=3, extra=[listeners.BackupAndRestore(backup, every=4), Kill(9)])
    assert len(ValidationRecord.load(tmp_path / "b.npz")) == 1
    *_, resumed, _, _ = _fit(tmp_path / "b.npz", epochs=3, extra=[listeners.BackupAndRestore(backup, every=4),
                                                                    Kill(None)], seed=99)
    a, b = ValidationRecord.load(tmp_path / "a.npz"), ValidationRecord.load(tmp_path / "b.npz")
    for name in ("steps", "epochs", "losses", "predictions", "snapshots", "targets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_nothing_on_other_ranks_and_errors(tmp_path):
    class Rank1:
        def is_main(self):
            return False

    class FakeSession:
        strategy = Rank1()
        val_data = None

    rec = ValidationRecorder(tmp_path / "r.npz")
    rec.set_session(FakeSession())
    rec.on_fit_start()
    rec.on_val_end(1, logs={"epoch": 1, "val_loss": 1.0})
    rec.on_fit_end()
    rec.set_state({"checks": 3, "seen": 3})
    assert not (tmp_path / "r.npz").exists() and rec.checks == 0

    x, lab = _task()
    model = Model([layers.Dense(3, inshape=8, activation="softmax")]).assemble()
    sess = Session(model, "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="has no validation data"):
        sess.fit((x, lab), epochs=1, listeners=[ValidationRecorder(tmp_path / "r.npz")], verbose=0)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        ValidationRecorder(tmp_path / "r.npz", every=0)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        ValidationRecord.load(tmp_path / "bad.npz")
    model.save(tmp_path / "model.npz")
    with pytest.raises(ValueError, match="not a cutedl validation record"):
        ValidationRecord.load(tmp_path / "model.npz")


def test_replay_scores_the_restored_snapshot(tmp_path):
    model, sess, h, rec, weights, (xt, yt) = _fit(tmp_path / "rec.npz", epochs=8)
    r = ValidationRecord.load(tmp_path / "rec.npz")
    before = model.get_weights()
    rp = listeners.EarlyStopping.replay(h, "val_loss", patience=1, snapshots=r, score=(xt, yt), model=model)
    assert rp.scored_step == (rp.restored_step if rp.restored_step is not None else rp.stop_step)
    for a, b in zip(before, model.get_weights()):  # the model itself is untouched
        np.testing.assert_array_equal(a, b)
    # independent check: the float16 weights in a fresh model, evaluated by a Session
    k = r.index_of(step=rp.scored_step)
    check = Model([layers.Dense(16, inshape=8, activation="relu"), layers.Dense(3, activation="softmax")]).assemble()
    check.set_weights([w.astype(np.float16).astype(np.float32) for w in weights.weights[k]])
    want = Session(check, "categorical_crossentropy", metrics=["accuracy"]).evaluate((xt, yt), batch_size=1000)
    assert rp.score["accuracy"] == pytest.approx(want["accuracy"])
    assert rp.score["loss"] == pytest.approx(want["loss"], rel=1e-5)
    # without snapshots, the plain replay is unchanged
    plain = listeners.EarlyStopping.replay(h, "val_loss", patience=1)
    assert plain == rp._replace(scored_step=None, score=None)
    with pytest.raises(ValueError, match="score needs model"):
        listeners.EarlyStopping.replay(h, "val_loss", patience=1, snapshots=r, score=(xt, yt))
    with pytest.raises(ValueError, match="need snapshots"):
        listeners.EarlyStopping.replay(h, "val_loss", patience=1, score=(xt, yt), model=model)
    calls = []
    rp = listeners.EarlyStopping.replay(h, patience=1, snapshots=r, model=model,
                                        score=lambda m: calls.append(m) or {"custom": 1.0})
    assert rp.score == {"custom": 1.0} and calls[0] is not model


def test_replay_grid(tmp_path):
    model, sess, h, rec, weights, (xt, yt) = _fit(tmp_path / "rec.npz", epochs=10)
    r = ValidationRecord.load(tmp_path / "rec.npz")
    table = replay_grid(h, r, patiences=[0, 1, 3, 20], min_deltas=[0.0, 0.05])
    assert isinstance(table, ReplayTable) and len(table) == 8 and table.metrics == ["loss", "accuracy"]
    best = int(np.argmin(r.mean_losses()))
    assert table.reference["restored_step"] == r.steps[best]
    for row in table:
        assert row["loss_lost"] >= -1e-12  # the reference keeps the best validation loss
        assert row["epochs_saved"] == 10 - row["stop_epoch"]
    never = [row for row in table if row["patience"] == 20 and row["min_delta"] == 0.0][0]
    assert never["stopped"] is False and never["loss_lost"] == 0 and never["epochs_saved"] == 0
    front = table.frontier("accuracy")
    assert front[0]["steps_saved"] == max(row["steps_saved"] for row in table)
    assert "patience" in str(table)
    scored = replay_grid(h, r, patiences=[0, 2], score=(xt, yt), model=model)
    assert scored.scored_on == "score data" and math.isfinite(scored.rows[0]["accuracy"])


def test_confusion_and_replay_reports(tmp_path):
    from cutedl import reports

    model, sess, h, rec, weights, (xt, yt) = _fit(tmp_path / "rec.npz", epochs=5)
    out = reports.confusion_report(tmp_path / "rec.npz", tmp_path / "confusion.png", title="record", dpi=40)
    assert out.endswith("confusion.png") and (tmp_path / "confusion.png").stat().st_size > 2000
    reports.confusion_report(ValidationRecord.load(tmp_path / "rec.npz"), tmp_path / "c2.png", restored=0, dpi=40)
    table = replay_grid(h, rec.record, patiences=[0, 1, 2], min_deltas=[0.0, 0.1], score=(xt, yt), model=model)
    reports.replay_report(table, tmp_path / "replay.png", dpi=40)
    assert (tmp_path / "replay.png").stat().st_size > 2000
    with pytest.raises(ValueError, match="metric 'f1' was not scored"):
        reports.replay_report(table, tmp_path / "x.png", metric="f1")
    with pytest.raises(TypeError, match="ReplayTable"):
        reports.replay_report([{}], tmp_path / "x.png")
    scores = ValidationRecord([1], [1], np.zeros((1, 2)), np.zeros((1, 2, 1)), np.zeros((2, 1)), None)
    with pytest.raises(ValueError, match="needs a record of classes"):
        reports.confusion_report(scores, tmp_path / "x.png")
