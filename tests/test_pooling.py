"""Pooling layers: forward values against naive loops, tie handling, errors.

Gradients are checked in tests/test_gradients.py (CONV_CASES).
"""
import numpy as np
import pytest

from cutedl import Model, layers

RS = np.random.default_rng(0)


def built(layer, inshape):
    layer._build(inshape)
    return layer


def naive_pool(x, pool, strides, pads, kind):
    """Max or average over windows, with loops; padded cells are ignored (never max, not counted)."""
    n, c, h, w = x.shape
    (ph, pw), (sh, sw), ((t, b), (l, r)) = pool, strides, pads
    oh = (h + t + b - ph) // sh + 1
    ow = (w + l + r - pw) // sw + 1
    out = np.zeros((n, c, oh, ow))
    for a in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    vals = []
                    for u in range(ph):
                        for v in range(pw):
                            row, col = i * sh + u - t, j * sw + v - l
                            if 0 <= row < h and 0 <= col < w:
                                vals.append(float(x[a, ch, row, col]))
                    out[a, ch, i, j] = max(vals) if kind == "max" else sum(vals) / len(vals)
    return out


# (pool, strides, padding, inshape, pads worked out by hand: TF rule as for Conv2D)
POOL_GEOMETRY = [
    ((2, 2), None, "valid", (2, 4, 6), ((0, 0), (0, 0))),
    ((2, 2), None, "valid", (2, 5, 7), ((0, 0), (0, 0))),      # odd sizes: last row/column dropped
    ((2, 2), None, "same", (1, 5, 7), ((0, 1), (0, 1))),
    ((3, 3), (2, 2), "valid", (2, 7, 6), ((0, 0), (0, 0))),     # overlapping windows
    ((3, 3), (2, 2), "same", (1, 7, 6), ((1, 1), (0, 1))),
    ((3, 2), (1, 1), "same", (1, 4, 4), ((1, 1), (0, 1))),
    ((1, 3), (1, 2), "valid", (2, 3, 7), ((0, 0), (0, 0))),
]


@pytest.mark.parametrize("cls,kind", [(layers.MaxPool2D, "max"), (layers.AvgPool2D, "avg")])
@pytest.mark.parametrize("pool,strides,padding,inshape,pads", POOL_GEOMETRY)
def test_pool2d_matches_naive_loops(cls, kind, pool, strides, padding, inshape, pads):
    layer = built(cls(pool, strides=strides, padding=padding), inshape)
    x = RS.standard_normal((2,) + inshape).astype(np.float32)
    y = layer.forward(x)
    ref = naive_pool(x, pool, strides or pool, pads, kind)
    assert y.shape == ref.shape and layer.outshape == ref.shape[1:] and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls,kind", [(layers.MaxPool1D, "max"), (layers.AvgPool1D, "avg")])
@pytest.mark.parametrize("pool,strides,padding,length,pads", [
    (2, None, "valid", 7, (0, 0)), (3, 2, "same", 8, (0, 1)), (3, 1, "same", 5, (1, 1)), (2, 3, "valid", 8, (0, 0))])
def test_pool1d_matches_naive_loops(cls, kind, pool, strides, padding, length, pads):
    layer = built(cls(pool, strides=strides, padding=padding), (3, length))
    x = RS.standard_normal((2, 3, length)).astype(np.float32)
    y = layer.forward(x)
    ref = naive_pool(x[:, :, None, :], (1, pool), (1, strides or pool), ((0, 0), pads), kind)[:, :, 0, :]
    assert y.shape == ref.shape and layer.outshape == ref.shape[1:]
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


def test_max_pool_gradient_goes_to_the_first_maximum_only():
    layer = built(layers.MaxPool2D(2), (1, 4, 4))
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 3, 3] = -1.0
    x[0, 0, 2, 3] = 5.0
    layer.forward(x, training=True)
    dx = layer.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32))
    want = np.zeros((4, 4), np.float32)
    want[0, 0], want[0, 2], want[2, 0], want[2, 3] = 1.0, 2.0, 3.0, 4.0  # ties: first in row-major order
    np.testing.assert_array_equal(dx[0, 0], want)


