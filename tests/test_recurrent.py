"""SimpleRNN, LSTM, GRU: forward values against references written from the equations (and
against PyTorch when it is installed), gradients through masks, states and stateful carry,
masking invariance, errors, save/load."""
import numpy as np
import pytest

import cutedl
from cutedl import Model, Session, layers, testing

RNNS = [layers.SimpleRNN, layers.LSTM, layers.GRU]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def built(layer, inshape, seed=0):
    """``layer`` built in float64 with random (not initializer) weights, so every term matters."""
    layer.dtype = np.dtype("float64")
    layer._build(inshape)
    rs = np.random.default_rng(seed)
    for p in layer.params:
        p.value[...] = rs.normal(0, 0.5, p.shape)
    return layer


# ---------------------------------------------------------------------------- naive references
def ref_simple(layer, x, h=None):
    """h' = tanh(x W + b + h U), one sample and one step at a time."""
    W, U, b = (p.value for p in layer.params)
    out = []
    for seq in x:
        hs = np.zeros(layer.units) if h is None else h
        steps = []
        for xt in seq:
            hs = np.tanh(xt @ W + b + hs @ U)
            steps.append(hs)
        out.append(steps)
    return np.array(out)  # (batch, T, units)


def ref_lstm(layer, x, h0=None, c0=None):
    W, U, b = (p.value for p in layer.params)
    n = layer.units
    hs_all, cs_final = [], []
    for k, seq in enumerate(x):
        h = np.zeros(n) if h0 is None else h0[k]
        c = np.zeros(n) if c0 is None else c0[k]
        steps = []
        for xt in seq:
            i = sigmoid(xt @ W[:, :n] + b[:n] + h @ U[:, :n])
            f = sigmoid(xt @ W[:, n:2 * n] + b[n:2 * n] + h @ U[:, n:2 * n])
            g = np.tanh(xt @ W[:, 2 * n:3 * n] + b[2 * n:3 * n] + h @ U[:, 2 * n:3 * n])
            o = sigmoid(xt @ W[:, 3 * n:] + b[3 * n:] + h @ U[:, 3 * n:])
            c = f * c + i * g
            h = o * np.tanh(c)
            steps.append(h)
        hs_all.append(steps)
        cs_final.append(c)
    return np.array(hs_all), np.array(cs_final)


def ref_gru(layer, x, h0=None):
    W, U, b, bu = (p.value for p in layer.params)
    n = layer.units
    out = []
    for k, seq in enumerate(x):
        h = np.zeros(n) if h0 is None else h0[k]
        steps = []
        for xt in seq:
            r = sigmoid(xt @ W[:, :n] + b[:n] + h @ U[:, :n] + bu[:n])
            z = sigmoid(xt @ W[:, n:2 * n] + b[n:2 * n] + h @ U[:, n:2 * n] + bu[n:2 * n])
            cand = np.tanh(xt @ W[:, 2 * n:] + b[2 * n:] + r * (h @ U[:, 2 * n:] + bu[2 * n:]))
            h = (1 - z) * cand + z * h
            steps.append(h)
        out.append(steps)
    return np.array(out)


