"""Convolution layers: forward values against naive loops, geometry, summary, save/load, errors.

Gradients are checked in tests/test_gradients.py (CONV_CASES).
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import cutedl
from cutedl import Model, layers, testing
from cutedl.layers import _spatial

RS = np.random.default_rng(0)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_cnn.py"


def built(layer, inshape):
    layer._build(inshape)
    return layer


def randomize(layer, seed=1):
    rs = np.random.default_rng(seed)
    for p in layer.params:
        p.value[...] = rs.standard_normal(p.shape)
    return layer


# ---------------------------------------------------------------------------- naive references
def naive_pad(x, pads):
    """Zero-pad the last two axes of (n, c, h, w) by ((top, bottom), (left, right)), with loops."""
    (t, b), (l, r) = pads
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + t + b, w + l + r))
    for a in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    out[a, ch, t + i, l + j] = x[a, ch, i, j]
    return out


def naive_conv2d(x, w, b, strides, dilation, pads):
    xp_ = naive_pad(x, pads)
    n, c, hp, wp = xp_.shape
    f, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    oh = (hp - (kh - 1) * dh - 1) // sh + 1
    ow = (wp - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, f, oh, ow))
    for a in range(n):
        for o in range(f):
            for i in range(oh):
                for j in range(ow):
                    s = 0.0 if b is None else float(b[o])
                    for ch in range(c):
                        for u in range(kh):
                            for v in range(kw):
                                s += float(xp_[a, ch, i * sh + u * dh, j * sw + v * dw]) * float(w[o, ch, u, v])
                    out[a, o, i, j] = s
    return out


def naive_conv2d_transpose(x, w, b, strides, dilation, start, out_hw):
    """Scatter every input pixel times the kernel into a big canvas, then crop ``out_hw`` from ``start``."""
    n, c, h, wd = x.shape
    _, f, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    canvas = np.zeros((n, f, (h - 1) * sh + (kh - 1) * dh + 1 + 10, (wd - 1) * sw + (kw - 1) * dw + 1 + 10))
    for a in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(wd):
                    for o in range(f):
                        for u in range(kh):
                            for v in range(kw):
                                canvas[a, o, i * sh + u * dh, j * sw + v * dw] += x[a, ch, i, j] * w[ch, o, u, v]
    (s0, s1), (oh, ow) = start, out_hw
    out = canvas[:, :, s0:s0 + oh, s1:s1 + ow].copy()
    if b is not None:
        out += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return out


# ---------------------------------------------------------------------------- Conv2D forward
# (kernel, strides, padding, dilation, inshape, pads worked out by hand from the TF rule:
#  out = ceil(in / s), total = max((out - 1) * s + span - in, 0), before = total // 2)
CONV2D_GEOMETRY = [
    ((3, 3), (1, 1), "valid", (1, 1), (2, 5, 6), ((0, 0), (0, 0))),
    ((3, 3), (1, 1), "same", (1, 1), (2, 5, 6), ((1, 1), (1, 1))),
    ((4, 4), (1, 1), "same", (1, 1), (1, 5, 5), ((1, 2), (1, 2))),       # even kernel: extra after
    ((3, 3), (2, 2), "same", (1, 1), (1, 7, 6), ((1, 1), (0, 1))),       # 7 -> 4: total 2; 6 -> 3: total 1
    ((2, 2), (2, 2), "same", (1, 1), (1, 5, 4), ((0, 1), (0, 0))),
    ((3, 2), (2, 3), "valid", (1, 1), (2, 7, 8), ((0, 0), (0, 0))),
    ((3, 3), (1, 1), "same", (2, 2), (2, 6, 7), ((2, 2), (2, 2))),       # dilated span 5
    ((2, 3), (1, 1), "valid", (2, 1), (1, 5, 5), ((0, 0), (0, 0))),
    ((3, 3), (1, 2), 1, (1, 1), (2, 4, 5), ((1, 1), (1, 1))),
    ((3, 3), (1, 1), ((2, 0), (0, 1)), (1, 1), (1, 4, 4), ((2, 0), (0, 1))),
    # strides and dilation together
    ((3, 3), (2, 2), "valid", (2, 2), (2, 9, 10), ((0, 0), (0, 0))),     # span 5: 9 -> 3, 10 -> 3
    ((3, 2), (2, 3), "same", (2, 3), (1, 7, 8), ((2, 2), (1, 2))),       # 7 -> 4: total 4; 8 -> 3: total 3
    ((2, 3), (3, 2), ((1, 0), (2, 1)), (2, 2), (2, 8, 7), ((1, 0), (2, 1))),
]


@pytest.mark.parametrize("kernel,strides,padding,dilation,inshape,pads", CONV2D_GEOMETRY)
@pytest.mark.parametrize("batch", [1, 2])
def test_conv2d_forward_matches_naive_loops(kernel, strides, padding, dilation, inshape, pads, batch):
    conv = randomize(built(layers.Conv2D(3, kernel, strides=strides, padding=padding, dilation_rate=dilation),
                           inshape))
    x = RS.standard_normal((batch,) + inshape).astype(np.float32)
    y = conv.forward(x)
    ref = naive_conv2d(x, conv.weight.value, conv.bias.value, strides, dilation, pads)
    assert y.shape == ref.shape and conv.outshape == ref.shape[1:]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_conv2d_same_output_is_ceil_of_input_over_stride():
    for size in range(3, 12):
        for stride in (1, 2, 3):
            for k in (1, 2, 3, 4, 5):
                conv = built(layers.Conv2D(1, k, strides=stride, padding="same"), (1, size, size + 1))
                assert conv.outshape == (1, -(-size // stride), -(-(size + 1) // stride))


def test_conv2d_activation_and_no_bias():
    conv = randomize(built(layers.Conv2D(2, 3, activation="relu", use_bias=False), (2, 4, 4)))
    assert [p.name.split("/")[1] for p in conv.params] == ["weight"]
    x = RS.standard_normal((2, 2, 4, 4)).astype(np.float32)
    ref = np.maximum(naive_conv2d(x, conv.weight.value, None, (1, 1), (1, 1), ((0, 0), (0, 0))), 0)
    np.testing.assert_allclose(conv.forward(x), ref, rtol=1e-4, atol=1e-5)


def test_conv2d_softmax_runs_over_the_last_public_axis():
    conv = randomize(built(layers.Conv2D(2, 1, activation="softmax"), (2, 3, 4)))
    y = conv.forward(RS.standard_normal((2, 2, 3, 4)).astype(np.float32))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


def test_conv2d_param_names_shapes_and_initializer_fans():
    conv = layers.Conv2D(8, (3, 5), name="conv2d_7", kernel_initializer="he_normal")
    conv._build((4, 9, 9))
    assert [p.name for p in conv.params] == ["conv2d_7/weight", "conv2d_7/bias"]
    assert conv.weight.shape == (8, 4, 3, 5) and conv.bias.shape == (8,)
    assert conv.count_params() == 8 * 4 * 15 + 8
    # he_normal: std sqrt(2 / fan_in), fan_in = in_channels * kh * kw = 60
    assert abs(conv.weight.value.std() - np.sqrt(2 / 60)) < 0.03
    assert layers.registry.lookup("Convolution2D") is layers.Conv2D


def test_default_names_follow_keras():
    model = Model([layers.Conv2D(2, 3, inshape=(1, 6, 6)), layers.MaxPool2D(), layers.Conv2DTranspose(1, 2),
                   layers.GlobalAveragePooling2D()]).assemble()
    assert [l.name for l in model.layers] == ["conv2d_1", "max_pool2d_1", "conv2d_transpose_1",
                                              "global_average_pooling2d_1"]


def test_conv2d_does_not_modify_input_or_grad_and_keeps_float32():
    conv = built(layers.Conv2D(3, 3, padding="same", activation="relu"), (2, 5, 5))
    x = RS.standard_normal((2, 2, 5, 5)).astype(np.float32)
    x0 = x.copy()
    y = conv.forward(x, training=True)
    g = RS.standard_normal(y.shape).astype(np.float32)
    g0 = g.copy()
    dx = conv.backward(g)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert conv.weight.grad.dtype == np.float32 and conv.bias.grad.dtype == np.float32


def test_conv2d_backward_twice_gives_the_same_gradients():
    # the im2col buffers are reused between calls; a second step must not see stale data
    conv = randomize(built(layers.Conv2D(3, 3, strides=2, padding="same"), (2, 7, 7)))
    x = RS.standard_normal((3, 2, 7, 7)).astype(np.float32)
    g = RS.standard_normal((3, 3, 4, 4)).astype(np.float32)
    conv.forward(x, training=True)
    dx1, dw1 = conv.backward(g).copy(), conv.weight.grad.copy()
    conv.forward(RS.standard_normal((5, 2, 7, 7)).astype(np.float32), training=True)
    conv.backward(RS.standard_normal((5, 3, 4, 4)).astype(np.float32))
    conv.forward(x, training=True)
    np.testing.assert_allclose(conv.backward(g), dx1, rtol=1e-6)
    np.testing.assert_allclose(conv.weight.grad, dw1, rtol=1e-6)


def test_reused_im2col_buffer_keeps_its_zero_padding():
    # a second forward of the same geometry skips re-zeroing the padding cells of the buffer
    conv = randomize(built(layers.Conv2D(2, 3, strides=2, padding="same"), (2, 6, 5)))
    fresh = randomize(built(layers.Conv2D(2, 3, strides=2, padding="same"), (2, 6, 5)))
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((2, 2, 6, 5)).astype(np.float32) + 5.0
        np.testing.assert_array_equal(conv.forward(x), fresh.forward(x))
        fresh._cols_buf = _spatial.Scratch()
        ref = naive_conv2d(x, conv.weight.value, conv.bias.value, (2, 2), (1, 1), ((0, 1), (1, 1)))
        np.testing.assert_allclose(conv.forward(x), ref, rtol=1e-4, atol=1e-4)


def test_conv2d_skip_input_grad_returns_none_but_sets_param_grads():
    conv = built(layers.Conv2D(2, 3), (1, 5, 5))
    conv.skip_input_grad = True
    y = conv.forward(RS.standard_normal((2, 1, 5, 5)).astype(np.float32), training=True)
    assert conv.backward(np.ones_like(y)) is None
    assert conv.weight.grad is not None and conv.bias.grad is not None


def test_big_inference_batch_is_chunked_with_the_same_result(monkeypatch):
    conv = randomize(built(layers.Conv2D(4, 3, padding="same", activation="relu"), (2, 6, 6)))
    x = RS.standard_normal((7, 2, 6, 6)).astype(np.float32)
    whole = conv.forward(x).copy()
    monkeypatch.setattr(_spatial, "INFERENCE_CHUNK_ELEMENTS", 2 * 18 * 36)  # two samples per chunk
    chunked = conv.forward(x)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)
    with pytest.raises(RuntimeError, match="chunked inference forward"):
        conv.backward(np.ones_like(chunked))
    conv.forward(x, training=True)  # training forwards are never chunked
    assert conv.backward(np.ones_like(chunked)).shape == x.shape


# ---------------------------------------------------------------------------- Conv1D
@pytest.mark.parametrize("kernel,strides,padding,dilation,length,pads", [
    (3, 1, "valid", 1, 7, (0, 0)),
    (3, 2, "same", 1, 7, (1, 1)),
    (4, 1, "same", 1, 6, (1, 2)),
    (3, 1, "causal", 2, 6, (4, 0)),
    (2, 3, (1, 2), 1, 5, (1, 2)),
])
def test_conv1d_matches_naive_loops(kernel, strides, padding, dilation, length, pads):
    conv = randomize(built(layers.Conv1D(3, kernel, strides=strides, padding=padding, dilation_rate=dilation),
                           (2, length)))
    assert conv.weight.shape == (3, 2, kernel)
    x = RS.standard_normal((2, 2, length)).astype(np.float32)
    y = conv.forward(x)
    ref = naive_conv2d(x[:, :, None, :], conv.weight.value[:, :, None, :], conv.bias.value, (1, strides),
                       (1, dilation), ((0, 0), pads))[:, :, 0, :]
    assert y.shape == ref.shape and conv.outshape == ref.shape[1:]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_conv1d_causal_output_never_sees_the_future():
    conv = randomize(built(layers.Conv1D(1, 3, padding="causal"), (1, 8)))
    x = RS.standard_normal((1, 1, 8)).astype(np.float32)
    y0 = conv.forward(x).copy()
    x[..., 5:] += 10.0
    y1 = conv.forward(x)
    np.testing.assert_array_equal(y0[..., :5], y1[..., :5])
    assert not np.allclose(y0[..., 5:], y1[..., 5:])


# ---------------------------------------------------------------------------- Conv2DTranspose
# (kernel, strides, padding, output_padding, dilation, in_hw, expected out_hw, crop start)
TRANSPOSE_GEOMETRY = [
    (3, 2, "same", None, 1, (3, 4), (6, 8), (0, 0)),            # Keras: in * stride
    (3, 2, "valid", None, 1, (3, 4), (7, 9), (0, 0)),           # in * stride + max(k - stride, 0)
    (2, 3, "valid", None, 1, (2, 2), (6, 6), (0, 0)),           # k < stride: zero tail
    (4, 2, "same", None, 1, (3, 3), (6, 6), (1, 1)),
    (3, 2, "same", 1, 1, (3, 3), (6, 6), (1, 1)),               # Keras: pad = k // 2
    (3, 2, 1, 1, 1, (3, 3), (6, 6), (1, 1)),                    # PyTorch padding=1, output_padding=1
    (3, 1, 1, None, 1, (4, 5), (4, 5), (1, 1)),
    (3, 1, "same", None, 2, (3, 4), (3, 4), (2, 2)),            # dilated span 5
    ((2, 3), (2, 1), "valid", None, 1, (3, 2), (6, 4), (0, 0)),
]


@pytest.mark.parametrize("kernel,strides,padding,op,dilation,in_hw,out_hw,start", TRANSPOSE_GEOMETRY)
def test_conv2d_transpose_matches_naive_scatter(kernel, strides, padding, op, dilation, in_hw, out_hw, start):
    layer = randomize(built(layers.Conv2DTranspose(2, kernel, strides=strides, padding=padding, output_padding=op,
                                                   dilation_rate=dilation), (3,) + in_hw))
    assert layer.outshape == (2,) + out_hw
    assert layer.weight.shape[:2] == (3, 2)
    x = RS.standard_normal((2, 3) + in_hw).astype(np.float32)
    y = layer.forward(x)
    s = strides if isinstance(strides, tuple) else (strides, strides)
    ref = naive_conv2d_transpose(x, layer.weight.value, layer.bias.value, s, (dilation, dilation), start, out_hw)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_conv2d_transpose_is_the_adjoint_of_conv2d():
    # <conv(x), y> == <x, conv_transpose(y)> with the same kernel and no bias
    conv = randomize(built(layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False, dtype="float64"),
                           (3, 8, 8)))
    tconv = built(layers.Conv2DTranspose(3, 3, strides=2, padding="same", use_bias=False, dtype="float64"),
                  (4, 4, 4))
    # Conv2D kernel (F=4, C=3, ...) is Conv2DTranspose's (in=4, filters=3, ...) as is
    tconv.weight.value[...] = conv.weight.value
    x = RS.standard_normal((2, 3, 8, 8))
    y = RS.standard_normal((2, 4, 4, 4))
    assert tconv.outshape == (3, 8, 8)
    np.testing.assert_allclose(np.sum(conv.forward(x) * y), np.sum(x * tconv.forward(y)), rtol=1e-10)


# ---------------------------------------------------------------------------- padding / upsampling
def test_zero_padding2d_values_and_forms():
    x = RS.standard_normal((2, 3, 2, 4)).astype(np.float32)
    for padding, pads in [(1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))), (((0, 1), (3, 2)), ((0, 1), (3, 2)))]:
        layer = built(layers.ZeroPadding2D(padding), (3, 2, 4))
        y = layer.forward(x)
        np.testing.assert_array_equal(y, naive_pad(x, pads))
        assert layer.outshape == y.shape[1:]
        np.testing.assert_array_equal(layer.backward(y), x)


def test_upsampling2d_repeats_rows_and_columns():
    x = RS.standard_normal((1, 2, 2, 3)).astype(np.float32)
    layer = built(layers.UpSampling2D((2, 3)), (2, 2, 3))
    y = layer.forward(x)
    assert y.shape == (1, 2, 4, 9) and layer.outshape == (2, 4, 9)
    for i in range(4):
        for j in range(9):
            np.testing.assert_array_equal(y[:, :, i, j], x[:, :, i // 2, j // 3])
    with pytest.raises(ValueError, match="only interpolation='nearest'"):
        layers.UpSampling2D(2, interpolation="bilinear")


# ---------------------------------------------------------------------------- models
def test_summary_shapes_and_param_counts():
    # the network of examples/mnist_cnn.py
    spec = importlib.util.spec_from_file_location("mnist_cnn_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    text = example.build_model().summary()
    for shape, params in [("(batch, 32, 28, 28)", "832"), ("(batch, 32, 14, 14)", "0"),
                          ("(batch, 64, 14, 14)", "51,264"), ("(batch, 64, 7, 7)", "0"),
                          ("(batch, 3136)", "0"), ("(batch, 1024)", "3,212,288")]:
        assert any(shape in line and line.rstrip().endswith(params) for line in text.splitlines()), (shape, text)
    assert "Total params: 3,274,634" in text


def test_save_load_round_trip_of_every_conv_layer(tmp_path):
    cutedl.set_seed(3)
    model = Model([layers.ZeroPadding2D(((1, 0), (0, 1)), inshape=(2, 7, 7)),
                   layers.Conv2D(3, (3, 2), strides=(2, 1), padding="same", activation="tanh",
                                 kernel_regularizer="l2"),
                   layers.Conv2DTranspose(2, 3, strides=2, padding=1, output_padding=1, activation="relu"),
                   layers.UpSampling2D(2),
                   layers.AvgPool2D(3, strides=2, padding="same"),
                   layers.MaxPool2D(2, padding="same"),
                   layers.Conv2D(2, 3, dilation_rate=2, padding=((2, 2), (1, 3)), use_bias=False),
                   layers.GlobalMaxPooling2D(keepdims=True),
                   layers.Reshape((2, 1)),
                   layers.Conv1D(3, 2, padding="causal"),
                   layers.MaxPool1D(1),
                   layers.AvgPool1D(1),
                   layers.Flatten()]).assemble()
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = Model.load(path)
    assert loaded.get_config() == model.get_config()
    x = RS.standard_normal((3, 2, 7, 7)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_training_step_reduces_loss_on_a_tiny_problem():
    cutedl.set_seed(0)
    rs = np.random.default_rng(0)
    x = rs.standard_normal((32, 1, 6, 6)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 0, :3].sum(axis=(1, 2)) > 0).astype(int)]
    model = Model([layers.Conv2D(4, 3, padding="same", activation="relu", inshape=(1, 6, 6)),
                   layers.MaxPool2D(2), layers.Flatten(), layers.Dense(2, activation="softmax")]).assemble()
    sess = cutedl.Session(model, "categorical_crossentropy", cutedl.optimizers.Adam(0.01))
    first = sess.train_on_batch(x, y)["loss"]
    for _ in range(30):
        last = sess.train_on_batch(x, y)["loss"]
    assert last < 0.5 * first


# ---------------------------------------------------------------------------- errors
def test_wrong_channel_count_names_layer_and_shapes():
    conv = built(layers.Conv2D(4, 3, name="conv2d_9"), (3, 8, 8))
    with pytest.raises(ValueError, match=r"'conv2d_9' \(Conv2D\) expected 3 input channels .*\(2, 1, 8, 8\)"):
        conv.forward(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"channels-last .* x.transpose\(0, 3, 1, 2\)"):
        conv.forward(np.zeros((2, 8, 8, 3), np.float32))


def test_non_4d_input_names_layer_and_shapes():
    conv = built(layers.Conv2D(4, 3, name="conv2d_8"), (1, 28, 28))
    with pytest.raises(ValueError, match=r"'conv2d_8' \(Conv2D\) expected a 4-D input .*\(1, 28, 28\).*\(64, 784\)"):
        conv.forward(np.zeros((64, 784), np.float32))
    with pytest.raises(ValueError, match=r"expected a 3-D input \(batch, channels, length\)"):
        built(layers.Conv1D(2, 3, name="c1"), (2, 9)).forward(np.zeros((1, 2, 3, 9), np.float32))


def test_non_image_inshape_hints_reshape():
    model = Model([layers.Conv2D(4, 3, inshape=784, name="conv2d_3")])
    with pytest.raises(ValueError, match=r"'conv2d_3' \(Conv2D\) expects inputs of shape \(batch, channels, "
                                         r"height, width\).*got inshape \(784,\). Reshape"):
        model.assemble()


@pytest.mark.parametrize("layer,inshape,match", [
    (layers.Conv2D(1, 5, name="conv2d_4"), (1, 4, 9),
     r"'conv2d_4' \(Conv2D\): input height 4 \(padded: 4\) is smaller than the kernel \(5\) with "
     r"padding='valid'; use padding='same'"),
    (layers.Conv2D(1, 3, dilation_rate=3, name="c"), (1, 9, 6), r"input width 6 .* smaller than the dilated kernel \(7\)"),
    (layers.Conv1D(1, 4, name="c1d"), (1, 3), r"'c1d' \(Conv1D\): input length 3"),
    (layers.MaxPool2D(3, name="pool"), (2, 2, 5), r"'pool' \(MaxPool2D\): input height 2"),
])
def test_input_smaller_than_kernel(layer, inshape, match):
    with pytest.raises(ValueError, match=match):
        layer._build(inshape)


def test_input_smaller_than_kernel_at_forward_with_unknown_size():
    conv = built(layers.Conv2D(2, 5, name="conv2d_5"), (1, None, None))
    assert conv.outshape == (2, None, None)
    assert conv.forward(np.zeros((1, 1, 6, 7), np.float32)).shape == (1, 2, 2, 3)
    with pytest.raises(ValueError, match=r"'conv2d_5' \(Conv2D\): input height 3"):
        conv.forward(np.zeros((1, 1, 3, 7), np.float32))


@pytest.mark.parametrize("kwargs,match", [
    ({"filters": 0, "kernel_size": 3}, "filters must be a positive integer"),
    ({"filters": 2, "kernel_size": (3, 0)}, r"kernel_size must be an int or a tuple of 2 ints, each >= 1"),
    ({"filters": 2, "kernel_size": (3, 3, 3)}, "kernel_size must be"),
    ({"filters": 2, "kernel_size": 3, "padding": "full"}, r"padding must be one of 'valid', 'same'"),
    ({"filters": 2, "kernel_size": 3, "padding": (1, -1)}, "padding must be"),
    ({"filters": 2, "kernel_size": 3, "activation": "nope"}, "relu"),
])
def test_conv2d_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.Conv2D(**kwargs)


def test_conv1d_and_transpose_bad_arguments():
    with pytest.raises(ValueError, match="'causal'"):
        layers.Conv2D(1, 3, padding="causal")
    layers.Conv1D(1, 3, padding="causal")
    with pytest.raises(ValueError, match="output_padding must be smaller than the stride"):
        layers.Conv2DTranspose(1, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="padding must be symmetric"):
        layers.Conv2DTranspose(1, 3, padding=((1, 0), (1, 1)))
    with pytest.raises(ValueError, match="not elementwise"):
        layers.Conv2DTranspose(1, 3, activation="softmax")
    t = built(layers.Conv2DTranspose(2, 3, name="ct"), (3, 4, 4))
    with pytest.raises(ValueError, match=r"'ct' \(Conv2DTranspose\) expected 3 input channels"):
        t.forward(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="empty output"):
        layers.Conv2DTranspose(1, 1, padding=1)._build((1, 1, 1))


def test_gradient_check_of_the_whole_small_cnn():
    # end to end through conv -> pool -> conv -> pool -> dense, in float64
    model = Model([layers.Conv2D(2, 3, padding="same", activation="tanh", inshape=(1, 6, 6), dtype="float64"),
                   layers.MaxPool2D(2, dtype="float64"),
                   layers.Conv2D(3, 2, strides=1, padding="same", dtype="float64"),
                   layers.AvgPool2D(2, padding="same", dtype="float64"),
                   layers.Flatten(dtype="float64"), layers.Dense(2, dtype="float64")]).assemble()
    x = RS.standard_normal((2, 1, 6, 6))
    r = RS.standard_normal((2, 2))

    def loss():
        return float(np.sum(model.forward(x) * r))

    model.forward(x, training=True)
    dx = model.backward(r, input_grad=True)
    np.testing.assert_allclose(dx, testing.numerical_gradient(loss, x), rtol=1e-5, atol=1e-8)
    w = model.layers[0].weight
    model.forward(x, training=True)
    model.backward(r)
    np.testing.assert_allclose(w.grad, testing.numerical_gradient(loss, w.value), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("strides,dilation,padding,inshape", [
    ((2, 2), (2, 2), "valid", (2, 9, 8)),
    ((2, 3), (3, 2), "same", (2, 8, 9)),
])
def test_strided_dilated_conv2d_gradients(strides, dilation, padding, inshape):
    """strides > 1 with dilation_rate > 1: the float64 gradient check (forward: vs the naive loop above)."""
    layer = layers.Conv2D(2, 3, strides=strides, dilation_rate=dilation, padding=padding, dtype="float64")
    testing.check_gradients(layer, inshape=inshape, batch_size=2, seed=3)


def test_no_grad_forward_keeps_nothing_and_matches():
    conv = randomize(built(layers.Conv2D(3, 3, padding="same", activation="relu"), (2, 5, 5)))
    x = RS.standard_normal((2, 2, 5, 5)).astype(np.float32)
    y = conv.forward(x, training=True).copy()
    with cutedl.layers.base.no_grad():
        y2 = conv.forward(x, training=True)
    np.testing.assert_array_equal(y2, y)
    assert conv._cols is None and conv._y is None
    with pytest.raises(RuntimeError, match=r"'conv2d_\d+' \(Conv2D\): backward called after a forward under no_grad"):
        conv.backward(np.ones_like(y))
