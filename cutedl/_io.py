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