def test_parameter_layouts_and_forget_bias():
    lstm = layers.LSTM(5)
    lstm._build((7, 3))
    assert [(p.name.split("/")[1], p.shape) for p in lstm.params] == [
        ("kernel", (3, 20)), ("recurrent_kernel", (5, 20)), ("bias", (20,))]
    np.testing.assert_array_equal(lstm.bias.value, np.r_[np.zeros(5), np.ones(5), np.zeros(10)])
    assert lstm.kernel.value.dtype == np.float32
    # orthogonal recurrent kernel: (units, 4 units) has orthonormal rows
    np.testing.assert_allclose(lstm.recurrent_kernel.value @ lstm.recurrent_kernel.value.T, np.eye(5), atol=1e-5)
    gru = layers.GRU(4)
    gru._build((None, 2))
    assert [(p.name.split("/")[1], p.shape) for p in gru.params] == [
        ("kernel", (2, 12)), ("recurrent_kernel", (4, 12)), ("bias", (12,)), ("recurrent_bias", (12,))]
    rnn = layers.SimpleRNN(3)
    rnn._build((4, 2))
    assert [(p.name.split("/")[1], p.shape) for p in rnn.params] == [
        ("kernel", (2, 3)), ("recurrent_kernel", (3, 3)), ("bias", (3,))]
    assert layers.LSTM(3, unit_forget_bias=False, use_bias=False).count_params() == 0  # unbuilt
    nb = layers.GRU(3, use_bias=False)
    nb._build((4, 2))
    assert [p.name.split("/")[1] for p in nb.params] == ["kernel", "recurrent_kernel"]


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_forward_matches_naive_references(steps):
    rs = np.random.default_rng(steps)
    x = rs.standard_normal((3, steps, 4))
    lstm = built(layers.LSTM(5, return_sequences=True, return_state=True), (steps, 4))
    seq, h, c = lstm.forward(x)
    want_seq, want_c = ref_lstm(lstm, x)
    np.testing.assert_allclose(seq, want_seq, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, want_seq[:, -1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c, want_c, rtol=1e-12, atol=1e-12)
    gru = built(layers.GRU(5, return_sequences=True), (steps, 4), seed=1)
    np.testing.assert_allclose(gru.forward(x), ref_gru(gru, x), rtol=1e-12, atol=1e-12)
    rnn = built(layers.SimpleRNN(5), (steps, 4), seed=2)
    np.testing.assert_allclose(rnn.forward(x), ref_simple(rnn, x)[:, -1], rtol=1e-12, atol=1e-12)


def test_initial_state_matches_reference():
    rs = np.random.default_rng(3)
    x = rs.standard_normal((2, 4, 3))
    h0, c0 = rs.standard_normal((2, 5)), rs.standard_normal((2, 5))
    lstm = built(layers.LSTM(5), (4, 3))
    want, _ = ref_lstm(lstm, x, h0, c0)
    np.testing.assert_allclose(lstm.forward(x, initial_state=[h0, c0]), want[:, -1], rtol=1e-12)
    gru = built(layers.GRU(5), (4, 3))
    np.testing.assert_allclose(gru.forward(x, initial_state=[h0]), ref_gru(gru, x, h0)[:, -1], rtol=1e-12)


def test_float32_in_float32_out():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    for cls in RNNS:
        layer = cls(3, return_sequences=True)
        layer._build((3, 4))
        y = layer.forward(x, training=True)
        assert y.dtype == np.float32
        dx = layer.backward(np.ones_like(y))
        assert dx.dtype == np.float32 and all(p.grad.dtype == np.float32 for p in layer.params)


@pytest.mark.parametrize("cls", RNNS)
def test_go_backwards_is_the_reversed_sequence(cls):
    x = np.random.default_rng(1).standard_normal((2, 5, 3))
    fwd = built(cls(4, return_sequences=True), (5, 3))
    bwd = built(cls(4, return_sequences=True, go_backwards=True), (5, 3))
    np.testing.assert_allclose(bwd.forward(x), fwd.forward(x[:, ::-1]), rtol=1e-12)


# ---------------------------------------------------------------------------- torch cross-check
def test_lstm_and_gru_match_pytorch():
    torch = pytest.importorskip("torch")
    rs = np.random.default_rng(0)
    x = rs.standard_normal((3, 6, 4))
    xt = torch.from_numpy(x)
    lstm = built(layers.LSTM(5, return_sequences=True, return_state=True), (6, 4))
    W, U, b = (p.value for p in lstm.params)
    tl = torch.nn.LSTM(4, 5, batch_first=True).double()
    with torch.no_grad():
        tl.weight_ih_l0.copy_(torch.from_numpy(W.T))
        tl.weight_hh_l0.copy_(torch.from_numpy(U.T))
        tl.bias_ih_l0.copy_(torch.from_numpy(b))
        tl.bias_hh_l0.zero_()
        want, (th, tc) = tl(xt)
    seq, h, c = lstm.forward(x)
    np.testing.assert_allclose(seq, want.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c, tc[0].numpy(), rtol=1e-10, atol=1e-12)
    gru = built(layers.GRU(5, return_sequences=True), (6, 4), seed=4)
    W, U, b, bu = (p.value for p in gru.params)
    tg = torch.nn.GRU(4, 5, batch_first=True).double()
    with torch.no_grad():
        tg.weight_ih_l0.copy_(torch.from_numpy(W.T))
        tg.weight_hh_l0.copy_(torch.from_numpy(U.T))
        tg.bias_ih_l0.copy_(torch.from_numpy(b))
        tg.bias_hh_l0.copy_(torch.from_numpy(bu))
        want, _ = tg(xt)
    np.testing.assert_allclose(gru.forward(x), want.numpy(), rtol=1e-10, atol=1e-12)


def test_lstm_and_gru_gradients_match_pytorch_autograd():
    torch = pytest.importorskip("torch")
    rs = np.random.default_rng(1)
    x = rs.standard_normal((3, 7, 4))
    cot = rs.standard_normal((3, 7, 5))
    for cls, tcls in ((layers.LSTM, torch.nn.LSTM), (layers.GRU, torch.nn.GRU)):
        ours = built(cls(5, return_sequences=True), (7, 4), seed=2)
        W, U, b = (p.value for p in ours.params[:3])
        net = tcls(4, 5, batch_first=True).double()
        with torch.no_grad():
            net.weight_ih_l0.copy_(torch.from_numpy(W.T))
            net.weight_hh_l0.copy_(torch.from_numpy(U.T))
            net.bias_ih_l0.copy_(torch.from_numpy(b))
            if cls is layers.GRU:
                net.bias_hh_l0.copy_(torch.from_numpy(ours.recurrent_bias.value))
            else:
                net.bias_hh_l0.zero_()
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        (net(xt)[0] * torch.from_numpy(cot)).sum().backward()
        ours.forward(x)
        dx = ours.backward(cot)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.kernel.grad, net.weight_ih_l0.grad.numpy().T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.recurrent_kernel.grad, net.weight_hh_l0.grad.numpy().T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.bias.grad, net.bias_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12)
        if cls is layers.GRU:
            np.testing.assert_allclose(ours.recurrent_bias.grad, net.bias_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------- gradient checks
def grad_check(layer, x, setup=None, initial_grads=True, **forward_kwargs):
    """Central-difference check of dL/dx and every param, for L = sum(outputs * random cotangents).

    ``setup()`` runs before every forward (to restore a carried state). Returns the analytic
    gradients and ``f``, the scalar L as a function of the current arrays (for further checks).
    """
    rs = np.random.default_rng(0)

    def fwd():
        if setup is not None:
            setup()
        return layer.forward(x, **forward_kwargs)

    out = fwd()
    listed = isinstance(out, list)
    cot = [rs.standard_normal(o.shape) for o in (out if listed else [out])]

    def f():
        o = fwd()
        return float(sum(np.sum(a * g) for a, g in zip(o if listed else [o], cot)))

    fwd()
    dx = layer.backward(cot if listed else cot[0])
    analytic = {"input": dx, **{p.name: p.grad.copy() for p in layer.params}}
    if initial_grads:
        analytic["initial_state"] = [g.copy() for g in layer.initial_state_grads]
    np.testing.assert_allclose(dx, testing.numerical_gradient(f, x), rtol=1e-5, atol=1e-7, err_msg="input")
    for p in layer.params:
        np.testing.assert_allclose(analytic[p.name], testing.numerical_gradient(f, p.value),
                                   rtol=1e-5, atol=1e-7, err_msg=p.name)
    return analytic, f


def make_mask(batch, steps, seed=0):
    """Random masks with at least one real step per row, and some rows fully real."""
    rs = np.random.default_rng(seed)
    m = rs.random((batch, steps)) > 0.4
    m[:, rs.integers(0, steps)] = True
    m[0] = True
    return m


@pytest.mark.parametrize("cls", RNNS)
@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("kwargs", [{}, {"return_sequences": True}, {"go_backwards": True},
                                    {"go_backwards": True, "return_sequences": True}])
def test_gradients_with_mask(cls, steps, kwargs):
    x = np.random.default_rng(steps).standard_normal((3, steps, 2))
    mask = make_mask(3, steps, seed=steps)
    layer = built(cls(3, **kwargs), (steps, 2))
    analytic, _ = grad_check(layer, x, mask=mask)
    # masked steps get exactly no gradient
    assert np.all(analytic["input"][~mask] == 0.0)


@pytest.mark.parametrize("cls", RNNS)
@pytest.mark.parametrize("seqs", [False, True])
def test_gradients_of_initial_and_returned_states(cls, seqs):
    steps = 5
    rs = np.random.default_rng(7)
    x = rs.standard_normal((3, steps, 2))
    n_states = 2 if cls is layers.LSTM else 1
    init = [rs.standard_normal((3, 3)) for _ in range(n_states)]
    layer = built(cls(3, return_sequences=seqs, return_state=True), (steps, 2))
    analytic, f = grad_check(layer, x, initial_state=init, mask=make_mask(3, steps, seed=2))
    for s, g in zip(init, analytic["initial_state"]):
        np.testing.assert_allclose(g, testing.numerical_gradient(f, s), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", RNNS)
def test_none_state_gradients_mean_no_gradient(cls):
    x = np.random.default_rng(3).standard_normal((2, 4, 2))
    n_states = 2 if cls is layers.LSTM else 1
    layer = built(cls(3, return_state=True), (4, 2))
    out = layer.forward(x)
    assert len(out) == 1 + n_states
    np.testing.assert_array_equal(out[0], out[1])  # the output is the final h
    dx = layer.backward([np.ones_like(out[0])] + [None] * n_states)
    plain = built(cls(3), (4, 2))
    plain.forward(x)
    np.testing.assert_allclose(dx, plain.backward(np.ones_like(out[0])), rtol=1e-12)


@pytest.mark.parametrize("cls", RNNS)
def test_stateful_carry_and_its_gradient(cls):
    rs = np.random.default_rng(11)
    x1, x2 = rs.standard_normal((2, 4, 2)), rs.standard_normal((2, 3, 2))
    layer = built(cls(3, stateful=True, return_sequences=True), (None, 2))
    whole = built(cls(3, return_sequences=True), (None, 2))
    for p, q in zip(layer.params, whole.params):
        q.value[...] = p.value
    y1 = layer.forward(x1)
    carried = layer.states
    y2 = layer.forward(x2)
    # two stateful batches = one sequence of 4 + 3 steps
    want = whole.forward(np.concatenate([x1, x2], axis=1))
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=1), want, rtol=1e-12)
    # the gradient of the second batch, with the carried state held fixed (truncated BPTT)
    grad_check(layer, x2, setup=lambda: layer.reset_states(carried))
    # reset_states forgets: the next batch starts from zeros again
    layer.reset_states()
    np.testing.assert_allclose(layer.forward(x2), whole.forward(x2), rtol=1e-12)
    with pytest.raises(ValueError, match="is stateful and carries the state of a batch of 2"):
        layer.forward(rs.standard_normal((3, 3, 2)))


