"""IMDB movie reviews (Maas et al., 2011): 25,000 training and 25,000 test reviews, labelled
positive (1) or negative (0), each a list of word indices, in Keras's ``imdb.npz`` format.

    >>> from cutedl.datasets import imdb
    >>> (x_train, y_train), (x_test, y_test) = imdb.load_data(num_words=10000)
    >>> x_train.shape, x_train[0][:4], y_train[:3]
    ((25000,), array([   1,   14,   22,   16], dtype=int32), array([1, 0, 0]))
    >>> word_index = imdb.get_word_index()          # {'the': 1, 'and': 2, ...}

Word ``i`` of the word index (1 = most frequent) appears in the reviews as ``i + index_from``;
``0`` is padding, ``start_char`` (1) starts every review and ``oov_char`` (2) replaces the words
cut by ``num_words`` / ``skip_top``. Same arguments, same shuffle, same arrays as
``keras.datasets.imdb.load_data``, except that each review is an int32 array instead of a list.

Keras's file stores the reviews as NumPy *object* arrays, which ``np.load(allow_pickle=False)``
refuses, and which np.load with pickles allowed would unpickle blindly (running any code a
tampered file holds). This module reads the ``.npy`` members itself and decodes object arrays
with ``cutedl.datasets.safe_pickle``, whose allowlist here rebuilds only NumPy arrays of lists of
integers; anything else in the stream (another class, a function call) is rejected with
``ValueError`` before it is created.

Files are looked up in a directory given as ``path`` (or the file itself), then
``$CUTEDL_DATA_DIR/imdb``, the repository's ``datasets/imdb``, the cutedl cache and Keras's cache
``~/.keras/datasets``, and are otherwise downloaded once into the cutedl cache with a sha256 check.
"""
from __future__ import annotations

import io
import itertools
import json
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
from numpy.lib import format as npy_format

from cutedl.datasets import cache, safe_pickle
from cutedl.datasets.cache import Checksum, DatasetSource, PathLike

DATA_FILE = "imdb.npz"
WORD_INDEX_FILE = "imdb_word_index.json"
_MIRRORS = ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/",)

SOURCE = DatasetSource(
    name="imdb",
    files={DATA_FILE: Checksum("69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f",
                               of="download")},
    mirrors=_MIRRORS, mirror_env="CUTEDL_IMDB_MIRROR")
# Keras publishes only an md5 for the word index (an integrity check against corrupt downloads).
WORD_INDEX_SOURCE = DatasetSource(
    name="imdb",
    files={WORD_INDEX_FILE: Checksum("bfafd718b763782e994055a2d397834f", algorithm="md5", of="download")},
    mirrors=_MIRRORS, mirror_env="CUTEDL_IMDB_MIRROR")

KERAS_CACHE_DIR = Path.home() / ".keras" / "datasets"
_KEYS = ("x_train", "y_train", "x_test", "y_test")

HOW_TO_GET = (f"Download {_MIRRORS[0]}{DATA_FILE} (the file Keras uses, 17 MB) and put it in "
              f"~/.cache/cutedl/imdb/, in <dir>/imdb/ with $CUTEDL_DATA_DIR=<dir>, or pass "
              f"load_data(path=<the file or its directory>); a copy in ~/.keras/datasets/ is found too.")


