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
CONV_CASES: dict = {
    "Conv2D": [({"filters": 3, "kernel_size": 3}, (2, 5, 5), False),
               ({"filters": 2, "kernel_size": (2, 3), "strides": 2, "padding": "same", "activation": "tanh"},
                (2, 5, 6), False),
               ({"filters": 2, "kernel_size": 4, "padding": "same"}, (1, 5, 5), False),  # even kernel
               ({"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same", "use_bias": False},
                (2, 6, 5), False),
               ({"filters": 2, "kernel_size": 3, "strides": (1, 2), "padding": ((1, 0), (2, 1)),
                 "kernel_regularizer": "l2", "activation": "relu"}, (2, 4, 5), False),
               ({"filters": 3, "kernel_size": 1, "activation": "softmax"}, (2, 3, 3), False)],
    "Conv1D": [({"filters": 2, "kernel_size": 3, "padding": "causal", "dilation_rate": 2}, (2, 7), False),
               ({"filters": 3, "kernel_size": 2, "strides": 2, "padding": "same", "activation": "tanh"},
                (2, 7), False)],
    "Conv2DTranspose": [({"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"}, (2, 3, 3), False),
                        ({"filters": 2, "kernel_size": (2, 3), "strides": (2, 1)}, (2, 3, 2), False),
                        ({"filters": 2, "kernel_size": 3, "strides": 2, "padding": 1, "output_padding": 1,
                          "activation": "tanh"}, (2, 3, 3), False),
                        ({"filters": 1, "kernel_size": 2, "dilation_rate": 2, "padding": "same",
                          "use_bias": False}, (2, 3, 3), False)],
    "ZeroPadding2D": [({"padding": ((1, 0), (2, 1))}, (2, 3, 3), False)],
    "UpSampling2D": [({"size": (2, 3)}, (2, 2, 3), False)],
    "MaxPool2D": [({"pool_size": 2}, (2, 4, 5), False),
                  ({"pool_size": 3, "strides": 2, "padding": "same"}, (2, 5, 6), False),
                  ({"pool_size": (2, 1), "strides": 1}, (1, 3, 3), False)],
    "AvgPool2D": [({"pool_size": 2}, (2, 4, 5), False),
                  ({"pool_size": 3, "strides": 2, "padding": "same"}, (2, 5, 6), False)],
    "MaxPool1D": [({"pool_size": 2}, (2, 5), False), ({"pool_size": 3, "strides": 2, "padding": "same"}, (2, 6), False)],
    "AvgPool1D": [({"pool_size": 3, "strides": 2, "padding": "same"}, (2, 6), False)],
    "GlobalAveragePooling2D": [({}, (2, 3, 4), False), ({"keepdims": True}, (2, 2, 2), False)],
    "GlobalMaxPooling2D": [({}, (2, 3, 4), False), ({"keepdims": True}, (2, 2, 2), False)],
    "DepthwiseConv2D": [({"kernel_size": 3}, (2, 5, 5), False),
                        ({"kernel_size": (2, 3), "depth_multiplier": 2, "strides": 2, "padding": "same",
                          "activation": "tanh", "depthwise_regularizer": "l2"}, (3, 5, 6), False),
                        ({"kernel_size": 3, "dilation_rate": 2, "padding": "same", "use_bias": False}, (2, 6, 5), False),
                        ({"kernel_size": 1, "depth_multiplier": 3, "activation": "softmax"}, (1, 3, 3), False)],
    "SeparableConv2D": [({"filters": 3, "kernel_size": 3}, (2, 5, 5), False),
                        ({"filters": 2, "kernel_size": 3, "depth_multiplier": 2, "strides": 2, "padding": "same",
                          "activation": "relu", "pointwise_regularizer": "l2"}, (3, 5, 6), False)],
}
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
    "GroupNormalization": [
        ({"groups": 2, **_AFFINE}, (4, 3, 2), False),            # 2 channels per group over (C/G, H, W)
        ({"groups": -1, **_AFFINE}, (3, 2, 2), True),            # one per channel: instance norm
        ({"groups": 3, "axis": -1, "center": False, **_AFFINE}, (2, 6), False),
        ({"groups": 1, "scale": False, **_AFFINE}, (4, 5), False),
    ],
    "LocalResponseNormalization": [
        ({"depth_radius": 2, "alpha": 0.3, "beta": 0.75}, (6, 2, 2), False),
        ({"depth_radius": 4, "bias": 2.0, "alpha": 0.5, "beta": 0.6}, (3, 3, 1), False),   # window > channels
        ({"depth_radius": 1, "alpha": 0.2, "axis": -1}, (2, 5), False),
    ],
}
CASES.update(NORM_CASES)
# ---- end of normalization cases ----


# ---- recurrent, masking and wrapper layers (issue 4) ----
# BPTT over T = 1, 2 and 7 steps, last output or every step, forwards and backwards, with
# dropout; masks, stateful carry and initial/returned states are checked in test_recurrent.py.
_RNN_VARIANTS = [({}, 1), ({}, 2), ({}, 7), ({"return_sequences": True}, 1), ({"return_sequences": True}, 7),
                 ({"go_backwards": True}, 7), ({"go_backwards": True, "return_sequences": True}, 2)]


