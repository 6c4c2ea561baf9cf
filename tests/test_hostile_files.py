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


# ============================================================================ generated attacks
# Each class of attack below is generated over many variants and run against every loader of
# cutedl's .npz files; every variant must end in a ValueError that names the file (never a
# MemoryError, RecursionError, AttributeError or a NumPy traceback), without running code.
import functools  # noqa: E402
import re  # noqa: E402
import struct  # noqa: E402
import tracemalloc  # noqa: E402
import zipfile  # noqa: E402
import zlib  # noqa: E402

_GOOD: dict = {}


def _good_bytes(kind, tmp_path_factory):
    if kind not in _GOOD:
        path = tmp_path_factory.mktemp("good") / "good.npz"
        _good_file(kind, path)
        _GOOD[kind] = path.read_bytes()
    return _GOOD[kind]


def _entries(raw):
    """``[(name, bytes)]`` of a zip, in order (duplicates kept)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        return [(i.filename, zf.open(i).read()) for i in zf.infolist()]


def _zip(entries, compress=None):
    """A zip of ``[(name, bytes)]`` (names may repeat); ``compress``: names to deflate.

    Written by hand (as zipfile would, without its duplicate-name warning), so deflated members
    are compressed once per content and zip bombs cost no time to build.
    """
    out, directory = io.BytesIO(), []
    for name, data in entries:
        method = 8 if compress and name in compress else 0
        packed = _deflate(data) if method else data
        crc, raw_name, offset = zlib.crc32(data), name.encode(), out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(packed), len(data),
                              len(raw_name), 0) + raw_name + packed)
        directory.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(packed),
                                     len(data), len(raw_name), 0, 0, 0, 0, 0o644 << 16, offset) + raw_name)
    start = out.tell()
    for d in directory:
        out.write(d)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(directory), len(directory), out.tell() - start,
                          start, 0))
    return out.getvalue()


@functools.lru_cache(maxsize=8)
def _deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _npy_header(shape, descr="<f8", version=1):
    buf = io.BytesIO()
    d = {"descr": descr, "fortran_order": False, "shape": shape}
    (np.lib.format.write_array_header_1_0 if version == 1 else np.lib.format.write_array_header_2_0)(buf, d)
    return buf.getvalue()


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _key(kind):
    return "__config__.npy" if kind == "Model.load" else "__state__.npy"


def _used(kind):
    return "param_0.npy" if kind == "Model.load" else "a0.npy"


def _expect_rejected(kind, path, match=None):
    with pytest.raises(ValueError) as info:
        LOADERS[kind](path)
    assert str(path) in str(info.value)
    if match:
        assert re.search(match, str(info.value)), str(info.value)
    return str(info.value)


# ---------------------------------------------------------------------------- memory bombs
_HUGE_SHAPES = [(2**40,), (2**31, 2**31), (2**62,), (1, 2**40, 3), (2**20, 2**20, 0, 2**30, 5)]
_DESCRS = ["<f8", "|u1", "<c16", ">i4"]
LYING_HEADERS = [(shape, descr, version, where) for shape in _HUGE_SHAPES for descr in _DESCRS
                 for version in (1, 2) for where in ("extra", "used")]


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("shape, descr, version, where", LYING_HEADERS)
def test_generated_lying_npy_headers(tmp_path, tmp_path_factory, kind, shape, descr, version, where):
    # a header claiming terabytes over a few bytes of data: refused before anything is allocated
    entries = _entries(_good_bytes(kind, tmp_path_factory))
    liar = _npy_header(shape, descr, version) + b"\0" * 16
    if where == "extra":
        entries.append(("extra.npy", liar))
    else:
        entries = [(n, liar if n == _used(kind) else d) for n, d in entries]
    path = tmp_path / "bomb.npz"
    path.write_bytes(_zip(entries))
    nbytes = int(np.prod(shape, dtype=object)) * np.dtype(descr).itemsize
    if nbytes == 16:   # a zero in the shape: the header is honest, the loader may still refuse the array
        return
    _expect_rejected(kind, path, r"declares shape .* but the member holds 16 bytes")


_BOMB_SIZES = [17 << 20, 64 << 20]
ZIP_BOMBS = [(size, where) for size in _BOMB_SIZES for where in ("extra", "used", "key")]


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("size, where", ZIP_BOMBS)
def test_generated_zip_bombs_are_refused_before_inflating(tmp_path, tmp_path_factory, kind, size, where):
    entries = _entries(_good_bytes(kind, tmp_path_factory))
    bomb = _npy_header((size,), "|u1") + bytes(size)
    name = {"extra": "unused.npy", "used": _used(kind), "key": _key(kind)}[where]
    entries = [(n, d) for n, d in entries if n != name] + [(name, bomb)]
    path = tmp_path / "bomb.npz"
    path.write_bytes(_zip(entries, compress={name}))
    assert path.stat().st_size < size // 200
    tracemalloc.start()
    try:
        _expect_rejected(kind, path, r"would inflate to [\d,]+ bytes, [\d,]+ times its size on disk.*zip bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20   # nothing was inflated


def _patch_directory(raw, name, **fields):
    """``raw`` with the central-directory entry of ``name`` given other sizes (a forged directory)."""
    offsets = {"compress_size": 20, "file_size": 24}
    data = bytearray(raw)
    i = data.find(b"PK\x01\x02")
    while i >= 0:
        n, m, k = struct.unpack("<HHH", data[i + 28:i + 34])
        if data[i + 46:i + 46 + n].decode() == name:
            for field, value in fields.items():
                data[i + offsets[field]:i + offsets[field] + 4] = struct.pack("<I", value)
        i = data.find(b"PK\x01\x02", i + 46 + n + m + k)
    return bytes(data)


FORGED = [("file_size", 2**32 - 2), ("file_size", 2**31), ("file_size", 2**28), ("compress_size", 2**31),
          ("compress_size", 2**20)]


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("field, value", FORGED)
@pytest.mark.parametrize("member", ["key", "used"])
def test_generated_forged_directory_sizes(tmp_path, tmp_path_factory, kind, field, value, member):
    name = _key(kind) if member == "key" else _used(kind)
    path = tmp_path / "forged.npz"
    path.write_bytes(_patch_directory(_good_bytes(kind, tmp_path_factory), name, **{field: value}))
    _expect_rejected(kind, path)


# ---------------------------------------------------------------------------- deep JSON
def _nested(depth, shape):
    doc = 1
    for i in range(depth):
        doc = [doc] if shape == "list" or (shape == "mixed" and i % 2) else {"k": doc}
    return doc


DEPTHS = [(d, s) for d in (101, 150, 700, 990, 3000) for s in ("list", "dict", "mixed")]


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("depth, shape", DEPTHS)
def test_generated_deeply_nested_documents(tmp_path, tmp_path_factory, kind, depth, shape):
    entries = _entries(_good_bytes(kind, tmp_path_factory))
    key = _key(kind)
    doc = json.loads(bytes(np.load(io.BytesIO(dict(entries)[key]))))
    target = doc["config"] if kind == "Model.load" else doc
    target["extra"] = _nested(depth - 1 - (kind == "Model.load"), shape)   # total depth: `depth`
    text = json.dumps(doc) if depth < 900 else _dumps_deep(doc)
    entries = [(n, _npy(np.frombuffer(text.encode(), np.uint8)) if n == key else d) for n, d in entries]
    path = tmp_path / "deep.npz"
    path.write_bytes(_zip(entries))
    _expect_rejected(kind, path, r"nested (more than 100 levels deep|too deeply)")


def _dumps_deep(doc):
    """json.dumps without recursion (json.dumps itself recurses)."""
    out, stack = [], [doc]
    while stack:
        obj = stack.pop()
        if isinstance(obj, _Raw):
            out.append(obj.text)
        elif isinstance(obj, list):
            stack.append(_Raw("]"))
            for i, v in reversed(list(enumerate(obj))):
                stack.append(v)
                if i:
                    stack.append(_Raw(","))
            stack.append(_Raw("["))
        elif isinstance(obj, dict):
            stack.append(_Raw("}"))
            for i, (k, v) in reversed(list(enumerate(obj.items()))):
                stack.append(v)
                stack.append(_Raw(json.dumps(k) + ":"))
                if i:
                    stack.append(_Raw(","))
            stack.append(_Raw("{"))
        else:
            out.append(json.dumps(obj))
    return "".join(out)


class _Raw:
    def __init__(self, text):
        self.text = text


# ---------------------------------------------------------------------------- foreign and duplicate members
FOREIGN = [(name, where) for name in ("readme.txt", "__config__.json", "x.npy.bak", "dir/", "x.NPY", "noext",
                                      "__MACOSX/._param_0.npy.txt")
           for where in ("extra",)] + [("renamed", "used"), ("renamed", "key")]


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("name, where", FOREIGN)
def test_generated_non_npy_members(tmp_path, tmp_path_factory, kind, name, where):
    entries = _entries(_good_bytes(kind, tmp_path_factory))
    if where == "extra":
        entries.append((name, b"" if name.endswith("/") else b"hello"))
        member = name
    else:   # a member the loader needs, stored without its .npy suffix
        target = _used(kind) if where == "used" else _key(kind)
        member = target[:-4]
        entries = [(member if n == target else n, d) for n, d in entries]
    path = tmp_path / "foreign.npz"
    path.write_bytes(_zip(entries))
    _expect_rejected(kind, path, re.escape(f"holds the member {member!r}, which is not a .npy array"))


DUPLICATES = ["key", "used", "extra-same", "extra-different"]


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("which", DUPLICATES)
@pytest.mark.parametrize("order", ["first", "last"])
def test_generated_duplicate_members(tmp_path, tmp_path_factory, kind, which, order):
    entries = _entries(_good_bytes(kind, tmp_path_factory))
    if which.startswith("extra"):
        entries.append(("x.npy", _npy(np.zeros(2))))
        name, data = "x.npy", _npy(np.zeros(2) if which == "extra-same" else np.ones(3))
    else:
        name = _key(kind) if which == "key" else _used(kind)
        data = dict(entries)[name] if which == "key" else _npy(np.full((4, 3), 7.0, np.float32))
    entries = [(name, data)] + entries if order == "first" else entries + [(name, data)]
    path = tmp_path / "dup.npz"
    path.write_bytes(_zip(entries))
    _expect_rejected(kind, path, re.escape(f"holds the member {name!r} twice"))


# ---------------------------------------------------------------------------- truncation and corruption
N_TRUNCATIONS, N_FLIPS = 25, 40


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("i", range(N_TRUNCATIONS))
def test_generated_truncations(tmp_path, tmp_path_factory, kind, i):
    raw = _good_bytes(kind, tmp_path_factory)
    cut = [0, 1, 4, 22, len(raw) - 1, len(raw) - 22][i] if i < 6 else \
        int(np.random.default_rng(i).integers(1, len(raw)))
    path = tmp_path / "cut.npz"
    path.write_bytes(raw[:cut])
    _expect_rejected(kind, path, r"not a cutedl|corrupt|truncated|cannot be loaded safely")


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("i", range(N_FLIPS))
def test_generated_byte_flips(tmp_path, tmp_path_factory, kind, i):
    # a flipped byte anywhere: the file still loads (a field nobody reads), or a ValueError naming it
    raw = bytearray(_good_bytes(kind, tmp_path_factory))
    rs = np.random.default_rng(1000 + i)
    # half the flips land in the headers and the zip directory, where they do the most damage
    pos = int(rs.integers(0, len(raw))) if i % 2 else int(rs.choice(_structural_offsets(bytes(raw))))
    raw[pos] ^= int(rs.integers(1, 256))
    path = tmp_path / "flip.npz"
    path.write_bytes(bytes(raw))
    try:
        LOADERS[kind](path)
    except ValueError as err:
        assert str(path) in str(err)


def _structural_offsets(raw):
    """Byte offsets of the zip local headers, the .npy headers and the central directory."""
    offsets = []
    for sig, length in ((b"PK\x03\x04", 30 + 80), (b"PK\x01\x02", 46), (b"PK\x05\x06", 22), (b"\x93NUMPY", 80)):
        i = raw.find(sig)
        while i >= 0:
            offsets.extend(range(i, min(i + length, len(raw))))
            i = raw.find(sig, i + 1)
    return offsets


def test_good_files_round_trip_after_the_checks(tmp_path, tmp_path_factory):
    # the checks refuse no file that cutedl wrote
    for kind in LOADERS:
        path = tmp_path / f"{kind}.npz"
        path.write_bytes(_good_bytes(kind, tmp_path_factory))
        LOADERS[kind](path)


# ============================================================================ dataset files
from _cifar10_archive import batch_dict, make_data, py2_pickle, write_archive  # noqa: E402
from cutedl import _io  # noqa: E402
from cutedl.datasets import cifar10, idx, imdb, safe_pickle  # noqa: E402
from test_imdb import keras_load, object_array, write_imdb  # noqa: E402

_BINBYTES8, _BYTEARRAY8, _BINUNICODE8 = b"\x8e", b"\x96", b"\x8d"


def _counted(opcode, size):
    """A pickle fragment: ``opcode`` declaring ``size`` bytes, followed by three."""
    return opcode + struct.pack("<Q", size) + b"abc"


# a declared size inside a dict value, a list, or alone; the stream ends right after the opcode
_CONTEXTS = {"alone": lambda frag: b"\x80\x05" + frag,
             "dict": lambda frag: b"\x80\x05}(\x8c\x04data" + frag,
             "list": lambda frag: b"\x80\x05](K\x01" + frag}
PICKLE_BOMBS = [(op, size, ctx) for op in (_BINBYTES8, _BYTEARRAY8, _BINUNICODE8)
                for size in (2**40, 2**50, 2**62, 2**63 - 1) for ctx in _CONTEXTS]


@pytest.mark.parametrize("opcode, size, context", PICKLE_BOMBS)
def test_generated_pickle_size_bombs(opcode, size, context):
    raw = _CONTEXTS[context](_counted(opcode, size))
    for allowed in (cifar10.PICKLE_GLOBALS, imdb.PICKLE_GLOBALS):
        with pytest.raises(ValueError, match=r"^part is not a valid pickle of a batch[ :(]"):
            safe_pickle.decode(raw, allowed, what="part", content="a batch")


def _npy_object_member(pickle_bytes, shape=(1,)):
    return _npy_header(shape, "|O") + pickle_bytes


def _imdb_with(tmp_path, member, data):
    entries = [("x_train.npy", _npy(object_array([[1, 2, 3]]))), ("y_train.npy", _npy(np.array([1]))),
               ("x_test.npy", _npy(object_array([[4, 5]]))), ("y_test.npy", _npy(np.array([0])))]
    entries = [(n, data if n == member else d) for n, d in entries]
    path = tmp_path / "imdb.npz"
    path.write_bytes(_zip(entries))
    return path


@pytest.mark.parametrize("opcode", [_BINBYTES8, _BYTEARRAY8])
@pytest.mark.parametrize("size", [2**44, 2**62])
def test_pickle_size_bombs_in_dataset_files(tmp_path, opcode, size):
    bomb = _CONTEXTS["dict"](_counted(opcode, size))
    path = tmp_path / "c" / cifar10.ARCHIVE
    path.parent.mkdir()
    write_archive(path, members={"data_batch_2": bomb})
    with pytest.raises(ValueError, match=r"data_batch_2 is not a valid pickle of a CIFAR-10 batch"):
        cifar10.load_data(path)
    path = _imdb_with(tmp_path, "x_test.npy", _npy_object_member(_CONTEXTS["list"](_counted(opcode, size))))
    with pytest.raises(ValueError, match=r"imdb.npz:x_test is not a valid pickle of an IMDB array"):
        imdb.load_data(path)


def _array_pickle(preallocated, stated):
    """NumPy's pickle of an object array, with the preallocated and the stated shape chosen freely."""
    def tup(t):
        return b"(" + b"".join(b"\x8a" + bytes([len(pickle.encode_long(d))]) + pickle.encode_long(d) for d in t) + b"t"
    raw = pickle.dumps(object_array([[1], [2]]), protocol=2)
    assert raw.count(b"K\x00\x85") == 1 and raw.count(b"(K\x01K\x02\x85") == 1
    return raw.replace(b"K\x00\x85", tup(preallocated)).replace(b"(K\x01K\x02\x85", b"(K\x01" + tup(stated))


