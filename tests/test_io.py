"""cutedl._io: atomic writes (and their leftovers after a crash), safe .npz reading, safe JSON.

The attacks on whole loaders (Model.load, checkpoints, datasets) are in test_hostile_files.py;
these tests pin the building blocks.
"""
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from cutedl import _io


# ---------------------------------------------------------------------------- atomic writes
def test_the_temporary_file_is_named_after_its_target_and_pid(tmp_path):
    path = tmp_path / "model.npz"
    seen = []

    def writer(f):
        f.write(b"x")
        seen.extend(p.name for p in tmp_path.iterdir())

    _io.atomic_write(path, writer)
    assert len(seen) == 1 and seen[0].startswith(f".model.npz.tmp-{os.getpid()}-")
    assert path.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_a_failing_writer_leaves_no_file(tmp_path):
    def writer(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        _io.atomic_write(tmp_path / "m.npz", writer)
    assert list(tmp_path.iterdir()) == []


_KILLED_WRITER = """
import sys, time
from cutedl import _io

def writer(f):
    f.write(b"\\0" * (4 << 20))      # a big half-written file
    f.flush()
    print("writing", flush=True)
    time.sleep(60)                    # killed here

_io.atomic_write(sys.argv[1], writer)
"""


def test_a_write_killed_by_sigkill_is_cleaned_up_by_the_next_write(tmp_path):
    path = tmp_path / "training-state.npz"
    path.write_bytes(b"old")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(_io.__file__)),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline() == b"writing\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()   # reaped: its pid no longer exists
        proc.stdout.close()
    left = _io.temp_files(path)
    assert len(left) == 1 and os.path.basename(left[0]).startswith(f".training-state.npz.tmp-{proc.pid}-")
    assert os.path.getsize(left[0]) == 4 << 20 and path.read_bytes() == b"old"   # the target is intact
    assert _io.temp_files(path, stale_only=True) == left
    _io.atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and _io.temp_files(path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training-state.npz"]


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_files_are_removed_and_live_ones_kept(tmp_path):
    path = tmp_path / "m.npz"
    dead, alive = _dead_pid(), os.getppid()
    hour_ago = time.time() - 2 * _io.STALE_TEMP_SECONDS
    files = {
        f".m.npz.tmp-{dead}-abc123_x": ("stale", None),            # its process is gone
        f".m.npz.tmp-{alive}-k2j4h5g6": ("stale", hour_ago),       # alive, but untouched for two hours
        f".m.npz.tmp-{alive}-zz9y8x7w": ("kept", None),            # a write in progress elsewhere
        f".m.npz.tmp-{os.getpid()}-qqqqqqqq": ("kept", None),      # another thread of ours
        f".other.npz.tmp-{dead}-abcdefgh": ("kept", None),         # another target's
        f".m.npz.tmp-{dead}-": ("kept", None),                     # not our pattern
        f"m.npz.tmp-{dead}-abcdefgh": ("kept", None),
        ".tmp-abcdm.npz": ("kept", None),                           # the old naming: not recognisable
        "notes.txt": ("kept", None),
    }
    for name, (_, mtime) in files.items():
        (tmp_path / name).write_bytes(b"junk")
        if mtime is not None:
            os.utime(tmp_path / name, (mtime, mtime))
    assert sorted(os.path.basename(p) for p in _io.temp_files(path, stale_only=True)) == \
        sorted(n for n, (what, _) in files.items() if what == "stale")
    _io.atomic_write_text(path, "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        sorted(["m.npz"] + [n for n, (what, _) in files.items() if what == "kept"])
    assert path.read_text() == "fresh"


# ---------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("doc, depth", [(1, 0), ("x", 0), ([], 1), ({}, 1), ([[1]], 2), ({"a": [1, {"b": []}]}, 4),
                                        ([1, [2, [3, [4]]], {}], 4)])
def test_json_depth(doc, depth):
    assert _io.json_depth(doc) == depth


