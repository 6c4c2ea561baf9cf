"""Per-step losses and metrics honour the output mask (as Keras): padded steps count for nothing."""
import numpy as np
import pytest

from cutedl.training.step import forward_loss

from cutedl import Model, Session, layers, losses, metrics, rng
from cutedl.optimizers import SGD
from cutedl.testing import numerical_gradient

B, T, C = 3, 5, 4

# (loss, kind of targets): 'dist' one-hot rows, 'labels' integers (B, T), 'real' values, 'prob' in [0, 1]
LOSSES = {
    "mse": (losses.MeanSquaredError(), "real"),
    "mae": (losses.MeanAbsoluteError(), "real"),
    "huber": (losses.Huber(0.7), "real"),
    "bce": (losses.BinaryCrossentropy(), "prob"),
    "bce_logits": (losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), "prob"),
    "cce": (losses.CategoricalCrossentropy(), "dist"),
    "cce_logits": (losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2), "dist"),
    "sparse": (losses.SparseCategoricalCrossentropy(), "labels"),
    "sparse_logits": (losses.SparseCategoricalCrossentropy(from_logits=True), "labels"),
}


def _case(kind, from_logits, rng, shape=(B, T, C)):
    if from_logits or kind == "real":
        pred = rng.normal(size=shape)
    elif kind == "prob":
        pred = rng.uniform(0.05, 0.95, size=shape)
    else:
        pred = rng.uniform(0.05, 1.0, size=shape)
        pred /= pred.sum(axis=-1, keepdims=True)
    if kind == "labels":
        true = rng.integers(0, shape[-1], size=shape[:-1])
    elif kind == "dist":
        true = np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
    elif kind == "prob":
        true = (rng.uniform(size=shape) > 0.5).astype(float)
    else:
        true = rng.normal(size=shape)
    return true, pred


MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0]], dtype=bool)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_masked_loss_is_the_mean_over_real_steps(name):
    loss, kind = LOSSES[name]
    rng = np.random.default_rng(0)
    true, pred = _case(kind, loss.from_logits, rng)
    value = loss(true, pred, mask=MASK)
    # reference: the unmasked loss of each real step alone, averaged over the real steps
    per_step = [loss(true[b, t][None], pred[b, t][None]) for b, t in zip(*np.nonzero(MASK))]
    assert value == pytest.approx(np.mean(per_step), rel=1e-12)
    assert value != pytest.approx(loss(true, pred), rel=1e-3)  # the padding did count before
    # what the padded steps hold does not matter, and they get exactly zero gradient
    g = loss(true, pred, mask=MASK) and loss.backward()
    true2, pred2 = _case(kind, loss.from_logits, np.random.default_rng(1))
    true2[MASK], pred2[MASK] = true[MASK], pred[MASK]
    assert loss(true2, pred2, mask=MASK) == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), g, rtol=1e-12, atol=0)
    assert g.shape == pred.shape and g.dtype == pred.dtype
    assert np.all(g[~MASK] == 0) and np.any(g[MASK] != 0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_masked_loss_gradient_matches_central_differences(name):
    loss, kind = LOSSES[name]
    true, pred = _case(kind, loss.from_logits, np.random.default_rng(2))
    loss(true, pred, mask=MASK)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss(true, pred, mask=MASK), pred)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["mse", "cce_logits", "sparse"])
def test_full_and_empty_masks(name):
    loss, kind = LOSSES[name]
    true, pred = _case(kind, loss.from_logits, np.random.default_rng(3))
    plain = loss(true, pred)
    g = loss.backward()
    full = np.ones((B, T), dtype=bool)
    assert loss(true, pred, mask=full) == plain
    np.testing.assert_array_equal(loss.backward(), g)
    # no real step: 0 and a zero gradient (Keras' divide-no-nan), not NaN
    assert loss(true, pred, mask=np.zeros((B, T), dtype=bool)) == 0.0
    assert not loss.backward().any()
    # an unmasked call after a masked one uses the plain path again
    loss(true, pred, mask=MASK)
    assert loss(true, pred) == plain
    np.testing.assert_array_equal(loss.backward(), g)


def test_masked_float32_stays_float32():
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    pred = np.random.default_rng(0).normal(size=(B, T, C)).astype(np.float32)
    loss(np.zeros((B, T), dtype=int), pred, mask=MASK)
    assert loss.backward().dtype == np.float32


def test_padded_labels_need_not_be_valid():
    loss = losses.SparseCategoricalCrossentropy()
    true, pred = _case("labels", False, np.random.default_rng(4))
    true[~MASK] = -1  # a common padding label: never read
    ref = loss(np.where(MASK, true, 0), pred, mask=MASK)
    assert loss(true, pred, mask=MASK) == ref
    true[0, 0] = -1  # a real step with a bad label is still an error
    with pytest.raises(ValueError, match="out of range"):
        loss(true, pred, mask=MASK)


