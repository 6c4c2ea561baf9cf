"""The device backend's code paths on a CPU: cutedl on a fake CuPy (tests/gpu/fake_cupy.py).

The fake runs NumPy underneath, so every result must equal the NumPy backend's (float64, tight
tolerance), while its rules catch what a GPU would pay for: implicit device->host conversions in
a step, host NumPy on device arrays, host/device mixes, functions CuPy lacks. The real GPU tests
are in test_cupy.py (skipped without CuPy and a GPU).
"""
import os
import pickle
import sys

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, activations, backend, checkpoint, layers, listeners, losses, metrics
from cutedl import optimizers

import fake_cupy
import gpu_compare


@pytest.fixture
def fake(monkeypatch):
    """The fake CuPy installed and the 'cupy' backend active (NumPy restored afterwards)."""
    cupy = fake_cupy.install(monkeypatch)
    backend.use_backend("cupy")
    yield cupy
    backend.use_backend("numpy")


@pytest.fixture
def float64():
    saved = backend.floatx()
    backend.set_floatx("float64")
    yield
    backend.set_floatx(saved)


def _to_fake():
    backend.use_backend("cupy")


# ---------------------------------------------------------------------------- choosing the backend
def test_use_backend_takes_cupy_from_sys_modules(fake):
    assert backend.current() == "cupy" and backend.xp is fake
    d = backend.to_device(np.arange(3.0))
    assert fake_cupy.is_device(d) and backend.is_array(d) and not backend.is_host_array(d)
    h = backend.to_host(d)
    assert type(h) is np.ndarray and h.tolist() == [0.0, 1.0, 2.0]


def test_use_backend_cupy_without_cupy_names_cupy_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(RuntimeError, match=r"CuPy is not installed.*pip install -e \"\.\[gpu\]\""):
        backend.use_backend("cupy")
    assert backend.current() == "numpy" and backend.xp is np