ARRAY_SHAPE_BOMBS = [(pre, state) for pre in ((0,), (2**40,), (2**31 - 1, 2**31 - 1), (2**62,))
                     for state in ((2,), (2**40,), (2**62,), (2**20, 2**20))]


@pytest.mark.parametrize("preallocated, stated", ARRAY_SHAPE_BOMBS)
def test_generated_array_shape_bombs(preallocated, stated):
    raw = _array_pickle(preallocated, stated)
    if preallocated == (0,) and stated == (2,):   # the honest pickle
        assert safe_pickle.decode(raw, imdb.PICKLE_GLOBALS).tolist() == [[1], [2]]
        return
    with pytest.raises(ValueError, match=r"^x(: refused to preallocate an array of shape| is not a valid pickle of "
                                         r"an array)"):
        safe_pickle.decode(raw, imdb.PICKLE_GLOBALS, encoding="latin1", what="x", content="an array")


# ---------------------------------------------------------------------------- IMDB: shared lists
SHARED = [(reviews, length, how) for reviews, length in ((2000, 5000), (200, 50000), (20000, 600), (30, 10**5))
          for how in ("same list", "nested")]


@pytest.mark.parametrize("reviews, length, how", SHARED)
def test_generated_shared_review_lists(tmp_path, reviews, length, how):
    # pickle memoizes a list referenced twice: a few hundred bytes that expand to reviews x length ids
    shared = list(range(1, length + 1))
    xs = object_array([shared if how == "same list" else [shared] for _ in range(reviews)])
    path = _imdb_with(tmp_path, "x_train.npy", _npy_object_member(pickle.dumps(xs, protocol=2), (reviews,)))
    entries = _entries(path.read_bytes())   # labels to match
    entries = [(n, _npy(np.zeros(reviews, np.int64)) if n == "y_train.npy" else d) for n, d in entries]
    path.write_bytes(_zip(entries))
    match = r"x_train: the reviews hold [\d,]+ word ids in all, more than the [\d,]+ bytes of their pickle"
    if how == "nested":   # few ids at the top level: refused as a review that holds a list
        match = f"{match}|x_train review \\d+ holds list \\[1, 2, 3, .{{0,60}}, not a word index"
    with pytest.raises(ValueError, match=match):
        imdb.load_data(path)


