"""Moved to :mod:`cutedl.training.session`; this name stays so existing imports keep working."""
from cutedl.training.session import Session

__all__ = ["Session"]
