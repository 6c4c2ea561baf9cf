"""DepthwiseConv2D and SeparableConv2D against PyTorch in float64 (values, weight/bias/input gradients),
chunked inference, no_grad, save/load, errors.

Gradient checks (central differences) of every configuration are in tests/test_gradients.py.
"""
import numpy as np
import pytest

from cutedl import Model, layers
from cutedl.layers import DepthwiseConv2D, SeparableConv2D
from cutedl.layers import _spatial as sp
from cutedl.layers.base import no_grad

torch = pytest.importorskip("torch")
F = torch.nn.functional


def built(layer, inshape):
    layer._build(inshape)
    return layer


# (kwargs, torch padding (rows, cols) or 'same', inshape)
GEOMETRIES = [
    ({"kernel_size": 3}, 0, (3, 7, 6)),
    ({"kernel_size": 3, "padding": "same"}, "same", (4, 6, 6)),
    ({"kernel_size": (3, 2), "strides": 2, "padding": (1, 0)}, (1, 0), (2, 7, 8)),
    ({"kernel_size": 3, "dilation_rate": 2, "padding": 2, "depth_multiplier": 2}, 2, (3, 7, 7)),
    ({"kernel_size": 5, "strides": (2, 1), "depth_multiplier": 3, "padding": 2}, 2, (2, 9, 8)),
]


def _torch_depthwise(x, weight, bias, kwargs, padding):
    c = x.shape[1]
    return F.conv2d(x, weight, bias, stride=kwargs.get("strides", 1), padding=padding,
                    dilation=kwargs.get("dilation_rate", 1), groups=c)


@pytest.mark.parametrize("kwargs,padding,inshape", GEOMETRIES)
def test_depthwise_equals_torch_grouped_conv(kwargs, padding, inshape):
    rs = np.random.default_rng(0)
    layer = built(DepthwiseConv2D(**kwargs, activation="tanh", bias_initializer="random_normal", dtype="float64"),
                  inshape)
    x = rs.normal(0, 1, (3,) + inshape)
    y = layer.forward(x)
    g = rs.normal(0, 1, y.shape)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(layer.depthwise_weight.value, requires_grad=True)   # same layout: (C*M, 1, kh, kw)
    bt = torch.tensor(layer.bias.value, requires_grad=True)
    yt = torch.tanh(_torch_depthwise(xt, wt, bt, kwargs, padding))
    yt.backward(torch.tensor(g))
    assert y.shape == yt.shape and layer.outshape == tuple(yt.shape[1:])
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(layer.depthwise_weight.grad, wt.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, bt.grad.numpy(), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("kwargs,padding,inshape", GEOMETRIES)
def test_separable_equals_torch_depthwise_then_pointwise(kwargs, padding, inshape):
    rs = np.random.default_rng(1)
    layer = built(SeparableConv2D(5, **kwargs, activation="relu", bias_initializer="random_normal",
                                  dtype="float64"), inshape)
    x = rs.normal(0, 1, (2,) + inshape)
    y = layer.forward(x)
    g = rs.normal(0, 1, y.shape)
    xt = torch.tensor(x, requires_grad=True)
    dw = torch.tensor(layer.depthwise_weight.value, requires_grad=True)
    pw = torch.tensor(layer.pointwise_weight.value, requires_grad=True)   # (filters, C*M, 1, 1)
    bt = torch.tensor(layer.bias.value, requires_grad=True)
    yt = torch.relu(F.conv2d(_torch_depthwise(xt, dw, None, kwargs, padding), pw, bt))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-11, atol=1e-12)
    for param, want in ((layer.depthwise_weight, dw), (layer.pointwise_weight, pw), (layer.bias, bt)):
        np.testing.assert_allclose(param.grad, want.grad.numpy(), rtol=1e-11, atol=1e-12, err_msg=param.name)


def test_shapes_params_and_channel_order():
    layer = built(DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (4, 8, 8))
    assert layer.outshape == (8, 8, 8) and layer.count_params() == 8 * 9 + 8
    assert [p.name.split("/")[1] for p in layer.params] == ["depthwise_weight", "bias"]
    sep = built(SeparableConv2D(16, 3, strides=2, padding="same", use_bias=False), (4, 8, 8))
    assert sep.outshape == (16, 4, 4) and sep.count_params() == 4 * 9 + 16 * 4
    # output channel c * M + m reads input channel c only
    x = np.zeros((1, 4, 8, 8), np.float32)
    x[0, 2] = 1.0
    y = layer.forward(x)
    assert np.abs(y[0, [4, 5]]).sum() > 0 and np.abs(np.delete(y[0], [4, 5], axis=0)).sum() == 0


@pytest.mark.parametrize("cls,args", [(DepthwiseConv2D, (3,)), (SeparableConv2D, (4, 3))])
def test_chunked_inference_equals_one_batch(cls, args, monkeypatch):
    layer = built(cls(*args, padding="same", activation="relu", dtype="float64"), (3, 6, 6))
    x = np.random.default_rng(2).normal(0, 1, (7, 3, 6, 6))
    whole = layer.forward(x)
    monkeypatch.setattr(sp, "INFERENCE_CHUNK_ELEMENTS", 3 * 9 * 36 * 2)   # chunks of 2 samples
    with no_grad():
        np.testing.assert_allclose(layer.forward(x), whole, rtol=1e-14)
    with pytest.raises(RuntimeError, match=r"no_grad\(\)"):
        layer.backward(np.ones_like(whole))


def test_fit_and_save_load_round_trip(tmp_path):
    model = Model([DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu", inshape=(3, 8, 8)),
                   SeparableConv2D(6, 3, strides=2, depthwise_regularizer="l2", name="sep"),
                   layers.Flatten(), layers.Dense(2, activation="softmax")]).assemble()
    x = np.random.default_rng(3).normal(0, 1, (4, 3, 8, 8)).astype(np.float32)
    model.save(tmp_path / "m.npz")
    again = Model.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    cfg = again.layers[1].get_config()
    assert cfg["filters"] == 6 and cfg["strides"] == [2, 2] and cfg["depthwise_regularizer"] is not None


def test_errors_name_the_layer():
    with pytest.raises(ValueError, match="depth_multiplier must be a positive integer"):
        DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(ValueError, match=r"'dw' \(DepthwiseConv2D\) expects inputs of shape \(batch, channels, "
                                         r"height, width\)"):
        built(DepthwiseConv2D(3, name="dw"), (64,))
    layer = built(DepthwiseConv2D(3, name="dw2"), (3, 8, 8))
    with pytest.raises(ValueError, match=r"'dw2' \(DepthwiseConv2D\) expected 3 input channels.*transpose"):
        layer.forward(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="SeparableConv2D: filters must be a positive integer"):
        SeparableConv2D(0, 3)
