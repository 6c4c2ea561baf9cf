"""The training engine: the loop and what it is made of.

- :mod:`~cutedl.training.session`: :class:`Session`, ``fit`` / ``evaluate`` / ``predict`` (the loop only).
- :mod:`~cutedl.training.step`: ``compute_grads`` / ``apply_grads``, the seam for custom steps and
  data-parallel training.
- :mod:`~cutedl.training.state`: :class:`TrainingState`, where a fit stands (public, serialisable).
- :mod:`~cutedl.training.events`: listener dispatch, the stop flag, Ctrl-C.
- :mod:`~cutedl.training.checkpoint`: training checkpoints through public protocols.
- :mod:`~cutedl.training.history`: :class:`History`, one row per check.

This package's ``__init__`` imports only the modules the listeners build on (history, state,
events); ``Session`` is ``cutedl.Session`` (or ``cutedl.training.session.Session``).
"""
from cutedl.training.events import Events
from cutedl.training.history import History
from cutedl.training.state import Accumulator, TrainingState

__all__ = ["Events", "History", "TrainingState", "Accumulator"]
