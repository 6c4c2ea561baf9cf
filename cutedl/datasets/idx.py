"""The IDX file format (MNIST, Fashion-MNIST) and the shared loader of image/label datasets.

An IDX file is a big-endian header followed by raw array data:

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4*d bytes   the dimensions, big-endian uint32
    ...         prod(dims) elements, big-endian, C order

so the magic number of MNIST images (uint8, 3-D) is 0x00000803 = 2051 and of labels (uint8, 1-D)
0x00000801 = 2049. Files may be gzipped (detected by content). Parsing is ``np.frombuffer`` on
the decompressed bytes: no pickle, and a file whose length disagrees with its header is refused.
"""
from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from cutedl._io import INFLATE_FREE_BYTES, MAX_INFLATE_RATIO
from cutedl.datasets import cache
from cutedl.datasets.cache import DatasetSource, PathLike

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# The four files of the MNIST layout, shared by MNIST and Fashion-MNIST.
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_LAYOUT = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

_TYPE_CODES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: PathLike, *, magic: Optional[int] = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a writable, native-endian NumPy array.

    Args:
        path: the file.
        magic: the magic number the file must have (e.g. ``IMAGES_MAGIC``), or None for any.
    Returns:
        An array of the header's shape and type, e.g. uint8 ``(60000, 28, 28)``.
    Raises:
        ValueError: the file is not valid gzip (or inflates like a gzip bomb), not IDX, has another magic number, or its data
            length disagrees with its header (truncated or padded). The message names the file.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        # Inflate no more than a real file could: a gzip bomb of 2 MB holds 2 GB of zeros.
        limit = max(INFLATE_FREE_BYTES, MAX_INFLATE_RATIO * len(data))
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                inflated = f.read(limit + 1)
        except (OSError, EOFError, zlib.error) as err:   # BadGzipFile is an OSError; EOFError = truncated
            raise ValueError(f"IDX file '{path}' is not a valid gzip file ({err}); it is truncated or "
                             f"corrupt. Delete it and download it again.") from err
        if len(inflated) > limit:
            raise ValueError(f"IDX file '{path}' inflates to more than {limit:,} bytes, over {MAX_INFLATE_RATIO} "
                             f"times its {len(data):,} bytes (real IDX files shrink about 5x): a gzip bomb or "
                             f"a corrupt file. Delete it and download it again.")
        data = inflated
    return parse_idx(data, name=str(path), magic=magic)


def parse_idx(data: bytes, *, name: str = "<bytes>", magic: Optional[int] = None) -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file (see ``read_idx``); ``name`` is used in errors."""
    if len(data) < 4:
        raise ValueError(f"IDX file '{name}' is truncated: {len(data)} bytes, shorter than the 4-byte "
                         f"magic number.")
    found = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or type_code not in _TYPE_CODES or ndim == 0:
        raise ValueError(f"File '{name}' is not an IDX file: bad magic number {found} (0x{found:08x}); "
                         f"expected 0x0000TTDD with a type code TT in "
                         f"{sorted(f'0x{c:02x}' for c in _TYPE_CODES)} and DD >= 1 dimensions.")
    if magic is not None and found != magic:
        raise ValueError(f"IDX file '{name}' has magic number {found} ({_describe(found)}), expected "
                         f"{magic} ({_describe(magic)}). Are the image and label files swapped?")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file '{name}' is truncated: its header needs {header} bytes for {ndim} "
                         f"dimensions, the file has {len(data)}.")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _TYPE_CODES[type_code]
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize   # object: no overflow on garbage dims
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise ValueError(f"IDX file '{name}' is {what}: header shape {shape} of {dtype.name} needs "
                         f"{expected} data bytes, the file has {got}. Delete it and get it again.")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    # astype copies: the result is writable (frombuffer on bytes is read-only, and users shuffle
    # in place) and in native byte order.
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def load_idx_dataset(source: DatasetSource, path: Optional[PathLike] = None, *,
                     mirror: Optional[str] = None, cache_dir: Optional[PathLike] = None,
                     search_repo: bool = True, num_classes: int = 10):
    """Load a dataset in the MNIST layout (the four files of ``MNIST_LAYOUT``).

    Args:
        source: names the dataset, its checksums and mirrors (see ``cache.DatasetSource``).
        path, mirror, cache_dir, search_repo: where to look, see ``cache.fetch``.
        num_classes: labels must lie in ``[0, num_classes)``.
    Returns:
        ``(x_train, y_train), (x_test, y_test)``: images uint8 ``(n, rows, cols)``, labels uint8 ``(n,)``.
    Raises:
        ValueError: a file is corrupt, or images and labels disagree in count, or a label is out
            of range.
    """
    directory = cache.fetch(source, path, mirror=mirror, cache_dir=cache_dir, search_repo=search_repo)
    train = _load_pair(directory / TRAIN_IMAGES, directory / TRAIN_LABELS, num_classes)
    test = _load_pair(directory / TEST_IMAGES, directory / TEST_LABELS, num_classes)
    return train, test


def _load_pair(images_path: Path, labels_path: Path, num_classes: int):
    x = read_idx(images_path, magic=IMAGES_MAGIC)
    y = read_idx(labels_path, magic=LABELS_MAGIC)
    if len(x) != len(y):
        raise ValueError(f"'{images_path}' holds {len(x)} images but '{labels_path}' holds {len(y)} "
                         f"labels; they must come from the same split.")
    if y.size and int(y.max()) >= num_classes:
        raise ValueError(f"IDX file '{labels_path}' has label {int(y.max())}, expected labels in "
                         f"[0, {num_classes}). The file is corrupt or from another dataset.")
    return x, y


def _describe(magic: int) -> str:
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    dtype = _TYPE_CODES.get(type_code)
    kind = {IMAGES_MAGIC: "images, ", LABELS_MAGIC: "labels, "}.get(magic, "")
    return f"{kind}{dtype.name if dtype is not None else f'type 0x{type_code:02x}'}, {ndim}-D"
