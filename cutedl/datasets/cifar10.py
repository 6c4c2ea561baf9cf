"""CIFAR-10: 50,000 training and 10,000 test colour images, 3x32x32 uint8, in 10 classes.

    >>> from cutedl.datasets import cifar10
    >>> (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    >>> x_train.shape, x_train.dtype, y_train.shape
    ((50000, 3, 32, 32), dtype('uint8'), (50000,))
    >>> cifar10.CLASS_NAMES[y_train[0]]
    'frog'

The data is the official ``cifar-10-python.tar.gz`` (170,498,071 bytes), searched for like every
cutedl dataset (see ``cutedl.datasets.cache``): ``path``, ``$CUTEDL_DATA_DIR/cifar10/``, the
repository's ``datasets/cifar10/``, then the cache ``~/.cache/cutedl/cifar10/``, where it is
downloaded once from the authors' site and kept only if its sha256 matches.

The archive's batches are Python pickles (written by Python 2's cPickle). They are decoded by
``cutedl.datasets.safe_pickle`` with an allowlist that builds dicts, lists, numbers, strings and
plain numeric NumPy arrays and nothing else: any other global a pickle names (``os.system``,
``builtins.eval``...) is refused with a ``ValueError`` before anything runs. The archive is read in memory, never extracted.
"""
from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from cutedl.datasets import safe_pickle
from cutedl.datasets.cache import Checksum, DatasetSource, PathLike, fetch

ARCHIVE = "cifar-10-python.tar.gz"
#: Folder inside the archive (and the name of an extracted copy).
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# sha256 of the archive as served (the authors publish only its md5, c58f30108f718f92721af3b95e74349a;
# this sha256 of the same 170,498,071-byte file is the one Keras and TFDS verify it with).
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"

SOURCE = DatasetSource(
    name="cifar10",
    files={ARCHIVE: Checksum(SHA256, of="download")},
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    mirror_env="CUTEDL_CIFAR10_MIRROR",
)

_PIXELS = 3 * 32 * 32


def load_data(path: Optional[PathLike] = None, *, mirror: Optional[str] = None,
              cache_dir: Optional[PathLike] = None, search_repo: bool = True):
    """Load CIFAR-10 as NumPy arrays, channels first (PyTorch's layout, cutedl's conv layout).

    Args:
        path: the ``cifar-10-python.tar.gz`` file, a directory holding it, or an extracted
            ``cifar-10-batches-py`` directory (or one holding that folder). Default: search
            ``$CUTEDL_DATA_DIR/cifar10``, the repository's ``datasets/cifar10``, then the cache.
        mirror: base URL to download from (default ``$CUTEDL_CIFAR10_MIRROR``, else the authors' site).
        cache_dir: cache root (default ``$CUTEDL_CACHE_DIR``, else ``~/.cache/cutedl``).
        search_repo: look in the repository's ``datasets/cifar10`` (False forces the cache/download).
    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 ``(50000, 3, 32, 32)`` /
        ``(10000, 3, 32, 32)`` (channels R, G, B; pixels 0..255), y uint8 ``(50000,)`` /
        ``(10000,)`` with classes 0..9 (names in :data:`CLASS_NAMES`).
    Raises:
        ValueError: the archive is corrupt, lacks a batch, holds a batch of the wrong layout, or
            a pickle that names anything but NumPy arrays; or a download fails its checksum.
        DownloadError: the archive is nowhere locally and cannot be downloaded.
        FileNotFoundError: ``path`` does not exist or holds no CIFAR-10 data.
    """
    names = TRAIN_BATCHES + (TEST_BATCH,)
    extracted = _extracted_dir(path) if path is not None else None
    if extracted is not None:
        raw = {n: _read_batch_file(extracted / n) for n in names}
        where = str(extracted)
    else:
        if path is not None and Path(os.fspath(path)).expanduser().is_file():
            archive = Path(os.fspath(path)).expanduser()
        else:
            archive = fetch(SOURCE, path, mirror=mirror, cache_dir=cache_dir, search_repo=search_repo) / ARCHIVE
        raw = read_archive(archive, names)
        where = str(archive)
    # pop: each batch's raw bytes are freed as soon as it is decoded (peak ~2x the data, not 3x)
    train = [decode_batch(raw.pop(n), f"{where}: {n}") for n in TRAIN_BATCHES]
    x_test, y_test = decode_batch(raw.pop(TEST_BATCH), f"{where}: {TEST_BATCH}")
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), (x_test, y_test)


