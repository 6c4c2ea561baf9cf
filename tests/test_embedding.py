"""Embedding: lookups, summed gradients of repeated indices, integer inputs end to end, errors."""
import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, layers, optimizers


def built(*args, inshape=(5,), **kwargs):
    layer = layers.Embedding(*args, **kwargs)
    layer._build(inshape)
    return layer


def test_forward_is_a_row_lookup():
    emb = built(7, 3, inshape=(4,))
    x = np.array([[0, 6, 6, 2], [5, 5, 5, 5]], dtype=np.int64)
    y = emb.forward(x)
    assert y.shape == (2, 4, 3) and y.dtype == np.float32
    w = emb.embeddings.value
    for b in range(2):
        for t in range(4):
            np.testing.assert_array_equal(y[b, t], w[x[b, t]])


def test_default_initializer_is_keras_uniform():
    emb = built(1000, 50)
    w = emb.embeddings.value
    assert w.shape == (1000, 50) and emb.embeddings.name.endswith("/embeddings")
    assert -0.05 <= w.min() < -0.04 and 0.04 < w.max() <= 0.05


def test_gradient_sums_repeated_indices():
    emb = built(6, 2, inshape=(5,))
    x = np.array([[1, 1, 1, 4, 0], [4, 1, 2, 2, 1]])
    rs = np.random.default_rng(1)
    grad = rs.standard_normal((2, 5, 2)).astype(np.float32)
    emb.forward(x, training=True)
    assert emb.backward(grad) is None
    want = np.zeros((6, 2))
    for b in range(2):
        for t in range(5):
            want[x[b, t]] += grad[b, t]
    g = emb.embeddings.grad
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-6)
    # rows 3 and 5 are never used: exactly zero, even after a previous backward filled them
    emb.forward(np.full((1, 5), 3), training=True)
    emb.backward(np.ones((1, 5, 2), np.float32))
    np.testing.assert_array_equal(emb.embeddings.grad[3], [5.0, 5.0])
    assert not emb.embeddings.grad[np.arange(6) != 3].any()


def test_frequent_index_gradient_is_summed_accurately():
    # 100,000 contributions of 0.1 to one row: float32 running sums drift, the result must not
    emb = built(3, 1, inshape=(100_000,))
    emb.forward(np.ones((1, 100_000), np.int32), training=True)
    emb.backward(np.full((1, 100_000, 1), 0.1, np.float32))
    assert emb.embeddings.grad[1, 0] == pytest.approx(10_000.0, rel=1e-6)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint64"])
def test_any_integer_dtype(dtype):
    emb = built(9, 2, inshape=(3,))
    x = np.array([[0, 8, 3]], dtype=dtype)
    np.testing.assert_array_equal(emb.forward(x), emb.embeddings.value[[[0, 8, 3]]])


def test_floats_holding_integers_are_accepted_others_rejected():
    emb = built(9, 2, inshape=(3,))
    np.testing.assert_array_equal(emb.forward(np.array([[1.0, 2.0, 8.0]])), emb.embeddings.value[[[1, 2, 8]]])
    with pytest.raises(ValueError, match=r"expects integer token indices, got .*2\.5.* at position \(0, 1\)"):
        emb.forward(np.array([[1.0, 2.5, 8.0]]))
    with pytest.raises(ValueError, match="expects integer token indices, got .*nan"):
        emb.forward(np.array([[1.0, np.nan, 8.0]]))
    with pytest.raises(TypeError, match="expects integer token indices, got an array of dtype bool"):
        emb.forward(np.ones((1, 3), bool))


def test_float_ids_are_checked_in_their_own_precision():
    # 1.00000001 is not an integer in float64: refused (it used to pass as 1 once cast to float32)
    emb = built(9, 2, inshape=(3,), name="ids")
    with pytest.raises(ValueError, match=r"Layer 'ids' \(Embedding\) expects integer token indices, got 1\.00000001 "
                                         r"at position \(0, 0\)"):
        emb.forward(np.array([[1.00000001, 2.0, 3.0]]))
    # float16 holds every integer only below 2**11 = 2048: 2049 arrives as 2048, refused
    big = built(3000, 2, inshape=(2,), name="big")
    with pytest.raises(ValueError, match=r"Layer 'big' \(Embedding\): token index 2048\.0 at position \(0, 1\) is a "
                                         r"float16 value at or above 2\*\*11 = 2048.*integer array"):
        big.forward(np.array([[7.0, 2049.0]], dtype=np.float16))
    np.testing.assert_array_equal(big.forward(np.array([[7.0, 2047.0]], dtype=np.float16)),
                                  big.embeddings.value[[[7, 2047]]])
    np.testing.assert_array_equal(big.forward(np.array([[7.0, 2049.0]])), big.embeddings.value[[[7, 2049]]])


