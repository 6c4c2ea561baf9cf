"""Write tiny ``cifar-10-python.tar.gz`` archives in the real format, for the loader's tests.

The official batches were written by Python 2's cPickle (protocol 2) from NumPy arrays, so the
files hold Python 2 ``str`` opcodes (SHORT_BINSTRING / BINSTRING), not Python 3 ``bytes`` (which
protocol 2 under Python 3 would spell as calls to ``_codecs.encode``), and each array as NumPy's
``_reconstruct`` reduction with a pickled ``dtype``. Python 3's pickler cannot produce that
layout, so this module emits the opcodes itself.
"""
from __future__ import annotations

import io
import struct
import tarfile

import numpy as np


class _Py2Pickler:
    """Just enough of cPickle's protocol-2 output for dicts of str, int, list and uint8 arrays."""

    def __init__(self):
        self.out = io.BytesIO()
        self.memo = 0

    def _put(self):
        # cPickle memoizes every container and string with BINPUT
        self.memo += 1
        self.out.write(b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo))

    def string(self, s):
        b = s.encode("latin-1") if isinstance(s, str) else bytes(s)
        if len(b) < 256:
            self.out.write(b"U" + bytes([len(b)]) + b)   # SHORT_BINSTRING
        else:
            self.out.write(b"T" + struct.pack("<i", len(b)) + b)   # BINSTRING
        self._put()

    def integer(self, v):
        v = int(v)
        if 0 <= v < 256:
            self.out.write(b"K" + bytes([v]))
        elif 0 <= v < 65536:
            self.out.write(b"M" + struct.pack("<H", v))
        else:
            self.out.write(b"J" + struct.pack("<i", v))

    def value(self, v):
        if isinstance(v, (str, bytes)):
            self.string(v)
        elif isinstance(v, (int, np.integer)):
            self.integer(v)
        elif isinstance(v, list):
            self.out.write(b"]")
            self._put()
            if v:
                self.out.write(b"(")
                for item in v:
                    self.value(item)
                self.out.write(b"e")   # APPENDS
        elif isinstance(v, np.ndarray):
            self.array(v)
        else:
            raise TypeError(type(v))

    def array(self, a):
        w = self.out.write
        w(b"cnumpy.core.multiarray\n_reconstruct\n")
        self._put()
        w(b"cnumpy\nndarray\n")
        self._put()
        w(b"K\x00\x85")   # (0,)
        self.string("b")
        w(b"\x87R")   # TUPLE3, REDUCE
        self._put()
        w(b"(K\x01")   # state: (1, shape, dtype, is_fortran, raw bytes)
        for d in a.shape:
            self.integer(d)
        w({1: b"\x85", 2: b"\x86", 3: b"\x87"}[a.ndim])
        w(b"cnumpy\ndtype\n")
        self._put()
        self.string(a.dtype.str[1:])   # 'u1'
        w(b"K\x00K\x01\x87R")
        self._put()
        w(b"(K\x03")
        self.string(a.dtype.str[0])   # byte order '|'
        w(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")   # dtype state, BUILD
        w(b"\x89")   # NEWFALSE: C order
        raw = np.ascontiguousarray(a).tobytes()
        w(b"T" + struct.pack("<i", len(raw)) + raw)
        self._put()
        w(b"tb")   # state tuple, BUILD

    def dump(self, d: dict) -> bytes:
        self.out.write(b"\x80\x02}")
        self._put()
        self.out.write(b"(")
        for k, v in d.items():
            self.string(k)
            self.value(v)
        self.out.write(b"u.")   # SETITEMS, STOP
        return self.out.getvalue()


def py2_pickle(d: dict) -> bytes:
    """``d`` pickled the way Python 2's ``cPickle.dump(d, f, 2)`` wrote the CIFAR-10 batches."""
    return _Py2Pickler().dump(d)


def batch_dict(x: np.ndarray, y, label: str) -> dict:
    """A batch in the official layout: x uint8 (n, 3, 32, 32) stored as rows of 3072 values."""
    n = len(x)
    return {"batch_label": label, "labels": [int(v) for v in y],
            "data": np.ascontiguousarray(x, dtype=np.uint8).reshape(n, 3072),
            "filenames": [f"img_{label.replace(' ', '_')}_{i}.png" for i in range(n)]}


META = {"num_cases_per_batch": 10000,
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "num_vis": 3072}


def make_data(n_train_per_batch: int = 4, n_test: int = 6, seed: int = 0):
    """Random images and labels: ``(x_train, y_train), (x_test, y_test)`` as the loader returns them."""
    rs = np.random.default_rng(seed)
    n = 5 * n_train_per_batch
    x_train = rs.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    x_test = rs.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    y_train = rs.integers(0, 10, n).astype(np.uint8)
    y_test = rs.integers(0, 10, n_test).astype(np.uint8)
    return (x_train, y_train), (x_test, y_test)


def write_archive(path, data=None, members: dict | None = None, folder: str = "cifar-10-batches-py"):
    """Write ``cifar-10-python.tar.gz`` at ``path`` from ``data`` (see :func:`make_data`).

    ``members`` maps member names to raw bytes, replacing or adding files (for broken archives).
    Returns ``data``.
    """
    if data is None:
        data = make_data()
    (x_train, y_train), (x_test, y_test) = data
    files = {}
    k = len(x_train) // 5
    for i in range(5):
        sl = slice(i * k, (i + 1) * k)
        files[f"data_batch_{i + 1}"] = py2_pickle(batch_dict(x_train[sl], y_train[sl],
                                                             f"training batch {i + 1} of 5"))
    files["test_batch"] = py2_pickle(batch_dict(x_test, y_test, "testing batch 1 of 1"))
    files["batches.meta"] = py2_pickle(META)
    files["readme.html"] = b"<html>CIFAR-10</html>"
    files.update(members or {})
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(folder)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        for name, raw in files.items():
            if raw is None:
                continue
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
    return data