def test_model_reset_states():
    cutedl.set_seed(0)
    model = Model([layers.GRU(4, stateful=True, inshape=(3, 2)), layers.Dense(1)]).assemble()
    x = np.random.default_rng(0).standard_normal((2, 3, 2)).astype(np.float32)
    a = model.predict(x)
    b = model.predict(x)
    assert not np.allclose(a, b)  # the state was carried
    model.reset_states()
    np.testing.assert_array_equal(model.predict(x), a)


# ---------------------------------------------------------------------------- masking invariance
@pytest.mark.parametrize("cls", RNNS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_padding_does_not_change_results(cls, go_backwards):
    rs = np.random.default_rng(5)
    seq = rs.standard_normal((1, 4, 2))
    layer = built(cls(3, go_backwards=go_backwards), (None, 2))
    ref_out = layer.forward(seq)
    cot = rs.standard_normal(ref_out.shape)
    layer.backward(cot)
    ref_grads = [p.grad.copy() for p in layer.params]
    for pre, post in [(3, 0), (0, 2), (1, 5)]:
        x = np.concatenate([np.full((1, pre, 2), 7.0), seq, np.full((1, post, 2), -3.0)], axis=1)
        mask = np.array([[False] * pre + [True] * 4 + [False] * post])
        np.testing.assert_allclose(layer.forward(x, mask=mask), ref_out, rtol=1e-12)
        dx = layer.backward(cot)
        for p, g in zip(layer.params, ref_grads):
            np.testing.assert_allclose(p.grad, g, rtol=1e-10, atol=1e-14)
        assert np.all(dx[0, :pre] == 0) and np.all(dx[0, pre + 4:] == 0)
    # with return_sequences the real steps match and the padded ones are zero
    layer_s = built(cls(3, return_sequences=True), (None, 2))
    want = layer_s.forward(seq)
    x = np.concatenate([np.ones((1, 2, 2)), seq], axis=1)
    got = layer_s.forward(x, mask=np.array([[False] * 2 + [True] * 4]))
    np.testing.assert_allclose(got[:, 2:], want, rtol=1e-12)
    assert np.all(got[:, :2] == 0)


def test_masking_layer_in_a_model_gives_padding_invariance():
    cutedl.set_seed(1)
    model = Model([layers.Masking(0.0, inshape=(None, 2)), layers.LSTM(4, return_sequences=True),
                   layers.Dropout(0.1), layers.GRU(3), layers.Dense(1)]).assemble()
    rs = np.random.default_rng(2)
    seqs = [rs.standard_normal((n, 2)).astype(np.float32) + 3.0 for n in (2, 5, 3)]
    alone = np.concatenate([model.predict(s[None]) for s in seqs])
    for total in (5, 8):
        x = np.zeros((3, total, 2), dtype=np.float32)
        for i, s in enumerate(seqs):
            x[i, total - len(s):] = s  # pre-padding, the Keras default
        np.testing.assert_allclose(model.predict(x), alone, rtol=1e-5, atol=1e-6)
        assert model.output_mask is None  # consumed by the GRU (return_sequences=False)
    # post-padding is the same
    x = np.zeros((3, 6, 2), dtype=np.float32)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
    np.testing.assert_allclose(model.predict(x), alone, rtol=1e-5, atol=1e-6)


def test_return_sequences_passes_the_mask_on():
    rnn = layers.LSTM(2, return_sequences=True)
    last = layers.LSTM(2)
    m = np.array([[True, False]])
    assert rnn.compute_mask(np.zeros((1, 2, 3)), m) is m
    assert last.compute_mask(np.zeros((1, 2, 3)), m) is None
    assert rnn.compute_mask(np.zeros((1, 2, 3)), None) is None
    back = layers.GRU(2, return_sequences=True, go_backwards=True)
    np.testing.assert_array_equal(back.compute_mask(np.zeros((1, 2, 3)), m), [[False, True]])


# ---------------------------------------------------------------------------- training and errors
def test_lstm_learns_to_remember_the_first_step():
    """The target is the sign of the first input of 8 steps: needs memory across the sequence."""
    cutedl.set_seed(0)
    rs = np.random.default_rng(0)
    x = rs.standard_normal((512, 8, 1)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.float32)[:, None]
    model = Model([layers.LSTM(8, inshape=(8, 1)), layers.Dense(1, activation="sigmoid")]).assemble()
    sess = Session(model, "binary_crossentropy", cutedl.optimizers.Adam(0.02), metrics=["binary_accuracy"])
    sess.fit((x, y), epochs=15, batch_size=64, verbose=0)
    assert sess.evaluate((x, y))["binary_accuracy"] > 0.95


def test_save_load_and_summary(tmp_path):
    cutedl.set_seed(0)
    model = Model([layers.LSTM(4, return_sequences=True, go_backwards=True, dropout=0.1, inshape=(5, 3)),
                   layers.GRU(3, recurrent_dropout=0.2, return_sequences=True),
                   layers.SimpleRNN(2, activation="relu"), layers.Dense(1)]).assemble()
    x = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    model.save(tmp_path / "m.npz")
    loaded = Model.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert [type(l).__name__ for l in loaded.layers] == ["LSTM", "GRU", "SimpleRNN", "Dense"]
    assert loaded.layers[0].go_backwards and loaded.layers[1].recurrent_dropout == 0.2
    text = model.summary()
    assert "LSTM" in text and "(batch, 5, 4)" in text and "(batch, 2)" in text
    assert f"Total params: {model.count_params():,}" in text
    assert model.count_params() == (3 * 16 + 4 * 16 + 16) + (4 * 9 + 3 * 9 + 18) + (3 * 2 + 2 * 2 + 2) + 3


def test_errors():
    with pytest.raises(ValueError, match=r"expects input \(batch, T, features\).*x\[\.\.\., None\]"):
        Model([layers.LSTM(3, inshape=(10,))]).assemble()
    with pytest.raises(ValueError, match="units must be a positive integer"):
        layers.GRU(0)
    with pytest.raises(ValueError, match=r"LSTM: dropout must be a number in \[0, 1\) \(the fraction dropped\), got 1.0"):
        layers.LSTM(3, dropout=1.0)
    with pytest.raises(TypeError, match="recurrent_dropout must be a number"):
        layers.SimpleRNN(3, recurrent_dropout="a lot")
    with pytest.raises(ValueError, match="returns a list of arrays.*layer.states"):
        Model([layers.LSTM(3, return_state=True, inshape=(4, 2)), layers.Dense(1)]).assemble()
    layer = layers.LSTM(3)
    layer._build((4, 2))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4, 2\), got \(2, 4, 3\)"):
        layer.forward(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"mask must be a bool array of shape \(batch, T\) = \(2, 4\)"):
        layer.forward(np.zeros((2, 4, 2)), mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"initial_state must be a list of 2 arrays \(h, c\)"):
        layer.forward(np.zeros((2, 4, 2)), initial_state=[np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"state c must have shape \(batch=2, units=3\)"):
        layer.forward(np.zeros((2, 4, 2)), initial_state=[np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="backward got a list of 2 gradients"):
        layer.forward(np.zeros((2, 4, 2)))
        layer.backward([np.zeros((2, 3)), np.zeros((2, 3))])
    free = layers.GRU(3)
    free._build((None, 2))
    with pytest.raises(ValueError, match="sequence of length 0"):
        free.forward(np.zeros((2, 0, 2)))
