"""Listeners: code that runs at named moments of ``Session.fit`` (Keras calls them callbacks).

- :mod:`~cutedl.listeners.base`: the :class:`Listener` protocol (hooks, state for checkpoints),
  :class:`FitListener` and :class:`LambdaListener`.
- :mod:`~cutedl.listeners.monitor`: the one "did the monitored value improve?" rule.
- :mod:`~cutedl.listeners.early_stopping`: :class:`EarlyStopping` (+ ``replay``, :func:`replay_grid`),
  :class:`TerminateOnNaN`.
- :mod:`~cutedl.listeners.dynamics`: :class:`Dynamics` (per-layer gradient, update, activation figures).
- :mod:`~cutedl.listeners.lr`: :class:`LearningRateScheduler`, :class:`ReduceLROnPlateau`.
- :mod:`~cutedl.listeners.files`: :class:`ModelCheckpoint`, :class:`BackupAndRestore`, :class:`CSVLogger`.
- :mod:`~cutedl.listeners.progress`: :class:`ProgressBar`.
- :mod:`~cutedl.listeners.recorder`: :class:`ValidationRecorder` (per-sample validation records) and
  :class:`ValidationRecord`.
- :mod:`~cutedl.listeners.report`: :class:`FitReport` (PNG reports; matplotlib loads lazily).
- :mod:`~cutedl.listeners.tensorboard`: :class:`TensorBoard` (event files; tensorboardX loads lazily).
"""
from cutedl.listeners.base import EVENTS, FitListener, LambdaListener, Listener
from cutedl.listeners.dynamics import Dynamics
from cutedl.listeners.early_stopping import EarlyStopping, Replay, ReplayTable, TerminateOnNaN, replay_grid
from cutedl.listeners.files import BackupAndRestore, CSVLogger, ModelCheckpoint
from cutedl.listeners.lr import LearningRateScheduler, ReduceLROnPlateau
from cutedl.listeners.monitor import Monitor
from cutedl.listeners.progress import ProgressBar
from cutedl.listeners.recorder import ValidationRecord, ValidationRecorder
from cutedl.listeners.report import FitReport
from cutedl.listeners.tensorboard import TensorBoard

__all__ = ["EVENTS", "Listener", "FitListener", "LambdaListener", "EarlyStopping", "Replay", "TerminateOnNaN",
           "BackupAndRestore", "CSVLogger", "ModelCheckpoint", "LearningRateScheduler", "ReduceLROnPlateau",
           "Monitor", "ProgressBar", "FitReport", "ReplayTable", "replay_grid", "ValidationRecord",
           "ValidationRecorder", "Dynamics", "TensorBoard"]
