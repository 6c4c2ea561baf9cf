import io

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, losses, optimizers


def blobs(n=120, seed=0, classes=3, dim=4):
    rs = np.random.default_rng(seed)
    y = rs.integers(0, classes, n)
    centers = rs.standard_normal((classes, dim)) * 3
    x = (centers[y] + rs.standard_normal((n, dim))).astype(np.float32)
    return x, np.eye(classes, dtype=np.float32)[y]


def make(seed=0, activation="softmax", dim=4):
    cutedl.set_seed(seed)
    return Model([layers.Dense(16, inshape=dim, activation="relu"),
                  layers.Dense(3, activation=activation)]).assemble()


class Recorder(listeners.Listener):
    def __init__(self):
        self.events = []
        self.batch_losses = []

    def on_fit_start(self, logs=None): self.events.append("fit_start")
    def on_epoch_start(self, epoch, logs=None): self.events.append(f"epoch_start {epoch}")
    def on_batch_start(self, step, logs=None): self.events.append(f"batch_start {step}")
    def on_batch_end(self, step, logs=None):
        self.events.append(f"batch_end {step}")
        self.batch_losses.append((logs["loss"], self.session.batch_weight))
    def on_val_start(self, step, logs=None): self.events.append(f"val_start {step}")
    def on_val_end(self, step, logs=None): self.events.append(f"val_end {step}")
    def on_epoch_end(self, epoch, logs=None): self.events.append(f"epoch_end {epoch}")
    def on_fit_end(self, logs=None): self.events.append("fit_end")



