"""Gradient check of every registered layer (float64 central differences).

Adding a layer to ``cutedl.layers.registry`` without an entry in CASES fails
``test_every_layer_has_a_case``: every layer is gradient-checked.
"""
import numpy as np
import pytest

from cutedl import layers, testing

# name -> list of (constructor kwargs, inshape, training)
CASES = {
    "Dense": [({"units": 3}, (4,), False),
              ({"units": 2, "activation": "tanh", "kernel_regularizer": "l2"}, (5,), False),
              ({"units": 3, "activation": "softmax"}, (4,), False),
              ({"units": 2, "use_bias": False, "activation": "sigmoid"}, (3, 4), False)],
    "Dropout": [({"rate": 0.4, "seed": 3}, (6,), True), ({"rate": 0.4}, (2, 3), False)],
    "Flatten": [({}, (2, 3, 2), False)],
    "Reshape": [({"target_shape": (3, -1)}, (6,), False)],
    "Activation": [({"activation": "tanh"}, (4,), False), ({"activation": "softmax"}, (2, 5), False)],
}

# ---- convolution and pooling layers (issue 3) ----
CONV_CASES: dict = {}
CASES.update(CONV_CASES)
# ---- end of convolution cases ----


# ---- normalization layers (issue 3) ----
from cutedl import initializers as _init  # noqa: E402

# Non-trivial gamma/beta (and moving statistics for inference), so no term of the gradient hides
# behind gamma = 1, beta = 0.
_AFFINE = {"gamma_initializer": _init.RandomUniform(0.5, 1.5, seed=1),
           "beta_initializer": _init.RandomNormal(0.0, 0.5, seed=2)}
_MOVING = {"moving_mean_initializer": _init.RandomNormal(0.0, 0.5, seed=3),
           "moving_variance_initializer": _init.RandomUniform(0.5, 2.0, seed=4)}
NORM_CASES: dict = {
    "BatchNormalization": [
        (dict(_AFFINE), (3, 4, 5), True),                        # conv map (batch, C, H, W), batch stats
        (dict(_AFFINE), (4,), True),                             # (batch, features)
        (dict(_AFFINE, **_MOVING), (3, 4, 4), False),            # inference: moving stats
        ({"axis": -1, "center": False, **_AFFINE}, (3, 4), True),  # last axis of (batch, T, F)
        ({"scale": False, **_AFFINE}, (2, 3, 3), True),
        ({"axis": 1, **_AFFINE}, (3, 6), True),                  # channels-first 1-D maps (batch, C, L)
    ],
    "LayerNormalization": [
        (dict(_AFFINE), (5,), False),
        (dict(_AFFINE), (3, 4), True),                           # per time step over the features
        ({"axis": (-2, -1), **_AFFINE}, (2, 3, 4), False),
        ({"axis": 1, "scale": False, **_AFFINE}, (4, 3), False),
        ({"center": False, **_AFFINE}, (6,), False),
    ],
}
CASES.update(NORM_CASES)
# ---- end of normalization cases ----


# ---- recurrent, masking and wrapper layers (issue 4) ----
RECURRENT_CASES: dict = {}
CASES.update(RECURRENT_CASES)
# ---- end of recurrent cases ----


# ---- embedding layer (issue 4) ----
EMBEDDING_CASES: dict = {}
CASES.update(EMBEDDING_CASES)
# ---- end of embedding cases ----


def test_every_layer_has_a_case():
    missing = [n for n in layers.registry.names() if n not in CASES]
    assert not missing, f"layers without a gradient check case: {missing}"


@pytest.mark.parametrize("name,kwargs,inshape,training",
                         [(n, *c) for n, cs in CASES.items() for c in cs])
@pytest.mark.parametrize("batch", [1, 3])
def test_layer_gradients(name, kwargs, inshape, training, batch):
    layer = layers.registry.lookup(name)(**kwargs)
    report = testing.check_gradients(layer, inshape=inshape, batch_size=batch, training=training)
    built = layers.registry.lookup(name)(**kwargs)
    built._build(inshape)
    # the input and every parameter were checked
    assert len(report) == 1 + len(built.params)
    assert report["input"] >= 0


def test_check_gradients_catches_a_wrong_gradient():
    class Broken(layers.Dense):
        def backward(self, grad):
            dx = super().backward(grad)
            self.weight.grad = self.weight.grad * 1.01
            return dx

    with pytest.raises(testing.GradientCheckError, match="weight"):
        testing.check_gradients(Broken(3), inshape=(4,))


def test_check_gradients_catches_a_wrong_input_gradient():
    class Broken(layers.Activation):
        def backward(self, grad):
            return super().backward(grad) + 1e-3

    with pytest.raises(testing.GradientCheckError, match="input"):
        testing.check_gradients(Broken("tanh"), inshape=(4,))


def test_check_gradients_copies_weights_of_a_built_layer():
    layer = layers.Dense(2, inshape=(3,))
    layer._build((3,))
    before = layer.weight.value.copy()
    testing.check_gradients(layer)
    np.testing.assert_array_equal(layer.weight.value, before)
    assert layer.weight.value.dtype == np.float32
