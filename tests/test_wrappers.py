"""Bidirectional and TimeDistributed: values against their definitions, gradients with masks in
every merge mode, padding invariance, configs, save/load and errors."""
import numpy as np
import pytest

import cutedl
from cutedl import Model, layers
from test_recurrent import built, grad_check, make_mask  # the BPTT checker (tests/ is on sys.path)

MODES = ["concat", "sum", "mul", "ave"]


def copy_weights(src, dst):
    for p, q in zip(src.params, dst.params):
        q.value[...] = p.value


@pytest.mark.parametrize("mode", MODES + [None])
@pytest.mark.parametrize("seqs", [False, True])
def test_bidirectional_is_forward_and_realigned_backward(mode, seqs):
    x = np.random.default_rng(0).standard_normal((3, 5, 2))
    bi = built(layers.Bidirectional(layers.GRU(4, return_sequences=seqs), merge_mode=mode), (5, 2))
    fwd = built(layers.GRU(4, return_sequences=seqs), (5, 2))
    bwd = built(layers.GRU(4, return_sequences=seqs), (5, 2))
    copy_weights(bi.forward_layer, fwd)
    copy_weights(bi.backward_layer, bwd)
    yf = fwd.forward(x)
    # the backward direction is the same cell run on the reversed sequence, re-aligned in time
    yb = bwd.forward(x[:, ::-1])[:, ::-1] if seqs else bwd.forward(x[:, ::-1])
    want = {"concat": np.concatenate([yf, yb], axis=-1), "sum": yf + yb, "mul": yf * yb,
            "ave": (yf + yb) / 2, None: [yf, yb]}[mode]
    got = bi.forward(x)
    if mode is None:
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert got.shape[1:] == bi.outshape


@pytest.mark.parametrize("mode", MODES + [None])
@pytest.mark.parametrize("cls", [layers.LSTM, layers.GRU, layers.SimpleRNN])
@pytest.mark.parametrize("seqs", [False, True])
def test_bidirectional_gradients_with_mask(mode, cls, seqs):
    steps = 5
    x = np.random.default_rng(1).standard_normal((3, steps, 2))
    mask = make_mask(3, steps, seed=4)
    bi = built(layers.Bidirectional(cls(3, return_sequences=seqs), merge_mode=mode), (steps, 2))
    analytic, _ = grad_check(bi, x, mask=mask, initial_grads=False)
    assert np.all(analytic["input"][~mask] == 0.0)


def test_bidirectional_gradients_without_mask_over_one_and_seven_steps():
    for steps in (1, 7):
        x = np.random.default_rng(steps).standard_normal((2, steps, 3))
        for mode in MODES:
            bi = built(layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode=mode), (steps, 3))
            grad_check(bi, x, initial_grads=False)


def test_bidirectional_padding_invariance_in_a_model():
    cutedl.set_seed(0)
    model = Model([layers.Masking(inshape=(None, 2)),
                   layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="concat"),
                   layers.Bidirectional(layers.GRU(2), merge_mode="ave"), layers.Dense(1)]).assemble()
    rs = np.random.default_rng(3)
    seqs = [rs.standard_normal((n, 2)).astype(np.float32) + 2.0 for n in (3, 6)]
    alone = np.concatenate([model.predict(s[None]) for s in seqs])
    for total, pre in ((6, True), (9, True), (8, False)):
        x = np.zeros((2, total, 2), dtype=np.float32)
        for i, s in enumerate(seqs):
            if pre:
                x[i, total - len(s):] = s
            else:
                x[i, :len(s)] = s
        np.testing.assert_allclose(model.predict(x), alone, rtol=1e-5, atol=1e-6)


def test_bidirectional_params_config_and_save_load(tmp_path):
    cutedl.set_seed(0)
    model = Model([layers.Bidirectional(layers.LSTM(4, return_sequences=True, inshape=(6, 3))),
                   layers.Bidirectional(layers.GRU(2), merge_mode="sum"), layers.Dense(1)]).assemble()
    bi = model.layers[0]
    assert bi.inshape == (6, 3) and bi.outshape == (6, 8) and model.layers[1].outshape == (2,)
    assert [p.name for p in bi.params] == [
        f"{bi.name}/forward/kernel", f"{bi.name}/forward/recurrent_kernel", f"{bi.name}/forward/bias",
        f"{bi.name}/backward/kernel", f"{bi.name}/backward/recurrent_kernel", f"{bi.name}/backward/bias"]
    assert not bi.forward_layer.go_backwards and bi.backward_layer.go_backwards
    assert bi.count_params() == 2 * (3 * 16 + 4 * 16 + 16)
    # each direction starts from its own random weights
    assert not np.allclose(bi.forward_layer.kernel.value, bi.backward_layer.kernel.value)
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    model.save(tmp_path / "bi.npz")
    loaded = Model.load(tmp_path / "bi.npz")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.layers[1].merge_mode == "sum"
    assert "Bidirectional" in model.summary() and "(batch, 6, 8)" in model.summary()