def test_fit_learns_and_history_has_the_keys():
    x, y = blobs()
    sess = Session(make(), losses.CategoricalCrossentropy(), optimizers.Adam(0.01), metrics=["accuracy"])
    h = sess.fit(Dataset(x, y, batch_size=16), epochs=15, val_data=(x, y), verbose=0)
    assert set(h.history) == {"step", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    assert len(h) == 15 and h["epoch"] == list(range(1, 16)) and h["step"][-1] == 15 * 8
    assert h["val_accuracy"][-1] > 0.95
    assert h["loss"][-1] < h["loss"][0] / 3
    assert all(type(v) is float for v in h["loss"]) and all(type(v) is int for v in h["step"])
    assert h["lr"] == [0.01] * 15
    assert h.stop_reason == "completed" and h.stopped_epoch == 15 and h.stopped_step == 120
    assert h.best["monitor"] == "val_loss" and h.best["value"] == min(h["val_loss"])


def test_event_order():
    x, y = blobs(n=4)
    rec = Recorder()
    Session(make(), "cce", "sgd").fit(Dataset(x, y, batch_size=2), epochs=2, val_data=(x, y),
                                      listeners=[rec], verbose=0)
    assert rec.events == ["fit_start",
                          "epoch_start 1", "batch_start 1", "batch_end 1", "batch_start 2", "batch_end 2",
                          "val_start 2", "val_end 2", "epoch_end 1",
                          "epoch_start 2", "batch_start 3", "batch_end 3", "batch_start 4", "batch_end 4",
                          "val_start 4", "val_end 4", "epoch_end 2", "fit_end"]


def test_val_epochs_schedule_and_final_check():
    x, y = blobs(n=10)
    h = Session(make(), "cce", "sgd").fit(Dataset(x, y, batch_size=5), epochs=5, val_epochs=2, verbose=0)
    assert h["step"] == [4, 8, 10] and h["epoch"] == [2, 4, 5]


def test_val_steps_schedule():
    x, y = blobs(n=10)
    h = Session(make(), "cce", "sgd").fit(Dataset(x, y, batch_size=5), epochs=3, val_steps=3,
                                          val_data=(x, y), verbose=0)
    assert h["step"] == [3, 6] and h["epoch"] == [2, 3]


def test_logged_loss_is_the_mean_since_the_previous_check():
    x, y = blobs(n=50)
    rec = Recorder()
    h = Session(make(), "cce", optimizers.SGD(0.1)).fit(Dataset(x, y, batch_size=8), epochs=2, val_steps=4,
                                                         listeners=[rec], verbose=0)
    losses_, sizes = np.array(rec.batch_losses).T
    # checks at steps 4, 8, 12 and the final partial interval (14 steps in all)
    assert h["step"] == [4, 8, 12, 14]
    bounds = [0, 4, 8, 12, 14]
    for i in range(4):
        sl = slice(bounds[i], bounds[i + 1])
        expected = np.sum(losses_[sl] * sizes[sl]) / np.sum(sizes[sl])
        assert h["loss"][i] == pytest.approx(expected, rel=1e-12)
    assert h["loss"][0] != rec.batch_losses[3][0]  # not just the last batch


def test_val_batches_limits_validation():
    x, y = blobs(n=40)
    sess = Session(make(), "cce", "sgd")
    h = sess.fit(Dataset(x, y, batch_size=10), epochs=1, val_data=Dataset(x, y, batch_size=10, shuffle=False),
                 val_batches=1, verbose=0)
    assert h["val_loss"][0] == pytest.approx(sess.evaluate((x[:10], y[:10]))["loss"], rel=1e-6)


def test_stop_fit_stops_at_batch_boundary():
    x, y = blobs(n=40)

    class StopAt(listeners.Listener):
        def on_batch_end(self, step, logs=None):
            if step == 3:
                self.session.stop_fit()

    h = Session(make(), "cce", "sgd").fit(Dataset(x, y, batch_size=10), epochs=5, listeners=[StopAt()],
                                          verbose=0)
    assert h.stop_reason == "stop_fit" and h.stopped_step == 3 and h.stopped_epoch == 1
    assert h["step"] == [3]  # the final check records the partial interval


def test_fused_softmax_crossentropy_gradient_is_p_minus_y():
    x, y = blobs(n=6)
    m = make()
    sess = Session(m, losses.CategoricalCrossentropy(), optimizers.SGD(0.0))
    assert sess.fused_logits
    out = m.forward(x, training=True, logits=True)
    sess.train_loss(y, out)
    g = sess.train_loss.backward()
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(g, (p - y) / len(x), rtol=1e-5, atol=1e-7)
    # the fused loss equals the plain loss on probabilities
    assert sess.evaluate((x, y))["loss"] == pytest.approx(
        losses.CategoricalCrossentropy()(y, m.predict(x)), rel=1e-5)


def test_softmax_with_from_logits_true_is_an_error():
    with pytest.raises(ValueError, match="applied twice"):
        Session(make(), losses.CategoricalCrossentropy(from_logits=True), "adam")


def test_fit_before_assemble():
    m = Model([layers.Dense(3, inshape=4)])
    with pytest.raises(RuntimeError, match="assemble"):
        Session(m, "mse", "sgd")


def test_length_mismatch_is_caught():
    x, y = blobs(n=10)
    with pytest.raises(ValueError, match="same length.*10 inputs and 9 labels"):
        Session(make(), "cce", "sgd").fit((x, y[:9]), verbose=0)


def test_nan_inputs_rejected():
    x, y = blobs(n=10)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Session(make(), "cce", "sgd").fit((x, y), verbose=0)


def test_unknown_names():
    with pytest.raises(ValueError, match="Unknown loss"):
        Session(make(), "crossentropyy", "sgd")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        Session(make(), "mse", "adamm")


def test_wrong_label_shape_fails_before_training():
    x, y = blobs(n=10)
    with pytest.raises(ValueError):
        Session(make(), "cce", "sgd").fit((x, y[:, :2]), verbose=0)


def test_runs_are_repeatable_bit_for_bit():
    x, y = blobs(n=64)

    def run():
        cutedl.set_seed(5)
        m = Model([layers.Dense(16, inshape=4, activation="relu"), layers.Dropout(0.2),
                   layers.Dense(3, activation="softmax")]).assemble()
        h = Session(m, "cce", "adam", metrics=["accuracy"]).fit(Dataset(x, y, batch_size=8), epochs=3,
                                                                 verbose=0)
        return m.get_weights(), h.history

    (w1, h1), (w2, h2) = run(), run()
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    h1.pop("time"), h2.pop("time")
    assert h1 == h2


def test_regularizer_adds_to_loss():
    x, y = blobs(n=16)
    cutedl.set_seed(0)
    m = Model([layers.Dense(3, inshape=4, activation="softmax", kernel_regularizer="l2")]).assemble()
    sess = Session(m, "cce", optimizers.SGD(0.0))
    logs = sess.train_on_batch(x, y)
    plain = losses.CategoricalCrossentropy()(y, m.predict(x))
    assert logs["loss"] == pytest.approx(plain + 0.01 * float(np.sum(m.params[0].value.astype(np.float64) ** 2)),
                                         rel=1e-5)


def test_keras_style_compile_fit_evaluate():
    x, y = blobs()
    cutedl.set_seed(0)
    m = Model([layers.Dense(16, inshape=4, activation="relu"), layers.Dense(3, activation="softmax")])
    m.compile(loss="categorical_crossentropy", optimizer=optimizers.Adam(0.01), metrics=["accuracy"])
    h = m.fit(x, y, batch_size=16, epochs=10, validation_split=0.25, verbose=0)
    assert "val_accuracy" in h.history
    res = m.evaluate(x, y, return_dict=True)
    assert set(res) == {"loss", "accuracy"} and res["accuracy"] > 0.9
    loss, acc = m.evaluate(x, y)  # Keras: a list [loss, metrics...] without return_dict
    assert (loss, acc) == (res["loss"], res["accuracy"])
    m.compile(loss="categorical_crossentropy")
    assert m.evaluate(x, y) == pytest.approx(res["loss"], rel=1e-6)  # no metrics: the loss alone


def test_fit_before_compile():
    with pytest.raises(RuntimeError, match="compile"):
        make().fit(np.zeros((2, 4)), np.zeros((2, 3)))


def test_verbose_zero_prints_nothing(capsys):
    x, y = blobs(n=10)
    Session(make(), "cce", "sgd").fit((x, y), epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_progress_one_line_per_epoch_when_not_a_terminal():
    x, y = blobs(n=10)
    buf = io.StringIO()
    Session(make(), "cce", "sgd", metrics=["accuracy"]).fit((x, y), epochs=3, val_data=(x, y),
                                                            listeners=[listeners.ProgressBar(stream=buf)])
    lines = buf.getvalue().strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("Epoch 1/3") and "val_accuracy" in lines[2]


def test_sparse_labels_and_integer_inputs():
    x, y = blobs(n=30)
    xi = (x * 10).astype(np.int16)
    sess = Session(make(), "sparse_categorical_crossentropy", "adam", metrics=["accuracy"])
    h = sess.fit((xi, y.argmax(1)), epochs=2, batch_size=10, verbose=0)
    assert np.isfinite(h["loss"]).all()


def test_progress_bar_on_a_terminal_uses_tqdm():
    x, y = blobs(n=10)
    buf = io.StringIO()
    Session(make(), "cce", "sgd").fit(Dataset(x, y, batch_size=5), epochs=2,
                                      listeners=[listeners.ProgressBar(stream=buf, tty=True)])
    out = buf.getvalue()
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "2/2" in out and "loss" in out


def test_second_fit_keeps_counting_steps():
    x, y = blobs(n=10)
    sess = Session(make(), "cce", "sgd")
    sess.fit(Dataset(x, y, batch_size=5), epochs=1, verbose=0)
    h = sess.fit(Dataset(x, y, batch_size=5), epochs=2, initial_epoch=1, verbose=0)
    assert h["step"] == [4] and h["epoch"] == [2]


def test_sigmoid_with_binary_crossentropy_is_fused_and_metrics_see_probabilities():
    rs = np.random.default_rng(0)
    x = rs.standard_normal((64, 2)).astype(np.float32)
    y = (x[:, :1] + x[:, 1:] > 0).astype(np.float32)
    cutedl.set_seed(0)
    m = Model([layers.Dense(8, inshape=2, activation="tanh"), layers.Dense(1, activation="sigmoid")]).assemble()
    sess = Session(m, "binary_crossentropy", optimizers.Adam(0.05), metrics=["accuracy"])
    assert sess.fused_logits
    h = sess.fit((x, y), epochs=30, batch_size=16, verbose=0)
    p = m.predict(x)
    assert ((p > 0.5) == (y > 0.5)).mean() == pytest.approx(sess.evaluate((x, y))["accuracy"])
    assert h["accuracy"][-1] > 0.9
    with pytest.raises(ValueError, match="sigmoid would be applied twice"):
        Session(m, losses.BinaryCrossentropy(from_logits=True), "adam")


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamw"])
def test_training_stays_float32(opt):
    x, y = blobs(n=20)
    cutedl.set_seed(0)
    m = Model([layers.Dense(8, inshape=4, activation="relu", kernel_regularizer="l1_l2"), layers.Dropout(0.5),
               layers.Dense(3, activation="softmax")]).assemble()
    sess = Session(m, "cce", opt, metrics=["accuracy"])
    sess.fit(Dataset((x * 100).astype(np.uint8), y.astype(np.int64), batch_size=8), epochs=2, verbose=0)
    for p in m.params:
        assert p.value.dtype == np.float32 and p.grad.dtype == np.float32, p.name
    for state in sess.optimizer.state.values():
        for k, v in state.items():
            if hasattr(v, "dtype"):
                assert v.dtype == np.float32, k
    assert m.predict(x).dtype == np.float32