@pytest.mark.parametrize("depth", [1, 50, 99, 100, 101, 150, 700, 5000, 200000])
@pytest.mark.parametrize("shape", ["list", "dict", "mixed"])
def test_parse_json_refuses_deep_documents(depth, shape):
    opens = {"list": ["["] * depth, "dict": ['{"a":'] * depth,
             "mixed": [('{"k":' if i % 2 else "[") for i in range(depth)]}[shape]
    closes = "".join("}" if o.startswith("{") else "]" for o in reversed(opens))
    text = "".join(opens) + "1" + closes
    if depth <= _io.MAX_JSON_DEPTH:
        assert _io.json_depth(_io.parse_json(text.encode(), "reader", "/x/f.json")) == depth
    else:
        with pytest.raises(ValueError, match=r"^reader: '/x/f.json' has a JSON document nested (more than 100 levels "
                                             r"deep|too deeply)"):
            _io.parse_json(text.encode(), "reader", "/x/f.json")


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe", b"", b"[1, 2", b"1" * 5000, "\udcff".encode("utf-8",
                                                                                                        "surrogatepass")])
def test_parse_json_refuses_corrupt_documents(data):
    with pytest.raises(ValueError, match=r"^w: '/p' has a corrupt state document \("):
        _io.parse_json(data, "w", "/p", "state document")


# ---------------------------------------------------------------------------- .npz archives
_DTYPES = ["<f4", ">f8", "<i8", "|u1", "|i1", "|b1", "<c8", ">u2", "<f2"]


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("shape, order", [((3, 4), "C"), ((3, 4), "F"), ((0,), "C"), ((), "C"), ((2, 0, 3), "C"),
                                          ((5,), "C")])
def test_npz_reader_matches_np_load(tmp_path, dtype, shape, order):
    rs = np.random.default_rng(0)
    a = np.asarray(rs.standard_normal(shape) * 10, order=order).astype(dtype, order=order)
    path = tmp_path / "a.npz"
    np.savez(path, a=a, b=np.arange(3))
    with _io.NpzReader.open(path, "t", "a test file") as npz, np.load(path) as ref:
        assert npz.names == ["a", "b"]
        got = npz.read("a")
        assert got.dtype == ref["a"].dtype and got.shape == ref["a"].shape
        np.testing.assert_array_equal(got, ref["a"])
        assert got.flags.writeable
        got[...] = 0   # writable: users update loaded state in place


def test_only_the_named_arrays_are_read(tmp_path):
    path = tmp_path / "m.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)})
    _io.save_json_npz(path, "__state__", {"w": 1}, {"w": np.ones(3, np.float32)})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("liar.npy", buf.getvalue() + b"\0" * 8)
    doc, arrays = _io.load_json_npz(path, "__state__", "t", "checkpoint", names=lambda d: ["w"])
    assert doc == {"w": 1} and list(arrays) == ["w"] and arrays["w"].tolist() == [1, 1, 1]
    doc, arrays = _io.load_json_npz(path, "__state__", "t", "checkpoint", names=["w"])
    assert list(arrays) == ["w"]
    with pytest.raises(ValueError, match=r"^t: '.*m.npz' holds data that cannot be loaded safely \(the header of "
                                         r"array 'liar' declares shape \(1099511627776,\) of float64"):
        _io.load_json_npz(path, "__state__", "t", "checkpoint")
    with pytest.raises(ValueError, match=r"^t: '.*m.npz' lacks the array 'nope'\.$"):
        _io.load_json_npz(path, "__state__", "t", "checkpoint", names=["w", "nope"])


def test_object_arrays_go_to_the_object_reader_only(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, o=np.array([[1, 2], [3]], dtype=object))
    with _io.NpzReader.open(path, "t", "a test file") as npz:
        with pytest.raises(ValueError, match="array 'o' holds Python objects.*pickles are never loaded"):
            npz.read("o")
        got = npz.read("o", object_reader=lambda payload, shape, where: (len(payload), shape, where))
    assert got[0] > 0 and got[1] == (2,) and got[2] == f"{path}:o"


def test_save_json_npz_round_trip(tmp_path):
    path = tmp_path / "s.npz"
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False])}
    _io.save_json_npz(path, "__state__", {"x": [1, {"y": None}]}, arrays)
    doc, got = _io.load_json_npz(path, "__state__", "t", "checkpoint")
    assert doc == {"x": [1, {"y": None}]} and set(got) == {"a", "b"}
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k])
    with pytest.raises(FileNotFoundError, match=r"^t: no file at"):
        _io.load_json_npz(tmp_path / "none.npz", "__state__", "t", "checkpoint")
    with zipfile.ZipFile(path) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())   # ratio 1: see MAX_INFLATE_RATIO
    assert json.loads(bytes(np.load(path)["__state__"])) == doc
