"""Variable-length sequences: ``pad_sequences`` (Keras semantics) and a bucketing ``SequenceDataset``.

    >>> pad_sequences([[1, 2, 3], [4]], maxlen=2)
    array([[2, 3],
           [0, 4]], dtype=int32)
    >>> ds = SequenceDataset(reviews, labels, batch_size=32)   # batches of similar length
    >>> for xb, yb in ds: ...                                  # xb (32, longest in the batch)

Both are re-exported by :mod:`cutedl.data`. Sequences are stored once as one flat array with
offsets, and a batch is padded by one vectorised gather: no per-sequence Python loop per batch.
"""
from __future__ import annotations

import math

from cutedl.backend import np

from cutedl import backend, rng
from cutedl.data.dataset import Dataset, check_finite, data_array, split_point

_SIDES = ("pre", "post")
# pad at most this many output positions per gather, to bound the index temporaries
_CHUNK = 1 << 20


def pad_sequences(sequences, maxlen: int | None = None, dtype="int32", padding: str = "pre",
                  truncating: str = "pre", value=0.0) -> np.ndarray:
    """Pad (and truncate) sequences to one length, like ``keras.utils.pad_sequences``.

    Args:
        sequences: a list (or any sized iterable) of sequences: lists or arrays of shape
            ``(length, *sample_shape)``; empty sequences become all padding.
        maxlen: the output length; default the longest sequence.
        dtype: of the output (values are cast to it, as Keras does).
        padding: ``'pre'`` puts the padding before each sequence, ``'post'`` after it.
        truncating: ``'pre'`` drops the first steps of a longer sequence, ``'post'`` the last.
        value: the padding value.
    Returns:
        ``(len(sequences), maxlen, *sample_shape)`` array of ``dtype``.
    Raises:
        ValueError: bad ``padding``/``truncating``/``maxlen``, a scalar instead of a sequence,
            or sequences whose steps differ in shape.
    """
    try:
        numeric = np.dtype(dtype).kind not in "OUS"
    except TypeError:
        numeric = True  # a bad dtype is reported below
    flat, starts, lengths = _flatten(sequences, "pad_sequences", numeric)
    _check_sides(padding, truncating, "pad_sequences")
    if maxlen is None:
        maxlen = int(lengths.max()) if len(lengths) else 0
    else:
        maxlen = _check_maxlen(maxlen, "pad_sequences")
    dtype = np.dtype(dtype)
    if isinstance(value, str) and dtype.kind not in "OUS":
        raise ValueError(f"pad_sequences: value={value!r} is a string but dtype is {dtype}; pass a numeric "
                         f"value, or dtype=object / a string dtype for string sequences.")
    return _pad(flat, starts, lengths, maxlen, padding, truncating, value, dtype)


def _flatten(sequences, who, numeric: bool = True):
    """All sequences concatenated: ``(flat, starts, lengths)``, flat ``(total, *sample_shape)``."""
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise TypeError(f"{who}: sequences must be a list of sequences, got {type(sequences).__name__}.")
    arrays = []
    for i, s in enumerate(sequences):
        try:
            a = np.asarray(s)
        except ValueError as err:
            raise ValueError(f"{who}: sequence {i} is not a regular array ({err}).") from None
        if a.ndim == 0:
            raise ValueError(f"{who}: sequences must be a list of sequences, but item {i} is the scalar "
                             f"{a.item()!r}. Wrap a single sequence in a list: [seq].")
        if a.dtype.kind not in "biuf" and numeric:
            items = list(s) if isinstance(s, (list, tuple)) else list(a.ravel())
            bad = next((v for v in items if not isinstance(v, (int, float, np.integer, np.floating))), items[0])
            raise ValueError(f"{who}: sequence {i} holds the non-numeric value {bad!r} (dtype {a.dtype}); sequences "
                             f"must hold numbers (token ids or features). Map tokens to ids first, and drop or "
                             f"replace missing values (None).")
        arrays.append(a)
    nonempty = [a for a in arrays if len(a)]
    sample_shape = nonempty[0].shape[1:] if nonempty else ()
    for i, a in enumerate(arrays):
        if len(a) and a.shape[1:] != sample_shape:
            raise ValueError(f"{who}: every step must have the same shape; sequence {i} has steps of shape "
                             f"{a.shape[1:]}, the first non-empty one {sample_shape}.")
    lengths = np.array([len(a) for a in arrays], dtype=np.intp)
    starts = np.zeros(len(arrays), dtype=np.intp)
    np.cumsum(lengths[:-1], out=starts[1:])
    flat = np.concatenate(nonempty) if nonempty else np.zeros((0,) + sample_shape)
    return flat, starts, lengths


