"""Atomic file writes: a crash mid-write never leaves a half file in place."""
from __future__ import annotations

import os
import tempfile

# mkstemp creates owner-only files; saved files get the usual mode (0666 masked by the umask).
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write(path, writer) -> None:
    """Call ``writer(binary_file)`` on a temp file beside ``path``, fsync, then rename over ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
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


# ---------------------------------------------------------------------------- JSON + arrays in one .npz
def save_json_npz(path, key: str, doc, arrays: dict) -> None:
    """Write ``doc`` (JSON) under ``key`` plus numeric ``arrays`` to one ``.npz``, atomically."""
    import io
    import json

    import numpy as np

    payload = {key: np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)}
    payload.update(arrays)

    def write(f):
        buf = io.BytesIO()
        np.savez(buf, **payload)
        f.write(buf.getvalue())

    atomic_write(path, write)


def load_json_npz(path, key: str, who: str, kind: str):
    """``(doc, arrays)`` from a file written by :func:`save_json_npz`; never unpickles.

    ``who`` starts every error message (e.g. ``'Model.load'``) and ``kind`` names what the file
    should be (``'model file'``). Missing, truncated or foreign files, pickled or object arrays and
    a corrupt JSON document are each a ValueError (FileNotFoundError for no file) naming the path.
    """
    import json
    import zipfile

    import numpy as np

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{who}: no file at {path!r}.")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with data:
            files = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{who}: {path!r} is not a cutedl {kind} (corrupt or truncated: {err}).") from None
    except ValueError as err:
        raise ValueError(f"{who}: {path!r} holds data that cannot be loaded safely ({err}).") from None
    raw = files.pop(key, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{who}: {path!r} is not a cutedl {kind} (no {key} entry).")
    try:
        doc = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{who}: {path!r} has a corrupt {'config' if key == '__config__' else 'state document'} "
                         f"({err}).") from None
    return doc, files
