"""GroupNormalization and LocalResponseNormalization: values against direct loops of the definitions
and against PyTorch (float64, values and autograd gradients), no_grad, save/load, errors.

Gradient checks (central differences) of every configuration are in tests/test_gradients.py.
"""
import numpy as np
import pytest

from cutedl import Model, layers
from cutedl.layers import GroupNormalization, LocalResponseNormalization
from cutedl.layers.base import no_grad

torch = pytest.importorskip("torch")


def built(layer, inshape):
    layer._build(inshape)
    return layer


def tf_lrn_loop(x, depth_radius, bias, alpha, beta):
    """``tf.nn.lrn`` on the channels of (batch, C, ...), written as its documented definition, a channel at a time:
    sqr_sum[c] = sum(x[max(0, c - r) : c + r + 1] ** 2); out = x / (bias + alpha * sqr_sum) ** beta."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    channels = x.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - depth_radius), min(channels, c + depth_radius + 1)
        sqr_sum = sum(x[:, k] ** 2 for k in range(lo, hi))
        out[:, c] = x[:, c] / (bias + alpha * sqr_sum) ** beta
    return out


LRN_SETTINGS = [(5, 1.0, 1.0, 0.5), (4, 1.0, 0.001 / 9, 0.75), (2, 2.0, 0.3, 0.6), (0, 1.5, 0.5, 1.0),
                (9, 1.0, 0.2, 0.75)]   # radius 9 > the 7 channels


@pytest.mark.parametrize("depth_radius,bias,alpha,beta", LRN_SETTINGS)
def test_lrn_equals_the_tensorflow_definition(depth_radius, bias, alpha, beta):
    x = np.random.default_rng(0).normal(0, 2, (3, 7, 4, 5))
    layer = built(LocalResponseNormalization(depth_radius, bias, alpha, beta, dtype="float64"), (7, 4, 5))
    np.testing.assert_allclose(layer.forward(x), tf_lrn_loop(x, depth_radius, bias, alpha, beta), rtol=1e-13, atol=0)


@pytest.mark.parametrize("depth_radius,bias,alpha,beta", LRN_SETTINGS)
def test_lrn_equals_torch_with_alpha_times_size(depth_radius, bias, alpha, beta):
    """PyTorch divides alpha by the window size: torch's alpha = ours * (2r + 1); value and input gradient."""
    rs = np.random.default_rng(1)
    x = rs.normal(0, 2, (2, 7, 3, 4))
    g = rs.normal(0, 1, x.shape)
    size = 2 * depth_radius + 1
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha=alpha * size, beta=beta, k=bias)
    yt.backward(torch.tensor(g))
    layer = built(LocalResponseNormalization(depth_radius, bias, alpha, beta, dtype="float64"), (7, 3, 4))
    np.testing.assert_allclose(layer.forward(x), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_lrn_last_axis_and_conv_memory_layout():
    rs = np.random.default_rng(2)
    x = rs.normal(0, 1, (3, 4, 6))
    layer = built(LocalResponseNormalization(2, 1.0, 0.5, 0.75, axis=-1, dtype="float64"), (4, 6))
    want = np.moveaxis(tf_lrn_loop(np.moveaxis(x, -1, 1), 2, 1.0, 0.5, 0.75), 1, -1)
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-13)
    # a conv output is an NCHW view of CHWN memory: same values
    x4 = rs.normal(0, 1, (5, 3, 4, 2))   # (C, H, W, N)
    view = x4.transpose(3, 0, 1, 2)
    lrn = built(LocalResponseNormalization(1, 1.0, 0.5, 0.75, dtype="float64"), (5, 3, 4))
    np.testing.assert_allclose(lrn.forward(view), tf_lrn_loop(view, 1, 1.0, 0.5, 0.75), rtol=1e-13)


