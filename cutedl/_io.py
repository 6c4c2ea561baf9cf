"""Files on disk: atomic writes, and reading ``.npz`` archives and JSON that may be hostile.

Writing: :func:`atomic_write` goes through a temporary file ``.<name>.tmp-<pid>-<random>`` beside
the target and ``os.replace``, so a crash never leaves a half file in place; a temporary file that
a killed process left behind is removed by the next write to the same target.

Reading: a saved file is an ``.npz`` (a zip archive) holding a JSON document and numeric ``.npy``
arrays (:func:`save_json_npz` / :func:`load_json_npz`). Files come from users, downloads and
other machines, so reading never unpickles and never lets the file decide how much memory is
allocated: :class:`NpzReader` checks the archive's directory (no duplicate or non-``.npy``
members, no compression ratio of a zip bomb) before inflating anything, and each array header's
shape against the member's real size before allocating. JSON is parsed by :func:`parse_json`,
which refuses documents nested deeper than :data:`MAX_JSON_DEPTH`. Every refusal is a
``ValueError`` naming the caller, the file and (where there is one) the member.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import time
import struct
import zipfile
import zlib

__all__ = ["atomic_write", "atomic_write_text", "temp_files", "save_json_npz", "load_json_npz", "NpzReader",
           "parse_json", "json_depth", "MAX_JSON_DEPTH", "MAX_INFLATE_RATIO", "INFLATE_FREE_BYTES"]

#: JSON documents nested deeper than this are refused (ours are < 10 deep; recursive code that
#: walks a document, e.g. a checkpoint unpacker, must never meet Python's recursion limit).
MAX_JSON_DEPTH = 100
#: An archive may hold at most this many times its size on disk once inflated. cutedl writes
#: archives uncompressed (ratio 1) and deflated numeric data shrinks a few times at most; a zip
#: bomb inflates a thousand times.
MAX_INFLATE_RATIO = 100
#: ... unless it inflates to no more than this many bytes in all (tiny files of zeros).
INFLATE_FREE_BYTES = 16 << 20
#: A temporary file older than this is stale even if the process that wrote it still runs.
STALE_TEMP_SECONDS = 3600.0

# mkstemp creates owner-only files; saved files get the usual mode (0666 masked by the umask).
_UMASK = os.umask(0)
os.umask(_UMASK)
_NUMERIC_KINDS = "biufc"
# What the zip layer raises for a corrupt, truncated or unsupported member (zlib.error: bad
# deflate data; RuntimeError: encrypted; NotImplementedError: unknown compression).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, RuntimeError,
               NotImplementedError, ValueError, struct.error)


# ---------------------------------------------------------------------------- atomic writes
def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write(path, writer) -> None:
    """Call ``writer(binary_file)`` on a temp file beside ``path``, fsync, then rename over ``path``.

    The temporary file is ``.<name>.tmp-<pid>-<random>``. When ``writer`` raises it is removed;
    when the process is killed (SIGKILL, power loss) it stays, and the next write to ``path``
    removes it once its process is gone (or after :data:`STALE_TEMP_SECONDS`).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(path)
    for stale in temp_files(path, stale_only=True):
        try:
            os.unlink(stale)
        except OSError:   # another writer removed it first, or it is not ours to remove
            pass
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def temp_files(path, stale_only: bool = False) -> list:
    """The temporary files that :func:`atomic_write` made for ``path`` and that still exist.

    With ``stale_only``, only those whose writing process is gone or that are older than
    :data:`STALE_TEMP_SECONDS` (a write in progress in a live process is left alone).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(f".{os.path.basename(path)}.tmp-") + r"(\d+)-[A-Za-z0-9_]+")
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    now = time.time()
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        if stale_only:
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if age <= STALE_TEMP_SECONDS and _process_alive(int(m.group(1))):
                continue
        found.append(entry.path)
    return sorted(found)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)   # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:   # it exists, under another user
        return True
    except (OverflowError, OSError):
        return False
    return True


# ---------------------------------------------------------------------------- JSON
def json_depth(doc, limit: int | None = None) -> int:
    """How deeply lists and dicts nest in ``doc`` (``1`` -> 0, ``[[1]]`` -> 2), without recursion.

    With ``limit``, stops counting as soon as the depth exceeds it (and returns ``limit + 1``).
    """
    deepest = 0
    stack = [(doc, 0)]
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, dict):
            children = obj.values()
        elif isinstance(obj, list):
            children = obj
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if limit is not None and deepest > limit:
                return deepest
        stack.extend((c, depth) for c in children if isinstance(c, (dict, list)))
    return deepest


def parse_json(data, who: str, path, what: str = "JSON document", max_depth: int = MAX_JSON_DEPTH):
    """``json.loads`` of ``data`` (bytes as UTF-8, or str), refusing what cannot be read safely.

    Any JSON reader of files (and any code that walks the result recursively) goes through here.

    Raises:
        ValueError: ``'<who>: '<path>' has a corrupt <what> (...)'`` for invalid UTF-8 or JSON
            (numbers over Python's digit limit included), and a message naming the depth for a
            document nested deeper than ``max_depth``.
    """
    try:
        text = bytes(data).decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
        doc = json.loads(text)
    except RecursionError:
        raise ValueError(f"{who}: {os.fspath(path)!r} has a {what} nested too deeply to parse; at most "
                         f"{max_depth} levels are allowed (the file is corrupt or crafted).") from None
    except ValueError as err:   # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise ValueError(f"{who}: {os.fspath(path)!r} has a corrupt {what} ({err}).") from None
    depth = json_depth(doc, limit=max_depth)
    if depth > max_depth:
        raise ValueError(f"{who}: {os.fspath(path)!r} has a {what} nested more than {max_depth} levels deep; "
                         f"cutedl never writes one, so the file is corrupt or crafted.")
    return doc


# ---------------------------------------------------------------------------- .npz archives
class NpzReader:
    """An open ``.npz`` archive whose directory was checked; reads its arrays one by one, safely.

    Use :meth:`open`. On opening, the archive must be a readable zip whose members are all
    ``<name>.npy`` files, each named once, stored or deflated (not encrypted), not overlapping,
    and inflating in all to at most ``MAX_INFLATE_RATIO`` times the file's size (or
    ``INFLATE_FREE_BYTES``). Nothing is inflated before :meth:`read`, and :meth:`read` checks the
    member's ``.npy`` header (shape x itemsize) against the member's real size before
    allocating, so reading only the arrays you need costs only their size.

    Args (of :meth:`open`):
        path: the file.
        who: starts every error message (``'Model.load'``).
        kind: what the file should be, after "is not": ``'a cutedl model file'``.
        hint: the fix, appended to errors about a broken file (``'Delete it and download it again.'``).

    Attributes:
        names: the array names (member names without ``.npy``), in archive order.
    """

    def __init__(self, zf: zipfile.ZipFile, path: str, who: str, kind: str, hint: str):
        self._zf = zf
        self.path, self.who, self.kind, self.hint = path, who, kind, hint
        self._infos = {}
        seen = set()
        for info in zf.infolist():
            name = info.filename
            if name in seen:
                self._fail(f"holds the member {name!r} twice; an archive names each array once, and readers "
                           f"disagree on which copy counts, so the file is corrupt or crafted")
            seen.add(name)
            if not name.endswith(".npy") or info.is_dir():
                self._fail(f"holds the member {name!r}, which is not a .npy array; it should hold nothing else "
                           f"(the file is corrupt or crafted)")
            if info.flag_bits & 0x1:
                self._fail(f"holds the encrypted member {name!r}, which cannot be read")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                self._fail(f"holds the member {name!r} compressed with zip method {info.compress_type}; "
                           f"only stored and deflated members are read")
            self._infos[name[:-4]] = info
        self.names = list(self._infos)
        size = os.path.getsize(path)
        packed = sum(i.compress_size for i in self._infos.values())
        inflated = sum(i.file_size for i in self._infos.values())
        if packed > size:
            self._fail(f"has members whose compressed sizes add up to {packed:,} bytes, more than the file's "
                       f"{size:,} bytes (overlapping members: a zip bomb, or a corrupt directory)")
        budget = max(INFLATE_FREE_BYTES, MAX_INFLATE_RATIO * size)
        if inflated > budget:
            self._fail(f"would inflate to {inflated:,} bytes, {inflated / max(size, 1):,.0f} times its size on "
                       f"disk (cutedl reads at most {MAX_INFLATE_RATIO} times a file's size, or "
                       f"{INFLATE_FREE_BYTES >> 20} MiB): a zip bomb, or a corrupt directory")

    @classmethod
    def open(cls, path, who: str, kind: str, hint: str = "") -> "NpzReader":
        """Open and check ``path`` (see the class doc); use it as a context manager.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not a zip archive, truncated, or a directory that fails the checks.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{who}: no file at {path!r}.")
        try:
            zf = zipfile.ZipFile(path)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except _ZIP_ERRORS + (UnicodeDecodeError,) as err:
            raise ValueError(f"{who}: {path!r} is not {kind} (corrupt or truncated: {err}).{cls._tail(hint)}") \
                from None
        try:
            return cls(zf, path, who, kind, hint)
        except BaseException:
            zf.close()
            raise

    def __repr__(self) -> str:
        return f"NpzReader({self.path!r}, names={self.names!r})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._zf.close()

    def __contains__(self, name) -> bool:
        return name in self._infos

    def read(self, name: str, object_reader=None):
        """The array ``name`` as a writable NumPy array (numeric dtypes only).

        Args:
            name: an array name (see :attr:`names`).
            object_reader: for arrays of Python objects, ``object_reader(payload, shape, where)``
                gets the pickle bytes after the header, the header's shape and ``'<path>:<name>'``,
                and returns the array (it must decode the pickle safely, e.g. with
                ``cutedl.datasets.safe_pickle``). None (the default) refuses object arrays.
        Raises:
            ValueError: a missing member, an unreadable or inconsistent ``.npy`` header, a
                non-numeric or object dtype (without ``object_reader``), data that does not match
                the header, or a corrupt member (bad CRC, truncated).
        """
        from cutedl.backend import np

        info = self._infos.get(name)
        if info is None:
            self._fail(f"lacks the array {name!r}")
        try:
            with self._zf.open(info) as f:
                try:
                    shape, fortran, dtype = _read_npy_header(np, f)
                except (ValueError, TypeError, SyntaxError, OverflowError, MemoryError) as err:
                    raise _Refused(f"holds data that cannot be loaded safely (array {name!r}: {err})") from None
                size = info.file_size - f.tell()
                if dtype.hasobject:
                    if object_reader is None:
                        raise _Refused(f"holds data that cannot be loaded safely (array {name!r} holds Python "
                                       f"objects, dtype {dtype}, which only a pickle can hold; pickles are "
                                       f"never loaded)")
                    payload = _read_exactly(f, size)
                else:
                    if dtype.kind not in _NUMERIC_KINDS:
                        raise _Refused(f"holds a non-numeric array {name!r} of dtype {dtype}; only numbers "
                                       f"are read")
                    nbytes = math.prod(shape) * dtype.itemsize
                    if nbytes != size:
                        raise _Refused(f"holds data that cannot be loaded safely (the header of array {name!r} "
                                       f"declares shape {shape} of {dtype}, {nbytes:,} bytes, but the member "
                                       f"holds {max(size, 0):,} bytes)")
                    array = np.ndarray(shape, dtype=dtype, buffer=_read_exactly(f, size),
                                       order="F" if fortran else "C")
        except _Refused as err:
            self._fail(str(err))
        except _ZIP_ERRORS as err:
            self._fail(f"is not {self.kind} (array {name!r} is corrupt or truncated: {err})")
        if dtype.hasobject:
            return object_reader(payload, tuple(shape), f"{self.path}:{name}")
        return array

    def _fail(self, what: str):
        raise ValueError(f"{self.who}: {self.path!r} {what}.{self._tail(self.hint)}") from None

    @staticmethod
    def _tail(hint: str) -> str:
        return f" {hint}" if hint else ""


