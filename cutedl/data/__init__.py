"""Training data on the host: in-memory datasets, variable-length sequences and augmentation.

- :mod:`~cutedl.data.dataset`: :class:`Dataset`, batches and per-epoch shuffling of arrays.
- :mod:`~cutedl.data.sequences`: :func:`pad_sequences` and the bucketing :class:`SequenceDataset`.
- :mod:`~cutedl.data.augment`: random crops and flips applied per drawn batch.

Data lives in host memory (NumPy); the training step moves each batch to the device once.
"""
from cutedl.data.augment import Compose, RandomCrop, RandomFlip, Transform, random_crop, random_flip
from cutedl.data.dataset import Dataset
from cutedl.data.sequences import SequenceDataset, pad_sequences

__all__ = ["Dataset", "SequenceDataset", "pad_sequences", "Compose", "RandomCrop", "RandomFlip", "Transform",
           "random_crop", "random_flip"]
