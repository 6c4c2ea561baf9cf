"""BatchNormalization and LayerNormalization: values against naive references, training vs
inference, the moving statistics (worked out by hand), save/load, errors.

Gradient checks of every configuration are in tests/test_gradients.py (NORM_CASES).
"""
import numpy as np
import pytest

from cutedl import Model, Session, layers, optimizers, testing
from cutedl.layers import BatchNormalization, LayerNormalization


def built(layer, inshape, dtype=None):
    layer._build(inshape)
    return layer


def naive_batchnorm(x, gamma, beta, eps, axis=1):
    """Per channel c: mean and biased variance of every value x[..., c, ...], one channel at a time."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        values = x[c].ravel().tolist()
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / len(values)
        out[c] = gamma[c] * (x[c] - mean) / np.sqrt(var + eps) + beta[c]
    return np.moveaxis(out, 0, axis)


def naive_layernorm(x, gamma, beta, eps):
    """Per sample, over its last axis, one row at a time."""
    x = np.asarray(x, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        mean = sum(row) / len(row)
        var = sum((v - mean) ** 2 for v in row) / len(row)
        out[i] = gamma * (row - mean) / np.sqrt(var + eps) + beta
    return out.reshape(x.shape)


def set_affine(layer, rs):
    layer.gamma.value[...] = rs.uniform(0.5, 2.0, layer.gamma.shape)
    layer.beta.value[...] = rs.normal(size=layer.beta.shape)


# ---------------------------------------------------------------------------- BatchNormalization
def test_batchnorm_params_and_defaults():
    bn = built(BatchNormalization(), (4, 5, 5))
    assert [p.name.split("/")[1] for p in bn.params] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [p.trainable for p in bn.params] == [True, True, False, False]
    assert all(p.shape == (4,) and p.dtype == np.float32 for p in bn.params)
    np.testing.assert_array_equal(bn.gamma.value, 1)
    np.testing.assert_array_equal(bn.moving_variance.value, 1)
    np.testing.assert_array_equal(bn.beta.value, 0)
    np.testing.assert_array_equal(bn.moving_mean.value, 0)
    assert (bn.momentum, bn.epsilon, bn.axis) == (0.99, 1e-3, 1)
    assert bn.outshape == (4, 5, 5)
    assert [p.name.split("/")[1] for p in built(BatchNormalization(center=False, scale=False), (3,)).params] == \
        ["moving_mean", "moving_variance"]


@pytest.mark.parametrize("inshape, axis", [((3, 4, 5), 1), ((6,), 1), ((4, 3), -1), ((3, 7), 1), ((2, 3, 4), 2)])
def test_batchnorm_training_forward_matches_naive_per_channel(inshape, axis):
    rs = np.random.default_rng(0)
    bn = built(BatchNormalization(axis=axis, dtype="float64"), inshape)
    set_affine(bn, rs)
    x = rs.normal(2.0, 3.0, (5,) + inshape)
    y = bn.forward(x, training=True)
    a = axis % x.ndim
    np.testing.assert_allclose(y, naive_batchnorm(x, bn.gamma.value, bn.beta.value, 1e-3, a), rtol=1e-10, atol=1e-12)


def test_batchnorm_statistics_are_per_channel_not_per_position():
    # channel 0 holds a ramp over the positions; per-position statistics would zero it out
    x = np.zeros((2, 2, 3, 3))
    x[:, 0] = np.arange(9.0).reshape(3, 3)
    x[:, 1] = 5.0
    y = built(BatchNormalization(epsilon=1e-8, dtype="float64"), (2, 3, 3)).forward(x, training=True)
    ramp = np.arange(9.0).reshape(3, 3)
    np.testing.assert_allclose(y[0, 0], (ramp - 4.0) / np.sqrt(ramp.var()), rtol=1e-6)
    np.testing.assert_allclose(y[:, 1], 0.0, atol=1e-12)   # a constant channel normalizes to beta = 0


def test_batchnorm_moving_statistics_by_hand_dense():
    bn = built(BatchNormalization(momentum=0.9, dtype="float64"), (2,))
    x = np.array([[1.0, 2.0], [3.0, 6.0]])   # batch mean (2, 4), biased variance (1, 4)
    bn.forward(x, training=True)
    np.testing.assert_allclose(bn.moving_mean.value, [0.2, 0.4], rtol=1e-12)       # 0.9*0 + 0.1*(2, 4)
    np.testing.assert_allclose(bn.moving_variance.value, [1.0, 1.3], rtol=1e-12)   # 0.9*1 + 0.1*(1, 4)
    bn.forward(x, training=True)
    np.testing.assert_allclose(bn.moving_mean.value, [0.38, 0.76], rtol=1e-12)     # 0.9*0.2 + 0.1*2 ...
    np.testing.assert_allclose(bn.moving_variance.value, [1.0, 1.57], rtol=1e-12)  # 0.9*1.3 + 0.1*4
    # inference neither uses nor changes the batch statistics
    y = bn.forward(x, training=False)
    np.testing.assert_allclose(bn.moving_mean.value, [0.38, 0.76], rtol=1e-12)
    np.testing.assert_allclose(y, (x - [0.38, 0.76]) / np.sqrt(np.array([1.0, 1.57]) + 1e-3), rtol=1e-12)


def test_batchnorm_moving_statistics_by_hand_conv_map():
    bn = built(BatchNormalization(momentum=0.5, dtype="float32"), (2, 1, 2))
    # channel 0 values over (batch, H, W): 0, 2, 4, 6 -> mean 3, var 5; channel 1: 1, 1, 1, 5 -> mean 2, var 3
    x = np.array([[[[0.0, 2.0]], [[1.0, 1.0]]], [[[4.0, 6.0]], [[1.0, 5.0]]]], dtype=np.float32)
    bn.forward(x, training=True)
    np.testing.assert_allclose(bn.moving_mean.value, [1.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.value, [3.0, 2.0], rtol=1e-6)
    assert bn.moving_mean.value.dtype == np.float32


def test_batchnorm_training_and_inference_differ():
    rs = np.random.default_rng(1)
    bn = built(BatchNormalization(dtype="float64"), (3, 2, 2))
    set_affine(bn, rs)
    bn.moving_mean.value[...] = [0.5, -1.0, 2.0]
    bn.moving_variance.value[...] = [2.0, 0.5, 1.5]
    x = rs.normal(size=(4, 3, 2, 2))
    before = [p.value.copy() for p in bn.params]
    y_inf = bn.forward(x)   # inference is the default
    for p, b in zip(bn.params, before):
        np.testing.assert_array_equal(p.value, b)
    g, b = bn.gamma.value.reshape(1, 3, 1, 1), bn.beta.value.reshape(1, 3, 1, 1)
    mm, mv = bn.moving_mean.value.reshape(1, 3, 1, 1), bn.moving_variance.value.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(y_inf, g * (x - mm) / np.sqrt(mv + 1e-3) + b, rtol=1e-12)
    y_train = bn.forward(x, training=True)
    np.testing.assert_allclose(y_train, naive_batchnorm(x, bn.gamma.value, bn.beta.value, 1e-3), rtol=1e-10)
    assert np.abs(y_train - y_inf).max() > 0.1
    assert not np.allclose(bn.moving_mean.value, [0.5, -1.0, 2.0])


def test_batchnorm_converges_to_data_statistics_and_inference_then_matches_training():
    rs = np.random.default_rng(2)
    bn = built(BatchNormalization(momentum=0.9, dtype="float64"), (2,))
    x = rs.normal([3.0, -2.0], [2.0, 0.5], (512, 2))
    for _ in range(200):
        bn.forward(x, training=True)
    np.testing.assert_allclose(bn.moving_mean.value, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.value, x.var(0), rtol=1e-6)
    np.testing.assert_allclose(bn.forward(x), bn.forward(x, training=True), atol=1e-6)


def test_batchnorm_not_trainable_runs_in_inference_mode():
    bn = built(BatchNormalization(trainable=False, dtype="float64"), (3,))
    assert not any(p.trainable for p in bn.params)
    x = np.random.default_rng(3).normal(5.0, 2.0, (8, 3))
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), rtol=1e-12)
    np.testing.assert_array_equal(bn.moving_mean.value, 0)


def test_batchnorm_float32_end_to_end():
    bn = built(BatchNormalization(), (4, 3, 3))
    x = np.random.default_rng(4).normal(size=(2, 4, 3, 3)).astype(np.float32)
    for training in (True, False):
        y = bn.forward(x, training=training)
        dx = bn.backward(np.ones_like(y))
        assert y.dtype == dx.dtype == bn.gamma.grad.dtype == bn.beta.grad.dtype == np.float32
    assert bn.moving_mean.grad is None and bn.moving_variance.grad is None


def test_batchnorm_does_not_modify_its_input_or_grad():
    bn = built(BatchNormalization(dtype="float64"), (3,))
    x = np.random.default_rng(5).normal(size=(4, 3))
    g = np.random.default_rng(6).normal(size=(4, 3))
    x0, g0 = x.copy(), g.copy()
    bn.forward(x, training=True)
    bn.backward(g)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)


def test_batchnorm_input_gradient_is_zero_for_a_constant_upstream_gradient():
    # sum over a channel of a batch-normalized output does not depend on the input: dL/dx = 0
    bn = built(BatchNormalization(dtype="float64"), (3, 2, 2))
    bn.forward(np.random.default_rng(7).normal(size=(4, 3, 2, 2)), training=True)
    np.testing.assert_allclose(bn.backward(np.ones((4, 3, 2, 2))), 0.0, atol=1e-12)


def test_gradient_check_catches_a_backward_that_ignores_the_batch_statistics():
    class Naive(BatchNormalization):
        def backward(self, grad):
            super().backward(grad)
            return grad * self._inv * self.gamma.value.reshape(self._bshape)   # as if mean/var were constants

    with pytest.raises(testing.GradientCheckError, match="input"):
        testing.check_gradients(Naive(), inshape=(3, 2, 2), training=True)
    # the same shortcut is exact in inference mode
    testing.check_gradients(Naive(), inshape=(3, 2, 2), training=False)


def test_gradient_report_marks_moving_statistics_unchecked():
    report = testing.check_gradients(BatchNormalization(), inshape=(2, 3, 3), training=True)
    names = sorted(report)
    assert report["input"] < 1e-6
    assert [report[n] is None for n in names if "moving" in n] == [True, True]
    assert all(report[n] < 1e-6 for n in names if n.endswith(("gamma", "beta")))


def test_batchnorm_in_a_model_optimizer_leaves_moving_stats_to_the_layer():
    x = np.random.default_rng(8).normal(3.0, 2.0, (16, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(16) % 2]
    model = Model([BatchNormalization(inshape=4), layers.Dense(2, activation="softmax")]).assemble()
    bn = model.layers[0]
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(0.1))
    sess.train_on_batch(x, y)
    # Adam would move every param it touched by ~lr; the moving stats only took the batch's
    np.testing.assert_allclose(bn.moving_mean.value, 0.01 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.value, 0.99 + 0.01 * x.var(0), rtol=1e-5)
    assert np.abs(bn.gamma.value - 1).max() > 0.05   # gamma did train
    assert "Non-trainable params: 8" in model.summary()
    assert len(model.trainable_params) == 4


def test_batchnorm_save_load_round_trip_carries_moving_stats(tmp_path):
    rs = np.random.default_rng(9)
    model = Model([BatchNormalization(inshape=(3, 4, 4), momentum=0.8), layers.Flatten(),
                   layers.Dense(5), BatchNormalization(epsilon=1e-2, center=False)]).assemble()
    for _ in range(3):
        model.forward(rs.normal(1.0, 2.0, (6, 3, 4, 4)).astype(np.float32), training=True)
    bn = model.layers[0]
    assert not np.allclose(bn.moving_mean.value, 0)
    path = tmp_path / "bn.npz"
    model.save(path)
    loaded = Model.load(path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    lbn, last = loaded.layers[0], loaded.layers[-1]
    assert (lbn.momentum, last.epsilon, last.center) == (0.8, 1e-2, False)
    np.testing.assert_array_equal(lbn.moving_variance.value, bn.moving_variance.value)
    x = rs.normal(size=(4, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_batchnorm_config_round_trip():
    bn = BatchNormalization(axis=-1, momentum=0.9, epsilon=1e-5, center=False, gamma_initializer="he_normal",
                            gamma_regularizer="l2", name="bn")
    clone = BatchNormalization.from_config(bn.get_config())
    assert clone.get_config() == bn.get_config()
    assert (clone.axis, clone.momentum, clone.epsilon, clone.center, clone.scale) == (-1, 0.9, 1e-5, False, True)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"momentum": 1.0}, ValueError, r"momentum must be a finite number in \[0.0, 1.0\), got 1.0"),
    ({"momentum": "fast"}, TypeError, "momentum must be a finite number"),
    ({"epsilon": 0}, ValueError, "epsilon must be a finite number > 0.0, got 0"),
    ({"axis": 0}, ValueError, "axis=0 is the batch axis"),
    ({"axis": 1.5}, TypeError, "axis must be an int"),
    ({"gamma_initializer": "nope"}, ValueError, "nope"),
])
def test_batchnorm_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchNormalization(**kwargs)


def test_batchnorm_bad_input_names_the_layer():
    with pytest.raises(ValueError, match=r"'bn' \(BatchNormalization\): axis=3 is out of range for input "
                                         r"of shape \(batch, 4, 5\)"):
        Model([BatchNormalization(axis=3, name="bn", inshape=(4, 5))]).assemble()
    model = Model([layers.Dense(4, inshape=3), BatchNormalization(name="bn2")]).assemble()
    bn = model.layers[1]
    with pytest.raises(ValueError, match=r"'bn2' \(BatchNormalization\) expected input of shape \(batch, 4\), "
                                         r"got \(2, 3\)"):
        bn.forward(np.zeros((2, 3), np.float32))
    conv = built(BatchNormalization(name="bn3"), (3, 8, 8))
    with pytest.raises(ValueError, match=r"'bn3' .* expected input of shape \(batch, 3, 8, 8\), got \(2, 4, 8, 8\)"):
        conv.forward(np.zeros((2, 4, 8, 8), np.float32), training=True)
    with pytest.raises(ValueError, match=r"'bn3' .* got \(3, 8, 8\)"):
        conv.forward(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(RuntimeError, match="not built"):
        BatchNormalization().forward(np.zeros((2, 3)))


# ---------------------------------------------------------------------------- LayerNormalization
@pytest.mark.parametrize("inshape", [(6,), (3, 5), (2, 2, 4)])
def test_layernorm_forward_matches_naive(inshape):
    rs = np.random.default_rng(10)
    ln = built(LayerNormalization(dtype="float64"), inshape)
    set_affine(ln, rs)
    x = rs.normal(1.0, 4.0, (3,) + inshape)
    want = naive_layernorm(x, ln.gamma.value, ln.beta.value, 1e-3)
    np.testing.assert_allclose(ln.forward(x), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ln.forward(x, training=True), want, rtol=1e-10, atol=1e-12)


def test_layernorm_over_several_axes_is_per_sample():
    rs = np.random.default_rng(11)
    ln = built(LayerNormalization(axis=(1, 2), epsilon=1e-9, dtype="float64"), (3, 4))
    assert ln.gamma.shape == (3, 4)
    x = rs.normal(size=(5, 3, 4)) * np.arange(1, 6).reshape(5, 1, 1)
    y = ln.forward(x)
    for i in range(5):   # each sample: mean 0, variance 1 over all its 12 values
        assert abs(y[i].mean()) < 1e-9 and abs(y[i].var() - 1) < 1e-6


def test_layernorm_has_no_state_and_float32():
    ln = built(LayerNormalization(), (4, 6))
    assert [p.name.split("/")[1] for p in ln.params] == ["gamma", "beta"] and ln.gamma.shape == (6,)
    x = np.random.default_rng(12).normal(size=(2, 4, 6)).astype(np.float32)
    y = ln.forward(x, training=True)
    dx = ln.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == ln.gamma.grad.dtype == np.float32
    np.testing.assert_allclose(dx, 0.0, atol=1e-5)   # sum of a normalized row is constant


def test_layernorm_errors_and_config():
    with pytest.raises(ValueError, match="axis=0 is the batch axis"):
        LayerNormalization(axis=(0, 1))
    with pytest.raises(ValueError, match="at least one axis"):
        LayerNormalization(axis=())
    with pytest.raises(ValueError, match=r"'ln' \(LayerNormalization\): axis=\(1, -1\) names the same axis twice"):
        built(LayerNormalization(axis=(1, -1), name="ln"), (4,))
    with pytest.raises(ValueError, match=r"'ln2' \(LayerNormalization\): axis=-3 is out of range"):
        built(LayerNormalization(axis=-3, name="ln2"), (4,))
    ln = LayerNormalization(axis=[1, 2], epsilon=1e-5, scale=False)
    clone = LayerNormalization.from_config(ln.get_config())
    assert (clone.axis, clone.epsilon, clone.scale) == ((1, 2), 1e-5, False)


# ---------------------------------------------------------------------------- in training
def test_conv_net_with_batchnorm_learns_badly_scaled_data_and_infers_with_moving_stats():
    # class 1 images are brighter in channel 0; the whole input sits at a huge offset and scale,
    # which BatchNormalization removes per channel
    rs = np.random.default_rng(13)
    n = 256
    labels = rs.integers(0, 2, n)
    x = rs.normal(size=(n, 2, 6, 6)).astype(np.float32)
    x[:, 0] += 1.5 * labels[:, None, None]
    x = 1000.0 + 300.0 * x
    y = np.eye(2, dtype=np.float32)[labels]
    model = Model([layers.Conv2D(4, 3, inshape=(2, 6, 6)), BatchNormalization(momentum=0.9),
                   layers.Activation("relu"), layers.GlobalAveragePooling2D(),
                   layers.Dense(2, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(0.05), metrics=["accuracy"])
    sess.fit((x[:192], y[:192]), epochs=15, batch_size=32, verbose=0)
    bn = model.layers[1]
    assert np.all(np.abs(bn.moving_mean.value) > 10)   # it tracked the offset of the conv outputs
    test = sess.evaluate((x[192:], y[192:]))   # inference mode: the moving statistics
    assert test["accuracy"] >= 0.9, test


@pytest.mark.parametrize("make, inshape", [(lambda: BatchNormalization(), (3, 4, 4)),
                                           (lambda: BatchNormalization(scale=False, center=False), (5,)),
                                           (lambda: LayerNormalization(), (4, 6)),
                                           (lambda: LayerNormalization(axis=1, scale=False), (4, 6))])
def test_outputs_and_input_gradients_are_never_reused_buffers(make, inshape):
    # the layers reuse internal scratch arrays between steps; what they hand out must stay put
    layer = built(make(), inshape)
    rs = np.random.default_rng(14)
    x1, x2 = (rs.normal(size=(3,) + inshape).astype(np.float32) for _ in range(2))
    y1 = layer.forward(x1, training=True)
    d1 = layer.backward(np.ones_like(y1) + x1)
    y1c, d1c = y1.copy(), d1.copy()
    y2 = layer.forward(x2, training=True)
    d2 = layer.backward(np.ones_like(y2) - x2)
    np.testing.assert_array_equal(y1, y1c)
    np.testing.assert_array_equal(d1, d1c)
    assert not np.shares_memory(y1, y2) and not np.shares_memory(d1, d2)


# ---------------------------------------------------------------------------- fast paths
# LayerNormalization runs over its (rows, features) view a block of rows at a time; with a tiny
# block size every configuration goes through several blocks, the last one short.
@pytest.mark.parametrize("kwargs, inshape", [({}, (5, 4)), ({"axis": 1, "center": False}, (4, 3)),
                                             ({"scale": False}, (5, 4)), ({"axis": (1, 2)}, (2, 3, 2))])
def test_layernorm_in_blocks_of_rows_matches_naive_and_passes_the_gradient_check(monkeypatch, kwargs, inshape):
    from cutedl.layers import normalization
    monkeypatch.setattr(normalization, "_BLOCK_VALUES", 9)   # 2 rows of 4 features per block, 3 of 3...
    rs = np.random.default_rng(20)
    ln = built(LayerNormalization(dtype="float64", **kwargs), inshape)
    if ln.gamma is not None:
        ln.gamma.value[...] = rs.uniform(0.5, 2.0, ln.gamma.shape)
    if ln.beta is not None:
        ln.beta.value[...] = rs.normal(size=ln.beta.shape)
    x = rs.normal(2.0, 3.0, (3,) + inshape)
    axes = ln._perm[-len(ln.axis):]
    xr = np.moveaxis(x, axes, range(x.ndim - len(axes), x.ndim))   # normalized axes last
    flat = xr.reshape(-1, int(np.prod([x.shape[a] for a in axes])))
    gamma = ln.gamma.value.reshape(-1) if ln.gamma is not None else np.ones(flat.shape[1])
    beta = ln.beta.value.reshape(-1) if ln.beta is not None else np.zeros(flat.shape[1])
    want = naive_layernorm(flat, gamma, beta, 1e-3).reshape(xr.shape)
    np.testing.assert_allclose(ln.forward(x, training=True), np.moveaxis(want, range(x.ndim - len(axes), x.ndim), axes),
                               rtol=1e-10, atol=1e-12)
    report = testing.check_gradients(ln, x=x, training=True)
    assert report["input"] < 1e-6 and all(v < 1e-6 for v in report.values())


def test_layernorm_skip_input_grad_still_sets_gamma_and_beta_grads():
    rs = np.random.default_rng(21)
    ln, ref = (built(LayerNormalization(dtype="float64"), (3, 4)) for _ in range(2))
    ln.skip_input_grad = True
    x, g = rs.normal(size=(2, 3, 4)), rs.normal(size=(2, 3, 4))
    for layer in (ln, ref):
        layer.gamma.value[...] = np.arange(1.0, 5.0)
        layer.forward(x, training=True)
    assert ln.backward(g) is None
    ref.backward(g)
    np.testing.assert_allclose(ln.gamma.grad, ref.gamma.grad, rtol=1e-12)
    np.testing.assert_allclose(ln.beta.grad, ref.beta.grad, rtol=1e-12)
    assert np.abs(ln.gamma.grad).max() > 0.1


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 2e-4)])
@pytest.mark.parametrize("kind, shape", [("layer", (4, 70, 33)), ("layer", (2, 300, 512)),   # 3 row blocks
                                         ("batch", (40, 96)), ("batch", (6, 5, 7, 9))])
def test_normalization_matches_pytorch(dtype, tol, kind, shape):
    torch = pytest.importorskip("torch")
    rs = np.random.default_rng(22)
    x = (rs.normal(size=shape) * 3 + 5).astype(dtype)   # an offset: the variance must be of centered values
    g = rs.normal(size=shape).astype(dtype)
    feats = shape[-1] if kind == "layer" else shape[1]
    gamma, beta = rs.uniform(0.5, 2.0, feats).astype(dtype), rs.normal(size=feats).astype(dtype)
    ours = built(LayerNormalization(dtype=dtype) if kind == "layer" else BatchNormalization(dtype=dtype), shape[1:])
    ours.gamma.value[...], ours.beta.value[...] = gamma, beta
    if kind == "layer":
        theirs = torch.nn.LayerNorm(feats, eps=1e-3)
    else:
        theirs = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(feats, eps=1e-3, momentum=0.01)
    theirs = theirs.to(getattr(torch, dtype)).train()
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(gamma))
        theirs.bias.copy_(torch.from_numpy(beta))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = theirs(xt)
    yt.backward(torch.from_numpy(g))
    y = ours.forward(x, training=True)
    dx = ours.backward(g)
    assert y.dtype == dx.dtype == ours.gamma.grad.dtype == np.dtype(dtype)
    for mine, want in ((y, yt), (dx, xt.grad), (ours.gamma.grad, theirs.weight.grad), (ours.beta.grad, theirs.bias.grad)):
        want = want.detach().numpy()
        np.testing.assert_allclose(mine, want, rtol=tol, atol=tol * np.abs(want).max())
    if kind == "batch":   # torch keeps the unbiased running variance; ours is biased (Keras)
        n = x.size // feats
        np.testing.assert_allclose(ours.moving_mean.value, theirs.running_mean.numpy(), rtol=tol)
        np.testing.assert_allclose(ours.moving_variance.value,
                                   0.99 + (theirs.running_var.numpy() - 0.99) * (n - 1) / n, rtol=tol)