def test_float32_ids_above_2_to_the_24_are_refused_float64_ids_map_exactly():
    # the bug report: 16777217.0 was looked up as row 16777216
    emb = built(16777218, 1, inshape=(1,))
    w = emb.embeddings.value
    assert w[16777217, 0] != w[16777216, 0]
    assert emb.forward(np.array([[16777217.0]]))[0, 0, 0] == w[16777217, 0]  # float64: exact
    assert emb.forward(np.array([[16777217]]))[0, 0, 0] == w[16777217, 0]
    with pytest.raises(ValueError, match=r"token index 16777216\.0 .* float32 value at or above 2\*\*24 = 16777216"):
        emb.forward(np.array([[16777217.0]], dtype=np.float32))
    # a model hands ids to the layer as given: float64 ids map exactly, float32 ones are refused
    model = Model([emb]).assemble()
    w = emb.embeddings.value  # assemble built the layer anew
    assert model.predict(np.array([[16777217.0]]))[0, 0, 0] == w[16777217, 0]
    with pytest.raises(ValueError, match=r"2\*\*24 = 16777216"):
        model.predict(np.array([[16777217.0]], dtype=np.float32))


def test_a_model_refuses_non_integral_float64_ids():
    model = Model([layers.Embedding(9, 2, inshape=(3,))]).assemble()
    with pytest.raises(ValueError, match=r"expects integer token indices, got 1\.00000001"):
        model.predict(np.array([[1.00000001, 2.0, 3.0]]))


def test_input_shape_is_kerass_inshape():
    assert layers.Embedding(10, 2, input_shape=(5,)).inshape == (5,)
    assert built(10, 2, inshape=(5,)).get_config()["inshape"] == [5]
    assert "inshape" not in layers.Embedding(10, 2).get_config()  # the any-length default
    with pytest.raises(ValueError, match=r"Embedding: give the input shape once"):
        layers.Embedding(10, 2, inshape=(5,), input_shape=(5,))


def test_out_of_range_indices_name_the_index_and_the_range():
    emb = built(10, 2, inshape=(4,), name="tokens")
    with pytest.raises(ValueError, match=r"'tokens' \(Embedding\): index 10 at position \(1, 2\) is out of "
                                         r"range; valid indices are 0 \.\. 9 \(input_dim=10\)"):
        emb.forward(np.array([[1, 2, 3, 4], [0, 0, 10, 0]]))
    with pytest.raises(ValueError, match=r"index -1 at position \(0, 3\) is out of range"):
        emb.forward(np.array([[1, 2, 3, -1]]))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4\), got \(2, 5\)"):
        emb.forward(np.zeros((2, 5), int))


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_dim must be a positive integer"):
        layers.Embedding(0, 3)
    with pytest.raises(ValueError, match="output_dim must be a positive integer"):
        layers.Embedding(3, 2.5)
    with pytest.raises(ValueError, match="input_dim must be at least 2"):
        layers.Embedding(1, 3, mask_zero=True)


def test_compute_mask():
    x = np.array([[0, 0, 3, 1], [2, 0, 1, 1]])
    assert built(4, 2, inshape=(4,)).compute_mask(x) is None
    np.testing.assert_array_equal(built(4, 2, inshape=(4,), mask_zero=True).compute_mask(x),
                                  [[False, False, True, True], [True, False, True, True]])


def test_float64_layer():
    emb = built(5, 2, dtype="float64")
    assert emb.forward(np.array([[1, 2, 3, 4, 0]])).dtype == np.float64


def test_any_length_by_default():
    model = Model([layers.Embedding(10, 4), layers.Dense(2)]).assemble()
    assert model.layers[0].inshape == (None,) and model.outshape == (None, 2)
    assert model.predict(np.ones((3, 5), int)).shape == (3, 5, 2)
    assert model.predict(np.ones((2, 9), int)).shape == (2, 9, 2)
    assert "Embedding" in model.summary() and "40" in model.summary()


def _token_task(n=400, T=6, vocab=12, seed=0):
    """Label 1 when token 1 occurs in the sequence: learnable only from the right embedding rows."""
    rs = np.random.default_rng(seed)
    x = rs.integers(2, vocab, (n, T)).astype(np.int32)
    y = rs.integers(0, 2, n)
    x[y == 1, rs.integers(0, T, int(y.sum()))] = 1
    return x, y.reshape(-1, 1).astype(np.float32)


