"""cutedl: a readable, fast deep-learning training library in pure Python + NumPy.

    >>> from cutedl import Model, Session, layers, losses, optimizers, listeners

Importing cutedl loads no plotting library: :mod:`cutedl.reports` (matplotlib) is imported on
first use, by ``cutedl.reports`` attribute access or by a FitReport drawing its first report.
"""
import importlib

from cutedl import (activations, backend, data, datasets, initializers, layers, listeners, losses, metrics,
                    optimizers, regularizers, schedules, testing)
from cutedl.data import Dataset
from cutedl.model import Model
from cutedl.rng import set_seed
from cutedl.training import checkpoint
from cutedl.training.history import History
from cutedl.training.session import Session

__version__ = "0.1.0"

__all__ = ["Model", "Session", "Dataset", "History", "set_seed", "activations", "backend", "checkpoint", "data",
           "datasets", "initializers", "layers", "listeners", "losses", "metrics", "optimizers", "regularizers",
           "reports", "schedules", "testing"]


def __getattr__(name):
    if name == "reports":  # lazy: reports imports matplotlib
        return importlib.import_module("cutedl.reports")
    raise AttributeError(f"module 'cutedl' has no attribute {name!r}")