# ---------------------------------------------------------------------------- IMDB: integers
BAD_ARGS = [("index_from", v) for v in (2**31, 2**40, 2**63, 2**64, -1)] + \
    [("oov_char", v) for v in (2**31, 2**40, 2**63, -1)] + [("start_char", v) for v in (2**31, 2**63, -5)] + \
    [("num_words", v) for v in (0, 2**31, 2**63)] + [("skip_top", v) for v in (2**31, 2**63, -1)] + \
    [("maxlen", v) for v in (0, 2**31, 2**63)] + [("seed", v) for v in (2**32, 2**40, 2**63, -1)]


@pytest.fixture(scope="module")
def imdb_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("imdb") / "imdb.npz"
    return path, write_imdb(path, n_train=12, n_test=8)


@pytest.mark.parametrize("name, value", BAD_ARGS)
def test_generated_out_of_range_imdb_arguments(imdb_file, name, value):
    with pytest.raises(ValueError, match=rf"^imdb.load_data: {name} must be an integer in \[\d+, \d+\]"):
        imdb.load_data(imdb_file[0], **{name: value})
    with pytest.raises(TypeError, match=rf"{name} must be an integer"):
        imdb.load_data(imdb_file[0], **{name: str(value)})


N_INT_COMBOS = 40


@pytest.mark.parametrize("i", range(N_INT_COMBOS))
def test_generated_large_ids_fit_int32_or_are_refused(imdb_file, i):
    # random valid arguments near the int32 limit, checked against Keras's algorithm on Python ints
    path, raw = imdb_file
    rs = np.random.default_rng(i)
    big = [0, 1, 3, 2**31 - 100, 2**31 - 41, 2**31 - 1, int(rs.integers(0, 2**31))]
    kwargs = {"index_from": int(rs.choice(big)), "seed": int(rs.integers(0, 2**32)),
              "start_char": [None, 1, 2**31 - 1][i % 3], "oov_char": [2, None, 2**31 - 1][i % 3 - 1],
              "num_words": [None, 30, 2**31 - 1, int(rs.integers(1, 2**31))][i % 4],
              "skip_top": int(rs.choice([0, 2, 2**31 - 1]))}
    want = keras_load(raw, **kwargs)
    if max(max((w for x in xs for w in x), default=0) for xs, _ in want) > 2**31 - 1:
        with pytest.raises(ValueError, match=r"beyond the int32 range of the reviews"):
            imdb.load_data(path, **kwargs)
        return
    got = imdb.load_data(path, **kwargs)
    for (gx, gy), (wx, wy) in zip(got, want):
        assert [g.tolist() for g in gx] == wx and all(g.dtype == np.int32 for g in gx)
        np.testing.assert_array_equal(gy, wy)