def test_integer_inputs_flow_through_fit_evaluate_predict_uncast():
    x, y = _token_task()
    cutedl.set_seed(0)
    model = Model([layers.Embedding(12, 4, inshape=(6,)), layers.Flatten(),
                   layers.Dense(1, activation="sigmoid")]).assemble()
    seen = []
    emb = model.layers[0]
    forward = emb.forward

    def spy(xb, training=False):
        seen.append(xb.dtype)
        return forward(xb, training=training)

    emb.forward = spy
    sess = Session(model, "binary_crossentropy", optimizers.Adam(0.05), metrics=["accuracy"])
    before = sess.evaluate((x, y))
    history = sess.fit(Dataset(x, y, batch_size=32, seed=0), epochs=8, verbose=0)
    after = sess.evaluate(Dataset(x, y, batch_size=100, shuffle=False))
    assert after["loss"] < 0.5 * before["loss"] and after["accuracy"] > 0.95, (before, after, history.last())
    p = model.predict(x, batch_size=64)
    assert p.shape == (400, 1) and p.dtype == np.float32
    np.testing.assert_allclose(p, sess.predict(x), rtol=1e-6)
    assert set(seen) == {np.dtype(np.int32)}


def test_save_load_round_trip(tmp_path):
    model = Model([layers.Embedding(20, 3, mask_zero=True, inshape=(5,), embeddings_regularizer="l2"),
                   layers.Flatten(), layers.Dense(2)]).assemble()
    x = np.random.default_rng(0).integers(0, 20, (4, 5))
    model.save(tmp_path / "m.npz")
    loaded = Model.load(tmp_path / "m.npz")
    emb = loaded.layers[0]
    assert (emb.input_dim, emb.output_dim, emb.mask_zero) == (20, 3, True)
    assert emb.embeddings_regularizer is not None
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_check_gradients_accepts_explicit_integer_x():
    x = np.array([[0, 1, 1, 1], [2, 2, 0, 1]])
    report = cutedl.testing.check_gradients(layers.Embedding(3, 2), x=x)
    assert len(report) == 1 and next(iter(report)).endswith("/embeddings")  # no 'input' entry


def test_check_gradients_catches_a_gradient_that_ignores_repeats():
    class LastWins(layers.Embedding):
        def backward(self, grad):
            g = np.zeros_like(self.embeddings.value)
            g[self._idx.reshape(-1)] = grad.reshape(-1, self.output_dim)  # repeats overwrite
            self.embeddings.grad = g
            return None

    with pytest.raises(cutedl.testing.GradientCheckError, match="embeddings"):
        cutedl.testing.check_gradients(LastWins(3, 2), x=np.array([[1, 1, 2, 2]]))


def test_mask_zero_mask_flows_through_the_model():
    x = np.array([[0, 0, 3, 1], [2, 0, 1, 1]])
    model = Model([layers.Embedding(4, 2, mask_zero=True, inshape=(4,)), layers.Dense(3)]).assemble()
    model.predict(x)
    np.testing.assert_array_equal(model.output_mask, x != 0)
    model = Model([layers.Embedding(4, 2, inshape=(4,)), layers.Dense(3)]).assemble()
    model.predict(x)
    assert model.output_mask is None


@pytest.mark.parametrize("wrap", [False, True])
def test_mask_zero_makes_recurrent_outputs_independent_of_padding(wrap):
    from cutedl.data import pad_sequences

    rnn = layers.GRU(5) if not wrap else layers.Bidirectional(layers.LSTM(3))
    model = Model([layers.Embedding(9, 4, mask_zero=True), rnn, layers.Dense(2)]).assemble()
    seqs = [[3, 1, 4], [1, 5, 8, 2, 6], [7]]
    ref = model.predict(pad_sequences(seqs))
    for padding in ("pre", "post"):
        for maxlen in (5, 9):
            np.testing.assert_allclose(model.predict(pad_sequences(seqs, maxlen, padding=padding)), ref,
                                       rtol=1e-5, atol=1e-6)
    # without the mask, padding changes the result (so the test above can fail)
    plain = Model([layers.Embedding(9, 4), layers.GRU(5), layers.Dense(2)]).assemble()
    assert not np.allclose(plain.predict(pad_sequences(seqs, 9, padding="post")),
                           plain.predict(pad_sequences(seqs, 5, padding="post")), atol=1e-4)
