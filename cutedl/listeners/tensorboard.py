"""TensorBoard: a fit's checks as TensorBoard event files, next to PyTorch or Keras runs.

Written with ``tensorboardX`` (the optional extra ``pip install -e ".[tensorboard]"``), imported
when the first event is written: ``import cutedl`` never loads it. View with
``tensorboard --logdir runs/``.
"""
from __future__ import annotations

import math
import os
import time

from cutedl import backend
from cutedl._validate import check_bool, is_number
from cutedl.listeners.base import Listener, check_fields

__all__ = ["TensorBoard"]

_SKIPPED = ("step", "epoch", "time")  # bookkeeping columns: the x axis, not curves


def _summary_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError as err:
        raise ImportError(f"listeners.TensorBoard needs tensorboardX ({err}); install the extra: "
                          f"pip install -e \".[tensorboard]\" (or pip install tensorboardX).") from None
    return SummaryWriter


class TensorBoard(Listener):
    """Write every check's logs (losses, metrics, lr) as TensorBoard scalars, over steps.

    Args:
        log_dir: the run's directory (e.g. ``'runs/adam-lr1e-3'``); TensorBoard compares the
            runs found under its ``--logdir``.
        histograms: also write a histogram of every weight and gradient at each check
            (``weights/<param>``, ``grads/<param>``).
        hparams: settings of the run (e.g. the arguments of an ``experiments.repeat`` build:
            ``{'lr': 1e-3, 'seed': 3}``), written for TensorBoard's HPARAMS tab at the end of the
            fit with the last check's values as its metrics (``hparam/<key>``).

    Scalars are tagged with the log keys (``loss``, ``val_loss``, ``accuracy``, ``lr``...).
    tensorboardX writes from a background thread: events reach the file within ``flush_secs``
    (10 s) and when the fit ends, so a running TensorBoard shows them live. A resumed fit
    (BackupAndRestore) purges the events written after the checkpoint. Data-parallel ranks other
    than 0 write nothing.

    Raises:
        ImportError: (at the first write) tensorboardX is not installed; the message names the extra.

    Example:
        >>> sess.fit(train, epochs=10, val_data=val, listeners=[listeners.TensorBoard('runs/mlp')])
        $ tensorboard --logdir runs
    """

    flush_secs = 10

    def __init__(self, log_dir, histograms: bool = False, hparams: dict | None = None):
        try:
            self.log_dir = os.fspath(log_dir)
        except TypeError:
            raise TypeError(f"TensorBoard: log_dir must be a str or a path, got {log_dir!r}.") from None
        self.histograms = check_bool("TensorBoard", "histograms", histograms)
        if hparams is not None:
            if not isinstance(hparams, dict) or not all(isinstance(k, str) for k in hparams):
                raise TypeError(f"TensorBoard: hparams must be a dict of setting name -> value, got {hparams!r}.")
            bad = {k: v for k, v in hparams.items() if not isinstance(v, (bool, str)) and not is_number(v)}
            if bad:
                raise TypeError(f"TensorBoard: hparams values must be numbers, strings or bools, got {bad!r}.")
        self.hparams = None if hparams is None else dict(hparams)
        self.writer = None
        self.last_step = 0
        self._purge = None

    def on_fit_start(self, logs=None):
        self.last_step, self._purge = 0, None
        if self.is_main:
            _summary_writer()  # a missing extra fails at fit start, before any training

    def _open(self):
        if self.writer is None:
            # tensorboardX names files by the second and TensorBoard reads them in name order: a
            # nanosecond suffix keeps a resumed run that starts within the same second from
            # overwriting the earlier file, and sorts it after that file
            self.writer = _summary_writer()(logdir=self.log_dir, purge_step=self._purge, flush_secs=self.flush_secs,
                                            filename_suffix=f".{time.time_ns()}")
        return self.writer

    def on_val_end(self, step, logs=None):
        if not self.is_main:
            return
        w = self._open()
        for k, v in (logs or {}).items():
            if k not in _SKIPPED and is_number(v) and math.isfinite(v):
                w.add_scalar(k, float(v), int(step))
        if self.histograms:
            for p in self.model.params:
                w.add_histogram(f"weights/{p.name}", backend.to_host(p.value), int(step))
                if p.grad is not None:
                    w.add_histogram(f"grads/{p.name}", backend.to_host(p.grad), int(step))
        self.last_step = int(step)

    def on_fit_end(self, logs=None):
        if not self.is_main:
            return
        if self.hparams is not None:
            metrics = {f"hparam/{k}": float(v) for k, v in (logs or {}).items()
                       if k not in _SKIPPED and is_number(v) and math.isfinite(v)}
            self._open().add_hparams(self.hparams, metrics, name="hparams", global_step=self.last_step)
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def get_state(self) -> dict:
        return {"last_step": self.last_step}

    def check_state(self, state: dict) -> None:
        check_fields(self, state, {"last_step": "int"})

    def set_state(self, state: dict) -> None:
        """On resume: events after the checkpoint's last check are purged when writing restarts."""
        self.check_state(state)
        self.last_step = int(state["last_step"])
        self._purge = self.last_step + 1

    def __repr__(self) -> str:
        return f"TensorBoard({self.log_dir!r}, histograms={self.histograms})"