def test_overlapping_max_pool_accumulates_gradients_of_shared_cells():
    layer = built(layers.MaxPool2D(3, strides=1), (1, 3, 4))
    x = np.zeros((1, 1, 3, 4), np.float32)
    x[0, 0, 1, 1] = 9.0  # the max of both windows
    layer.forward(x)
    dx = layer.backward(np.array([[[[1.0, 2.0]]]], np.float32))
    assert dx[0, 0, 1, 1] == 3.0 and dx.sum() == 3.0


def test_avg_pool_same_padding_is_not_counted():
    layer = built(layers.AvgPool2D(2, padding="same"), (1, 3, 3))
    y = layer.forward(np.ones((1, 1, 3, 3), np.float32))
    np.testing.assert_array_equal(y, np.ones((1, 1, 2, 2)))


def test_pooling_a_conv_output_view_equals_pooling_a_copy():
    # Conv2D returns NCHW-shaped views of channel-major memory; pooling must not care
    conv = built(layers.Conv2D(3, 3, padding="same"), (2, 6, 6))
    y = conv.forward(RS.standard_normal((4, 2, 6, 6)).astype(np.float32))
    assert not y.flags.c_contiguous
    for cls in (layers.MaxPool2D, layers.AvgPool2D):
        a, b = built(cls(2), (3, 6, 6)), built(cls(2), (3, 6, 6))
        np.testing.assert_array_equal(a.forward(y), b.forward(np.ascontiguousarray(y)))
        g = RS.standard_normal((4, 3, 3, 3)).astype(np.float32)
        np.testing.assert_array_equal(a.backward(g), b.backward(g))


def test_global_pools_values_keepdims_and_ties():
    x = RS.standard_normal((2, 3, 4, 5)).astype(np.float32)
    avg = built(layers.GlobalAveragePooling2D(), (3, 4, 5))
    mx = built(layers.GlobalMaxPooling2D(keepdims=True), (3, 4, 5))
    assert avg.outshape == (3,) and mx.outshape == (3, 1, 1)
    ref_avg = np.array([[sum(float(v) for v in x[n, c].ravel()) / 20 for c in range(3)] for n in range(2)])
    np.testing.assert_allclose(avg.forward(x), ref_avg, rtol=1e-5)
    np.testing.assert_array_equal(mx.forward(x), np.array([[[[max(x[n, c].ravel())]] for c in range(3)]
                                                           for n in range(2)]))
    dx = avg.backward(np.ones((2, 3), np.float32))
    np.testing.assert_allclose(dx, np.full(x.shape, 1 / 20), rtol=1e-6)
    ties = built(layers.GlobalMaxPooling2D(), (1, 2, 2))
    ties.forward(np.ones((1, 1, 2, 2), np.float32))
    np.testing.assert_array_equal(ties.backward(np.array([[2.0]], np.float32)), [[[[2.0, 0.0], [0.0, 0.0]]]])


def test_keras_aliases():
    for alias, cls in [("MaxPooling2D", layers.MaxPool2D), ("AveragePooling2D", layers.AvgPool2D),
                       ("MaxPooling1D", layers.MaxPool1D), ("AveragePooling1D", layers.AvgPool1D),
                       ("GlobalAvgPool2D", layers.GlobalAveragePooling2D),
                       ("GlobalMaxPool2D", layers.GlobalMaxPooling2D)]:
        assert layers.registry.lookup(alias) is cls and getattr(layers, alias) is cls


def test_pool_errors_name_the_layer_and_shapes():
    pool = built(layers.MaxPool2D(2, name="max_pool2d_3"), (3, 8, 8))
    with pytest.raises(ValueError, match=r"'max_pool2d_3' \(MaxPool2D\) expected a 4-D input .*\(3, 8, 8\).*\(2, 192\)"):
        pool.forward(np.zeros((2, 192), np.float32))
    with pytest.raises(ValueError, match=r"'max_pool2d_3' \(MaxPool2D\) expected input of shape \(batch, 3, 8, 8\), "
                                         r"got \(2, 1, 8, 8\)"):
        pool.forward(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, channels, height, width\).*\(784,\)"):
        Model([layers.MaxPool2D(inshape=784)]).assemble()
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        layers.MaxPool2D(2, padding=1)
    with pytest.raises(ValueError, match="pool_size must be"):
        layers.AvgPool2D(0)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, channels, height, width\)"):
        layers.GlobalMaxPooling2D()._build((3, 4))
