"""Loading never executes code and rejects every malformed file with a clear ValueError.

The crafted files carry a pickle payload that would create a marker file if it were ever
unpickled; every test also checks the marker is absent.
"""
import io
import json
import pathlib
import pickle

import numpy as np
import pytest

from cutedl import History, Model, checkpoint, layers, listeners


class Payload:
    """Unpickling this creates ``marker``: proof that loading executed code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _model():
    return Model([layers.Dense(3, inshape=4, activation="relu"), layers.Dense(2)]).assemble()


def _config_bytes(meta):
    return np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)


def _meta(layers_cfg):
    return {"format": "cutedl-model", "version": 1, "config": {"name": "m", "layers": layers_cfg},
            "params": []}


def _load_model(path):
    return Model.load(path)


def _load_checkpoint(path):
    return checkpoint.read(path)


def _load_weights(path):
    return checkpoint.load_weights(_model(), path)


LOADERS = {"Model.load": _load_model, "checkpoint.read": _load_checkpoint, "load_weights": _load_weights}


def _good_file(kind, path):
    model = _model()
    if kind == "Model.load":
        model.save(path)
    elif kind == "load_weights":
        checkpoint.save_weights(model, path)
    else:
        sess_dir = path.parent / "run"
        from cutedl import Session

        rs = np.random.default_rng(0)
        x = rs.standard_normal((20, 4)).astype(np.float32)
        y = rs.standard_normal((20, 2)).astype(np.float32)
        sess = Session(model, "mse", "adam")

        class Stop(listeners.Listener):
            def on_batch_end(self, step, logs=None):
                if step == 3:
                    raise RuntimeError("stop")

        with pytest.raises(RuntimeError):
            sess.fit((x, y), epochs=3, batch_size=4, verbose=0,
                     listeners=[listeners.BackupAndRestore(sess_dir, every=2), Stop()])
        (sess_dir / "training-state.npz").rename(path)


def _hostile(kind, path, marker):
    """Every crafted variant of a file for loader ``kind``: name -> writer(path)."""
    def object_array(p):
        np.savez(p, __config__=_config_bytes(_meta([])), __state__=_config_bytes({}),
                 param_0=np.array([Payload(marker)], dtype=object))

    def pickle_file(p):
        p.write_bytes(pickle.dumps(Payload(marker)))

    def npy_pickle(p):
        with open(p, "wb") as f:
            np.save(f, np.array([Payload(marker)], dtype=object), allow_pickle=True)

    def truncated(p):
        _good_file(kind, p)
        data = p.read_bytes()
        p.write_bytes(data[:len(data) // 2])

    def random_bytes(p):
        p.write_bytes(np.random.default_rng(0).bytes(2000))

    def empty(p):
        p.write_bytes(b"")

    def plain_npy(p):
        with open(p, "wb") as f:
            np.save(f, np.zeros(3))

    def bad_json(p):
        np.savez(p, __config__=np.frombuffer(b"{not json", dtype=np.uint8),
                 __state__=np.frombuffer(b"\xff\xfe", dtype=np.uint8))

    return {"object array": object_array, "pickle": pickle_file, "npy with pickle": npy_pickle,
            "truncated": truncated, "random bytes": random_bytes, "empty": empty, "plain npy": plain_npy,
            "corrupt json": bad_json}


CASES = [(kind, name) for kind in LOADERS for name in _hostile(kind, None, None)]


@pytest.mark.parametrize("kind, name", CASES)
def test_hostile_file_is_rejected_without_running_code(tmp_path, kind, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    _hostile(kind, path, marker)[name](path)
    with pytest.raises(ValueError, match=r"not a cutedl|cannot be loaded safely|corrupt|truncated|non-numeric"):
        LOADERS[kind](path)
    assert not marker.exists()


def test_good_files_still_load(tmp_path):
    for kind, load in LOADERS.items():
        path = tmp_path / f"{kind}.npz"
        _good_file(kind, path)
        load(path)


@pytest.mark.parametrize("layers_cfg, match", [
    ([{"class_name": "EvilLayer", "config": {}}], "Unknown layer 'EvilLayer'"),
    ([{"class_name": "os.system", "config": {"command": "touch pwned"}}], "Unknown layer 'os.system'"),
    ([{"class_name": "builtins.eval", "config": {}}], "Unknown layer 'builtins.eval'"),
    ([{"class_name": ["Dense"], "config": {}}], "layer name must be a string"),
    ([{"class_name": "Dense", "config": {"units": 3, "inshape": [4], "__class__": "x"}}], "unexpected keyword"),
    ([{"class_name": "Dense", "config": {"units": 3, "inshape": [4],
                                         "activation": {"class_name": "subprocess.Popen",
                                                        "config": {"args": ["touch", "pwned"]}}}}],
     "Unknown activation 'subprocess.Popen'"),
    ([{"class_name": "Dense", "config": {"units": 3, "inshape": [4],
                                         "kernel_initializer": {"class_name": "posix.system", "config": {}}}}],
     "Unknown initializer 'posix.system'"),
    ([{"class_name": "Dense", "config": {"units": -3, "inshape": [4]}}], "units"),
    ("not a list", "expected a dict with a 'layers' list"),
    ([], "no layers"),
])
def test_hostile_config_is_rejected(tmp_path, monkeypatch, layers_cfg, match):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.npz"
    np.savez(path, __config__=_config_bytes(_meta(layers_cfg)))
    with pytest.raises(ValueError, match=match):
        Model.load(path)
    assert not (tmp_path / "pwned").exists()


def test_hostile_weights_are_rejected(tmp_path):
    model = _model()
    meta = {"format": "cutedl-model", "version": 1, "config": model.get_config(), "params": []}
    good = {f"param_{i}": p.value for i, p in enumerate(model.params)}
    for name, arrays, match in [
        ("int", {**good, "param_0": good["param_0"].astype(np.int64)}, "non-float array"),
        ("shape", {**good, "param_0": np.zeros((5, 3), np.float32)}, "has shape"),
        ("missing", {k: v for k, v in good.items() if k != "param_3"}, "different number of arrays"),
        ("extra", {**good, "param_9": np.zeros(1, np.float32)}, "different number of arrays"),
    ]:
        path = tmp_path / f"{name}.npz"
        np.savez(path, __config__=_config_bytes(meta), **arrays)
        with pytest.raises(ValueError, match=match):
            Model.load(path)
    path = tmp_path / "v2.npz"
    np.savez(path, __config__=_config_bytes({**meta, "version": 2}), **good)
    with pytest.raises(ValueError, match="format version 2"):
        Model.load(path)


def test_hostile_checkpoint_documents_are_rejected(tmp_path):
    path = tmp_path / "ckpt.npz"
    _good_file("checkpoint.read", path)
    with np.load(path) as data:
        doc = json.loads(data["__state__"].tobytes().decode())
        arrays = {k: data[k] for k in data.files if k != "__state__"}

    def write(d, **extra):
        buf = io.BytesIO()
        np.savez(buf, __state__=_config_bytes(d), **{**arrays, **extra})
        path.write_bytes(buf.getvalue())

    write({**doc, "format": "something-else"})
    with pytest.raises(ValueError, match="not a cutedl training checkpoint"):
        checkpoint.read(path)
    write({**doc, "model": {**doc["model"], "weights": [{"__array__": "nope"}]}})
    with pytest.raises(ValueError, match="refers to a missing array 'nope'"):
        checkpoint.read(path)
    write(doc, evil=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="non-numeric array 'evil'"):
        checkpoint.read(path)
    # a structurally broken document is caught on resume, naming the file
    broken = {k: v for k, v in doc.items() if k != "optimizer"}
    write(broken)
    from cutedl import Session

    sess = Session(_model(), "mse", "adam")
    rs = np.random.default_rng(0)
    x, y = rs.standard_normal((20, 4)).astype(np.float32), rs.standard_normal((20, 2)).astype(np.float32)
    path.rename(tmp_path / "training-state.npz")
    with pytest.raises(ValueError, match="incomplete or corrupt"):
        sess.fit((x, y), epochs=3, batch_size=4, verbose=0, listeners=[listeners.BackupAndRestore(tmp_path)])


@pytest.mark.parametrize("text, match", [
    ("[1, 2]", "Not a cutedl History"),
    ('{"history": {"loss": "abc"}}', "must be a list"),
    ('{"history": {"loss": ["x", 1]}}', "must hold numbers"),
    ('{"history": {"loss": [1, 2], "step": [1]}}', "different lengths"),
    ('{"history": {}, "best": "evil"}', "wrong type"),
    ('{"history": {}, "params": [1]}', "wrong type"),
    ("{" * 100000, "not a valid history JSON"),
    ("\udcff", "not a valid history JSON"),
])
def test_hostile_history_json(tmp_path, text, match):
    path = tmp_path / "h.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match=match):
        History.load(path)