def test_bidirectional_merge_none_standalone_and_errors():
    bi = built(layers.Bidirectional(layers.SimpleRNN(2), merge_mode=None), (3, 2))
    x = np.random.default_rng(0).standard_normal((2, 3, 2))
    yf, yb = bi.forward(x)
    assert yf.shape == yb.shape == (2, 2)
    with pytest.raises(ValueError, match=r"merge_mode=None: backward takes a list of two"):
        bi.backward(np.ones((2, 2)))
    with pytest.raises(ValueError, match="returns a list of arrays"):
        Model([layers.Bidirectional(layers.LSTM(2), merge_mode=None, inshape=(3, 2))]).assemble()
    with pytest.raises(ValueError, match="merge_mode must be one of"):
        layers.Bidirectional(layers.LSTM(2), merge_mode="max")
    with pytest.raises(TypeError, match="wraps a recurrent layer"):
        layers.Bidirectional(layers.Dense(2))
    with pytest.raises(TypeError, match="wraps a cutedl Layer"):
        layers.Bidirectional("lstm")
    with pytest.raises(ValueError, match="does not support return_state"):
        layers.Bidirectional(layers.GRU(2, return_state=True))


def test_bidirectional_stateful_reset():
    cutedl.set_seed(0)
    model = Model([layers.Bidirectional(layers.GRU(3, stateful=True), inshape=(4, 2)), layers.Dense(1)]).assemble()
    x = np.random.default_rng(0).standard_normal((2, 4, 2)).astype(np.float32)
    a = model.predict(x)
    assert not np.allclose(model.predict(x), a)
    model.reset_states()
    np.testing.assert_array_equal(model.predict(x), a)


def test_same_template_wrapped_twice_builds_independent_layers():
    template = layers.LSTM(2)
    a, b = layers.Bidirectional(template), layers.Bidirectional(template)
    a._build((3, 2))
    b._build((3, 2))
    assert not template.built and a.forward_layer is not b.forward_layer


# ---------------------------------------------------------------------------- TimeDistributed
def test_time_distributed_applies_the_layer_per_step():
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    td = built(layers.TimeDistributed(layers.Dense(5, activation="relu")), (4, 3))
    w, b = (p.value for p in td.params)
    want = np.stack([np.maximum(x[:, t] @ w + b, 0) for t in range(4)], axis=1)
    np.testing.assert_allclose(td.forward(x), want, rtol=1e-12)
    assert td.outshape == (4, 5)
    assert [p.name for p in td.params] == [f"{td.name}/layer/weight", f"{td.name}/layer/bias"]
    flat = built(layers.TimeDistributed(layers.Flatten()), (None, 2, 3))
    assert flat.outshape == (None, 6)
    np.testing.assert_array_equal(flat.forward(np.ones((2, 7, 2, 3))), np.ones((2, 7, 6)))


def test_time_distributed_passes_the_mask_and_trains_in_a_model(tmp_path):
    cutedl.set_seed(0)
    model = Model([layers.Masking(inshape=(None, 2)), layers.TimeDistributed(layers.Dense(3)),
                   layers.LSTM(2), layers.Dense(1)]).assemble()
    rs = np.random.default_rng(1)
    s = rs.standard_normal((1, 3, 2)).astype(np.float32) + 2
    padded = np.concatenate([np.zeros((1, 2, 2), np.float32), s], axis=1)
    # Dense(3) of a zero step is its bias, not zero: only the propagated mask keeps the LSTM invariant
    np.testing.assert_allclose(model.predict(padded), model.predict(s), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "td.npz")
    np.testing.assert_array_equal(Model.load(tmp_path / "td.npz").predict(padded), model.predict(padded))


def test_time_distributed_errors():
    with pytest.raises(ValueError, match=r"needs input \(batch, T, \.\.\.\) with a time axis"):
        Model([layers.TimeDistributed(layers.Dense(2), inshape=(4,))]).assemble()


def test_frozen_wrappers_freeze_their_layers():
    model = Model([layers.Bidirectional(layers.GRU(2, return_sequences=True), trainable=False, inshape=(3, 2)),
                   layers.TimeDistributed(layers.Dense(2), trainable=False), layers.LSTM(2)]).assemble()
    assert [p.trainable for p in model.params] == [False] * 10 + [True] * 3
    assert "Non-trainable params: 82" in model.summary()  # 2 x 36 (GRU) + 10 (Dense)
