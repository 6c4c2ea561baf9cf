"""Dataset: batching and per-epoch shuffling over in-memory arrays.

Shuffling permutes an index array and gathers one batch at a time, so the data is never copied
whole per epoch.
"""
from __future__ import annotations

import math

from cutedl.backend import np

from cutedl import rng


class Dataset:
    """Mini-batches of ``(x, y)``.

    Args:
        x: inputs, shape ``(n, ...)``.
        y: targets, shape ``(n, ...)`` (or None for unlabeled data).
        batch_size: rows per batch.
        shuffle: new random order every epoch.
        drop_remainder: drop the last, smaller batch.
        seed: seed of the shuffling generator (default: drawn from the global one).
        transform: optional callable ``transform(x_batch) -> x_batch`` applied to every input
            batch as it is drawn (never to ``y``, never to the stored data), e.g. the random
            crops and flips of :mod:`cutedl.augment`. Give it to the training Dataset only;
            :meth:`batches` with ``transform=False`` skips it (e.g. to evaluate on the training
            data). It must return a new array, not modify its argument: unshuffled batches are
            views of the data.
    Example:
        >>> ds = Dataset(x_train, y_train, batch_size=128)
        >>> len(ds)            # batches per epoch
        469
        >>> for xb, yb in ds: ...
    """

    def __init__(self, x, y=None, batch_size: int = 32, shuffle: bool = True,
                 drop_remainder: bool = False, seed=None, transform=None):
        x = data_arrays(x, "x")
        if y is not None:
            y = data_arrays(y, "y")
            if rows(x) != rows(y):
                raise ValueError(f"Dataset: x and y must have the same length, got {rows(x)} inputs and "
                                 f"{rows(y)} labels. Check that they come from the same split.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"Dataset: batch_size must be a positive integer, got {batch_size!r}.")
        if rows(x) == 0:
            raise ValueError("Dataset: x is empty (0 samples); there is nothing to train on.")
        for part in parts(x):
            check_finite(part, "x")
        for part in parts(y):
            check_finite(part, "y")
        self.x = x
        self.y = y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.seed = seed
        self._rng = rng.make_rng(seed)
        if transform is not None and not callable(transform):
            raise TypeError(f"Dataset: transform must be a callable taking a batch of inputs, got {transform!r}.")
        self.transform = transform
        if self.drop_remainder and rows(x) < self.batch_size:
            raise ValueError(f"Dataset: {rows(x)} samples with batch_size={batch_size} and drop_remainder=True "
                             f"gives no batch at all. Lower batch_size or set drop_remainder=False.")

    @property
    def num_samples(self) -> int:
        return rows(self.x)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = rows(self.x) / self.batch_size
        return int(n) if self.drop_remainder else math.ceil(n)

    def order(self) -> np.ndarray:
        """The sample order of the next epoch (a new permutation when shuffling)."""
        n = rows(self.x)
        return self._rng.permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self):
        return self.batches()

    def batches(self, transform: bool = True):
        """The ``(x, y)`` batches of one epoch; ``transform=False`` skips the dataset's transform."""
        idx = self.order()
        for b in range(len(self)):
            sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
            if not self.shuffle:
                # contiguous slices are views: no copy at all
                sl = slice(b * self.batch_size, b * self.batch_size + len(sel))
                x, y = take(self.x, sl), take(self.y, sl)
            else:
                x, y = take(self.x, sel), take(self.y, sel)
            if transform and self.transform is not None:
                x = self._apply_transform(x)
            yield x, y

    def _apply_transform(self, x):
        out = self.transform(x)
        if isinstance(x, tuple):
            if not isinstance(out, (tuple, list)) or len(out) != len(x) or rows(tuple(out)) != rows(x):
                raise ValueError(f"Dataset: transform {self.transform!r} gets the tuple of {len(x)} input batches "
                                 f"and must return such a tuple, got {type(out).__name__}.")
            return tuple(out)
        if not hasattr(out, "shape") or len(out) != len(x):
            got = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"Dataset: transform {self.transform!r} must return a batch of {len(x)} inputs, "
                             f"got {got}.")
        return out

    def split(self, fraction: float):
        """``(rest, last)``: the last ``fraction`` of samples (before shuffling) as a second dataset.

        Like Keras' ``validation_split``: the held-out part never shuffles and gets no transform.
        """
        k = split_point(fraction, rows(self.x))
        first = Dataset(take(self.x, slice(None, k)), take(self.y, slice(None, k)), self.batch_size, self.shuffle,
                        self.drop_remainder, self._rng, self.transform)
        last = Dataset(take(self.x, slice(k, None)), take(self.y, slice(k, None)), self.batch_size, False)
        return first, last

    def head(self, n: int = 2) -> tuple:
        """The first ``n`` samples as a batch ``(x, y)``, without touching the shuffling generator."""
        return take(self.x, slice(None, n)), take(self.y, slice(None, n))

    def __repr__(self) -> str:
        extra = "" if self.transform is None else f", transform={self.transform!r}"
        return (f"Dataset(samples={rows(self.x)}, batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}{extra})")


def split_point(fraction, n: int) -> int:
    """How many of ``n`` samples stay in training for ``validation_split=fraction``."""
    if isinstance(fraction, (bool, np.bool_)) or not isinstance(fraction, (int, float, np.integer, np.floating)):
        raise TypeError(f"validation_split must be a number in (0, 1), got {fraction!r}.")
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must be in (0, 1), got {fraction}.")
    k = int(n * (1 - fraction))
    if k <= 0 or k >= n:
        raise ValueError(f"validation_split={fraction} of {n} samples leaves an empty part; "
                         f"use more data or another fraction.")
    return k


def is_multi(a) -> bool:
    """True for a tuple (or list) of arrays: the several inputs (or targets) of a functional model."""
    return isinstance(a, (tuple, list)) and len(a) > 0 and all(hasattr(p, "shape") and hasattr(p, "dtype")
                                                               for p in a)


def data_arrays(a, what):
    """``a`` as one array, or as a tuple of arrays (several inputs/targets) of the same length."""
    if not is_multi(a):
        return data_array(a, what)
    out = tuple(data_array(p, f"{what}[{i}]") for i, p in enumerate(a))
    if len({len(p) for p in out}) > 1:
        raise ValueError(f"Dataset: the arrays of {what} must have the same length, got {[len(p) for p in out]}.")
    return out


def rows(a) -> int:
    """Number of samples of an array or of a tuple of arrays."""
    return len(a[0]) if isinstance(a, tuple) else len(a)


def parts(a) -> tuple:
    """The arrays of ``a``: itself alone, the tuple's arrays, or none for None."""
    return () if a is None else a if isinstance(a, tuple) else (a,)


def take(a, index):
    """Rows ``index`` (a slice or an index array) of an array, of each array of a tuple, or None."""
    if a is None:
        return None
    if isinstance(a, tuple):
        return tuple(p[index] for p in a)
    return a[index]


def data_array(a, what):
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except ValueError as err:
            raise ValueError(f"Dataset: {what} cannot be turned into an array ({err}). "
                             f"Are all samples the same shape? Variable-length sequences need "
                             f"pad_sequences(...) or a SequenceDataset.") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Dataset: {what} must be numeric (int, uint, bool or float), got dtype {arr.dtype}.")
    if arr.ndim == 0:
        raise ValueError(f"Dataset: {what} must have a batch axis, got a scalar.")
    return arr


def check_finite(a, what):
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        first = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"Dataset: {what} holds {bad} NaN/inf value(s), the first at index {tuple(int(i) for i in first)}. "
                         f"Clean or impute the data before training.")