def load_data(path: Optional[PathLike] = None, num_words: Optional[int] = None, skip_top: int = 0,
              maxlen: Optional[int] = None, seed: int = 113, start_char: Optional[int] = 1,
              oov_char: Optional[int] = 2, index_from: int = 3, *, mirror: Optional[str] = None,
              cache_dir: Optional[PathLike] = None, search_repo: bool = True):
    """Load the IMDB reviews as word-index sequences (like ``keras.datasets.imdb.load_data``).

    Args:
        path: ``imdb.npz`` itself or a directory holding it; default: search (see the module doc).
        num_words: keep the ``num_words - 1`` most frequent index values; others become
            ``oov_char`` (or are dropped when ``oov_char`` is None). Default: all words.
        skip_top: also treat index values below ``skip_top`` as out of vocabulary (the most
            frequent words; as in Keras this includes ``start_char`` when ``skip_top > start_char``).
        maxlen: drop reviews with ``maxlen`` or more entries (counting ``start_char``).
        seed: the shuffle of each split (``np.random.RandomState(seed)``, Keras's order).
        start_char: prepended to every review (None: nothing).
        oov_char: replaces out-of-vocabulary words (None: drop them).
        index_from: added to every word index, reserving 0 .. index_from - 1.
        mirror, cache_dir, search_repo: as for :func:`cutedl.datasets.mnist.load_data`.
    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x is an object array ``(n,)`` of int32 arrays
        (one review each, variable length; pass it to ``pad_sequences`` or ``SequenceDataset``),
        y an int array ``(n,)`` of 0/1 labels.
    Raises:
        ValueError: bad arguments, a corrupt or tampered file, or ``maxlen`` leaving no review.
        DownloadError: the file is nowhere locally and cannot be downloaded.
    """
    num_words = _check_optional_int("num_words", num_words, 1)
    skip_top = _check_int("skip_top", skip_top, 0)
    maxlen = _check_optional_int("maxlen", maxlen, 1)
    seed = _check_int("seed", seed, 0)
    start_char = _check_optional_int("start_char", start_char, 0)
    oov_char = _check_optional_int("oov_char", oov_char, 0)
    index_from = _check_int("index_from", index_from, 0)

    file = _locate(SOURCE, DATA_FILE, path, mirror, cache_dir, search_repo)
    arrays = read_npz(file, _KEYS)
    splits = []
    rs = np.random.RandomState(seed)  # Keras shuffles train then test with one generator
    for xs, ys in ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])):
        if len(xs) != len(ys):
            raise ValueError(f"imdb: {file} holds {len(xs)} reviews but {len(ys)} labels in one split; "
                             f"the file is corrupt.")
        order = np.arange(len(xs))
        rs.shuffle(order)
        flat, lengths = _reviews(xs[order], file)
        splits.append([flat, lengths, ys[order]])

    for split in splits:
        flat, lengths, _ = split
        flat = flat + index_from
        if start_char is not None:
            flat, lengths = _prepend(flat, lengths, start_char)
        split[0], split[1] = flat, lengths
    if maxlen:
        for split in splits:
            keep = split[1] < maxlen  # Keras keeps len < maxlen
            split[0], split[1] = _select(split[0], split[1], keep)
            split[2] = split[2][keep]
        if not all(len(s[1]) for s in splits):
            raise ValueError(f"imdb: no review is shorter than maxlen={maxlen} in one of the splits; "
                             f"increase maxlen.")
    if not num_words:
        # Keras's default: the largest index, which `< num_words` below then marks out of
        # vocabulary too (a quirk kept so the arrays equal Keras's).
        num_words = max(int(s[0].max()) if s[0].size else 0 for s in splits)
    out = []
    for flat, lengths, labels in splits:
        inside = (flat >= skip_top) & (flat < num_words)
        if oov_char is not None:
            flat = np.where(inside, flat, oov_char)
        else:
            flat, lengths = flat[inside], _segment_sums(inside, lengths)
        out.append((_as_object_array(flat.astype(np.int32), lengths), labels))
    return tuple(out)


def get_word_index(path: Optional[PathLike] = None, *, mirror: Optional[str] = None,
                   cache_dir: Optional[PathLike] = None, search_repo: bool = True) -> dict:
    """The word -> rank dictionary of the IMDB reviews (``{'the': 1, 'and': 2, ...}``), from
    ``imdb_word_index.json`` (found like ``imdb.npz``). In ``load_data``'s output word ``w``
    appears as ``w + index_from``."""
    file = _locate(WORD_INDEX_SOURCE, WORD_INDEX_FILE, path, mirror, cache_dir, search_repo)
    try:
        index = json.loads(Path(file).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"imdb: {file} is not a valid word-index JSON file ({err}).") from None
    if not isinstance(index, dict) or not all(isinstance(k, str) and type(v) is int and v > 0
                                              for k, v in index.items()):
        raise ValueError(f"imdb: {file} must hold a JSON object mapping words to positive integers.")
    return index


