"""Training data on the host: in-memory datasets, variable-length sequences and augmentation.

- :mod:`~cutedl.data.dataset`: :class:`Dataset`, batches and per-epoch shuffling of arrays.
- :mod:`~cutedl.data.sequences`: :func:`pad_sequences` and the bucketing :class:`SequenceDataset`.
- :mod:`~cutedl.data.augment`: random crops and flips applied per drawn batch.
- :mod:`~cutedl.data.sources`: batches from an indexable object (Keras' PyDataset protocol) or a
  generator, for data that does not fit in memory.

Data lives in host memory (NumPy); the training step moves each batch to the device once.
"""
from cutedl.data.augment import Compose, RandomCrop, RandomFlip, Transform, random_crop, random_flip
from cutedl.data.dataset import Dataset
from cutedl.data.sequences import SequenceDataset, pad_sequences
from cutedl.data.sources import GeneratorSource, IndexedSource, as_source, is_source

__all__ = ["Dataset", "SequenceDataset", "pad_sequences", "Compose", "RandomCrop", "RandomFlip", "Transform",
           "random_crop", "random_flip", "GeneratorSource", "IndexedSource", "as_source", "is_source"]
