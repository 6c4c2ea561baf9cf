import numpy as np
import pytest

import cutedl
from cutedl import Model, layers


def mlp(seed=0):
    cutedl.set_seed(seed)
    return Model([layers.Dense(8, inshape=5, activation="relu"), layers.Dropout(0.3),
                  layers.Dense(3, activation="softmax")]).assemble()


def test_assemble_infers_shapes_and_names():
    m = mlp()
    assert [l.name for l in m.layers] == ["dense_1", "dropout_1", "dense_2"]
    assert [l.outshape for l in m.layers] == [(8,), (8,), (3,)]
    assert [p.name for p in m.params] == ["dense_1/weight", "dense_1/bias", "dense_2/weight", "dense_2/bias"]
    assert m.count_params() == 5 * 8 + 8 + 8 * 3 + 3


def test_first_layer_without_inshape_is_a_clear_error():
    with pytest.raises(ValueError, match="first layer .*has no inshape.*inshape=784"):
        Model([layers.Dense(3)]).assemble()


def test_assemble_with_inshape_argument():
    m = Model([layers.Dense(3)]).assemble(inshape=4)
    assert m.outshape == (3,)


def test_add_rejects_non_layers():
    with pytest.raises(TypeError, match="expects a cutedl Layer"):
        Model().add("dense")


def test_predict_before_assemble_is_a_runtime_error():
    with pytest.raises(RuntimeError, match="assemble"):
        Model([layers.Dense(3, inshape=2)]).predict(np.zeros((1, 2)))


def test_predict_batched_equals_whole():
    m = mlp()
    x = np.random.default_rng(0).standard_normal((37, 5)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(x, batch_size=8), m.predict(x))
    assert m.predict(x).dtype == np.float32


def test_predict_wrong_shape_message():
    m = mlp()
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 5\), got \(2, 6\)"):
        m.predict(np.zeros((2, 6)))


def test_backward_returns_input_grad_only_when_asked():
    m = mlp()
    x = np.ones((2, 5), np.float32)
    out = m.forward(x, training=True)
    assert m.backward(np.ones_like(out)) is None
    m.forward(x, training=True)
    assert m.backward(np.ones_like(out), input_grad=True).shape == (2, 5)


def test_get_set_weights_keras_order():
    m = mlp()
    w = m.get_weights()
    assert [a.shape for a in w] == [(5, 8), (8,), (8, 3), (3,)]
    w[0][...] = 0
    assert not np.all(m.params[0].value == 0)  # get_weights returns copies
    m.set_weights(w)
    assert np.all(m.params[0].value == 0)
    with pytest.raises(ValueError, match=r"dense_1/weight has shape \(5, 8\)"):
        m.set_weights([np.zeros((4, 8))] + w[1:])


def test_summary_lists_layers_and_totals():
    s = mlp().summary()
    assert "dense_1" in s and "Dense" in s and "(batch, 8)" in s and "Dropout" in s
    assert "Total params: 75" in s and "Trainable params: 75" in s


def test_save_load_round_trip_bit_for_bit(tmp_path):
    m = mlp()
    path = tmp_path / "m.npz"
    m.save(path)
    m2 = Model.load(path)
    x = np.random.default_rng(0).standard_normal((10, 5)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(x), m2.predict(x))
    assert [l.get_config() for l in m.layers] == [l.get_config() for l in m2.layers]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        Model.load(tmp_path / "nope.npz")


def test_load_corrupt_file(tmp_path):
    m = mlp()
    path = tmp_path / "m.npz"
    m.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated|not a cutedl model"):
        Model.load(path)
    path.write_bytes(b"hello")
    with pytest.raises(ValueError):
        Model.load(path)


def test_load_rejects_object_arrays(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __config__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="safely|not a cutedl"):
        Model.load(path)


def test_load_rejects_unknown_layer(tmp_path):
    import json
    meta = {"format": "cutedl-model", "version": 1,
            "config": {"name": "m", "layers": [{"class_name": "os.system", "config": {}}]}}
    path = tmp_path / "bad.npz"
    np.savez(path, __config__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(ValueError, match="Unknown layer"):
        Model.load(path)


def test_seeding_is_repeatable():
    a = mlp(seed=7).get_weights()
    b = mlp(seed=7).get_weights()
    c = mlp(seed=8).get_weights()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_float64_model():
    m = Model([layers.Dense(3, inshape=2, dtype="float64")]).assemble()
    assert m.predict(np.ones((1, 2))).dtype == np.float64


def test_predict_rejects_nan():
    x = np.ones((3, 5), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="1 NaN/inf"):
        mlp().predict(x)
