"""layers/_args: sizes, rates, initializer/regularizer pairs and their config, and the layers that
use them (Dense, Embedding, Dropout)."""
import numpy as np
import pytest

from cutedl import initializers, layers, regularizers
from cutedl.layers._args import check_rate, check_units, serialize_regularizer, set_weight_args, weight_args_config


# ---------------------------------------------------------------------------- sizes and rates
def test_check_units():
    assert check_units("Dense", "units", 3) == 3
    assert type(check_units("Dense", "units", np.int64(3))) is int


@pytest.mark.parametrize("value, err", [(0, ValueError), (-2, ValueError), (2.5, ValueError),
                                        ("3", TypeError), (True, TypeError), (None, ValueError)])
def test_check_units_errors(value, err):
    with pytest.raises(err, match=r"^Dense: units must be a positive integer, got "):
        check_units("Dense", "units", value)


def test_check_rate():
    assert check_rate("Dropout", "rate", 0) == 0.0
    assert check_rate("Dropout", "rate", np.float32(0.5)) == 0.5
    with pytest.raises(ValueError, match=r"^Dropout: rate must be a number in \[0, 1\) \(the fraction dropped\), "
                                         r"got 1\.0\.$"):
        check_rate("Dropout", "rate", 1.0)
    with pytest.raises(ValueError, match="fraction dropped"):
        check_rate("Dropout", "rate", -0.1)
    with pytest.raises(TypeError, match="got str '0.5'"):
        check_rate("Dropout", "rate", "0.5")


# ---------------------------------------------------------------------------- weight arguments
class _Holder:
    pass


def test_set_weight_args_resolves_through_the_registries():
    h = _Holder()
    set_weight_args(h, kernel=("he_normal", "l2"), bias=(None, None))
    assert isinstance(h.kernel_initializer, initializers.HeNormal)
    assert h.kernel_regularizer == regularizers.L2(0.01)
    assert isinstance(h.bias_initializer, initializers.GlorotUniform)  # the family default
    assert h.bias_regularizer is None


def test_set_weight_args_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"Unknown initializer 'he'.*he_normal"):
        set_weight_args(_Holder(), kernel=("he", None))
    with pytest.raises(ValueError, match=r"Unknown regularizer 'l3'.*l2"):
        set_weight_args(_Holder(), kernel=("zeros", "l3"))


def test_weight_args_config_round_trips():
    h = _Holder()
    set_weight_args(h, kernel=(initializers.RandomNormal(stddev=0.1, seed=3), regularizers.L1L2(0.1, 0.2)),
                    bias=("zeros", None))
    cfg = weight_args_config(h, "kernel", "bias")
    assert cfg == {
        "kernel_initializer": {"class_name": "random_normal", "config": {"mean": 0.0, "stddev": 0.1, "seed": 3}},
        "kernel_regularizer": {"class_name": "l1_l2", "config": {"l1": 0.1, "l2": 0.2}},
        "bias_initializer": {"class_name": "zeros", "config": {}},
        "bias_regularizer": None,
    }
    h2 = _Holder()
    set_weight_args(h2, kernel=(cfg["kernel_initializer"], cfg["kernel_regularizer"]),
                    bias=(cfg["bias_initializer"], cfg["bias_regularizer"]))
    assert weight_args_config(h2, "kernel", "bias") == cfg
    assert weight_args_config(h, "kernel", regularizers_too=False) == {"kernel_initializer": cfg["kernel_initializer"]}


def test_serialize_regularizer():
    assert serialize_regularizer(None) is None
    assert serialize_regularizer(regularizers.L2(0.5)) == {"class_name": "l2", "config": {"l2": 0.5}}


# ---------------------------------------------------------------------------- the layers using them
def test_dense_and_embedding_configs_carry_their_weight_arguments():
    d = layers.Dense(3, kernel_initializer="he_uniform", kernel_regularizer="l1", bias_regularizer="l2")
    cfg = d.get_config()
    assert cfg["kernel_initializer"] == {"class_name": "he_uniform", "config": {}}
    assert cfg["kernel_regularizer"] == {"class_name": "l1", "config": {"l1": 0.01}}
    assert cfg["bias_initializer"] == {"class_name": "zeros", "config": {}}
    assert cfg["bias_regularizer"] == {"class_name": "l2", "config": {"l2": 0.01}}
    assert layers.Dense.from_config(cfg).get_config() == cfg

    e = layers.Embedding(10, 4, embeddings_regularizer="l2")
    ecfg = e.get_config()
    assert ecfg["embeddings_initializer"] == {"class_name": "random_uniform",
                                              "config": {"minval": -0.05, "maxval": 0.05}}
    assert ecfg["embeddings_regularizer"] == {"class_name": "l2", "config": {"l2": 0.01}}
    assert layers.Embedding.from_config(ecfg).get_config() == ecfg


def test_layer_flags_must_be_bools():
    with pytest.raises(TypeError, match="Dense: use_bias must be True or False, got int 1"):
        layers.Dense(3, use_bias=1)
    with pytest.raises(TypeError, match="Embedding: mask_zero must be True or False, got str 'yes'"):
        layers.Embedding(10, 4, mask_zero="yes")
    with pytest.raises(TypeError, match="Dense: trainable must be True or False"):
        layers.Dense(3, trainable=None)


@pytest.mark.parametrize("make, err, match", [
    (lambda: layers.Embedding(0, 3), ValueError, "Embedding: input_dim must be a positive integer, got 0"),
    (lambda: layers.Embedding(3, "4"), TypeError, "Embedding: output_dim must be a positive integer, got str"),
    (lambda: layers.Dropout("0.5"), TypeError, "Dropout: rate must be a number in"),
    (lambda: layers.Reshape((2, 2.5)), TypeError, r"Reshape: target_shape must be a tuple of ints"),
    (lambda: layers.Dense(3, inshape=(0,)), ValueError, "Dense: inshape must hold positive integers"),
])
def test_layer_argument_errors(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_dropout_mask_is_the_generators_uniform_draw():
    d = layers.Dropout(0.3, seed=5)
    d._build((50,))
    x = np.ones((4, 50), np.float32)
    y = d.forward(x, training=True)
    u = np.random.default_rng(5).random((4, 50), dtype=np.float32)
    np.testing.assert_array_equal(y != 0, u >= 0.3)
    assert y.dtype == np.float32