@pytest.mark.parametrize("count", [0, RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")])
def test_use_backend_cupy_without_a_gpu_names_the_gpu(monkeypatch, count):
    fake_cupy.install(monkeypatch, device_count=count)
    with pytest.raises(RuntimeError, match=r"CuPy is installed but no (usable )?NVIDIA GPU"):
        backend.use_backend("cupy")
    assert backend.current() == "numpy" and backend.xp is np


# ---------------------------------------------------------------------------- the harness is strict
def test_fake_refuses_implicit_host_conversions(fake):
    d = backend.to_device(np.array([1.5]))
    s = d.sum()
    assert fake_cupy.is_device(s) and s.shape == ()  # reductions stay on the device, as CuPy
    for convert in (float, int, bool, lambda a: a.item(), lambda a: a.tolist(), np.asarray, lambda a: f"{a:.2f}",
                    lambda a: pickle.dumps(a)):
        with pytest.raises(TypeError):
            convert(s)
    with pytest.raises(TypeError, match="host numpy.exp"):
        np.exp(d)
    with pytest.raises(TypeError, match="host numpy.mean"):
        np.mean(d)
    with pytest.raises(TypeError, match="mixes a device array with a host ndarray"):
        d + np.ones(1)
    with pytest.raises(TypeError, match="host->device copy"):
        d[...] = np.ones(1)
    with pytest.raises(AttributeError):
        fake.errstate
    assert backend.item(np.float64(2.0) * d + 1) == 4.0
    assert backend.item(d) == 1.5


def test_item_to_host_and_checks_cross_once(fake):
    d = backend.to_device(np.arange(4.0))
    calls = fake_cupy.calls["asnumpy"]
    with backend.count_transfers() as t:
        assert backend.item(d.sum()) == 6.0
    assert (t.to_device, t.to_host) == (0, 1) and fake_cupy.calls["asnumpy"] == calls + 1
    # a pending data check travels with the next item: still one copy
    backend.check(d.max() > 10, lambda: pytest.fail("a passing check must not fail"))
    assert backend.item(d.sum()) == 6.0 and fake_cupy.calls["asnumpy"] == calls + 2

    def fail():
        raise ValueError("bad labels")
    backend.check(d.max() > 2, fail)
    with pytest.raises(ValueError, match="bad labels"):
        backend.item(d.sum())
    backend.check(d.max() > 2, fail)
    with pytest.raises(ValueError, match="bad labels"):
        backend.to_host(d)
    backend.check(d.max() > 2, fail)
    with pytest.raises(ValueError, match="bad labels"):
        backend.flush_checks()
    backend.flush_checks()  # nothing pending


def test_sparse_labels_out_of_range_raise_at_the_loss_value(fake):
    loss = losses.SparseCategoricalCrossentropy()
    p = backend.to_device(np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"label 5 is out of range for 3 classes"):
        loss(backend.to_device(np.array([0, 5])), p)
    with pytest.raises(ValueError, match=r"expects integer class labels, got 1.5"):
        loss(backend.to_device(np.array([0.0, 1.5])), p)


def test_softmax_without_errstate_equals_numpy(fake):
    x = np.array([[3e38, -3e38, 0.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    got = backend.to_host(activations.get("softmax").forward(backend.to_device(x)))
    backend.use_backend("numpy")
    np.testing.assert_array_equal(got, activations.get("softmax").forward(x))


def test_einsum_out_on_every_backend(fake):
    a = backend.to_device(np.arange(6.0).reshape(2, 3))
    out = backend.xp.empty(2)
    assert backend.einsum("ij,ij->i", a, a, out=out) is out
    np.testing.assert_array_equal(backend.to_host(out), [5.0, 50.0])


# ---------------------------------------------------------------------------- every component
@pytest.mark.parametrize("name,kwargs,inshape,training", gpu_compare.layer_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_layer_forward_and_backward_equal_numpy(fake, name, kwargs, inshape, training):
    if gpu_compare.has_randomness(layers.registry.lookup(name)(**__import__("copy").deepcopy(kwargs))):
        backend.use_backend("cupy")
        gpu_compare.run_layer(name, kwargs, inshape, training, "float64", device=True)  # runs; draws differ
        return
    gpu_compare.compare_layer(name, kwargs, inshape, training, "float64", 1e-12, _to_fake)


@pytest.mark.parametrize("name", activations.registry.names())
def test_every_activation_equals_numpy(fake, name):
    rs = np.random.default_rng(1)
    x, g = rs.standard_normal((4, 5)) * 3, rs.standard_normal((4, 5))
    out = []
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        act = activations.get(name)
        xd, gd = backend.to_device(x), backend.to_device(g)
        y = act.forward(xd)
        out.append((backend.to_host(y), backend.to_host(act.backward(xd, y, gd))))
    gpu_compare.assert_close(out[1][0], out[0][0], 1e-12, f"{name} forward")
    gpu_compare.assert_close(out[1][1], out[0][1], 1e-12, f"{name} backward")


def _loss_cases():
    tl = gpu_compare.load_test_module("test_losses")
    return tl._GRAD_CASES, tl._case


@pytest.mark.parametrize("name,from_logits", _loss_cases()[0])
def test_every_loss_equals_numpy(fake, name, from_logits):
    case = _loss_cases()[1]
    out = []
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        loss, x, y = case(name, from_logits, np.random.default_rng(7))
        value = loss(backend.to_device(np.asarray(y)), backend.to_device(np.asarray(x, dtype=np.float64)))
        assert type(value) is float
        out.append((value, backend.to_host(loss.backward())))
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-12)
    gpu_compare.assert_close(out[1][1], out[0][1], 1e-12, f"{name} gradient")


@pytest.mark.parametrize("name", metrics.registry.names())
def test_every_metric_equals_numpy(fake, name):
    rs = np.random.default_rng(2)
    p = rs.random((12, 3))
    p /= p.sum(axis=1, keepdims=True)
    labels = rs.integers(0, 3, 12)
    onehot = np.eye(3)[labels]
    values = []
    y, p = {"binary_accuracy": (labels % 2, p[:, :1]), "categorical_accuracy": (onehot, p), "mae": (onehot, p),
            "mse": (onehot, p)}.get(name, (labels, p))
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        m = metrics.get(name)
        if m.stateful:
            m.update(backend.to_device(y), backend.to_device(p))
            m.update(backend.to_device(y[:5]), backend.to_device(p[:5]))
            values.append(m.result())
            state = m.get_state()
            assert all(type(v) is np.ndarray for v in state.values())
        else:
            values.append(m(backend.to_device(y), backend.to_device(p)))
        assert type(values[-1]) is float
    assert values[1] == pytest.approx(values[0], rel=1e-12)


@pytest.mark.parametrize("name", optimizers.registry.names())
def test_every_optimizer_equals_numpy(fake, name):
    rs = np.random.default_rng(3)
    w0, grads = rs.standard_normal((3, 4)), [rs.standard_normal((3, 4)) for _ in range(4)]
    results = []
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        p = layers.base.Param("w/weight", backend.to_device(w0.copy()))
        opt = optimizers.get(name)
        for g in grads:
            p.grad = backend.to_device(g)
            opt.step([p])
        state = opt.get_state()
        results.append(backend.to_host(p.value))
    gpu_compare.assert_close(results[1], results[0], 1e-12, name)


@pytest.mark.parametrize("name,clip", [(n, c) for n in ("sgd", "adam")
                                       for c in ({"clipnorm": 1.0, "clipvalue": 0.5}, {"global_clipnorm": 2.0})])
def test_optimizer_clipping_equals_numpy(fake, name, clip):
    rs = np.random.default_rng(4)
    w0, g = rs.standard_normal(5), rs.standard_normal(5) * 10
    results = []
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        p = layers.base.Param("w/weight", backend.to_device(w0.copy()))
        p.grad = backend.to_device(g)
        optimizers.get(name, **clip).step([p])
        results.append(backend.to_host(p.value))
    gpu_compare.assert_close(results[1], results[0], 1e-12, name)


# ---------------------------------------------------------------------------- whole models
def _data(kind, n=48):
    rs = np.random.default_rng(5)
    if kind == "lstm":
        x = rs.standard_normal((n, 6, 4))
    elif kind in ("embedding", "tagger"):
        x = rs.integers(1, 20, (n, 7))
        x[:, :2] = 0  # padding: masked steps
    else:
        x = rs.standard_normal((n, 1, 8, 8))
    return x, rs.integers(0, 3, n)


def _model(kind):
    if kind == "mlp":
        stack = [layers.Flatten(inshape=(1, 8, 8)), layers.Dense(16, activation="relu"),
                 layers.BatchNormalization(), layers.Dense(3, activation="softmax")]
    elif kind == "cnn":
        stack = [layers.Conv2D(4, 3, inshape=(1, 8, 8), padding="same", activation="relu"), layers.MaxPool2D(2),
                 layers.Conv2D(4, 3, activation="relu"), layers.Flatten(), layers.Dense(3, activation="softmax")]
    elif kind == "lstm":
        stack = [layers.LSTM(8, inshape=(6, 4)), layers.LayerNormalization(), layers.Dense(3, activation="softmax")]
    elif kind == "embedding":  # embedding + masked GRU
        stack = [layers.Embedding(20, 5, inshape=(7,), mask_zero=True), layers.GRU(6),
                 layers.Dense(3, activation="softmax")]
    else:  # a masked sequence output: the loss and metric select the real steps
        stack = [layers.Embedding(20, 5, inshape=(7,), mask_zero=True), layers.LSTM(6, return_sequences=True),
                 layers.TimeDistributed(layers.Dense(3, activation="softmax"))]
    return Model(stack).assemble()


def _fit(kind, use, epochs=2, **fit_kwargs):
    backend.use_backend(use)
    cutedl.set_seed(7)
    model = _model(kind)
    sess = Session(model, "sparse_categorical_crossentropy", "adam", metrics=["accuracy"])
    x, y = _data(kind)
    if kind == "tagger":
        y = np.random.default_rng(6).integers(0, 3, x.shape)
    hist = sess.fit(Dataset(x, y, batch_size=16, seed=1), epochs=epochs, **fit_kwargs)
    return model, sess, hist


@pytest.mark.parametrize("kind", ["mlp", "cnn", "lstm", "embedding", "tagger"])
def test_models_train_to_the_same_weights_as_numpy(fake, float64, kind):
    ref, _, ref_hist = _fit(kind, "numpy")
    model, _, hist = _fit(kind, "cupy")
    for a, b in zip(model.get_weights(), ref.get_weights()):
        assert type(a) is np.ndarray
        gpu_compare.assert_close(a, b, 1e-12, kind)
    assert hist.history["loss"] == pytest.approx(ref_hist.history["loss"], rel=1e-12)
    x, _ = _data(kind)
    pred = model.predict(x)
    assert type(pred) is np.ndarray
    backend.use_backend("numpy")
    gpu_compare.assert_close(pred, ref.predict(x), 1e-12, f"{kind} predict")


def test_float32_training_stays_close_to_numpy(fake):
    ref, _, _ = _fit("cnn", "numpy")
    model, _, _ = _fit("cnn", "cupy")
    for a, b in zip(model.get_weights(), ref.get_weights()):
        assert a.dtype == np.float32
        gpu_compare.assert_close(a, b, 1e-5, "cnn float32")


@pytest.mark.parametrize("kind", ["mlp", "cnn", "lstm"])
def test_each_step_copies_x_and_y_once_and_brings_back_the_logged_scalars(fake, kind):
    backend.use_backend("cupy")
    cutedl.set_seed(7)
    model = _model(kind)
    sess = Session(model, "sparse_categorical_crossentropy", "adam", metrics=["accuracy"])
    x, y = _data(kind)
    steps = []

    class Count(listeners.Listener):
        def on_batch_start(self, step, logs=None):
            self.t = backend.count_transfers()
            self.counts = self.t.__enter__()

        def on_batch_end(self, step, logs=None):
            self.t.__exit__(None, None, None)
            steps.append((self.counts.to_device, self.counts.to_host))

    sess.fit(Dataset(x, y, batch_size=16, seed=1), epochs=1, listeners=[Count()])
    assert steps == [(2, 2)] * 3  # x and y in; loss and accuracy out


def test_a_masked_step_adds_one_counted_crossing_per_selection(fake):
    """Masked sequence outputs select the real steps (a data-dependent size): the loss, the metric
    and the batch weight each read one count, through backend.item (counted, no hidden sync)."""
    backend.use_backend("cupy")
    cutedl.set_seed(7)
    sess = Session(_model("tagger"), "sparse_categorical_crossentropy", "adam", metrics=["accuracy"])
    x, _ = _data("tagger")
    y = np.random.default_rng(6).integers(0, 3, x.shape)
    with backend.count_transfers() as t:
        sess.fit(Dataset(x, y, batch_size=16, seed=1), epochs=1)
    assert t.to_device <= 2 * 3 + 2  # x and y per step (+ fit's look at the first batch)
    assert t.to_host <= (2 + 3) * 3 + 2  # loss, accuracy + at most 3 counts per step (+ the first batch)


def test_predict_get_weights_and_save_hold_host_arrays(fake, tmp_path):
    model, _, _ = _fit("cnn", "cupy", epochs=1)
    assert all(fake_cupy.is_device(p.value) for p in model.params)
    assert all(type(w) is np.ndarray for w in model.get_weights())
    model.save(tmp_path / "m")
    files = os.listdir(tmp_path)
    backend.use_backend("numpy")
    loaded = Model.load(tmp_path / files[0])
    assert all(type(p.value) is np.ndarray for p in loaded.params)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # and back: set_weights from host arrays onto a device model
    backend.use_backend("cupy")
    model.set_weights(loaded.get_weights())
    assert all(fake_cupy.is_device(p.value) for p in model.params)


def test_checkpoint_save_state_holds_host_arrays(fake, tmp_path):
    model, sess, _ = _fit("mlp", "cupy", epochs=1)
    path = tmp_path / "state.npz"
    with backend.count_transfers() as t:
        checkpoint.save_state(path, checkpoint.capture(sess))
    assert t.to_host >= len(model.params)  # params (and optimizer slots) came back through to_host
    with np.load(path, allow_pickle=False) as f:
        assert len(f.files) > 0


class _Crash(listeners.Listener):
    def __init__(self, at):
        self.at = at

    def on_batch_end(self, step, logs=None):
        if step == self.at:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("first,second", [("cupy", "numpy"), ("numpy", "cupy")])
def test_backup_written_on_one_backend_resumes_on_the_other(fake, float64, tmp_path, first, second):
    straight, _, straight_hist = _fit("mlp", "numpy", epochs=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit("mlp", first, epochs=3, listeners=[listeners.BackupAndRestore(tmp_path, every=2), _Crash(5)])
    assert os.listdir(tmp_path)
    model, _, hist = _fit("mlp", second, epochs=3, listeners=[listeners.BackupAndRestore(tmp_path, every=2)])
    for a, b in zip(model.get_weights(), straight.get_weights()):
        gpu_compare.assert_close(a, b, 1e-12, f"{first} -> {second}")
    assert hist.history["loss"] == pytest.approx(straight_hist.history["loss"], rel=1e-12)
