"""Recurrent layers and wrappers on an empty batch (batch size 0): empty results, zero gradients."""
import numpy as np
import pytest

from cutedl import Model, layers

T, F = 3, 2


def _layer(name):
    return {
        "simple_rnn": lambda: layers.SimpleRNN(4, inshape=(None, F)),
        "simple_rnn_seq": lambda: layers.SimpleRNN(4, return_sequences=True, inshape=(None, F)),
        "lstm_seq_backwards": lambda: layers.LSTM(4, return_sequences=True, go_backwards=True, inshape=(T, F)),
        "lstm_dropout": lambda: layers.LSTM(4, dropout=0.3, recurrent_dropout=0.2, inshape=(None, F)),
        "gru": lambda: layers.GRU(4, inshape=(None, F)),
        "gru_stateful": lambda: layers.GRU(4, stateful=True, return_sequences=True, inshape=(None, F)),
        "bidirectional_concat": lambda: layers.Bidirectional(layers.LSTM(4, return_sequences=True), inshape=(None, F)),
        "bidirectional_ave": lambda: layers.Bidirectional(layers.SimpleRNN(4), merge_mode="ave", inshape=(None, F)),
        "time_distributed": lambda: layers.TimeDistributed(layers.Dense(4, activation="tanh"), inshape=(None, F)),
        "masking": lambda: layers.Masking(inshape=(None, F)),
    }[name]()


NAMES = ["simple_rnn", "simple_rnn_seq", "lstm_seq_backwards", "lstm_dropout", "gru", "gru_stateful",
         "bidirectional_concat", "bidirectional_ave", "time_distributed", "masking"]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_forward_and_backward(name, training):
    model = Model([_layer(name)]).assemble()
    x = np.ones((0, T, F), dtype=np.float32)
    y = model.forward(x, training=training)
    want = tuple(T if d is None else d for d in model.outshape)
    assert y.shape == (0,) + want and y.dtype == np.float32
    dx = model.backward(np.ones_like(y), input_grad=True)
    assert dx.shape == x.shape and dx.dtype == np.float32
    for p in model.params:
        assert p.grad.shape == p.shape and p.grad.dtype == np.float32
        assert not p.grad.any()  # no sample, no gradient
    # and the layer still works on a real batch afterwards
    if name != "gru_stateful":  # a stateful layer keeps its (empty) batch: reset first
        assert model.predict(np.ones((2, T, F), np.float32)).shape == (2,) + want


@pytest.mark.parametrize("name", ["simple_rnn_seq", "bidirectional_concat", "gru"])
def test_empty_batch_with_a_mask(name):
    model = Model([layers.Masking(inshape=(None, F)), _layer(name)]).assemble()
    y = model.forward(np.zeros((0, T, F), dtype=np.float32))
    assert y.shape[0] == 0
    if model.output_mask is not None:
        assert model.output_mask.shape == (0, T) and model.output_mask.dtype == bool
    assert model.backward(np.ones_like(y), input_grad=True).shape == (0, T, F)


def test_empty_batch_with_return_state_and_initial_state():
    layer = layers.LSTM(4, return_state=True)
    layer._build((None, F))
    out, h, c = layer.forward(np.ones((0, T, F), np.float32),
                              initial_state=[np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)])
    assert out.shape == h.shape == c.shape == (0, 4)
    assert layer.backward([np.ones((0, 4), np.float32), None, None]).shape == (0, T, F)


def test_predict_in_chunks_and_stateful_reset_after_an_empty_batch():
    model = Model([_layer("gru_stateful")]).assemble()
    model.predict(np.ones((0, T, F), np.float32))
    with pytest.raises(ValueError, match="batch of 0 sequences"):
        model.predict(np.ones((2, T, F), np.float32))
    model.reset_states()
    assert model.predict(np.ones((2, T, F), np.float32)).shape == (2, T, 4)
    model = Model([_layer("lstm_seq_backwards")]).assemble()
    assert model.predict(np.ones((0, T, F), np.float32), batch_size=2).shape == (0, T, 4)