def test_bad_masks_are_clear_errors():
    loss = losses.CategoricalCrossentropy()
    true, pred = _case("dist", False, np.random.default_rng(5))
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4\) does not match y_pred of shape \(3, 5, 4\)"):
        loss(true, pred, mask=MASK[:, :4])
    with pytest.raises(TypeError, match="must be a bool array"):
        loss(true, pred, mask=MASK.astype(int))
    with pytest.raises(ValueError, match="before the class axis"):
        loss(true[:, 0], pred[:, 0], mask=MASK[:, :4])  # (batch, classes) output: no time axis
    with pytest.raises(ValueError, match="one entry per time step"):
        losses.MeanSquaredError()(np.zeros((B, 2)), np.zeros((B, T, 1)), mask=MASK)
    with pytest.raises(ValueError, match="one entry per time step"):
        metrics.get("mse")(np.zeros((B, 2)), np.zeros((B, T, 1)), mask=MASK)


@pytest.mark.parametrize("name, kind", [("accuracy", "labels"), ("accuracy", "dist"),
                                        ("sparse_categorical_accuracy", "labels"), ("top_k_accuracy", "labels"),
                                        ("mae", "real"), ("mse", "real"), ("binary_accuracy", "prob")])
def test_masked_metrics_count_real_steps_only(name, kind):
    m = metrics.get(name, k=2) if name == "top_k_accuracy" else metrics.get(name)
    true, pred = _case(kind, False, np.random.default_rng(6))
    value = m(true, pred, mask=MASK)
    per_step = [m(true[b, t][None], pred[b, t][None]) for b, t in zip(*np.nonzero(MASK))]
    assert value == pytest.approx(np.mean(per_step), rel=1e-12)
    true2, pred2 = _case(kind, False, np.random.default_rng(7))
    true2[MASK], pred2[MASK] = true[MASK], pred[MASK]
    assert m(true2, pred2, mask=MASK) == pytest.approx(value, rel=1e-12)
    assert m(true, pred, mask=np.ones((B, T), dtype=bool)) == m(true, pred)
    assert m(true, pred, mask=np.zeros((B, T), dtype=bool)) == 0.0
    assert metrics.mask_weight(MASK, B) == 10 and metrics.mask_weight(None, B) == B


def test_masked_accuracy_by_hand():
    pred = np.zeros((1, 4, 2))
    pred[0, :, 1] = 1.0  # predicts class 1 everywhere
    true = np.array([[1, 1, 0, 0]])
    assert metrics.get("accuracy")(true, pred) == 0.5
    assert metrics.get("accuracy")(true, pred, mask=np.array([[1, 1, 1, 0]], dtype=bool)) == pytest.approx(2 / 3)


# --- through a Model and a Session --------------------------------------------------------------

V = 9  # vocabulary: 0 is padding


def _sequences():
    rng = np.random.default_rng(8)
    lengths = [3, 1, 4, 2]
    tokens = [rng.integers(1, V, size=n) for n in lengths]
    labels = [rng.integers(0, C, size=n) for n in lengths]
    return tokens, labels


def _padded(seqs, T, pre=False, fill=0):
    out = np.full((len(seqs), T), fill, dtype=np.int64)
    for i, s in enumerate(seqs):
        if pre:
            out[i, T - len(s):] = s
        else:
            out[i, :len(s)] = s
    return out


def _text_model(head):
    rng.set_seed(0)
    layers_ = [layers.Embedding(V, 3, mask_zero=True, dtype="float64"),
               layers.LSTM(5, return_sequences=True, dtype="float64")]
    if head == "time_distributed":
        layers_.append(layers.TimeDistributed(layers.Dense(C, activation="softmax"), dtype="float64"))
    else:  # Dense on (batch, T, features) ending in softmax: the fused logits path
        layers_.append(layers.Dense(C, activation="softmax", dtype="float64"))
    return Model(layers_).assemble()


def _loss_and_grads(sess, x, y):
    out, loss, mask = forward_loss(sess, x, y, training=True)
    g = sess.train_loss.backward()
    assert np.all(g[~mask] == 0)
    sess.model.backward(g)
    return loss, [p.grad.copy() for p in sess.model.trainable_params]