BAD_WORDS = [[1, [2, 3]], [[1, 2]], [1.5], [True], ["3"], [2**70], [2**31], [None], [-1], [np.float64(1)],
             [b"\x01"], [(1, 2)], [{}], [np.bool_(True)], [np.uint64(2**64 - 1)]]
BAD_REVIEWS = [(words, at) for words in BAD_WORDS for at in (0, 5, 11)]


@pytest.mark.parametrize("words, at", BAD_REVIEWS, ids=lambda v: repr(v)[:20])
def test_generated_bad_words_name_the_review(tmp_path, words, at):
    (xtr, ytr), (xte, yte) = write_imdb(tmp_path / "imdb.npz", n_train=12, n_test=4)
    xtr[at] = [4] + list(words) + [5]
    np.savez(tmp_path / "imdb.npz", x_train=object_array(xtr), y_train=ytr, x_test=object_array(xte), y_test=yte)
    with pytest.raises(ValueError, match=rf"imdb: .*imdb.npz: x_train review {at} holds "):
        imdb.load_data(tmp_path / "imdb.npz")


# ---------------------------------------------------------------------------- JSON and other files
@pytest.mark.parametrize("depth, shape", DEPTHS)
def test_generated_deep_word_index(tmp_path, depth, shape):
    path = tmp_path / "imdb_word_index.json"
    path.write_text(_dumps_deep({"the": 1, "deep": _nested(depth - 1, shape)}))
    with pytest.raises(ValueError, match=r"^imdb.get_word_index: '.*imdb_word_index.json' has a word-index JSON "
                                         r"nested (more than 100 levels deep|too deeply)"):
        imdb.get_word_index(path)