def read_archive(archive: PathLike, names) -> dict:
    """The raw bytes of the members ``names`` (base names, e.g. ``'data_batch_1'``) of a tar.gz.

    Raises:
        ValueError: the file is not a readable gzipped tar, or lacks one of ``names``.
    """
    wanted = set(names)
    found: dict = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for count, member in enumerate(tar, 1):
                # The real archive has 9 entries; tarfile keeps every header it reads in memory.
                if count > _MAX_MEMBERS:
                    raise ValueError(f"cifar10: {str(archive)!r} holds more than {_MAX_MEMBERS} entries; the real "
                                     f"{ARCHIVE} holds 9. Delete it and download it again.")
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in found:
                    _check_batch_size(member.size, f"{archive}: {member.name}")
                    found[base] = tar.extractfile(member).read()
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"cifar10: {str(archive)!r} is not a readable {ARCHIVE} (corrupt or truncated: {err}). "
                         f"Delete it and download it again.") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"cifar10: {str(archive)!r} lacks {', '.join(missing)}; is it the Python version "
                         f"of CIFAR-10 ({ARCHIVE})? Delete it and download it again.")
    return found


def decode_batch(raw: bytes, what: str = "batch"):
    """One pickled batch -> ``(x uint8 (n, 3, 32, 32), y uint8 (n,))``, checking its layout."""
    d = safe_pickle.decode(raw, PICKLE_GLOBALS, encoding="bytes", what=f"cifar10: {what}",
                          content="a CIFAR-10 batch", hint="Delete the archive and download it again.")
    if not isinstance(d, dict):
        raise ValueError(f"cifar10: {what} holds a {type(d).__name__}, expected a dict with 'data' and 'labels'.")
    d = {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    data, labels = d.get("data"), d.get("labels")
    if data is None or labels is None:
        raise ValueError(f"cifar10: {what} has keys {sorted(map(str, d))}, expected 'data' and 'labels'. "
                         f"(CIFAR-100 batches use 'fine_labels'; this loader reads CIFAR-10.)")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"cifar10: {what}: 'data' must be a uint8 array of shape (n, {_PIXELS}), got {desc}.")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data) \
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        raise ValueError(f"cifar10: {what}: 'labels' must be a list of {len(data)} ints, one per image.")
    bad = [v for v in labels if not 0 <= v <= 9]   # before any conversion: 2**70 is an int too
    if bad:
        raise ValueError(f"cifar10: {what}: labels must be 0..9, got {len(bad)} outside, e.g. {bad[0]!r}.")
    y = np.asarray(labels, dtype=np.int64)
    # rows are the R, G and B planes of a 32x32 image, each row-major: exactly (3, 32, 32)
    return data.reshape(len(data), 3, 32, 32), y.astype(np.uint8)


_MAX_MEMBERS = 1000
#: A batch file (10,000 images) is 31 MB; anything much larger is not one, and is never read.
MAX_BATCH_BYTES = 256 << 20


def _check_batch_size(size: int, where: str) -> None:
    if size > MAX_BATCH_BYTES:
        raise ValueError(f"cifar10: {where} is {size:,} bytes; a CIFAR-10 batch is about 31 MB (at most "
                         f"{MAX_BATCH_BYTES:,} bytes are read). Delete it and download the data again.")


def _read_batch_file(path: Path) -> bytes:
    _check_batch_size(path.stat().st_size, str(path))
    return path.read_bytes()


# Everything a CIFAR-10 batch names: NumPy's array rebuilder (plain ndarray, numeric dtypes
# only). Dicts, lists, numbers and strings need no global; anything else is refused unrun.
PICKLE_GLOBALS = safe_pickle.numpy_array_globals(kinds="biuf")


def _extracted_dir(path) -> Optional[Path]:
    """``path`` (or ``path/cifar-10-batches-py``) when it is a directory of extracted batch files."""
    p = Path(os.fspath(path)).expanduser()
    for d in (p, p / FOLDER):
        if d.is_dir() and all((d / n).is_file() for n in TRAIN_BATCHES + (TEST_BATCH,)):
            return d
    return None