def _check_sides(padding, truncating, who):
    if padding not in _SIDES:
        raise ValueError(f"{who}: padding must be 'pre' or 'post', got {padding!r}.")
    if truncating not in _SIDES:
        raise ValueError(f"{who}: truncating must be 'pre' or 'post', got {truncating!r}.")


def _check_maxlen(maxlen, who):
    if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
        raise ValueError(f"{who}: maxlen must be a non-negative integer or None, got {maxlen!r}.")
    return int(maxlen)


def _pad(flat, starts, lengths, maxlen, padding, truncating, value, dtype):
    """Rows ``flat[starts[i] : starts[i] + lengths[i]]`` padded/truncated to ``maxlen``."""
    n = len(lengths)
    out = np.full((n, maxlen) + flat.shape[1:], value, dtype=dtype)
    if n == 0 or maxlen == 0:
        return out
    kept = np.minimum(lengths, maxlen)  # (n,) steps kept per sequence
    first = starts + (lengths - kept if truncating == "pre" else 0)  # (n,) flat index of the first kept step
    lead = maxlen - kept if padding == "pre" else np.zeros(n, np.intp)  # (n,) padding steps in front
    steps = np.arange(maxlen)
    rows = max(1, _CHUNK // maxlen)
    for r in range(0, n, rows):
        sl = slice(r, r + rows)
        pos = steps - lead[sl, None]  # (rows, maxlen): step of the sequence at each output position
        real = (pos >= 0) & (pos < kept[sl, None])
        out[sl][real] = flat[(first[sl, None] + pos)[real]]
    return out


class SequenceDataset(Dataset):
    """Mini-batches of variable-length sequences, bucketed by length and padded per batch.

    Each epoch (with ``shuffle``) the samples are shuffled, cut into pools of ``bucket_batches``
    batches, each pool is sorted by length and cut into batches, and the batches are shuffled:
    a batch holds sequences of similar length, so little padding is computed, while batches stay
    random. Without ``shuffle`` the batches run in order of increasing length. Each batch ``x``
    is padded (``padding``, ``value``) to its longest sequence, at most ``maxlen`` (longer
    sequences are truncated, ``truncating``); pair it with ``Embedding(mask_zero=True)`` so the
    padding is masked. Usable wherever a :class:`~cutedl.data.Dataset` is (``Session.fit``,
    ``evaluate``, ``validation_split``).

    Args:
        sequences: list of sequences (lists or arrays ``(length, *sample_shape)``), e.g. token ids.
        y: one label per sequence, ``(n, ...)``, or None.
        batch_size, shuffle, drop_remainder, seed: as for :class:`~cutedl.data.Dataset`.
        maxlen: truncate longer sequences to this length (default: no limit).
        padding, truncating, value: as for :func:`pad_sequences`.
        dtype: of the batches; default int32 for integer sequences (token ids), ``floatx()``
            (float32) for float ones (feature vectors per step).
        bucket_batches: pool size in batches; 1 pads each random batch as it comes, larger
            values bucket more tightly (and shuffle less).
    Example:
        >>> ds = SequenceDataset(x_train, y_train, batch_size=32, maxlen=400)
        >>> session.fit(ds, epochs=3)
    """

    def __init__(self, sequences, y=None, batch_size: int = 32, shuffle: bool = True, maxlen: int | None = None,
                 padding: str = "pre", truncating: str = "pre", value=0, dtype=None,
                 bucket_batches: int = 20, drop_remainder: bool = False, seed=None):
        flat, starts, lengths = _flatten(sequences, "SequenceDataset", numeric=False)  # checked below
        _check_sides(padding, truncating, "SequenceDataset")
        if maxlen is not None:
            maxlen = _check_maxlen(maxlen, "SequenceDataset")
            if maxlen == 0:
                raise ValueError("SequenceDataset: maxlen=0 would leave nothing of any sequence; use None "
                                 "(no limit) or a positive length.")
        if len(lengths) == 0:
            raise ValueError("SequenceDataset: sequences is empty (0 samples); there is nothing to train on.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"SequenceDataset: batch_size must be a positive integer, got {batch_size!r}.")
        if isinstance(bucket_batches, bool) or not isinstance(bucket_batches, (int, np.integer)) \
                or bucket_batches <= 0:
            raise ValueError(f"SequenceDataset: bucket_batches must be a positive integer, got {bucket_batches!r}.")
        flat = data_array(flat, "sequences")
        check_finite(flat, "sequences")
        if dtype is None:
            dtype = backend.floatx() if flat.dtype.kind == "f" else np.dtype(np.int32)
        dtype = np.dtype(dtype)
        if dtype.kind in "iu" and flat.dtype.kind == "f" and (flat != np.round(flat)).any():
            raise ValueError(f"SequenceDataset: the sequences hold non-integer values but dtype is {dtype}, "
                             f"which would truncate them; pass dtype='float32' (or leave dtype=None).")
        if y is not None:
            y = data_array(y, "y")
            if len(y) != len(lengths):
                raise ValueError(f"SequenceDataset: sequences and y must have the same length, got "
                                 f"{len(lengths)} sequences and {len(y)} labels.")
            check_finite(y, "y")
        if drop_remainder and len(lengths) < batch_size:
            raise ValueError(f"SequenceDataset: {len(lengths)} sequences with batch_size={batch_size} and "
                             f"drop_remainder=True gives no batch at all. Lower batch_size.")
        # Stored once in the output dtype, so batches need no cast.
        self._flat = flat.astype(dtype, copy=False)
        self._starts, self._lengths = starts, lengths
        self._kept = lengths if maxlen is None else np.minimum(lengths, maxlen)  # padded length per sample
        self.y = y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.maxlen, self.padding, self.truncating, self.value, self.dtype = maxlen, padding, truncating, value, dtype
        self.bucket_batches = int(bucket_batches)
        self.transform = None
        self.seed = seed
        self._rng = rng.make_rng(seed)

    @property
    def num_samples(self) -> int:
        return len(self._lengths)

    @property
    def lengths(self) -> np.ndarray:
        """Length of every sequence (before truncation to ``maxlen``)."""
        return self._lengths.copy()

    def __len__(self) -> int:
        n = self.num_samples / self.batch_size
        return int(n) if self.drop_remainder else math.ceil(n)

    def batch_indices(self) -> list:
        """The sample indices of every batch of the next epoch (advances the shuffling generator)."""
        bs, n = self.batch_size, self.num_samples
        if self.shuffle:
            perm = self._rng.permutation(n)
            pool = bs * self.bucket_batches  # a multiple of bs: only the last pool leaves a short batch
            out = []
            for p in range(0, n, pool):
                chunk = perm[p:p + pool]
                chunk = chunk[np.argsort(self._kept[chunk], kind="stable")]
                out += [chunk[i:i + bs] for i in range(0, len(chunk), bs)]
        else:
            order = np.argsort(self._kept, kind="stable")
            out = [order[i:i + bs] for i in range(0, n, bs)]
        if self.drop_remainder:
            out = [b for b in out if len(b) == bs]
        if self.shuffle:
            out = [out[i] for i in self._rng.permutation(len(out))]
        return out

    def batch(self, index) -> tuple:
        """``(x, y)`` for the samples ``index``: x padded to the longest of them (at least one step)."""
        index = np.asarray(index, dtype=np.intp)
        # A sequence longer than width is longer than maxlen (width = max(min(length, maxlen))),
        # so truncating to width is exactly the truncation to maxlen.
        width = max(int(self._kept[index].max()) if len(index) else 0, 1)
        x = _pad(self._flat, self._starts[index], self._lengths[index], width, self.padding,
                 self.truncating, self.value, self.dtype)
        return x, (None if self.y is None else self.y[index])

    def batches(self, transform: bool = True):
        """The padded ``(x, y)`` batches of one epoch (``transform`` is accepted for the
        :class:`~cutedl.data.Dataset` interface; a SequenceDataset has no transform)."""
        for index in self.batch_indices():
            yield self.batch(index)

    def head(self, n: int = 2) -> tuple:
        """The first ``n`` samples as one padded batch (used to check shapes before training)."""
        return self.batch(np.arange(min(n, self.num_samples)))

    def split(self, fraction: float):
        """``(rest, last)``: the last ``fraction`` of the sequences as a second, unshuffled dataset."""
        k = split_point(fraction, self.num_samples)
        return self._subset(slice(0, k), self.shuffle, self._rng), self._subset(slice(k, None), False, None)

    def _subset(self, sl, shuffle, seed):
        idx = np.arange(self.num_samples)[sl]
        seqs = [self._flat[self._starts[i]:self._starts[i] + self._lengths[i]] for i in idx]
        return SequenceDataset(seqs, None if self.y is None else self.y[sl], self.batch_size, shuffle,
                               self.maxlen, self.padding, self.truncating, self.value, self.dtype,
                               self.bucket_batches, self.drop_remainder, seed)

    def __repr__(self) -> str:
        return (f"SequenceDataset(samples={self.num_samples}, batch_size={self.batch_size}, batches={len(self)}, "
                f"lengths {int(self._lengths.min())}..{int(self._lengths.max())}, shuffle={self.shuffle})")

