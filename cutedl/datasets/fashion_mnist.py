"""Fashion-MNIST (Zalando Research): 60,000 training and 10,000 test images of clothing, 28x28
uint8, labels 0-9 (names in ``CLASS_NAMES``). A drop-in replacement for MNIST: same IDX files,
same file names, same shapes.

    >>> from cutedl.datasets import fashion_mnist
    >>> (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()

Not shipped with the repository: downloaded once into ``<cache>/fashion_mnist/`` (see
``cutedl.datasets.cache``). The checksums are the MD5 digests of the *gzipped files* that
Zalando publishes with the dataset (no sha256 is published); they catch corrupt or partial
downloads, and the IDX structure is checked on every load.
"""
from __future__ import annotations

from typing import Optional

from cutedl.datasets.cache import Checksum, DatasetSource, PathLike
from cutedl.datasets.idx import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, load_idx_dataset

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _published_md5(hexdigest: str) -> Checksum:
    return Checksum(hexdigest, algorithm="md5", of="download")


SOURCE = DatasetSource(
    name="fashion_mnist",
    files={
        TRAIN_IMAGES: _published_md5("8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        TRAIN_LABELS: _published_md5("25c81989df183df01b3e8a0aad5dffbe"),
        TEST_IMAGES: _published_md5("bef4ecab320f06d8554ea6380940ec79"),
        TEST_LABELS: _published_md5("bb300cfdad3c16e7a12a480ee83cd310"),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    mirror_env="CUTEDL_FASHION_MNIST_MIRROR",
)


def load_data(path: Optional[PathLike] = None, *, mirror: Optional[str] = None,
              cache_dir: Optional[PathLike] = None, search_repo: bool = True):
    """Load Fashion-MNIST as NumPy arrays (like ``keras.datasets.fashion_mnist.load_data``).

    Args:
        path: a directory holding the four gzipped IDX files; default: search
            ``$CUTEDL_DATA_DIR/fashion_mnist``, the repository's ``datasets/fashion_mnist``,
            then the cache.
        mirror: base URL to download from (default ``$CUTEDL_FASHION_MNIST_MIRROR``, else the
            published mirrors).
        cache_dir: cache root (default ``$CUTEDL_CACHE_DIR``, else ``~/.cache/cutedl``).
        search_repo: look in the repository's ``datasets/fashion_mnist``.
    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 ``(60000, 28, 28)`` / ``(10000, 28, 28)``,
        y uint8 ``(60000,)`` / ``(10000,)`` with class indices 0..9 (see ``CLASS_NAMES``).
    Raises:
        ValueError: a file is corrupt or a download fails its checksum.
        DownloadError: the files are nowhere locally and cannot be downloaded.
    """
    return load_idx_dataset(SOURCE, path, mirror=mirror, cache_dir=cache_dir, search_repo=search_repo)
