"""Session.evaluate skips training augmentation; Keras-style Model.fit/evaluate pass everything on."""
import numpy as np
import pytest

import cutedl
from cutedl import Dataset, History, Model, Session, layers, optimizers


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 1)]
    return x, y


def _model():
    cutedl.set_seed(0)
    return Model([layers.Dense(8, inshape=4, activation="relu"), layers.Dense(3, activation="softmax")]).assemble()


class Shift:
    """An 'augmentation' that wrecks the inputs and counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return x + 100.0


def test_evaluate_does_not_apply_the_training_transform():
    x, y = _data()
    sess = Session(_model(), "categorical_crossentropy", metrics=["accuracy"])
    shift = Shift()
    augmented = Dataset(x, y, batch_size=8, shuffle=True, transform=shift)
    plain = sess.evaluate(Dataset(x, y, batch_size=8))
    assert sess.evaluate(augmented) == pytest.approx(plain, rel=1e-6)
    assert shift.calls == 0
    # the same numbers as evaluating the shifted inputs would give: the transform did matter
    assert sess.evaluate((x + 100.0, y), batch_size=8)["loss"] != pytest.approx(plain["loss"], rel=1e-3)


def test_fit_augments_training_batches_but_not_validation():
    x, y = _data()
    sess = Session(_model(), "categorical_crossentropy", optimizers.SGD(0.0), metrics=["accuracy"])
    train_shift, val_shift = Shift(), Shift()
    train = Dataset(x, y, batch_size=10, transform=train_shift)
    val = Dataset(x, y, batch_size=10, transform=val_shift)
    h = sess.fit(train, epochs=2, val_data=val, verbose=0)
    assert train_shift.calls == 2 * 4 and val_shift.calls == 0
    # lr 0: the model is unchanged, so val_loss is the clean evaluation
    assert h["val_loss"][-1] == pytest.approx(sess.evaluate((x, y))["loss"], rel=1e-6)


def _compiled():
    m = _model()
    m.compile(loss="categorical_crossentropy", optimizer=optimizers.Adam(0.01), metrics=["accuracy"])
    return m


def test_model_fit_continues_a_history_and_honours_initial_epoch():
    x, y = _data()
    m = _compiled()
    h = m.fit(x, y, batch_size=10, epochs=2, verbose=0)
    assert h["epoch"] == [1, 2]
    h2 = m.fit(x, y, batch_size=10, epochs=4, verbose=0, history=h)
    assert h2 is h and h["epoch"] == [1, 2, 3, 4] and h["step"] == [4, 8, 12, 16]
    h3 = m.fit(x, y, batch_size=10, epochs=6, initial_epoch=4, verbose=0)
    assert h3 is not h and h3["epoch"] == [5, 6]
    with pytest.raises(TypeError, match="history must be a cutedl History"):
        m.fit(x, y, epochs=8, verbose=0, history={"epoch": [1]})
    # a loaded History continues the same way
    h4 = m.fit(x, y, batch_size=10, epochs=7, verbose=0, history=History.from_dict(h.to_dict()))
    assert h4["epoch"] == [1, 2, 3, 4, 5, 6, 7] and h["epoch"] == [1, 2, 3, 4]


def test_model_fit_is_the_session_fit_with_keras_names():
    x, y = _data()
    xv, yv = _data(20, seed=1)
    a = _compiled()
    ha = a.fit(x, y, batch_size=8, epochs=4, validation_data=(xv, yv), validation_freq=2, validation_steps=1,
               shuffle=False, verbose=0)
    b = _model()
    hb = Session(b, "categorical_crossentropy", optimizers.Adam(0.01), metrics=["accuracy"]).fit(
        (x, y), batch_size=8, epochs=4, val_data=(xv, yv), val_epochs=2, val_batches=1, shuffle=False, verbose=0)
    assert ha["epoch"] == hb["epoch"] == [2, 4]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert ha[key] == hb[key]
    # one validation batch of 8 samples, not all 20
    assert ha["val_loss"][-1] == pytest.approx(a.evaluate(xv[:8], yv[:8], return_dict=True)["loss"], rel=1e-6)
    assert a.evaluate(xv, yv, batch_size=8, steps=1) == pytest.approx(a.evaluate(xv[:8], yv[:8]), rel=1e-6)
    for w in a.get_weights():
        assert any(np.array_equal(w, v) for v in b.get_weights())


def test_model_fit_shuffle_and_dataset_inputs():
    x, y = _data()
    runs = []
    for shuffle in (False, False, True):
        m = _compiled()
        m.fit(Dataset(x, y, batch_size=8, shuffle=shuffle, seed=3), epochs=2, verbose=0)
        runs.append(m.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], runs[2]))
    # arrays: Model.fit(shuffle=...) reaches the Dataset it builds
    for shuffle, expect_same in ((False, True), (True, False)):
        m = _compiled()
        m.fit(x, y, batch_size=8, epochs=2, shuffle=shuffle, verbose=0)
        same = all(np.array_equal(a, b) for a, b in zip(m.get_weights(), runs[0]))
        assert same == expect_same


def test_model_fit_argument_errors():
    x, y = _data()
    m = _compiled()
    with pytest.raises(ValueError, match="tuple of 3 items"):
        m.fit(x, y, validation_data=(x, y, np.ones(len(x))), verbose=0)
    with pytest.raises(ValueError, match="validation_freq or val_epochs"):
        m.fit(x, y, validation_freq=2, val_epochs=3, verbose=0)
    with pytest.raises(ValueError, match="validation_steps or val_batches"):
        m.fit(x, y, validation_steps=2, val_batches=3, verbose=0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        m.evaluate(x, y, steps=0)
