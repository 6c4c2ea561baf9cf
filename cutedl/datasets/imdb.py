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
tampered file holds). This module reads the ``.npy`` members through ``cutedl._io.NpzReader``
(sizes checked before anything is inflated or allocated) and decodes object arrays with
``cutedl.datasets.safe_pickle``, whose allowlist here rebuilds only NumPy arrays of lists of
integers; anything else in the stream (another class, a function call) is rejected with
``ValueError`` before it is created, and so are lists shared between reviews (a few bytes that
would expand to billions of ids) and ids that do not fit the int32 reviews.

Files are looked up in a directory given as ``path`` (or the file itself), then
``$CUTEDL_DATA_DIR/imdb``, the repository's ``datasets/imdb``, the cutedl cache and Keras's cache
``~/.keras/datasets``, and are otherwise downloaded once into the cutedl cache with a sha256 check.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Optional

import numpy as np

from cutedl._io import NpzReader, parse_json
from cutedl._validate import check_int
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
    who = "imdb.load_data"
    # Bounds keep every id inside the int32 reviews are returned as (and NumPy's seed range).
    num_words = check_int(who, "num_words", num_words, 1, _ID_MAX, allow_none=True)
    skip_top = check_int(who, "skip_top", skip_top, 0, _ID_MAX)
    maxlen = check_int(who, "maxlen", maxlen, 1, _ID_MAX, allow_none=True)
    seed = check_int(who, "seed", seed, 0, 2**32 - 1)
    start_char = check_int(who, "start_char", start_char, 0, _ID_MAX, allow_none=True)
    oov_char = check_int(who, "oov_char", oov_char, 0, _ID_MAX, allow_none=True)
    index_from = check_int(who, "index_from", index_from, 0, _ID_MAX)

    file = _locate(SOURCE, DATA_FILE, path, mirror, cache_dir, search_repo)
    arrays = read_npz(file, _KEYS)
    splits = []
    rs = np.random.RandomState(seed)  # Keras shuffles train then test with one generator
    for split in ("train", "test"):
        xs, ys = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(xs) != len(ys):
            raise ValueError(f"imdb: {file} holds {len(xs)} reviews but {len(ys)} labels in one split; "
                             f"the file is corrupt.")
        order = np.arange(len(xs))
        rs.shuffle(order)
        flat, lengths = _reviews(xs[order], f"{file}: x_{split}", order)
        splits.append([flat, lengths, ys[order]])

    for split in splits:
        flat, lengths, _ = split
        flat = flat + index_from   # int64: file ids and index_from are both <= _ID_MAX
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
        if num_words > _ID_MAX + 1:
            raise ValueError(f"{who}: with index_from={index_from} the word ids of {file} reach {num_words}, "
                             f"beyond the int32 range of the reviews ({_ID_MAX}); pass num_words <= {_ID_MAX} "
                             f"or a smaller index_from.")
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
    index = parse_json(Path(file).read_bytes(), "imdb.get_word_index", file, "word-index JSON")
    if not isinstance(index, dict) or not all(isinstance(k, str) and type(v) is int and v > 0
                                              for k, v in index.items()):
        raise ValueError(f"imdb: {file} must hold a JSON object mapping words to positive integers.")
    return index


# ---------------------------------------------------------------------------- reading the file
def read_npz(file: PathLike, keys=None) -> dict:
    """The arrays of an ``.npz`` file, object arrays of lists of ints included, without ``np.load``'s
    unrestricted unpickling (see the module docstring).

    Only the arrays named by ``keys`` are read; each is checked against the archive's real sizes
    before anything is allocated (``cutedl._io.NpzReader``), and an object array's lists may hold
    no more items in all than its pickle has bytes (shared lists cannot expand it).

    Args:
        file: the ``.npz`` path.
        keys: names that must be present (a ValueError names the missing ones); default all.
    Returns:
        ``{name: array}``; an object array's elements are the decoded Python lists of ints.
    """
    with NpzReader.open(file, "imdb", "a valid .npz file", hint=_DELETE) as npz:
        wanted = list(npz.names) if keys is None else list(keys)
        missing = [k for k in wanted if k not in npz]
        if missing:
            raise ValueError(f"imdb: {str(file)!r} lacks the array(s) {missing}; it holds {sorted(npz.names)}. "
                             f"Is it Keras's imdb.npz?")
        return {k: npz.read(k, object_reader=_read_object_array) for k in wanted}


