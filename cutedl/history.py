"""Moved to :mod:`cutedl.training.history`; this name stays so existing imports keep working."""
from cutedl.training.history import History

__all__ = ["History"]
