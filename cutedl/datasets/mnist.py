"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 uint8, labels 0-9.

    >>> from cutedl.datasets import mnist
    >>> (x_train, y_train), (x_test, y_test) = mnist.load_data()
    >>> x_train.shape, x_train.dtype, y_train.shape
    ((60000, 28, 28), dtype('uint8'), (60000,))

The files ship with the repository in ``datasets/mnist/``; elsewhere they are downloaded once
into the cache (see ``cutedl.datasets.cache`` for the search order). Checksums are sha256 of the
*uncompressed* content, so any faithful gzip of the same data passes (the shipped files and the
mirrors' differ as gzip bytes, not in content).
"""
from __future__ import annotations

from typing import Optional

from cutedl.datasets.cache import Checksum, DatasetSource, PathLike
from cutedl.datasets.idx import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, load_idx_dataset

SOURCE = DatasetSource(
    name="mnist",
    files={
        TRAIN_IMAGES: Checksum("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        TRAIN_LABELS: Checksum("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        TEST_IMAGES: Checksum("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        TEST_LABELS: Checksum("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    mirrors=("https://storage.googleapis.com/cvdf-datasets/mnist/",
             "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    mirror_env="CUTEDL_MNIST_MIRROR",
)


def load_data(path: Optional[PathLike] = None, *, mirror: Optional[str] = None,
              cache_dir: Optional[PathLike] = None, search_repo: bool = True):
    """Load MNIST as NumPy arrays (like ``keras.datasets.mnist.load_data``).

    Args:
        path: a directory holding the four gzipped IDX files; default: search
            ``$CUTEDL_DATA_DIR/mnist``, the repository's ``datasets/mnist``, then the cache.
        mirror: base URL to download from (default ``$CUTEDL_MNIST_MIRROR``, else public mirrors).
        cache_dir: cache root (default ``$CUTEDL_CACHE_DIR``, else ``~/.cache/cutedl``).
        search_repo: look in the repository's ``datasets/mnist`` (False forces the cache/download).
    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 ``(60000, 28, 28)`` / ``(10000, 28, 28)``
        with pixels 0..255, y uint8 ``(60000,)`` / ``(10000,)`` with digits 0..9.
    Raises:
        ValueError: a file is corrupt or a download fails its checksum.
        DownloadError: the files are nowhere locally and cannot be downloaded.
    """
    return load_idx_dataset(SOURCE, path, mirror=mirror, cache_dir=cache_dir, search_repo=search_repo)


def load_vectors(val_size: int = 5000, limit: Optional[int] = None, path: Optional[PathLike] = None):
    """MNIST ready for an MLP: flat float32 images in [0, 1], one-hot float32 labels, a validation split.

    The last ``val_size`` training images are held out for validation, so early stopping never
    sees the test set. ``limit`` keeps the first ``limit`` training images and shrinks the
    validation set to ``max(limit // 4, 100)`` and the test set to ``max(limit, 1000)`` images,
    so a smoke run stays small.

    Returns:
        ``(x_train, y_train), (x_val, y_val), (x_test, y_test)`` with x ``(n, 784)`` and y ``(n, 10)``.
    """
    from cutedl.datasets.utils import normalize, one_hot

    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 < val_size < 60000:
        raise ValueError(f"mnist.load_vectors: val_size must be an integer in (0, 60000), got {val_size!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"mnist.load_vectors: limit must be a positive integer or None, got {limit!r}.")
    (x_train, y_train), (x_test, y_test) = load_data(path)
    x_train = normalize(x_train.reshape(len(x_train), -1))
    x_test = normalize(x_test.reshape(len(x_test), -1))
    y_train, y_test = one_hot(y_train, 10), one_hot(y_test, 10)
    x_val, y_val = x_train[-val_size:], y_train[-val_size:]
    x_train, y_train = x_train[:-val_size], y_train[:-val_size]
    if limit:
        n_val, n_test = max(limit // 4, 100), max(limit, 1000)
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_val, y_val = x_val[:n_val], y_val[:n_val]
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)
