"""The mask protocol (Layer.compute_mask, forward(mask=...), Model propagation) and the Masking layer."""
import numpy as np
import pytest

from cutedl import Model, layers
from cutedl.layers.base import forward_takes_mask


class MaskRecorder(layers.Layer):
    """Identity layer that records the mask it receives (supports masking: passes it on)."""

    supports_masking = True

    def forward(self, x, training=False, mask=None):
        self.check_input(x)
        self.seen = mask
        return x

    def backward(self, grad):
        return grad


class MaskMaker(layers.Layer):
    """Identity layer that creates a mask: steps whose first feature is positive are real."""

    def compute_mask(self, x, mask=None):
        return x[..., 0] > 0

    def forward(self, x, training=False):
        return x

    def backward(self, grad):
        return grad


def test_default_compute_mask_follows_supports_masking():
    m = np.array([[True, False]])
    x = np.zeros((1, 2, 3))
    assert layers.Flatten().compute_mask(x, m) is None
    assert layers.Reshape((6,)).compute_mask(x, m) is None
    for layer in (layers.Dense(2), layers.Dropout(0.5), layers.Activation("relu")):
        assert layer.compute_mask(x, m) is m
        assert layer.compute_mask(x, None) is None


def test_forward_takes_mask():
    assert forward_takes_mask(MaskRecorder())
    assert not forward_takes_mask(layers.Dense(3))
    assert not forward_takes_mask(MaskMaker())


def test_model_propagates_masks_and_drops_them_where_unsupported():
    x = np.array([[[1.0, 2.0], [-1.0, 0.5], [3.0, 1.0]]])  # (1, 3, 2)
    first, second, third = MaskRecorder(), MaskRecorder(), MaskRecorder()
    model = Model([MaskMaker(inshape=(3, 2)), first, layers.Dense(2), second,
                   layers.Reshape((3, 2)), third]).assemble()
    model.predict(x)
    np.testing.assert_array_equal(first.seen, [[True, False, True]])
    np.testing.assert_array_equal(second.seen, [[True, False, True]])  # Dense passes it on
    assert third.seen is None  # Reshape drops it
    assert model.output_mask is None
    model2 = Model([MaskMaker(inshape=(3, 2)), MaskRecorder()]).assemble()
    model2.predict(x)
    np.testing.assert_array_equal(model2.output_mask, [[True, False, True]])


def test_model_without_masks_passes_none():
    rec = MaskRecorder(inshape=(3, 2))
    model = Model([rec, layers.Dense(1)]).assemble()
    model.predict(np.ones((2, 3, 2)))
    assert rec.seen is None and model.output_mask is None


def test_masking_layer_mask_output_and_gradient():
    x = np.array([[[1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [0.0, 0.0]],
                  [[0.0, 0.0], [5.0, 5.0], [5.0, 5.0], [1.0, 1.0]]])  # (2, 4, 2)
    layer = layers.Masking(0.0)
    layer._build((4, 2))
    np.testing.assert_array_equal(layer.compute_mask(x), [[True, False, True, False], [False, True, True, True]])
    layer5 = layers.Masking(5.0)
    layer5._build((4, 2))
    y = layer5.forward(x)
    np.testing.assert_array_equal(layer5.compute_mask(x), [[True, True, True, True], [True, False, False, True]])
    want = x.copy()
    want[1, 1:3] = 0.0
    np.testing.assert_array_equal(y, want)
    g = np.arange(16, dtype=float).reshape(2, 4, 2)
    dx = layer5.backward(g)
    want_g = g.copy()
    want_g[1, 1:3] = 0.0
    np.testing.assert_array_equal(dx, want_g)
    assert g[1, 1, 0] == 10.0  # grad untouched


def test_masking_errors():
    with pytest.raises(ValueError, match=r"needs input \(batch, T, features\)"):
        Model([layers.Masking(inshape=(5,))]).assemble()
    with pytest.raises(TypeError, match="mask_value must be a number"):
        layers.Masking("pad")
    with pytest.raises(ValueError, match="NaN"):
        layers.Masking(float("nan"))
