import numpy as np
import pytest

from cutedl import layers


def built(layer, inshape):
    layer._build(inshape)
    return layer


def test_dense_forward_matches_naive_loops():
    d = built(layers.Dense(3, activation="relu"), (4,))
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    y = d.forward(x)
    w, b = d.weight.value, d.bias.value
    ref = np.zeros((2, 3))
    for n in range(2):
        for j in range(3):
            ref[n, j] = max(0.0, sum(float(x[n, i]) * float(w[i, j]) for i in range(4)) + float(b[j]))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    assert y.dtype == np.float32


def test_dense_on_3d_input_applies_on_last_axis():
    d = built(layers.Dense(2), (5, 3))
    x = np.random.default_rng(1).standard_normal((4, 5, 3)).astype(np.float32)
    y = d.forward(x)
    assert y.shape == (4, 5, 2) and d.outshape == (5, 2)
    np.testing.assert_allclose(y[2, 3], x[2, 3] @ d.weight.value + d.bias.value, rtol=1e-5)


def test_dense_param_names_and_shapes():
    d = layers.Dense(7, name="dense_9")
    d._build((3,))
    assert [p.name for p in d.params] == ["dense_9/weight", "dense_9/bias"]
    assert d.weight.shape == (3, 7) and d.bias.shape == (7,)
    assert d.weight.dtype == np.float32 and d.count_params() == 28


def test_dense_wrong_input_width_message():
    d = built(layers.Dense(3, name="dense_2"), (400,))
    with pytest.raises(ValueError, match=r"'dense_2' \(Dense\) expected input of shape \(batch, 400\), got \(64, 784\)"):
        d.forward(np.zeros((64, 784), np.float32))


def test_dense_on_images_hints_flatten():
    d = built(layers.Dense(3, name="dense_1"), (784,))
    with pytest.raises(ValueError, match="Flatten"):
        d.forward(np.zeros((2, 28, 28), np.float32))


@pytest.mark.parametrize("units, err", [(0, ValueError), (-3, ValueError), (2.5, ValueError),
                                        ("10", TypeError), (True, TypeError)])
def test_dense_bad_units(units, err):
    with pytest.raises(err, match="units must be a positive integer"):
        layers.Dense(units)


def test_dense_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match="relu"):
        layers.Dense(3, activation="rleu")


def test_dropout_keras_semantics():
    d = built(layers.Dropout(0.25, seed=0), (1000,))
    x = np.ones((20, 1000), np.float32)
    y = d.forward(x, training=True)
    dropped = np.mean(y == 0)
    assert abs(dropped - 0.25) < 0.02
    np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)
    assert y.dtype == np.float32
    g = d.backward(np.ones_like(x))
    np.testing.assert_array_equal(g, y)  # same mask and scale
    np.testing.assert_array_equal(d.forward(x, training=False), x)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_bad_rate(rate):
    with pytest.raises(ValueError, match="fraction dropped"):
        layers.Dropout(rate)


def test_flatten_and_reshape():
    f = built(layers.Flatten(), (2, 3, 4))
    x = np.arange(48, dtype=np.float32).reshape(2, 2, 3, 4)
    assert f.forward(x).shape == (2, 24) and f.outshape == (24,)
    assert f.backward(np.ones((2, 24), np.float32)).shape == (2, 2, 3, 4)
    r = built(layers.Reshape((1, 28, -1)), (784,))
    assert r.outshape == (1, 28, 28)
    with pytest.raises(ValueError, match="cannot reshape"):
        built(layers.Reshape((5, -1)), (12,))


def test_activation_layer_softmax_rows_sum_to_one():
    a = built(layers.Activation("softmax"), (5,))
    y = a.forward(np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)


def test_layer_config_round_trip():
    d = layers.Dense(4, activation="tanh", kernel_regularizer="l2", name="d")
    cfg = d.get_config()
    d2 = layers.Dense.from_config(cfg)
    assert d2.get_config() == cfg


def test_forward_does_not_modify_inputs():
    d = built(layers.Dense(3, activation="relu"), (4,))
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    x0 = x.copy()
    d.forward(x)
    g = np.ones((2, 3), np.float32)
    d.backward(g)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, 1)
