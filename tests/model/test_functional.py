"""Functional models: graphs of layer calls with merges, several inputs and outputs, shared layers."""
import numpy as np
import pytest

import cutedl
from cutedl import Model, Session, backend, layers, optimizers
from cutedl.layers import Input


@pytest.fixture
def float64():
    backend.set_floatx("float64")
    yield
    backend.set_floatx("float32")


def numeric_param_grads(model, loss_of, eps=1e-6):
    """Central differences of ``loss_of()`` w.r.t. every param value of ``model``."""
    out = []
    for p in model.params:
        g = np.zeros_like(p.value)
        it = np.nditer(p.value, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = p.value[i]
            p.value[i] = old + eps
            up = loss_of()
            p.value[i] = old - eps
            down = loss_of()
            p.value[i] = old
            g[i] = (up - down) / (2 * eps)
        out.append(g)
    return out


def check_graph_gradients(model, xs, seed=0):
    """Analytic (backward) vs numeric gradients of sum(outputs * r) for params and inputs."""
    rs = np.random.default_rng(seed)
    outs = model.forward(xs, training=True)
    outs_l = outs if isinstance(outs, list) else [outs]
    rands = [rs.standard_normal(o.shape) for o in outs_l]

    def loss_of():
        o = model.forward(xs, training=True)
        o = o if isinstance(o, list) else [o]
        return float(sum((a * r).sum() for a, r in zip(o, rands)))

    loss_of()
    gin = model.backward(rands if isinstance(outs, list) else rands[0], input_grad=True)
    analytic = [p.grad.copy() for p in model.params]
    numeric = numeric_param_grads(model, loss_of)
    for p, a, n in zip(model.params, analytic, numeric):
        np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-8, err_msg=p.name)
    xs_l = xs if isinstance(xs, list) else [xs]
    gin_l = gin if isinstance(gin, list) else [gin]
    for k, (x, g) in enumerate(zip(xs_l, gin_l)):
        num = np.zeros_like(x)
        it = np.nditer(x, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = x[i]
            x[i] = old + 1e-6
            up = loss_of()
            x[i] = old - 1e-6
            down = loss_of()
            x[i] = old
            num[i] = (up - down) / 2e-6
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8, err_msg=f"input {k}")


def test_residual_block_gradients(float64):
    x = Input((5,))
    h = layers.Dense(5, activation="tanh")(x)
    s = layers.Add()([x, h])
    y = layers.Dense(3, activation="sigmoid")(s)
    m = Model(inputs=x, outputs=y)
    check_graph_gradients(m, np.random.default_rng(1).standard_normal((4, 5)))


@pytest.mark.parametrize("merge", [layers.Add, layers.Subtract, layers.Multiply, layers.Average,
                                   layers.Maximum, layers.Minimum, layers.Concatenate])
def test_every_merge_and_two_inputs_gradients(float64, merge):
    a, b = Input((4,)), Input((4,))
    ha = layers.Dense(4, activation="tanh")(a)
    hb = layers.Dense(4)(b)
    y = layers.Dense(2)(merge()([ha, hb]))
    m = Model(inputs=[a, b], outputs=y)
    rs = np.random.default_rng(2)
    check_graph_gradients(m, [rs.standard_normal((3, 4)), rs.standard_normal((3, 4))])


def test_shared_layer_accumulates_both_calls(float64):
    a, b = Input((3,)), Input((3,))
    shared = layers.Dense(4, activation="tanh")
    y = layers.Dense(1)(layers.Concatenate()([shared(a), shared(b)]))
    m = Model(inputs=[a, b], outputs=y)
    assert sum(l is shared for l in m.layers) == 1 and len(m.params) == 4
    rs = np.random.default_rng(3)
    check_graph_gradients(m, [rs.standard_normal((5, 3)), rs.standard_normal((5, 3))])


def test_branches_and_two_outputs_gradients(float64):
    x = Input((4,))
    h = layers.Dense(6, activation="relu")(x)
    y1 = layers.Dense(2, name="head_a")(h)
    y2 = layers.Dense(3, activation="tanh", name="head_b")(layers.Concatenate()([h, x]))
    m = Model(inputs=x, outputs=[y1, y2])
    check_graph_gradients(m, np.random.default_rng(4).standard_normal((3, 4)) + 0.1)


def test_residual_block_matches_pytorch(float64):
    torch = pytest.importorskip("torch")
    x = Input((6,))
    d1 = layers.Dense(6, activation="relu")
    d2 = layers.Dense(6)
    y = layers.Dense(3, activation="softmax")(layers.Add()([x, d2(d1(x))]))
    m = Model(inputs=x, outputs=y)
    rs = np.random.default_rng(5)
    xb = rs.standard_normal((8, 6))
    yb = np.eye(3)[rs.integers(0, 3, 8)]
    sess = Session(m, "categorical_crossentropy", optimizers.SGD(0.0))
    w = [p.value.copy() for p in m.params]
    tw = [torch.tensor(a, requires_grad=True) for a in w]
    tx = torch.tensor(xb)
    t1 = torch.relu(tx @ tw[0] + tw[1])
    t2 = t1 @ tw[2] + tw[3]
    logits = (tx + t2) @ tw[4] + tw[5]
    tloss = torch.nn.functional.cross_entropy(logits, torch.tensor(yb.argmax(1)))
    tloss.backward()
    logs = sess.train_on_batch(xb, yb)
    assert logs["loss"] == pytest.approx(tloss.item(), rel=1e-10)
    for p, t in zip(m.params, tw):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=p.name)


