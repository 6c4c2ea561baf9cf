"""Cache-free inference: under no_grad() the conv, pooling, normalization and recurrent layers give
the same output, keep nothing for backward, and a backward after such a forward is a RuntimeError."""
import numpy as np
import pytest

from cutedl import layers
from cutedl.layers.base import no_grad

CASES = [
    (lambda: layers.Conv2D(3, 3, padding="same", activation="relu"), (2, 6, 6)),
    (lambda: layers.Conv2D(3, 3, strides=2, dilation_rate=2, activation="tanh"), (2, 9, 9)),
    (lambda: layers.Conv1D(2, 3, padding="causal"), (2, 7)),
    (lambda: layers.Conv2DTranspose(2, 3, strides=2, activation="relu"), (2, 3, 3)),
    (lambda: layers.MaxPool2D(2), (2, 6, 6)),
    (lambda: layers.MaxPool2D(3, strides=2, padding="same"), (2, 5, 6)),
    (lambda: layers.AvgPool2D(2), (2, 4, 4)),
    (lambda: layers.MaxPool1D(2), (2, 6)),
    (lambda: layers.GlobalMaxPooling2D(), (2, 3, 3)),
    (lambda: layers.BatchNormalization(), (3, 4, 4)),
    (lambda: layers.LayerNormalization(), (5, 6)),
    (lambda: layers.SimpleRNN(3, return_sequences=True), (4, 2)),
    (lambda: layers.LSTM(3), (4, 2)),
    (lambda: layers.GRU(3, return_sequences=True), (4, 2)),
]

# What each layer caches for backward (any of these must be gone after a no_grad forward).
CACHE_NAMES = ("_cols", "_x2", "_xt", "_y", "_z", "_arg", "_xc", "_x", "_xhat", "_gates", "_h", "_c", "_tc", "_hu")


@pytest.mark.parametrize("make, inshape", CASES)
@pytest.mark.parametrize("training", [False, True])
def test_no_grad_forward_matches_and_keeps_nothing(make, inshape, training):
    layer = make()
    layer._build(inshape)
    x = np.random.default_rng(0).standard_normal((2,) + inshape).astype(np.float32)
    want = layer.forward(x, training=training).copy()
    if isinstance(layer, layers.BatchNormalization):   # training updated the moving statistics
        layer.moving_mean.value[...] = 0.0
        layer.moving_variance.value[...] = 1.0
        want = layer.forward(x, training=training).copy()
        layer.moving_mean.value[...] = 0.0
        layer.moving_variance.value[...] = 1.0
    layer.backward(np.ones_like(want))   # works after a normal forward
    with no_grad():
        got = layer.forward(x, training=training)
    np.testing.assert_array_equal(got, want)
    kept = [n for n in CACHE_NAMES if getattr(layer, n, None) is not None]
    assert not kept, f"{layer.describe()} kept {kept} under no_grad"
    with pytest.raises(RuntimeError, match=r"backward called after a forward under no_grad"):
        layer.backward(np.ones_like(want))


def test_stateful_state_still_carries_under_no_grad():
    layer = layers.LSTM(3, stateful=True)
    layer._build((4, 2))
    x = np.random.default_rng(1).standard_normal((2, 4, 2)).astype(np.float32)
    with no_grad():
        first = layer.forward(x)
        second = layer.forward(x)
    assert not np.allclose(first, second)   # the second batch started from the first's final state
    layer.reset_states()
    np.testing.assert_array_equal(layer.forward(x), first)
