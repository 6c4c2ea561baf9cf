"""Moved to :mod:`cutedl.data.sequences`; this name stays so existing imports keep working."""
from cutedl.data.sequences import SequenceDataset, pad_sequences

__all__ = ["SequenceDataset", "pad_sequences"]