class _Refused(Exception):
    """A refusal inside :meth:`NpzReader.read`, kept apart from the zip layer's own errors."""


def _read_npy_header(np, f):
    """``(shape, fortran_order, dtype)`` from the ``.npy`` header at the start of ``f``."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape, fortran, dtype


def _read_exactly(f, size: int) -> bytearray:
    """``size`` bytes from ``f`` into a new (writable) buffer; EOFError when the member is shorter.

    ``size`` was bounded by the archive checks, and reading exactly to the member's end makes
    zipfile verify its CRC.
    """
    if size < 0:
        raise EOFError("the member is shorter than its .npy header")
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = f.readinto(view[got:])
        if not n:
            raise EOFError(f"the member ends after {got:,} of its {size:,} bytes")
        got += n
    if f.read(1):
        raise EOFError("the member holds more bytes than its directory entry says")
    return buf


def save_json_npz(path, key: str, doc, arrays: dict) -> None:
    """Write ``doc`` (JSON) under ``key`` plus numeric ``arrays`` to one ``.npz``, atomically."""
    from cutedl.backend import np

    payload = {key: np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)}
    payload.update(arrays)

    def write(f):
        buf = io.BytesIO()
        np.savez(buf, **payload)
        f.write(buf.getvalue())

    atomic_write(path, write)


def load_json_npz(path, key: str, who: str, kind: str, *, names=None):
    """``(doc, arrays)`` from a file written by :func:`save_json_npz`; never unpickles.

    Args:
        path: the file.
        key: the member holding the JSON document (``'__config__'``).
        who: starts every error message (e.g. ``'Model.load'``).
        kind: what the file should be (``'model file'``).
        names: which arrays to read: None (every array in the file), an iterable of names, or a
            callable ``names(doc)`` returning them. Arrays not named are never inflated; a named
            array the file lacks is a ValueError.
    Returns:
        ``doc`` (the parsed JSON, at most :data:`MAX_JSON_DEPTH` deep) and ``{name: array}``, each
        a writable numeric NumPy array.
    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: naming ``path``: a truncated or foreign file, duplicate or non-``.npy``
            members, a zip bomb, an array header that disagrees with its data, pickled, object or
            non-numeric arrays, a corrupt or too deeply nested JSON document.
    """
    from cutedl.backend import np

    with NpzReader.open(path, who, f"a cutedl {kind}") as npz:
        if key not in npz:
            npz._fail(f"is not a cutedl {kind} (no {key} entry)")
        raw = npz.read(key)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            npz._fail(f"is not a cutedl {kind} (its {key} entry is not a byte string)")
        what = "config" if key == "__config__" else "state document"
        doc = parse_json(raw.tobytes(), who, npz.path, what)
        if names is None:
            wanted = [n for n in npz.names if n != key]
        else:
            wanted = list(names(doc) if callable(names) else names)
        return doc, {n: npz.read(n) for n in wanted}