def naive_groupnorm(x, groups, gamma, beta, eps):
    """Per sample and group: mean and biased variance over the group's channels and every spatial value."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    per = x.shape[1] // groups
    for i in range(x.shape[0]):
        for g in range(groups):
            block = x[i, g * per:(g + 1) * per]
            values = block.ravel().tolist()
            mean = sum(values) / len(values)
            var = sum((v - mean) ** 2 for v in values) / len(values)
            out[i, g * per:(g + 1) * per] = (block - mean) / np.sqrt(var + eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return out * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("groups,inshape", [(2, (6, 3, 4)), (3, (6, 5)), (6, (6, 2, 2)), (1, (4, 3, 3))])
def test_groupnorm_equals_naive_and_torch(groups, inshape):
    rs = np.random.default_rng(3)
    x = rs.normal(1.0, 3.0, (4,) + inshape)
    g = rs.normal(0, 1, x.shape)
    layer = built(GroupNormalization(groups, epsilon=1e-5, dtype="float64"), inshape)
    gamma, beta = rs.uniform(0.5, 1.5, inshape[0]), rs.normal(0, 0.5, inshape[0])
    layer.gamma.value[...] = gamma
    layer.beta.value[...] = beta
    y = layer.forward(x)
    np.testing.assert_allclose(y, naive_groupnorm(x, groups, gamma, beta, 1e-5), rtol=1e-12, atol=1e-12)
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    yt = torch.nn.functional.group_norm(xt, groups, wt, bt, eps=1e-5)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(layer.gamma.grad, wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.beta.grad, bt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_groupnorm_last_axis_and_instance_norm():
    rs = np.random.default_rng(4)
    x = rs.normal(0, 2, (3, 5, 4))   # (batch, T, features), groups over the last axis
    layer = built(GroupNormalization(2, axis=-1, dtype="float64"), (5, 4))
    want = np.moveaxis(naive_groupnorm(np.moveaxis(x, -1, 1), 2, np.ones(4), np.zeros(4), 1e-3), 1, -1)
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-12, atol=1e-12)
    inst = built(GroupNormalization(-1, dtype="float64"), (3, 4, 4))
    x = rs.normal(0, 2, (2, 3, 4, 4))
    want = torch.nn.functional.instance_norm(torch.tensor(x), eps=1e-3).numpy()
    np.testing.assert_allclose(inst.forward(x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer,inshape", [(GroupNormalization(2), (4, 3, 3)),
                                           (LocalResponseNormalization(2), (4, 3, 3))])
def test_no_grad_keeps_nothing_and_backward_then_raises(layer, inshape):
    built(layer, inshape)
    x = np.random.default_rng(5).normal(0, 1, (2,) + inshape).astype(np.float32)
    y = layer.forward(x)
    with no_grad():
        np.testing.assert_array_equal(layer.forward(x), y)
    with pytest.raises(RuntimeError, match=r"no_grad\(\)"):
        layer.backward(np.ones_like(y))


def test_save_load_round_trip(tmp_path):
    model = Model([layers.Conv2D(8, 3, padding="same", inshape=(3, 6, 6)), GroupNormalization(4),
                   LocalResponseNormalization(4, bias=1.0, alpha=0.001 / 9, beta=0.75), layers.Flatten(),
                   layers.Dense(2)]).assemble()
    x = np.random.default_rng(6).normal(0, 1, (2, 3, 6, 6)).astype(np.float32)
    model.save(tmp_path / "m.npz")
    again = Model.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    cfg = again.layers[2].get_config()
    assert (cfg["depth_radius"], cfg["bias"], cfg["alpha"], cfg["beta"]) == (4, 1.0, 0.001 / 9, 0.75)
    assert again.layers[1].get_config()["groups"] == 4


def test_errors_name_the_layer_and_the_fix():
    with pytest.raises(ValueError, match=r"'gn' \(GroupNormalization\): groups=4 does not divide the 6 channels.*"
                                         r"nearest below is 3.*groups=-1"):
        built(GroupNormalization(4, name="gn"), (6, 2, 2))
    with pytest.raises(ValueError, match="groups must be a positive integer"):
        GroupNormalization(0)
    with pytest.raises(ValueError, match="axis=0 is the batch axis"):
        GroupNormalization(2, axis=0)
    with pytest.raises(ValueError, match="LocalResponseNormalization: bias must be"):
        LocalResponseNormalization(bias=0.0)
    with pytest.raises(ValueError, match="depth_radius must be an integer >= 0"):
        LocalResponseNormalization(depth_radius=-1)
    with pytest.raises(ValueError, match=r"'lrn' \(LocalResponseNormalization\): axis=3 is out of range"):
        built(LocalResponseNormalization(axis=3, name="lrn"), (4, 5))
