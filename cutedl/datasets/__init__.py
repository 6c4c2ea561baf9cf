"""Datasets as NumPy arrays, Keras style, and helpers to prepare them.

    >>> from cutedl import datasets
    >>> (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    >>> x = datasets.normalize(x_train.reshape(len(x_train), -1))   # float32 (60000, 784) in [0, 1]
    >>> y = datasets.one_hot(y_train, 10)                           # float32 (60000, 10)

Modules: ``mnist``, ``fashion_mnist``, ``cifar10``, ``imdb`` (``load_data()``), ``idx`` (the IDX
file format), ``cache`` (where files are searched for and downloaded: ``$CUTEDL_DATA_DIR``, the
repository's ``datasets/``, ``$CUTEDL_CACHE_DIR`` or ``~/.cache/cutedl``, mirrors).
``image_folder(path, size=(h, w), ...)`` reads a folder of images, one sub-folder per class, lazily.
"""
from cutedl.datasets import cache, cifar10, fashion_mnist, idx, imdb, mnist
from cutedl.datasets.cache import Checksum, DatasetSource, DownloadError
from cutedl.datasets.utils import normalize, one_hot
from cutedl.datasets.image_folder import ImageFolder, image_folder

__all__ = ["mnist", "fashion_mnist", "cifar10", "imdb", "idx", "cache", "normalize", "one_hot", "Checksum",
           "DatasetSource", "DownloadError", "image_folder", "ImageFolder"]