# What np.save writes for an object array of lists of ints: NumPy's array rebuilder (object
# dtype allowed; the elements go through the same allowlist), numeric NumPy scalars (np.int64
# items) and the latin1 _codecs.encode that Python 3 protocol-2 pickles spell bytes with.
PICKLE_GLOBALS = {**safe_pickle.numpy_array_globals(kinds="biufO"), **safe_pickle.NUMPY_SCALAR_GLOBALS,
                  **safe_pickle.LATIN1_BYTES_GLOBALS}
_DELETE = "Delete the file and download it again."
_TAMPERED = f"The file is corrupt or was tampered with. {_DELETE}"
#: The largest word id: reviews are int32 arrays.
_ID_MAX = 2**31 - 1


def _read_object_array(payload: bytearray, shape: tuple, where: str) -> np.ndarray:
    """An ``.npy`` object array's pickle (``payload``) decoded with the IMDB allowlist."""
    if len(shape) != 1:
        raise ValueError(f"{where}: only 1-D object arrays are read, got shape {shape}. {_TAMPERED}")
    # np.save writes an object array as a pickle of the whole ndarray (Python 2 files too:
    # latin1 is how NumPy itself decodes their byte strings).
    array = safe_pickle.decode(bytes(payload), PICKLE_GLOBALS, encoding="latin1", what=where,
                               content="an IMDB array of reviews", hint=_DELETE)
    if not isinstance(array, np.ndarray) or array.dtype != np.dtype(object) or array.shape != tuple(shape):
        raise ValueError(f"{where}: the pickle does not hold the object array its header announces.")
    # A pickle can reference one list from every review (memo references): a few bytes that expand
    # to billions of ids. Each id of a real file takes at least one byte of the pickle.
    items = sum(len(r) if isinstance(r, (list, tuple)) else r.size if isinstance(r, np.ndarray) else 0
                for r in array)
    if items > len(payload):
        raise ValueError(f"{where}: the reviews hold {items:,} word ids in all, more than the {len(payload):,} "
                         f"bytes of their pickle can encode (they share lists through memo references). "
                         f"{_TAMPERED}")
    return array


def _reviews(xs: np.ndarray, where: str, index: np.ndarray) -> tuple:
    """An object array of integer lists as ``(flat int64, lengths)``, every id in ``[0, _ID_MAX]``.

    ``index[i]`` is the position of ``xs[i]`` in the file, for error messages.
    """
    lengths = np.empty(len(xs), dtype=np.intp)
    for i, review in enumerate(xs):
        if not isinstance(review, (list, np.ndarray)):
            raise ValueError(f"imdb: {where} review {index[i]} is a {type(review).__name__}, not a list of word "
                             f"indices; the file is corrupt.")
        lengths[i] = len(review)
    total = int(lengths.sum())
    # Python ints and NumPy integers only (not bools, floats, strings or nested lists), checked by
    # type before anything is converted (np.array would build a 2-D array from nested lists).
    kinds = set(map(type, itertools.chain.from_iterable(xs)))
    flat = None
    if all(t is int or issubclass(t, np.integer) for t in kinds):
        try:
            flat = np.fromiter(itertools.chain.from_iterable(xs), dtype=np.int64, count=total)
        except OverflowError:
            pass
    if flat is None or (flat.size and (flat.min() < 0 or flat.max() > _ID_MAX)):
        for i, review in enumerate(xs):
            for word in review:
                if not ((type(word) is int or isinstance(word, np.integer)) and 0 <= word <= _ID_MAX):
                    raise ValueError(f"imdb: {where} review {index[i]} holds {type(word).__name__} {_short(word)}, "
                                     f"not a word index (an integer in [0, {_ID_MAX}]); the file is corrupt.")
        raise ValueError(f"imdb: {where} holds word indices that are not integers in [0, {_ID_MAX}]; the file "
                         f"is corrupt.")
    return flat, lengths


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


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
        p = Path(cache.check_pathlike(path, "path")).expanduser()
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
