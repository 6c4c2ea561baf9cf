"""cutedl on a real NVIDIA GPU through CuPy: every component equals the NumPy backend.

Skipped, with the reason, when CuPy is missing or no GPU is visible (CI: ``pytest -rs`` prints
it). Tolerances (the issue's): 1e-5 relative in float32, 1e-10 in float64, relative to the
largest magnitude of the NumPy result. bench/gpu_check.sh runs this file on a GPU machine.
"""
import copy
import os

import numpy as np
import pytest


def _gpu_reason():
    try:
        import cupy
    except Exception as err:  # ImportError, or a broken CUDA install raising at import
        return f"CuPy is not importable ({type(err).__name__}: {err}); pip install -e \".[gpu]\""
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        return f"CuPy is installed but no usable GPU ({type(err).__name__}: {err})"
    return None if n > 0 else "CuPy is installed but no GPU is visible"


_REASON = _gpu_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

import cutedl  # noqa: E402
from cutedl import Dataset, Model, Session, activations, backend, layers, listeners, metrics, optimizers  # noqa: E402

import gpu_compare  # noqa: E402

RTOL = {"float32": 1e-5, "float64": 1e-10}


@pytest.fixture
def gpu():
    import cupy
    backend.use_backend("cupy")
    yield cupy
    backend.use_backend("numpy")


@pytest.fixture
def float64():
    saved = backend.floatx()
    backend.set_floatx("float64")
    yield
    backend.set_floatx(saved)


def _to_gpu():
    backend.use_backend("cupy")


def test_backend_is_cupy(gpu):
    assert backend.current() == "cupy" and backend.xp is gpu
    d = backend.to_device(np.arange(3.0))
    assert isinstance(d, gpu.ndarray) and type(backend.to_host(d)) is np.ndarray
    name = gpu.cuda.runtime.getDeviceProperties(0)["name"]
    print(f"\nGPU: {name.decode() if isinstance(name, bytes) else name}, CuPy {gpu.__version__}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kwargs,inshape,training", gpu_compare.layer_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_layer_forward_and_backward_equal_numpy(gpu, name, kwargs, inshape, training, dtype):
    if gpu_compare.has_randomness(layers.registry.lookup(name)(**copy.deepcopy(kwargs))):
        gpu_compare.run_layer(name, kwargs, inshape, training, dtype, device=True)  # runs; draws differ
        return
    gpu_compare.compare_layer(name, kwargs, inshape, training, dtype, RTOL[dtype], _to_gpu)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", activations.registry.names())
def test_every_activation_equals_numpy(gpu, name, dtype):
    rs = np.random.default_rng(1)
    x, g = (rs.standard_normal((4, 5)) * 3).astype(dtype), rs.standard_normal((4, 5)).astype(dtype)
    out = []
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        act = activations.get(name)
        xd, gd = backend.to_device(x), backend.to_device(g)
        y = act.forward(xd)
        out.append((backend.to_host(y), backend.to_host(act.backward(xd, y, gd))))
    gpu_compare.assert_close(out[1][0], out[0][0], RTOL[dtype], f"{name} forward")
    gpu_compare.assert_close(out[1][1], out[0][1], RTOL[dtype], f"{name} backward")


@pytest.mark.parametrize("name,from_logits", gpu_compare.load_test_module("test_losses")._GRAD_CASES)
def test_every_loss_equals_numpy(gpu, name, from_logits):
    case = gpu_compare.load_test_module("test_losses")._case
    out = []
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        loss, x, y = case(name, from_logits, np.random.default_rng(7))
        value = loss(backend.to_device(np.asarray(y)), backend.to_device(np.asarray(x, dtype=np.float64)))
        out.append((value, backend.to_host(loss.backward())))
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-10)
    gpu_compare.assert_close(out[1][1], out[0][1], 1e-10, f"{name} gradient")