@pytest.mark.parametrize("head", ["time_distributed", "fused_dense"])
def test_model_loss_gradients_and_metrics_do_not_depend_on_padding(head):
    tokens, labels = _sequences()
    results = []
    for T, pre in [(4, False), (7, False), (6, True), (9, True)]:
        model = _text_model(head)
        sess = Session(model, "sparse_categorical_crossentropy", SGD(0.1), metrics=["accuracy"])
        assert sess.fused_logits == (head == "fused_dense")
        x = _padded(tokens, T, pre)
        y = _padded(labels, T, pre, fill=C - 1)  # padded labels: any valid class
        loss, grads = _loss_and_grads(sess, x, y)
        ev = sess.evaluate((x, y), batch_size=3)  # two batches of different real-step counts
        results.append((loss, grads, ev))
    loss0, grads0, ev0 = results[0]
    for loss, grads, ev in results[1:]:
        assert loss == pytest.approx(loss0, rel=1e-12)
        for g, g0 in zip(grads, grads0):
            np.testing.assert_allclose(g, g0, rtol=1e-9, atol=1e-14)
        assert ev == pytest.approx(ev0, rel=1e-12)
    # evaluate is the mean over all real steps, whatever the batching
    model = _text_model(head)
    sess = Session(model, "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _padded(tokens, 5), _padded(labels, 5)
    whole = sess.evaluate((x, y), batch_size=4)
    assert sess.evaluate((x, y), batch_size=1) == pytest.approx(whole, rel=1e-12)
    probs = model.predict(x)
    real = x != 0
    hits = probs.argmax(-1)[real] == y[real]
    assert whole["accuracy"] == pytest.approx(hits.mean(), rel=1e-12)
    ref = -np.mean(np.log(probs[real, y[real]]))
    assert whole["loss"] == pytest.approx(ref, rel=1e-9)


def test_model_level_numerical_gradient_of_the_masked_loss():
    tokens, labels = _sequences()
    x, y = _padded(tokens, 5), _padded(labels, 5)
    model = _text_model("fused_dense")
    sess = Session(model, "sparse_categorical_crossentropy", SGD(0.1))
    _, grads = _loss_and_grads(sess, x, y)
    for p, g in zip(model.trainable_params, grads):
        numeric = numerical_gradient(lambda: forward_loss(sess, x, y, training=True)[1], p.value)
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-8, err_msg=p.name)


def test_masked_regression_with_masking_layer_and_fit():
    gen = np.random.default_rng(9)
    x = gen.normal(size=(6, 5, 2))
    x[:3, 3:] = 0.0  # padding the Masking layer detects
    y = gen.normal(size=(6, 5, 1))
    rng.set_seed(0)
    model = Model([layers.Masking(0.0, inshape=(None, 2), dtype="float64"),
                   layers.SimpleRNN(4, return_sequences=True, dtype="float64"),
                   layers.Dense(1, dtype="float64")]).assemble()
    sess = Session(model, "mse", SGD(0.05), metrics=["mae"])
    mask = np.any(x != 0, axis=-1)
    pred = model.predict(x)
    ref = sess.evaluate((x, y), batch_size=6)
    assert ref["loss"] == pytest.approx(np.mean((pred - y)[mask] ** 2), rel=1e-12)
    assert ref["mae"] == pytest.approx(np.mean(np.abs(pred - y)[mask]), rel=1e-12)
    # garbage targets at the padded steps change nothing, in evaluate and in training
    y2 = y.copy()
    y2[~mask] = 1e6
    assert sess.evaluate((x, y2), batch_size=4) == pytest.approx(sess.evaluate((x, y), batch_size=4), rel=1e-12)
    h = sess.fit((x, y2), epochs=3, batch_size=3, shuffle=False, verbose=0)
    assert np.all(np.isfinite(h["loss"])) and h["loss"][-1] < 10


def test_fit_logs_weigh_batches_by_real_steps():
    tokens, labels = _sequences()  # lengths 3, 1, 4, 2
    x, y = _padded(tokens, 4), _padded(labels, 4)
    x = np.concatenate([x, np.zeros((1, 4), dtype=x.dtype)])  # a sequence that is all padding
    y = np.concatenate([y, np.zeros((1, 4), dtype=y.dtype)])
    model = _text_model("fused_dense")
    sess = Session(model, "sparse_categorical_crossentropy", SGD(0.0), metrics=["accuracy"])
    per_batch = [sess.evaluate((x[i:i + 1], y[i:i + 1])) for i in range(4)]
    h = sess.fit((x, y), epochs=1, batch_size=1, shuffle=False, val_steps=1, verbose=0)
    # one row per step; the padding-only batch logs 0 and weighs nothing in the means
    assert h["loss"][:4] == pytest.approx([r["loss"] for r in per_batch], rel=1e-12)
    assert h["loss"][4] == 0.0 and h["accuracy"][4] == 0.0
    h = sess.fit((x, y), epochs=1, batch_size=2, shuffle=False, verbose=0)
    whole = sess.evaluate((x, y), batch_size=5)
    assert h["loss"][-1] == pytest.approx(whole["loss"], rel=1e-12)
    assert h["accuracy"][-1] == pytest.approx(whole["accuracy"], rel=1e-12)
    with pytest.raises(ValueError, match="no real .unmasked. time step"):
        sess.evaluate((x[4:], y[4:]))


def test_masked_sparse_crossentropy_matches_pytorch_ignore_index():
    torch = pytest.importorskip("torch")
    true, pred = _case("labels", True, np.random.default_rng(10))
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    value = loss(true, pred, mask=MASK)
    grad = loss.backward()
    z = torch.tensor(pred, requires_grad=True)
    target = torch.tensor(np.where(MASK, true, -100))
    ref = torch.nn.functional.cross_entropy(z.reshape(-1, C), target.reshape(-1), ignore_index=-100)
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-10, atol=1e-15)
