"""Data that does not fit in memory: batches from an indexable object or from a generator.

``Session.fit`` / ``evaluate`` / ``predict`` take, besides a :class:`~cutedl.data.Dataset`:

- an *indexable source*: any object with ``__len__`` (batches per epoch) and
  ``__getitem__(i) -> (x, y)`` (batch ``i``), Keras' ``PyDataset`` protocol. It may define
  ``on_epoch_end()`` (called after every epoch, e.g. to reshuffle its own index). Batches are
  read by index, so a resumed fit (BackupAndRestore) continues exactly at the batch it stopped
  at, without reading the ones before (the source's own random generators are checkpointed
  like any other, when it holds them as attributes).
- a *generator* (any iterator) of ``(x, y)`` batches, with ``steps_per_epoch`` batches per epoch
  (needed for an endless generator; without it one epoch runs until the generator is
  exhausted, and a second epoch finds it empty). A generator cannot be rewound, so a fit from
  one cannot be resumed exactly: BackupAndRestore refuses it with a clear error.

:func:`as_source` wraps either in an object with the few methods the training loop uses
(``__len__``, ``batches``, ``head``, ``num_samples``), so the loop treats every kind of data alike.
"""
from __future__ import annotations

import itertools

from cutedl._validate import check_int

__all__ = ["IndexedSource", "GeneratorSource", "as_source", "is_source"]


def _check_batch(who, batch, i):
    if not isinstance(batch, (tuple, list)) or len(batch) not in (1, 2):
        raise ValueError(f"{who}: batch {i} must be a tuple (x, y) (or (x,) for predict), got "
                         f"{type(batch).__name__}.")
    x = batch[0]
    y = batch[1] if len(batch) == 2 else None
    return x, y


def _rows(x) -> int:
    return len(x[0]) if isinstance(x, (tuple, list)) else len(x)


class IndexedSource:
    """Batches read by index from an object with ``__len__`` and ``__getitem__(i) -> (x, y)``.

    Args:
        source: the object.
        steps_per_epoch: batches per epoch (default ``len(source)``; at most that).
    """

    resumable = True
    shuffle = False
    transform = None

    def __init__(self, source, steps_per_epoch: int | None = None):
        n = len(source)
        check_int("fit", "len(source)", n, minimum=1, what="at least 1 (batches in the source)")
        if steps_per_epoch is not None:
            steps_per_epoch = check_int("fit", "steps_per_epoch", steps_per_epoch, minimum=1)
            if steps_per_epoch > n:
                raise ValueError(f"fit: steps_per_epoch={steps_per_epoch} but the source has only {n} batches.")
        self.source = source
        self.steps = steps_per_epoch or n
        self.batch_size = None

    @property
    def num_samples(self) -> int:
        """Batches per epoch (a checkpoint checks a resumed fit reads the same number)."""
        return self.steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return self.batches()

    def batches(self, transform: bool = True, start: int = 0):
        for i in range(start, self.steps):
            yield _check_batch("fit", self.source[i], i)
        end = getattr(self.source, "on_epoch_end", None)
        if callable(end):
            end()

    def epoch_from(self, start: int):
        """``(index, x, y)`` of this epoch's batches from ``start`` on; earlier ones are not read."""
        for i, (x, y) in enumerate(self.batches(start=start), start):
            yield i, x, y

    def head(self, n: int = 2):
        x, y = _check_batch("fit", self.source[0], 0)
        cut = (lambda a: None if a is None else tuple(p[:n] for p in a) if isinstance(a, (tuple, list)) else a[:n])
        return cut(x), cut(y)

    def __repr__(self) -> str:
        return f"IndexedSource({type(self.source).__name__}, batches={self.steps})"


class GeneratorSource:
    """Batches pulled from an iterator: ``steps_per_epoch`` of them per epoch, or until it ends."""

    resumable = False
    shuffle = False
    transform = None

    def __init__(self, iterator, steps_per_epoch: int | None = None):
        self.steps = None if steps_per_epoch is None else check_int("fit", "steps_per_epoch", steps_per_epoch,
                                                                      minimum=1)
        self._it = iter(iterator)
        self._first = None
        self.exhausted = False
        self.batch_size = None
        self.batches_seen = 0

    @property
    def num_samples(self) -> int:
        return self.steps or 0

    def __len__(self) -> int:
        """Batches per epoch: ``steps_per_epoch``, or 0 when unknown (until the generator ends)."""
        return self.steps or 0

    def __iter__(self):
        return self.batches()

    def _pull(self):
        if self._first is not None:
            batch, self._first = self._first, None
            return batch
        return next(self._it)

    def batches(self, transform: bool = True, start: int = 0):
        count = itertools.count() if self.steps is None else range(self.steps)
        for i in count:
            try:
                batch = self._pull()
            except StopIteration:
                self.exhausted = True
                return
            self.batches_seen += 1
            yield _check_batch("fit", batch, self.batches_seen - 1)

    def epoch_from(self, start: int):
        for i, (x, y) in enumerate(self.batches()):
            yield i, x, y

    def head(self, n: int = 2):
        if self._first is None:
            try:
                self._first = next(self._it)
            except StopIteration:
                raise ValueError("fit: the generator yields no batch at all.") from None
        x, y = _check_batch("fit", self._first, 0)
        cut = (lambda a: None if a is None else tuple(p[:n] for p in a) if isinstance(a, (tuple, list)) else a[:n])
        return cut(x), cut(y)

    def __repr__(self) -> str:
        return f"GeneratorSource(steps_per_epoch={self.steps})"


def is_source(data) -> bool:
    """True for an iterator/generator or an object with ``__len__`` and ``__getitem__`` that is not an
    array or a tuple/list (those are data, not sources)."""
    if isinstance(data, (tuple, list, dict, str, bytes)) or hasattr(data, "shape"):
        return False
    return hasattr(data, "__next__") or (hasattr(data, "__len__") and hasattr(data, "__getitem__"))


def as_source(data, steps_per_epoch: int | None = None):
    """Wrap an indexable object or an iterator as the loop's data (see the module docstring)."""
    if hasattr(data, "__next__"):
        return GeneratorSource(data, steps_per_epoch)
    return IndexedSource(data, steps_per_epoch)