def test_two_inputs_two_outputs_fit_with_loss_weights_and_named_logs():
    rs = np.random.default_rng(6)
    x1 = rs.standard_normal((64, 4)).astype(np.float32)
    x2 = rs.standard_normal((64, 2)).astype(np.float32)
    yc = np.eye(3, dtype=np.float32)[rs.integers(0, 3, 64)]
    yr = rs.standard_normal((64, 1)).astype(np.float32)
    a, b = Input((4,), name="a"), Input((2,), name="b")
    h = layers.Concatenate()([layers.Dense(8, activation="relu")(a), b])
    cls = layers.Dense(3, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    m = Model(inputs=[a, b], outputs=[cls, reg])
    sess = Session(m, {"cls": "categorical_crossentropy", "reg": "mse"}, optimizers.Adam(0.01),
                   metrics=["accuracy"], loss_weights={"cls": 1.0, "reg": 0.5})
    h = sess.fit((x1, x2), (yc, yr), epochs=3, batch_size=16, val_data=((x1, x2), (yc, yr)), verbose=0)
    for key in ("loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_accuracy", "val_cls_loss", "val_reg_loss"):
        assert key in h.history, key
    np.testing.assert_allclose(h.history["val_loss"],
                               np.array(h.history["val_cls_loss"]) + 0.5 * np.array(h.history["val_reg_loss"]),
                               rtol=1e-5)
    p_cls, p_reg = m.predict((x1, x2), batch_size=10)
    assert p_cls.shape == (64, 3) and p_reg.shape == (64, 1)
    np.testing.assert_allclose(p_cls.sum(1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="2 inputs"):
        m.predict(x1)


def test_functional_save_load_round_trip(tmp_path):
    a, b = Input((3,)), Input((3,))
    shared = layers.Dense(4, activation="relu")
    y = layers.Dense(2, activation="softmax")(layers.Average()([shared(a), shared(b)]))
    m = Model(inputs=[a, b], outputs=y, name="siamese")
    rs = np.random.default_rng(7)
    xs = [rs.standard_normal((5, 3)).astype(np.float32) for _ in range(2)]
    m.save(tmp_path / "m.npz")
    back = Model.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.predict(xs), m.predict(xs))
    assert back.get_config() == m.get_config() and back.name == "siamese"
    text = back.summary()
    assert "Inputs" in text and "(shared)" in text


def test_sequential_list_is_the_same_graph():
    cutedl.set_seed(1)
    seq = Model([layers.Dense(4, inshape=3, activation="relu"), layers.Dense(2)]).assemble()
    cutedl.set_seed(1)
    x = Input((3,))
    fn = Model(inputs=x, outputs=layers.Dense(2)(layers.Dense(4, activation="relu")(x)))
    fn.set_weights(seq.get_weights())
    xb = np.random.default_rng(8).standard_normal((6, 3)).astype(np.float32)
    np.testing.assert_array_equal(seq.predict(xb), fn.predict(xb))
    assert "graph" not in seq.get_config()  # sequential files keep their format


def test_masks_flow_along_edges():
    ids = Input((5,), dtype="float32")
    emb = layers.Embedding(10, 4, mask_zero=True)(ids)
    left = layers.Dense(4)(emb)
    right = layers.Dense(4)(emb)
    out = layers.Add()([left, right])
    m = Model(inputs=ids, outputs=out)
    x = np.array([[1, 2, 0, 0, 0], [3, 0, 0, 0, 0]])
    m.forward(x)
    np.testing.assert_array_equal(m.output_mask, x != 0)


def test_graph_errors_teach():
    a, b = Input((3,)), Input((3,))
    y = layers.Add()([layers.Dense(3)(a), b])
    with pytest.raises(ValueError, match="not in inputs"):
        Model(inputs=a, outputs=y)
    with pytest.raises(TypeError, match="functional model"):
        Model([layers.Dense(3, inshape=3), layers.Add()])
    with pytest.raises(ValueError, match="one shape"):
        layers.Add()([Input((3,)), Input((4,))])
    with pytest.raises(TypeError, match="list of inputs"):
        layers.Add()(Input((3,)))
    d = layers.Dense(2)
    d(Input((3,)))
    with pytest.raises(ValueError, match="shared layer takes the same shape"):
        d(Input((4,)))


def test_custom_layers_load_with_custom_objects_or_register(tmp_path):
    class Scale(layers.Layer):
        def __init__(self, factor=2.0, **kw):
            super().__init__(**kw)
            self.factor = factor

        def forward(self, x, training=False):
            return x * self.factor

        def backward(self, grad):
            return grad * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    m = Model([layers.Dense(2, inshape=3), Scale(3.0)]).assemble()
    m.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="custom_objects"):
        Model.load(tmp_path / "m.npz")
    back = Model.load(tmp_path / "m.npz", custom_objects={"Scale": Scale})
    xb = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(back.predict(xb), m.predict(xb))
    with pytest.raises(TypeError, match="register takes the name"):
        layers.registry.register(Scale)
    with pytest.raises(TypeError, match="Layer subclass"):
        layers.register(object)
    layers.register(name="ScaleForTest")(Scale)
    assert layers.registry.lookup("ScaleForTest") is Scale


def test_summary_before_assemble_says_so():
    m = Model([layers.Dense(3, inshape=2), layers.Dense(1)])
    assert "not assembled yet" in m.summary()
    assert "not assembled" not in m.assemble().summary()