@pytest.mark.parametrize("labels", [[2**70], [-2**70], [10], [-1], [2**63], [1, 2**64]])
def test_generated_cifar_labels_out_of_range(labels):
    x = np.zeros((len(labels), 3072), np.uint8)
    raw = pickle.dumps({"data": x, "labels": labels}, protocol=4)   # protocol 4 spells bytes without _codecs
    with pytest.raises(ValueError, match=r"^cifar10: data_batch_1: labels must be 0..9, got \d+ outside"):
        cifar10.decode_batch(raw, "data_batch_1")


def test_cifar_archive_limits(tmp_path, monkeypatch):
    import tarfile

    path = tmp_path / cifar10.ARCHIVE
    write_archive(path, data=make_data(1, 1))
    good = path.read_bytes()
    # 1,200 empty entries before the batches: tarfile would keep every header in memory
    with tarfile.open(path, "w:gz") as tar, tarfile.open(fileobj=io.BytesIO(good), mode="r:gz") as src:
        for i in range(1200):
            tar.addfile(tarfile.TarInfo(f"junk/{i}"), io.BytesIO(b""))
        for member in src:
            tar.addfile(member, src.extractfile(member) if member.isfile() else None)
    with pytest.raises(ValueError, match=r"holds more than 1000 entries; the real cifar-10-python.tar.gz holds 9"):
        cifar10.load_data(path)
    path.write_bytes(good)
    cifar10.load_data(path)
    monkeypatch.setattr(cifar10, "MAX_BATCH_BYTES", 1000)
    with pytest.raises(ValueError, match=r"data_batch_1 is [\d,]+ bytes; a CIFAR-10 batch is about 31 MB"):
        cifar10.load_data(path)


@pytest.mark.parametrize("size", [17 << 20, 64 << 20])
def test_idx_gzip_bombs(tmp_path, size):
    import gzip

    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = struct.pack(">HBB3I", 0, 8, 3, size // 784, 28, 28)
    path.write_bytes(gzip.compress(header + bytes(size - size % 784), 6))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"inflates to more than [\d,]+ bytes, over 100 times .* gzip bomb"):
            idx.read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * _io.INFLATE_FREE_BYTES   # bounded by the limit, not by the bomb
