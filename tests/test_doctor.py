"""Whole-model gradient checks and the model doctor (cutedl.testing.check_model_gradients / doctor)."""
import numpy as np
import pytest

from cutedl import Model, initializers, layers, optimizers, testing
from cutedl.testing import GradientCheckError


def rows(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


class WrongInputGrad(layers.Layer):
    """y = 2x with a backward that returns 3 * grad: a planted bug."""

    def forward(self, x, training=False):
        return 2.0 * x

    def backward(self, grad):
        return 3.0 * grad


class WrongParamGrad(layers.Layer):
    """y = x * w (per feature) whose backward gets dL/dw wrong by a sign."""

    def build(self, inshape):
        self.w = self.add_param("w", inshape[-1:], "ones")
        self.outshape = tuple(inshape)

    def forward(self, x, training=False):
        self._x = x
        return x * self.w.value

    def backward(self, grad):
        self.w.grad = -(grad * self._x).sum(axis=0)
        return grad * self.w.value


CUSTOM = {"WrongInputGrad": WrongInputGrad, "WrongParamGrad": WrongParamGrad}


# ---------------------------------------------------------------------------- gradient check
def test_healthy_mlp_passes_with_a_table_of_every_layer():
    model = Model([layers.Dense(8, inshape=(5,), activation="relu"), layers.Dropout(0.2),
                   layers.Dense(3, activation="softmax")]).assemble()
    y = np.eye(3)[[0, 1, 2, 1]]
    result = testing.check_model_gradients(model, rows(4, 5), y, "categorical_crossentropy")
    assert result.ok and result.first_failure is None and result.max_error < 1e-5
    assert [r.layer for r in result.rows] == [l.name for l in model.layers]
    assert set(result.row(model.layers[0].name).param_errors) == {p.name for p in model.layers[0].params}
    text = str(result)
    assert "All gradients agree" in text and model.layers[0].name in text
    result.raise_if_failed()


def test_the_model_passed_is_never_touched_and_may_be_float32():
    model = Model([layers.Dense(4, inshape=(3,), activation="tanh"), layers.Dense(1)]).assemble()
    before = model.get_weights()
    assert model.dtype == np.float32
    testing.check_model_gradients(model, rows(3, 3), rows(3, 1), "mse")
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(p.grad is None for p in model.params)


def test_wrong_input_gradient_names_the_layer_that_passes_it():
    model = Model([layers.Dense(4, inshape=(3,), activation="tanh"), WrongInputGrad(name="planted"),
                   layers.Dense(2, kernel_regularizer="l2")]).assemble()
    result = testing.check_model_gradients(model, rows(4, 3), rows(4, 2), "mse", custom_objects=CUSTOM)
    assert not result.ok and result.first_failure == "planted"
    # the layers after it are fine, the one before it receives a wrong gradient
    assert result.rows[2].ok and not result.rows[0].ok
    assert result.row("planted").passed_error == pytest.approx(1 / 3, rel=1e-3)  # |3 - 2| / 3
    assert "'planted' (WrongInputGrad) is the first to disagree" in str(result)
    with pytest.raises(GradientCheckError, match="planted"):
        result.raise_if_failed()


def test_wrong_param_gradient_names_the_layer():
    model = Model([layers.Dense(4, inshape=(3,), activation="tanh"), WrongParamGrad(name="planted"),
                   layers.Dense(2)]).assemble()
    result = testing.check_model_gradients(model, rows(4, 3), rows(4, 2), "mse", custom_objects=CUSTOM)
    assert result.first_failure == "planted"
    assert result.row("planted").param_errors["planted/w"] > 0.5
    assert result.rows[0].ok  # the gradient it passes back is right


def test_functional_model_with_shared_layer_merges_and_two_outputs():
    a, b = layers.Input((6,), name="a"), layers.Input((6,), name="b")
    shared = layers.Dense(6, activation="tanh", name="shared")
    h = layers.Add()([shared(a), shared(b)])
    cls = layers.Dense(3, activation="softmax", name="cls")(layers.Concatenate()([h, a]))
    reg = layers.Dense(1, name="reg")(layers.Multiply()([h, b]))
    model = Model(inputs=[a, b], outputs=[cls, reg])
    y = [np.eye(3)[[0, 1, 2, 0]], rows(4, 1, 2)]
    result = testing.check_model_gradients(model, [rows(4, 6), rows(4, 6, 1)], y, ["cce", "mse"],
                                           loss_weights=[1.0, 0.5])
    assert result.ok, str(result)
    assert set(result.inputs) == {"a", "b"} and all(e is not None for e in result.inputs.values())
    assert result.row("shared").output_error is None  # called twice: its output is not probed


def test_integer_inputs_get_no_input_check_and_masks_are_followed():
    model = Model([layers.Embedding(20, 4, mask_zero=True, inshape=(5,)), layers.LSTM(3),
                   layers.Dense(2, activation="softmax")]).assemble()
    x = np.random.default_rng(0).integers(1, 20, (3, 5))
    x[0, 3:] = 0
    result = testing.check_model_gradients(model, x, np.array([0, 1, 1]), "sparse_categorical_crossentropy")
    assert result.ok, str(result)
    assert result.inputs == {"input": None} and "integer ids" in str(result)


def test_masking_input_skips_padded_steps():
    model = Model([layers.Masking(0.0, inshape=(5, 2)), layers.GRU(3, return_sequences=True),
                   layers.TimeDistributed(layers.Dense(1))]).assemble()
    x = rows(3, 10).reshape(3, 5, 2)
    x[0, 3:] = 0.0  # two padded steps: 4 elements whose perturbation would unmask them
    result = testing.check_model_gradients(model, x, rows(3, 5, 1).reshape(3, 5, 1), "mse")
    assert result.ok, str(result)
    assert result.input_skipped["input"] == 4


@pytest.mark.parametrize("training", [False, True])
def test_conv_batchnorm_pooling_dropout(training):
    model = Model([layers.Conv2D(3, 3, inshape=(1, 6, 6), activation="relu"), layers.BatchNormalization(),
                   layers.MaxPool2D(2), layers.Flatten(), layers.Dropout(0.3),
                   layers.Dense(2, activation="sigmoid")]).assemble()
    y = np.random.default_rng(1).integers(0, 2, (4, 2)).astype(float)
    result = testing.check_model_gradients(model, rows(4, 36).reshape(4, 1, 6, 6), y, "binary_crossentropy",
                                           training=training)
    assert result.ok, str(result)


# ---------------------------------------------------------------------------- doctor
def blobs(n=96, d=20, classes=3, seed=0):
    """Separable data: class means 2 apart in a few features, unit noise, scaled like real inputs."""
    rs = np.random.default_rng(seed)
    labels = rs.integers(0, classes, n)
    x = rs.standard_normal((n, d)) * 0.5
    x[np.arange(n), labels] += 2.0
    return x.astype(np.float32), labels


def mlp(hidden_kwargs=None, out_kwargs=None, d=20, classes=3):
    return Model([layers.Dense(64, inshape=(d,), activation="relu", **(hidden_kwargs or {})),
                  layers.Dense(classes, activation="softmax", **(out_kwargs or {}))]).assemble()


def statuses(report):
    return {c.name: c.status for c in report.checks}


def test_doctor_passes_a_healthy_model_and_leaves_it_alone():
    x, labels = blobs()
    model = mlp()
    before = model.get_weights()
    report = testing.doctor(model, x, np.eye(3)[labels], loss="categorical_crossentropy")
    assert statuses(report) == {"gradients": "pass", "initial loss": "pass", "overfit one batch": "pass",
                                "labels": "pass", "input scale": "pass", "dead ReLUs": "pass", "saturation": "skip"}
    assert report.ok and report.status == "pass"
    init = report["initial loss"].values[model.output_names[0]]
    assert init["expected"] == pytest.approx(np.log(3)) and 0.75 < init["ratio"] < 1.25
    assert report["overfit one batch"].values["steps"] <= 200
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    text = str(report)
    assert text.startswith("Model doctor") and "ln(3)" in text and "What to do" not in text


def test_doctor_flags_a_wrong_backward():
    x, labels = blobs()
    model = Model([layers.Dense(16, inshape=(20,), activation="tanh"), WrongInputGrad(name="planted"),
                   layers.Dense(3, activation="softmax")]).assemble()
    report = testing.doctor(model, x, labels, loss="sparse_categorical_crossentropy", custom_objects=CUSTOM)
    assert report["gradients"].status == "fail" and report["gradients"].values["first_failure"] == "planted"
    assert not report.ok and "planted" in str(report)


def test_doctor_warns_about_unscaled_inputs():
    x, labels = blobs()
    pixels = (np.clip(x, 0, 1) * 255).astype(np.float32)
    report = testing.doctor(mlp(), pixels, labels, loss="sparse_categorical_crossentropy")
    assert report["input scale"].status == "warn"
    assert report["input scale"].values["input_0"]["max_abs"] == pytest.approx(255.0)
    assert "x / 255" in str(report)


@pytest.mark.parametrize("loss, make_y, fix", [
    ("categorical_crossentropy", lambda labels: labels, "SparseCategoricalCrossentropy"),
    ("sparse_categorical_crossentropy", lambda labels: np.eye(3)[labels], "CategoricalCrossentropy"),
    ("sparse_categorical_crossentropy", lambda labels: labels + 1, "outside"),
])
def test_doctor_catches_labels_that_do_not_fit_the_loss(loss, make_y, fix):
    x, labels = blobs()
    report = testing.doctor(mlp(), x, make_y(labels), loss=loss)
    assert report["labels"].status == "fail" and fix in str(report)
    assert report["overfit one batch"].status == "skip"


def test_doctor_fails_a_model_that_cannot_overfit_with_lr_zero():
    x, labels = blobs()
    report = testing.doctor(mlp(), x, labels, loss="sparse_categorical_crossentropy",
                            optimizer=optimizers.Adam(0.0))
    check = report["overfit one batch"]
    assert check.status == "fail" and check.values["final"] == pytest.approx(check.values["start"])
    assert "Adam(lr=0)" in check.measured and "learning rate" in check.advice


def test_doctor_uses_the_compiled_loss_and_optimizer():
    x, labels = blobs()
    model = mlp()
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.SGD(0.0))
    before = model.get_weights()
    report = testing.doctor(model, x, labels)
    assert report["overfit one batch"].status == "fail" and "SGD(lr=0)" in report["overfit one batch"].measured
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_doctor_flags_dead_relus_saturation_and_a_bad_initial_loss():
    x, labels = blobs()
    dead = mlp(hidden_kwargs={"bias_initializer": initializers.Constant(-20.0)})
    check = testing.doctor(dead, x, labels, loss="sparse_categorical_crossentropy")["dead ReLUs"]
    assert check.status == "fail" and check.values["shares"][dead.layers[0].name] == 1.0
    saturated = Model([layers.Dense(64, inshape=(20,), activation="tanh",
                                    kernel_initializer=initializers.RandomNormal(0.0, 5.0)),
                       layers.Dense(3, activation="softmax",
                                    kernel_initializer=initializers.RandomNormal(0.0, 5.0))]).assemble()
    report = testing.doctor(saturated, x, labels, loss="sparse_categorical_crossentropy")
    assert report["saturation"].status == "fail" and report["saturation"].values["shares"][saturated.layers[0].name] > 0.5
    assert report["initial loss"].status == "fail"  # confident wrong guesses: far above ln(3)