def _rnn_cases(extra=None):
    cases = [({"units": 3, **kw}, (steps, 2), False) for kw, steps in _RNN_VARIANTS]
    cases.append(({"units": 2, "dropout": 0.3, "recurrent_dropout": 0.4, "seed": 5, "return_sequences": True},
                  (4, 3), True))
    return cases + (extra or [])


RECURRENT_CASES: dict = {
    "Masking": [({"mask_value": 0.0}, (4, 3), False)],
    "SimpleRNN": _rnn_cases([({"units": 2, "activation": "relu", "use_bias": False}, (3, 2), False)]),
    "LSTM": _rnn_cases([({"units": 2, "recurrent_activation": "hard_sigmoid", "activation": "softsign",
                          "unit_forget_bias": False}, (3, 2), False)]),
    "GRU": _rnn_cases([({"units": 2, "use_bias": False, "recurrent_activation": "softsign"}, (3, 2), False)]),
    # every merge mode, last step and every step (masks: test_wrappers.py)
    "Bidirectional": [({"layer": cls(2, return_sequences=seqs), "merge_mode": mode}, (steps, 2), False)
                      for mode in ("concat", "sum", "mul", "ave")
                      for cls, seqs, steps in ((layers.LSTM, False, 3), (layers.GRU, True, 4))]
                     + [({"layer": layers.SimpleRNN(2, return_sequences=True, go_backwards=True)}, (3, 2), False),
                        ({"layer": layers.GRU(2, dropout=0.3, recurrent_dropout=0.3, seed=2)}, (3, 2), True)],
    "TimeDistributed": [({"layer": layers.Dense(3, activation="tanh")}, (4, 2), False),
                        ({"layer": layers.Flatten()}, (3, 2, 2), False),
                        ({"layer": layers.Dropout(0.5, seed=1)}, (3, 2), True)],
}
CASES.update(RECURRENT_CASES)
# ---- end of recurrent cases ----


# ---- embedding layer (issue 4) ----
# input_dim is small next to batch * T, so indices repeat and the summed gradient is checked.
EMBEDDING_CASES: dict = {
    "Embedding": [({"input_dim": 4, "output_dim": 3}, (6,), False),
                  ({"input_dim": 5, "output_dim": 2, "mask_zero": True, "embeddings_regularizer": "l2"},
                   (7,), False),
                  ({"input_dim": 3, "output_dim": 2}, (2, 4), False)],
}
CASES.update(EMBEDDING_CASES)
# ---- end of embedding cases ----


CASES["InputLayer"] = [({"shape": (3, 2)}, (3, 2), False)]

# Merge layers take a list of inputs: checked by test_merge_layer_gradients below.
MERGE_CASES: dict = {"Add": ({}, 3), "Subtract": ({}, 2), "Multiply": ({}, 3), "Average": ({}, 3),
                     "Maximum": ({}, 3), "Minimum": ({}, 3), "Concatenate": ({"axis": -1}, 3)}


def test_every_layer_has_a_case():
    missing = [n for n in layers.registry.names() if n not in CASES and n not in MERGE_CASES
               and not n.endswith("ForTest")]
    assert not missing, f"layers without a gradient check case: {missing}"


@pytest.mark.parametrize("name,kwargs,inshape,training",
                         [(n, *c) for n, cs in CASES.items() for c in cs])
@pytest.mark.parametrize("batch", [1, 3])
def test_layer_gradients(name, kwargs, inshape, training, batch):
    layer = layers.registry.lookup(name)(**kwargs)
    report = testing.check_gradients(layer, inshape=inshape, batch_size=batch, training=training)
    built = layers.registry.lookup(name)(**kwargs)
    built._build(inshape)
    # the input (unless it is integer indices, e.g. Embedding) and every parameter were checked
    float_input = getattr(built, "integer_input", None) is None
    assert len(report) == float_input + len(built.params)
    assert ("input" in report) == float_input
    assert not float_input or report["input"] >= 0


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


@pytest.mark.parametrize("name", sorted(MERGE_CASES))
def test_merge_layer_gradients(name):
    """float64 central differences of sum(merge(xs) * r) for every input of a merge layer."""
    kwargs, n = MERGE_CASES[name]
    layer = layers.registry.lookup(name)(dtype="float64", **kwargs)
    shape = (2, 3)
    layer._build([shape] * n)
    rs = np.random.default_rng(0)
    xs = [rs.standard_normal((4,) + shape) for _ in range(n)]
    r = rs.standard_normal(layer.forward(xs).shape)
    grads = layer.backward(r)
    for k, x in enumerate(xs):
        num = np.zeros_like(x)
        it = np.nditer(x, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = x[i]
            x[i] = old + 1e-6
            up = float((layer.forward(xs) * r).sum())
            x[i] = old - 1e-6
            down = float((layer.forward(xs) * r).sum())
            x[i] = old
            num[i] = (up - down) / 2e-6
        layer.forward(xs)
        np.testing.assert_allclose(layer.backward(r)[k], num, rtol=1e-7, atol=1e-9, err_msg=f"{name} input {k}")
        np.testing.assert_allclose(grads[k], num, rtol=1e-7, atol=1e-9)
