"""The models of examples/cifar10_resnet.py and examples/cifar10_tf_tutorial.py: structure and the
tutorial's deliberate bugs (bias after the ReLU, ReLU logits, double softmax), checked by hand."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from cutedl import Dataset, Session, layers, losses, optimizers, testing

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"cutedl_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resnet20_structure():
    resnet = load_example("cifar10_resnet")
    model = resnet.build_model()
    kinds = [type(layer).__name__ for layer in model.layers]
    # 19 3x3 convolutions + 2 projection shortcuts, 9 residual joins, ~0.27 M params (He et al.: 0.27 M)
    assert kinds.count("Conv2D") == 21 and kinds.count("Add") == 9 and kinds.count("BatchNormalization") == 21
    assert model.count_params() == 274042
    assert model.predict(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 10)
    with pytest.raises(ValueError, match="depth must be 6n"):
        resnet.build_model(depth=21)


def test_tf_tutorial_double_softmax_and_bias_after_relu():
    tut = load_example("cifar10_tf_tutorial")
    model = tut.build_model()
    assert [type(layer).__name__ for layer in model.layers][-3:] == ["Dense", "Dense", "PlainSoftmax"]
    assert model.layers[-2].activation.registry_name == "relu"
    lrn = [layer for layer in model.layers if isinstance(layer, layers.LocalResponseNormalization)][0]
    assert (lrn.depth_radius, lrn.bias, lrn.alpha, lrn.beta) == (4, 1.0, 0.001 / 9, 0.75)
    rs = np.random.default_rng(0)
    x = rs.random((8, 3, 32, 32)).astype(np.float32)
    y = rs.integers(0, 10, 8)
    sess = Session(model, loss=losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=optimizers.Adam(1e-4))
    p = model.predict(x).astype(np.float64)   # probabilities: rows sum to 1
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    # the loss softmaxes the probabilities again: -log softmax(p)[y]
    want = np.mean(np.log(np.exp(p).sum(1)) - p[np.arange(8), y])
    assert sess.evaluate(Dataset(x, y, batch_size=8, shuffle=False))["loss"] == pytest.approx(want, rel=1e-5)
    # bias after the ReLU: conv without bias, relu, then ChannelBias
    conv, bias = model.layers[0], model.layers[1]
    assert conv.bias is None and conv.activation.registry_name == "relu" and isinstance(bias, tut.ChannelBias)
    testing.check_gradients(tut.ChannelBias("random_normal"), inshape=(3, 2, 2))
    fixed = tut.build_model(fixed=True)
    assert type(fixed.layers[-1]).__name__ == "Dense" and fixed.layers[-1].activation.registry_name == "softmax"
