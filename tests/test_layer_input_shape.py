"""``input_shape``: Keras' spelling of ``inshape``, accepted by every layer (Layer.__init__)."""
import numpy as np
import pytest

from cutedl import Model, layers


def test_dense_with_keras_input_shape():
    # the bug report: Dense(32, input_shape=(784,)) raised "unexpected keyword argument 'input_shape'"
    layer = layers.Dense(32, input_shape=(784,))
    assert layer.inshape == (784,)
    model = Model([layers.Dense(32, input_shape=(784,), activation="relu"), layers.Dense(10)]).assemble()
    assert model.layers[0].inshape == (784,) and model.predict(np.zeros((2, 784), np.float32)).shape == (2, 10)


@pytest.mark.parametrize("make", [lambda **kw: layers.Dense(3, **kw), lambda **kw: layers.Conv2D(2, 3, **kw),
                                  lambda **kw: layers.LSTM(2, **kw), lambda **kw: layers.Flatten(**kw),
                                  lambda **kw: layers.Embedding(10, 2, **kw)])
def test_every_layer_takes_either_spelling(make):
    shape = (1, 5, 5)
    a, b = make(inshape=shape), make(input_shape=shape)
    assert a.inshape == b.inshape == shape
    cfg = b.get_config()
    assert "input_shape" not in cfg and cfg["inshape"] == list(shape)  # saved as inshape


def test_both_spellings_at_once_is_an_error():
    with pytest.raises(ValueError, match=r"Dense: give the input shape once, as inshape \(cutedl\) or input_shape "
                                         r"\(Keras' name\), got inshape=\(784,\) and input_shape=\(784,\)"):
        layers.Dense(32, inshape=(784,), input_shape=(784,))


def test_input_shape_is_validated_like_inshape():
    with pytest.raises(ValueError, match=r"inshape must hold positive integers"):
        layers.Dense(3, input_shape=(0,))
    assert layers.Dense(3, input_shape=784).inshape == (784,)