# ---------------------------------------------------------------------------- reading the file
def read_npz(file: PathLike, keys=None) -> dict:
    """The arrays of an ``.npz`` file, object arrays of lists of ints included, without ``np.load``'s
    unrestricted unpickling (see the module docstring).

    Args:
        file: the ``.npz`` path.
        keys: names that must be present (a ValueError names the missing ones); default all.
    Returns:
        ``{name: array}``; an object array's elements are the decoded Python lists of ints.
    """
    try:
        with zipfile.ZipFile(file) as zf:
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            wanted = list(members) if keys is None else list(keys)
            missing = [k for k in wanted if k not in members]
            if missing:
                raise ValueError(f"{file} lacks the array(s) {missing}; it holds {sorted(members)}. "
                                 f"Is it Keras's imdb.npz?")
            return {k: _read_npy(zf.read(members[k]), f"{file}:{k}") for k in wanted}
    except (zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{file} is not a valid .npz file (corrupt or truncated: {err}).") from None


# What np.save writes for an object array of lists of ints: NumPy's array rebuilder (object
# dtype allowed; the elements go through the same allowlist), numeric NumPy scalars (np.int64
# items) and the latin1 _codecs.encode that Python 3 protocol-2 pickles spell bytes with.
PICKLE_GLOBALS = {**safe_pickle.numpy_array_globals(kinds="biufO"), **safe_pickle.NUMPY_SCALAR_GLOBALS,
                  **safe_pickle.LATIN1_BYTES_GLOBALS}
_TAMPERED = "The file is corrupt or was tampered with; delete it and download it again."


def _read_npy(data: bytes, where: str) -> np.ndarray:
    f = io.BytesIO(data)
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        if not dtype.hasobject:
            f.seek(0)
            return npy_format.read_array(f, allow_pickle=False)
        if dtype != np.dtype(object) or len(shape) != 1:
            raise ValueError(f"only 1-D object arrays are read, got dtype {dtype} shape {shape}")
    except (ValueError, TypeError, EOFError, OverflowError) as err:
        raise ValueError(f"{where}: cannot be read safely ({err}). {_TAMPERED}") from None
    # np.save writes an object array as a pickle of the whole ndarray (Python 2 files too:
    # latin1 is how NumPy itself decodes their byte strings).
    array = safe_pickle.decode(data[f.tell():], PICKLE_GLOBALS, encoding="latin1", what=where,
                              content="an IMDB array of reviews", hint="Delete the file and download it again.")
    if not isinstance(array, np.ndarray) or array.dtype != np.dtype(object) or array.shape != tuple(shape):
        raise ValueError(f"{where}: the pickle does not hold the object array its header announces.")
    return array


def _reviews(xs: np.ndarray, where) -> tuple:
    """An object array of integer lists as ``(flat int64, lengths)``."""
    lengths = np.empty(len(xs), dtype=np.intp)
    for i, review in enumerate(xs):
        if not isinstance(review, (list, np.ndarray)):
            raise ValueError(f"imdb: {where} review {i} is a {type(review).__name__}, not a list of word "
                             f"indices; the file is corrupt.")
        lengths[i] = len(review)
    flat = np.array(list(itertools.chain.from_iterable(xs)))
    if flat.size and (flat.dtype.kind not in "iu" or flat.min() < 0):
        raise ValueError(f"imdb: {where} holds word indices that are not non-negative integers "
                         f"(dtype {flat.dtype}); the file is corrupt.")
    return flat.astype(np.int64, copy=False).reshape(-1), lengths


def _offsets(lengths) -> np.ndarray:
    starts = np.zeros(len(lengths), dtype=np.intp)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def _prepend(flat, lengths, value):
    starts = _offsets(lengths)
    return np.insert(flat, starts, value), lengths + 1


def _select(flat, lengths, keep):
    return flat[np.repeat(keep, lengths)], lengths[keep]


def _segment_sums(mask, lengths):
    """Per-sequence count of True in ``mask`` (ragged like ``lengths``)."""
    seg = np.repeat(np.arange(len(lengths)), lengths)
    return np.bincount(seg[mask], minlength=len(lengths)).astype(np.intp)


def _as_object_array(flat, lengths) -> np.ndarray:
    out = np.empty(len(lengths), dtype=object)
    for i, review in enumerate(np.split(flat, _offsets(lengths)[1:]) if len(lengths) else []):
        out[i] = review
    return out


# ---------------------------------------------------------------------------- finding the file
def _locate(source: DatasetSource, name: str, path, mirror, cache_dir, search_repo) -> Path:
    if path is not None:
        p = Path(cache._check_pathlike(path, "path")).expanduser()
        if p.is_file():
            return p
        if not p.exists():
            raise FileNotFoundError(f"imdb: {str(p)!r} does not exist; pass the file {name} itself or the "
                                    f"directory holding it.")
        return cache.fetch(source, p) / name  # a directory: it must hold the file
    candidates = [d / name for d in cache.local_dirs(source, search_repo=search_repo)]
    candidates += [cache.user_cache_dir(cache_dir) / source.name / name, KERAS_CACHE_DIR / name]
    for c in candidates:
        if c.is_file():
            return c
    try:
        return cache.fetch(source, mirror=mirror, cache_dir=cache_dir, search_repo=search_repo) / name
    except cache.DownloadError as err:
        raise cache.DownloadError(f"{err} {HOW_TO_GET}") from None


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"imdb.load_data: {name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_optional_int(name, value, minimum):
    return None if value is None else _check_int(name, value, minimum)
