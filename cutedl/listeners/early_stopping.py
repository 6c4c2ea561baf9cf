"""Stopping rules: :class:`EarlyStopping` (with its offline :meth:`~EarlyStopping.replay`) and
:class:`TerminateOnNaN`.

EarlyStopping counts *checks* without improvement of a monitored log key (the improvement rule
is :class:`~cutedl.listeners.monitor.Monitor`'s), stops the fit after ``patience`` of them and
restores the best check's weights whatever ends training. ``replay`` walks a recorded History
through the very same bookkeeping, to see where a setting would have stopped without retraining.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from cutedl._validate import check_int, check_number
from cutedl.listeners.base import Listener, check_fields, restore_fields
from cutedl.listeners.monitor import Monitor

__all__ = ["EarlyStopping", "Replay", "TerminateOnNaN"]


_STATE = {"wait": "int", "best": "number?", "best_step": "int?", "best_epoch": "int?", "best_weights": "arrays?",
          "stopped_step": "int?", "stopped_epoch": "int?"}


class EarlyStopping(Listener):
    """Stop training when a monitored value has stopped improving.

    ``patience`` counts *checks*, the moments ``fit`` validates: epochs with ``val_epochs=1``,
    every ``val_steps`` steps when ``val_steps > 0``. Training stops after ``patience`` checks in
    a row without an improvement larger than ``min_delta``.

    Args:
        monitor: a log key, e.g. 'val_loss', 'val_accuracy', 'loss'.
        patience: checks without improvement before stopping.
        min_delta: minimum change that counts as an improvement.
        mode: 'min', 'max', or 'auto' (the metric's own direction: loss/mae/mse down, accuracy up).
        restore_best_weights: restore the best check's weights when training ends, whatever ends it.
        start_from_epoch: ignore checks in the first ``start_from_epoch`` epochs (warm-up).
        baseline: a value the monitor must beat; training stops if it does not within ``patience``.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True, start_from_epoch: int = 0,
                 baseline: float | None = None):
        self._monitor = Monitor("EarlyStopping", monitor, mode, min_delta)
        self.monitor, self.mode, self.min_delta = monitor, mode, self._monitor.min_delta
        self.patience = check_int("EarlyStopping", "patience", patience, minimum=0, what="a non-negative integer")
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_int("EarlyStopping", "start_from_epoch", start_from_epoch, minimum=0,
                                          what="a non-negative integer")
        self.baseline = check_number("EarlyStopping", "baseline", baseline, allow_none=True)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.best = None
        self.best_step = None
        self.best_epoch = None
        self.best_weights = None
        self.stopped_step = None
        self.stopped_epoch = None

    def resolved_mode(self) -> str:
        """'min' or 'max': ``mode`` with 'auto' answered by the monitored key's direction."""
        return self._monitor.resolve(self.session)

    def on_fit_start(self, logs=None):
        self._reset()
        self._monitor.bind(self.session)

    def _observe(self, value, step: int, epoch) -> str:
        """One check's bookkeeping, shared by live training and :meth:`replay`.

        Returns 'ignored' (warm-up), 'improved', 'wait' or 'stop'.
        """
        if epoch is not None and epoch <= self.start_from_epoch:
            return "ignored"
        if self._monitor.improved(value, self.best if self.best is not None else self.baseline):
            self.best, self.best_step, self.best_epoch = float(value), int(step), int(epoch)
            self.wait = 0
            return "improved"
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped_step, self.stopped_epoch = int(step), int(epoch)
            return "stop"
        return "wait"

    def on_val_end(self, step, logs=None):
        what = self._observe(logs.get(self.monitor, math.nan), step, logs.get("epoch"))
        if what == "improved":
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            self.session.history.best = {"monitor": self.monitor, "mode": self._monitor.op_mode, "value": self.best,
                                         "step": self.best_step, "epoch": self.best_epoch}
        elif what == "stop":
            self.session.stop_fit("early_stopping")

    def on_fit_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.session.history.restored = {"step": self.best_step, "epoch": self.best_epoch}

    def get_state(self) -> dict:
        return {"wait": self.wait, "best": self.best, "best_step": self.best_step, "best_epoch": self.best_epoch,
                "best_weights": self.best_weights, "stopped_step": self.stopped_step,
                "stopped_epoch": self.stopped_epoch}

    def set_state(self, state: dict) -> None:
        restore_fields(self, state, _STATE)

    def check_state(self, state: dict) -> None:
        check_fields(self, state, _STATE)

    @classmethod
    def replay(cls, history, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
               mode: str = "auto", start_from_epoch: int = 0, baseline: float | None = None) -> "Replay":
        """Where ``EarlyStopping(monitor, patience, ...)`` would have stopped on a recorded History.

        Walks the History's rows (one per check) through the very bookkeeping the live listener
        uses, without retraining: a check improves when it beats the best so far by more than
        ``min_delta`` (the first finite check always does, unless ``baseline`` must be beaten
        first); a NaN never improves; after ``patience`` checks in a row without an improvement
        training stops at that check; the best check's weights are the ones restored. Checks in
        the first ``start_from_epoch`` epochs are ignored.

        The answer is exact when the run was recorded without early stopping and with the same
        validation schedule: early stopping changes nothing before it stops.

        Args:
            history: a :class:`cutedl.History` (from ``fit`` or ``History.load``) with ``step``,
                ``epoch`` and ``monitor`` columns.
            monitor, patience, min_delta, mode, start_from_epoch, baseline: as the constructor.

        Returns:
            a :class:`Replay`: ``stopped``, ``stop_index/epoch/step`` (the last row when it never
            stops), ``restored_index/epoch/step`` (None when no check improved) and ``best``.

        Raises:
            TypeError: ``history`` is not a History.
            ValueError: unknown ``monitor``, an empty history, or a bad setting.

        Example:
            >>> r = EarlyStopping.replay(history, 'val_loss', patience=3)
            >>> r.stop_epoch, r.restored_epoch
            (9, 6)
        """
        cols = getattr(history, "history", None)
        if not isinstance(cols, dict):
            raise TypeError(f"EarlyStopping.replay expected a cutedl History (from fit or History.load), "
                            f"got {type(history).__name__}.")
        es = cls(monitor, patience=patience, min_delta=min_delta, mode=mode, restore_best_weights=False,
                 start_from_epoch=start_from_epoch, baseline=baseline)
        if monitor not in cols:
            raise ValueError(f"EarlyStopping.replay: monitor {monitor!r} is not in the history; recorded keys: "
                             f"{', '.join(cols)}.")
        for key in ("step", "epoch"):
            if key not in cols:
                raise ValueError(f"EarlyStopping.replay: the history has no {key!r} column; pass a History "
                                 f"recorded by fit.")
        if not cols[monitor]:
            raise ValueError("EarlyStopping.replay: the history has no rows; there is nothing to replay.")
        es._monitor.op_mode = es._monitor.resolve()
        steps, epochs = cols["step"], cols["epoch"]
        best_index, stop_index = None, None
        for i, value in enumerate(cols[monitor]):
            what = es._observe(value, steps[i], epochs[i])
            if what == "improved":
                best_index = i
            elif what == "stop":
                stop_index = i
                break
        stopped = stop_index is not None
        if not stopped:
            stop_index = len(cols[monitor]) - 1
        return Replay(stopped=stopped, stop_index=stop_index, stop_epoch=int(epochs[stop_index]),
                      stop_step=int(steps[stop_index]), restored_index=best_index,
                      restored_epoch=None if best_index is None else int(epochs[best_index]),
                      restored_step=None if best_index is None else int(steps[best_index]), best=es.best)

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, min_delta={self.min_delta}, "
                f"mode={self.mode!r})")


class Replay(NamedTuple):
    """What :meth:`EarlyStopping.replay` found: where a setting stops and what it restores.

    Indices are History rows (one row per check). When the setting never stops, the ``stop_*``
    fields describe the last row, as ``history.stopped_epoch`` does for a completed fit.
    ``restored_*`` are None when no check counted as an improvement (all NaN, or nothing beat
    ``baseline``): EarlyStopping then restores nothing.
    """

    stopped: bool
    stop_index: int
    stop_epoch: int
    stop_step: int
    restored_index: int | None
    restored_epoch: int | None
    restored_step: int | None
    best: float | None


class TerminateOnNaN(Listener):
    """Stop as soon as the training loss is NaN or infinite (stop_reason 'nan').

    The Session never applies an update computed from a non-finite loss, so the model keeps the
    last finite weights.
    """

    def on_batch_end(self, step, logs=None):
        loss = logs.get("loss") if logs else None
        if loss is not None and not math.isfinite(loss):
            self.session.stop_fit("nan")
