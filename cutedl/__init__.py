"""cutedl: a readable, fast deep-learning training library in pure Python + NumPy.

    >>> from cutedl import Model, Session, layers, losses, optimizers, listeners
"""
from cutedl import (activations, backend, checkpoint, datasets, initializers, layers, listeners, losses,
                    metrics, optimizers, regularizers, reports, schedules, testing)
from cutedl.data import Dataset
from cutedl.history import History
from cutedl.model import Model
from cutedl.rng import set_seed
from cutedl.session import Session

__version__ = "0.1.0"

__all__ = ["Model", "Session", "Dataset", "History", "set_seed", "activations", "backend", "checkpoint",
           "datasets", "initializers", "layers", "listeners", "losses", "metrics", "optimizers", "regularizers",
           "reports", "schedules", "testing"]