@pytest.mark.parametrize("name", metrics.registry.names())
def test_every_metric_equals_numpy(gpu, name):
    rs = np.random.default_rng(2)
    p = rs.random((12, 3))
    p /= p.sum(axis=1, keepdims=True)
    labels = rs.integers(0, 3, 12)
    onehot = np.eye(3)[labels]
    y, p = {"binary_accuracy": (labels % 2, p[:, :1]), "categorical_accuracy": (onehot, p), "mae": (onehot, p),
            "mse": (onehot, p)}.get(name, (labels, p))
    values = []
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        m = metrics.get(name)
        if m.stateful:
            m.update(backend.to_device(y), backend.to_device(p))
            values.append(m.result())
        else:
            values.append(m(backend.to_device(y), backend.to_device(p)))
    assert values[1] == pytest.approx(values[0], rel=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", optimizers.registry.names())
def test_every_optimizer_equals_numpy(gpu, name, dtype):
    rs = np.random.default_rng(3)
    w0 = rs.standard_normal((3, 4)).astype(dtype)
    grads = [rs.standard_normal((3, 4)).astype(dtype) for _ in range(4)]
    results = []
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        p = layers.base.Param("w/weight", backend.to_device(w0.copy()))
        opt = optimizers.get(name)
        for g in grads:
            p.grad = backend.to_device(g)
            opt.step([p])
        results.append(backend.to_host(p.value))
    gpu_compare.assert_close(results[1], results[0], RTOL[dtype], name)


# ---------------------------------------------------------------------------- MNIST models
def _mnist(n=512):
    try:
        (x, y), _ = cutedl.datasets.mnist.load_data() if hasattr(cutedl.datasets, "mnist") else (None, None)
        x = (x[:n].astype(np.float32) / 255.0).reshape(n, 1, 28, 28)
        return x, y[:n].astype(np.int64)
    except Exception:  # no MNIST file on the machine: data of the same shapes
        rs = np.random.default_rng(0)
        return rs.random((n, 1, 28, 28), dtype=np.float32), rs.integers(0, 10, n)


def _model(kind):
    if kind == "mlp":
        return Model([layers.Flatten(inshape=(1, 28, 28)), layers.Dense(256, activation="relu"),
                      layers.Dense(10, activation="softmax")]).assemble()
    if kind == "cnn":
        return Model([layers.Conv2D(16, 3, inshape=(1, 28, 28), padding="same", activation="relu"),
                      layers.MaxPool2D(2), layers.Conv2D(32, 3, padding="same", activation="relu"),
                      layers.MaxPool2D(2), layers.Flatten(), layers.Dense(10, activation="softmax")]).assemble()
    return Model([layers.Reshape((28, 28), inshape=(1, 28, 28)), layers.LSTM(64),
                  layers.Dense(10, activation="softmax")]).assemble()


@pytest.mark.parametrize("kind", ["mlp", "cnn", "lstm"])
def test_mnist_models_train_and_match_numpy(gpu, kind):
    x, y = _mnist(256)
    weights = []
    for use in ("numpy", "cupy"):
        backend.use_backend(use)
        cutedl.set_seed(3)
        model = _model(kind)
        hist = Session(model, "sparse_categorical_crossentropy", "adam", metrics=["accuracy"]).fit(
            Dataset(x, y, batch_size=64, seed=1), epochs=2)
        weights.append(model.get_weights())
        assert hist.history["loss"][-1] < hist.history["loss"][0] * 1.05
    for a, b in zip(*weights):
        assert type(a) is np.ndarray
        gpu_compare.assert_close(a, b, 1e-3, f"{kind} weights after 8 float32 steps")


@pytest.mark.parametrize("kind", ["mlp", "cnn", "lstm"])
def test_transfers_per_step(gpu, kind):
    x, y = _mnist(192)
    steps = []

    class Count(listeners.Listener):
        def on_batch_start(self, step, logs=None):
            self.cm = backend.count_transfers()
            self.t = self.cm.__enter__()

        def on_batch_end(self, step, logs=None):
            self.cm.__exit__(None, None, None)
            steps.append((self.t.to_device, self.t.to_host))

    cutedl.set_seed(3)
    Session(_model(kind), "sparse_categorical_crossentropy", "adam", metrics=["accuracy"]).fit(
        Dataset(x, y, batch_size=64, seed=1), epochs=1, listeners=[Count()])
    assert steps == [(2, 2)] * 3


def test_repeatable_bit_for_bit(gpu):
    x, y = _mnist(128)
    runs = []
    for _ in range(2):
        cutedl.set_seed(5)
        model = Model([layers.Flatten(inshape=(1, 28, 28)), layers.Dense(64, activation="relu"), layers.Dropout(0.3),
                       layers.Dense(10, activation="softmax")]).assemble()
        Session(model, "sparse_categorical_crossentropy", "adam").fit(Dataset(x, y, batch_size=32, seed=1), epochs=1)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


class _Crash(listeners.Listener):
    def __init__(self, at):
        self.at = at

    def on_batch_end(self, step, logs=None):
        if step == self.at:
            raise RuntimeError("simulated crash")


def test_checkpoint_gpu_to_cpu_to_gpu(gpu, float64, tmp_path):
    x, y = _mnist(96)

    def fit(use, lst, backup):
        backend.use_backend(use)
        cutedl.set_seed(7)
        model = _model("mlp")
        hist = Session(model, "sparse_categorical_crossentropy", "adam").fit(
            Dataset(x, y, batch_size=32, seed=1), epochs=4, listeners=[listeners.BackupAndRestore(backup, every=2)] + lst)
        return model, hist

    straight, _ = fit("numpy", [], tmp_path / "straight")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit("cupy", [_Crash(5)], tmp_path / "a")             # written on the GPU (step 4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        backend.use_backend("numpy")
        os.replace(tmp_path / "a", tmp_path / "b")
        fit("numpy", [_Crash(9)], tmp_path / "b")            # resumed on the CPU, written there (step 8)
    model, _ = fit("cupy", [], tmp_path / "b")               # and finished on the GPU
    for a, b in zip(model.get_weights(), straight.get_weights()):
        gpu_compare.assert_close(a, b, 1e-10, "GPU -> CPU -> GPU")


# last: the slowest (central differences, many tiny kernels per case)
@pytest.mark.parametrize("name,kwargs,inshape,training", gpu_compare.layer_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_gradient_checks_pass_on_the_gpu(gpu, name, kwargs, inshape, training):
    if name in gpu_compare.load_test_module("test_gradients").MERGE_CASES:
        pytest.skip("merge layers take a list of inputs: covered by the forward/backward comparison")
    from cutedl import testing
    testing.check_gradients(layers.registry.lookup(name)(**copy.deepcopy(kwargs)), inshape=inshape, batch_size=3,
                            training=training)
