"""Listeners: code that runs at named moments of ``Session.fit`` (Keras calls them callbacks).

Events, in order::

    on_fit_start
      on_epoch_start(epoch)
        on_batch_start(step)  on_batch_end(step, logs)      # every training batch
        on_val_start(step)    on_val_end(step, logs)        # every check (see Session.fit)
      on_epoch_end(epoch, logs)
    on_fit_end(logs)

``epoch`` is 1-based; ``step`` counts training steps since the first fit of the session. A
listener sees its session as ``self.session`` (and the model as ``self.model``) and may call
``self.session.stop_fit(reason)``. An exception raised in a hook propagates out of ``fit`` with
the listener's name added to its message.

What is here: stopping (EarlyStopping with its offline ``replay``, TerminateOnNaN), the learning
rate (LearningRateScheduler, ReduceLROnPlateau), files (ModelCheckpoint, BackupAndRestore,
CSVLogger, FitReport: written atomically or line by line, and a file that cannot be written
warns once while training goes on), progress (ProgressBar) and function hooks (FitListener,
LambdaListener). A listener with state worth resuming implements ``get_state`` /
``set_state``; BackupAndRestore saves that state in its checkpoints.
"""
from __future__ import annotations

import inspect
import math
import os
import sys
import time
import warnings

from typing import NamedTuple

import numpy as np

from cutedl import metrics as metrics_mod

EVENTS = ("fit_start", "epoch_start", "batch_start", "batch_end", "val_start", "val_end", "epoch_end", "fit_end")


class Listener:
    """Base class: override the hooks you need; every hook does nothing by default."""

    session = None

    def set_session(self, session) -> None:
        self.session = session

    @property
    def model(self):
        return self.session.model if self.session is not None else None

    def on_fit_start(self, logs=None): pass
    def on_epoch_start(self, epoch, logs=None): pass
    def on_batch_start(self, step, logs=None): pass
    def on_batch_end(self, step, logs=None): pass
    def on_val_start(self, step, logs=None): pass
    def on_val_end(self, step, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_fit_end(self, logs=None): pass

    # Training checkpoints (listeners.BackupAndRestore) save every listener's state and give it
    # back on resume, right after on_fit_start. The state may hold numbers, strings, None, lists,
    # dicts and NumPy arrays (lists of arrays included).
    def get_state(self) -> dict:
        """What this listener must remember across a resume (default: nothing)."""
        return {}

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FitListener(Listener):
    """Call ``callback(session, logs)`` on the named events (cute-dl style).

    Example:
        >>> FitListener('val_end', 'epoch_end', callback=lambda sess, logs: print(logs['val_loss']))
    """

    def __init__(self, *events: str, callback):
        if not events:
            raise ValueError(f"FitListener needs at least one event name; valid: {', '.join(EVENTS)}.")
        for e in events:
            if e not in EVENTS:
                raise ValueError(f"FitListener: unknown event {e!r}; valid events: {', '.join(EVENTS)}.")
        if not callable(callback):
            raise TypeError(f"FitListener: callback must be callable, got {callback!r}.")
        self.events = tuple(events)
        self.callback = callback
        for e in events:
            setattr(self, f"on_{e}", self._make_hook())

    def _make_hook(self):
        def hook(*args, logs=None):
            self.callback(self.session, logs)
        return hook

    def __repr__(self) -> str:
        return f"FitListener({', '.join(map(repr, self.events))}, callback={self.callback!r})"


class LambdaListener(Listener):
    """Keras' LambdaCallback: pass functions for any hook, e.g. ``on_epoch_end=lambda epoch, logs: ...``.

    Hook functions take the same arguments as the methods: ``(epoch, logs)``, ``(step, logs)``
    or ``(logs,)`` for fit start/end.
    """

    def __init__(self, **hooks):
        for name, fn in hooks.items():
            if not name.startswith("on_") or name[3:] not in EVENTS:
                raise ValueError(f"LambdaListener: unknown hook {name!r}; valid: "
                                 f"{', '.join('on_' + e for e in EVENTS)}.")
            if not callable(fn):
                raise TypeError(f"LambdaListener: {name} must be callable, got {fn!r}.")
            setattr(self, name, _wrap(fn))


def _wrap(fn):
    def hook(*args, logs=None):
        return fn(*args, logs)
    return hook


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
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"EarlyStopping: monitor must be a log key like 'val_loss', got {monitor!r}.")
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be a non-negative integer, got {patience!r}.")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}.")
        min_delta = float(min_delta)
        if min_delta < 0 or not math.isfinite(min_delta):
            raise ValueError(f"EarlyStopping: min_delta must be a finite number >= 0, got {min_delta}.")
        if isinstance(start_from_epoch, bool) or not isinstance(start_from_epoch, (int, np.integer)) or start_from_epoch < 0:
            raise ValueError(f"EarlyStopping: start_from_epoch must be a non-negative integer, got {start_from_epoch!r}.")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = min_delta
        self.mode = mode
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.baseline = None if baseline is None else float(baseline)
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
        if self.mode != "auto":
            return self.mode
        if self.session is None:
            return metrics_mod.direction(self.monitor)
        return self.session.direction(self.monitor)

    def on_fit_start(self, logs=None):
        self._reset()
        keys = self.session.log_keys()
        if self.monitor not in keys:
            raise ValueError(f"EarlyStopping: monitor {self.monitor!r} will never appear in the logs; "
                             f"available keys: {', '.join(keys)}."
                             + (" Pass val_data to fit to get val_ keys." if self.monitor.startswith("val_") else ""))
        self._op_mode = self.resolved_mode()

    def _improved(self, value: float) -> bool:
        ref = self.best if self.best is not None else self.baseline
        if ref is None:
            return True
        if self._op_mode == "min":
            return value < ref - self.min_delta
        return value > ref + self.min_delta

    def _observe(self, value, step: int, epoch) -> str:
        """One check's bookkeeping, shared by live training and :meth:`replay`.

        Returns 'ignored' (warm-up), 'improved', 'wait' or 'stop'.
        """
        if epoch is not None and epoch <= self.start_from_epoch:
            return "ignored"
        if value is None or not math.isfinite(value):
            self.wait += 1  # a NaN never improves anything
        elif self._improved(value):
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
            self.session.history.best = {"monitor": self.monitor, "mode": self._op_mode, "value": self.best,
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
        _set_fields(self, state, ("wait", "best", "best_step", "best_epoch", "best_weights", "stopped_step",
                                  "stopped_epoch"))

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
        es._op_mode = es.resolved_mode()
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


def _set_fields(obj, state: dict, names) -> None:
    """Restore listener attributes from a checkpointed state dict (every name must be there)."""
    if not isinstance(state, dict):
        raise ValueError(f"{type(obj).__name__}.set_state expects a dict, got {type(state).__name__}.")
    missing = [n for n in names if n not in state]
    if missing:
        raise ValueError(f"{type(obj).__name__}.set_state: the state lacks {missing}; was it saved by "
                         f"another kind of listener?")
    for n in names:
        setattr(obj, n, state[n])


class TerminateOnNaN(Listener):
    """Stop as soon as the training loss is NaN or infinite (stop_reason 'nan').

    The Session never applies an update computed from a non-finite loss, so the model keeps the
    last finite weights.
    """

    def on_batch_end(self, step, logs=None):
        loss = logs.get("loss") if logs else None
        if loss is not None and not math.isfinite(loss):
            self.session.stop_fit("nan")


def _float_lr(listener) -> float:
    """The optimizer's lr as a float; a schedule and an lr listener would fight over it."""
    opt = listener.session.optimizer
    if callable(opt.lr):
        raise ValueError(f"{type(listener).__name__}: the optimizer's lr is already a schedule ({opt.lr!r}); "
                         f"use either a schedule or {type(listener).__name__}, not both.")
    return float(opt.lr)


class LearningRateScheduler(Listener):
    """Set the optimizer's lr at the start of every epoch from ``schedule(epoch, lr)``.

    Args:
        schedule: a function ``(epoch, lr) -> new lr`` or ``(epoch) -> new lr``; ``epoch`` is
            1-based like every cutedl epoch, ``lr`` the current learning rate.

    For per-step schedules use :mod:`cutedl.schedules` as the optimizer's ``lr`` instead.

    Example:
        >>> LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch % 10 == 0 else lr)
    """

    def __init__(self, schedule):
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function (epoch, lr) -> lr, got {schedule!r}.")
        self.schedule = schedule
        try:
            params = inspect.signature(schedule).parameters.values()
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            self._nargs = 1 if len(positional) == 1 and not any(p.kind == p.VAR_POSITIONAL for p in params) else 2
        except (TypeError, ValueError):
            self._nargs = 2

    def on_fit_start(self, logs=None):
        _float_lr(self)

    def on_epoch_start(self, epoch, logs=None):
        lr = _float_lr(self)
        new = self.schedule(epoch) if self._nargs == 1 else self.schedule(epoch, lr)
        try:
            self.session.optimizer.lr = new
        except (TypeError, ValueError) as err:
            raise ValueError(f"LearningRateScheduler: the schedule returned {new!r} for epoch {epoch}; it must "
                             f"return a finite number >= 0 ({err}).") from None

    def __repr__(self) -> str:
        return f"LearningRateScheduler({self.schedule!r})"


class ReduceLROnPlateau(Listener):
    """Multiply the lr by ``factor`` when a monitored value stops improving.

    At every check: a value better than the best by more than ``min_delta`` resets the wait;
    otherwise the wait grows, and after ``patience`` checks in a row without an improvement the
    lr becomes ``max(lr * factor, min_lr)``. Misses in the ``cooldown`` checks right after a
    reduction do not count (PyTorch's reading of cooldown; in Keras ``cooldown=1`` has no effect).

    Args:
        monitor: a log key, e.g. 'val_loss'.
        factor: in (0, 1): new lr = lr * factor.
        patience: checks without improvement before a reduction.
        min_lr: the lr never goes below this.
        cooldown: checks to skip after a reduction.
        min_delta: smallest change that counts as an improvement.
        mode: 'min', 'max' or 'auto' (the key's direction).

    Attributes:
        reductions: ``[(step, old_lr, new_lr), ...]``.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, min_lr: float = 0.0,
                 cooldown: int = 0, min_delta: float = 1e-4, mode: str = "auto"):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"ReduceLROnPlateau: monitor must be a log key like 'val_loss', got {monitor!r}.")
        for name, v in (("factor", factor), ("min_lr", min_lr), ("min_delta", min_delta)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise TypeError(f"ReduceLROnPlateau: {name} must be a finite number, got {v!r}.")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1) (new lr = lr * factor), got {factor}.")
        for name, v in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"ReduceLROnPlateau: {name} must be a non-negative integer, got {v!r}.")
        if min_lr < 0 or min_delta < 0:
            raise ValueError(f"ReduceLROnPlateau: min_lr and min_delta must be >= 0, got {min_lr} and {min_delta}.")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'auto', 'min' or 'max', got {mode!r}.")
        self.monitor, self.factor, self.patience = monitor, float(factor), int(patience)
        self.min_lr, self.cooldown, self.min_delta, self.mode = float(min_lr), int(cooldown), float(min_delta), mode
        self._reset()

    def _reset(self):
        self.wait = 0
        self.best = None
        self.cooldown_counter = 0
        self.reductions = []

    def on_fit_start(self, logs=None):
        self._reset()
        keys = self.session.log_keys()
        if self.monitor not in keys:
            raise ValueError(f"ReduceLROnPlateau: monitor {self.monitor!r} will never appear in the logs; "
                             f"available keys: {', '.join(keys)}.")
        self._op_mode = self.mode if self.mode != "auto" else self.session.direction(self.monitor)
        _float_lr(self)

    def on_val_end(self, step, logs=None):
        value = logs.get(self.monitor, math.nan)
        if math.isfinite(value) and (self.best is None or (
                value < self.best - self.min_delta if self._op_mode == "min" else value > self.best + self.min_delta)):
            self.best = float(value)
            self.wait = 0
        else:
            self.wait += 1  # a NaN is a miss
        if self.cooldown_counter > 0:
            # misses during the cooldown do not count
            self.cooldown_counter -= 1
            self.wait = 0
        if self.wait and self.wait >= self.patience:
            old = _float_lr(self)
            if old > self.min_lr:
                new = max(old * self.factor, self.min_lr)
                self.session.optimizer.lr = new
                self.reductions.append((int(step), old, new))
            self.cooldown_counter = self.cooldown
            self.wait = 0

    def get_state(self) -> dict:
        return {"wait": self.wait, "best": self.best, "cooldown_counter": self.cooldown_counter,
                "reductions": [list(r) for r in self.reductions]}

    def set_state(self, state: dict) -> None:
        _set_fields(self, state, ("wait", "best", "cooldown_counter", "reductions"))
        self.reductions = [tuple(r) for r in self.reductions]

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor}, patience={self.patience}, "
                f"min_lr={self.min_lr}, cooldown={self.cooldown})")


class ProgressBar(Listener):
    """Progress with loss and metrics: a tqdm bar on a terminal, one line per epoch otherwise.

    Added by ``fit`` when ``verbose=1``; ``verbose=0`` shows nothing.
    """

    def __init__(self, stream=None, tty: bool | None = None):
        self.stream = stream
        self.tty = tty
        self._bar = None

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def _is_tty(self) -> bool:
        if self.tty is not None:
            return self.tty
        out = self._out()
        return bool(getattr(out, "isatty", lambda: False)())

    def on_fit_start(self, logs=None):
        self._epochs = self.session.fit_params.get("epochs")
        self._steps = self.session.fit_params.get("steps_per_epoch")
        self._t0 = self._epoch_t0 = time.perf_counter()  # a resumed fit starts inside an epoch

    def on_epoch_start(self, epoch, logs=None):
        self._epoch_t0 = time.perf_counter()
        if self._is_tty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self._steps, desc=f"Epoch {epoch}/{self._epochs}", file=self._out(),
                             leave=True, dynamic_ncols=True, unit="step")

    def on_batch_end(self, step, logs=None):
        if self._bar is not None:
            self._bar.update(1)
            if step % 10 == 0:
                self._bar.set_postfix_str(f"loss={logs.get('loss', math.nan):.4f}", refresh=False)

    def on_val_end(self, step, logs=None):
        if self._bar is not None:
            self._bar.set_postfix_str(_fmt_logs(logs), refresh=True)

    def on_epoch_end(self, epoch, logs=None):
        text = _fmt_logs(logs or {})
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)
            self._bar.close()
            self._bar = None
        else:
            dt = time.perf_counter() - self._epoch_t0
            print(f"Epoch {epoch}/{self._epochs} - {dt:.1f}s - {text}", file=self._out(), flush=True)

    def on_fit_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        reason = self.session.history.stop_reason
        if reason and reason != "completed":
            print(f"Training stopped: {reason} at step {self.session.history.stopped_step}.",
                  file=self._out(), flush=True)


def _fmt_logs(logs: dict) -> str:
    skip = ("step", "epoch", "time", "lr")
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()
                      if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool))


class FitReport(Listener):
    """Redraw a PNG fit report during training and at the end (see :func:`cutedl.reports.fit_report`).

    Drawing a report takes a few tenths of a second, comparable to an epoch of a small model, so
    redraws are paced: after a check, the report is redrawn only when at least ``budget`` times
    the last drawing time has passed since the last draw (default 10: drawing costs at most ~10 %
    of training time). The final report is always drawn. A report that cannot be written warns
    once and training goes on.

    Args:
        path: PNG file to (re)write.
        title: figure title.
        budget: pace of redraws (see above); 0 redraws after every check.
        **report_kwargs: passed to :func:`cutedl.reports.fit_report` (``panels``, ``dpi``...).
    """

    def __init__(self, path, title: str | None = None, budget: float = 10.0, **report_kwargs):
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
            raise ValueError(f"FitReport: budget must be a number >= 0, got {budget!r}.")
        self.path = path
        self.title = title
        self.budget = float(budget)
        self.report_kwargs = report_kwargs
        self._warned = False
        self._last_end = None
        self._last_cost = 0.0
        self.draws = 0

    def _draw(self):
        from cutedl import reports

        t0 = time.perf_counter()
        try:
            reports.fit_report(self.session.history, self.path, title=self.title, **self.report_kwargs)
            self.draws += 1
        except OSError as err:
            if not self._warned:
                warnings.warn(f"FitReport could not write {self.path!r} ({err}); training goes on.",
                              UserWarning, stacklevel=2)
                self._warned = True
        self._last_end = time.perf_counter()
        self._last_cost = self._last_end - t0

    def on_fit_start(self, logs=None):
        self._last_end = None
        self.draws = 0

    def on_val_end(self, step, logs=None):
        if self._last_end is None or time.perf_counter() - self._last_end >= self.budget * self._last_cost:
            self._draw()

    def on_fit_end(self, logs=None):
        self._draw()


# ---------------------------------------------------------------------------- files
class _WarnOnce:
    """Mixin: warn about a file that cannot be written, once per fit, and carry on."""

    _warned = False

    def _warn(self, what: str, path, err) -> None:
        if not self._warned:
            warnings.warn(f"{type(self).__name__} could not write {what} {str(path)!r} ({err}); training goes on.",
                          UserWarning, stacklevel=3)
            self._warned = True


def _format_path(who: str, path, logs: dict) -> str:
    """``path`` with ``{epoch}``, ``{step}``, ``{val_loss:.4f}``... filled from ``logs``."""
    try:
        return os.fspath(path).format(**logs)
    except KeyError as err:
        raise ValueError(f"{who}: the path {os.fspath(path)!r} names the field {err.args[0]!r}, which is not a "
                         f"log key; available: {', '.join(logs)}.") from None
    except (ValueError, IndexError) as err:
        raise ValueError(f"{who}: cannot fill in the path {os.fspath(path)!r} ({err}). Use fields like "
                         f"{{epoch:02d}} or {{val_loss:.4f}}.") from None


class ModelCheckpoint(_WarnOnce, Listener):
    """Save the model at every check, or only when the monitored value improves.

    Args:
        path: file to write; may hold fields from the check's logs: ``{epoch}``, ``{step}``,
            ``{val_loss:.4f}``, ``{val_accuracy:.3f}``... e.g. ``'ckpt/e{epoch:02d}-{val_loss:.3f}.npz'``.
        monitor: the log key compared with ``save_best_only``.
        mode: 'min', 'max' or 'auto' (the key's direction).
        save_best_only: save only when ``monitor`` improves on the best so far (a NaN never does).
        save_weights_only: write only the params (:func:`cutedl.checkpoint.save_weights`; load with
            ``checkpoint.load_weights``) instead of the whole model (``Model.save``; load with
            ``Model.load``).

    Every file is written atomically: a crash mid-write leaves the previous file (or none),
    never a half one. A file that cannot be written warns once and training goes on.

    Attributes:
        saved: paths written, in order. best: best monitored value so far.
    """

    def __init__(self, path, monitor: str = "val_loss", mode: str = "auto", save_best_only: bool = False,
                 save_weights_only: bool = False):
        try:
            os.fspath(path)
        except TypeError:
            raise TypeError(f"ModelCheckpoint: path must be a str or a path, got {path!r}.") from None
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"ModelCheckpoint: mode must be 'auto', 'min' or 'max', got {mode!r}.")
        self.path, self.monitor, self.mode = path, monitor, mode
        self.save_best_only, self.save_weights_only = bool(save_best_only), bool(save_weights_only)
        self.best = None
        self.saved: list = []

    def on_fit_start(self, logs=None):
        self._warned = False
        self.best, self.saved = None, []
        keys = self.session.log_keys()
        if self.save_best_only and self.monitor not in keys:
            raise ValueError(f"ModelCheckpoint: monitor {self.monitor!r} will never appear in the logs; available "
                             f"keys: {', '.join(keys)}.")
        self._op_mode = self.mode if self.mode != "auto" else self.session.direction(self.monitor)
        _format_path("ModelCheckpoint", self.path, dict.fromkeys(keys, 1))

    def on_val_end(self, step, logs=None):
        if self.save_best_only:
            value = logs.get(self.monitor, math.nan)
            if not math.isfinite(value) or not (self.best is None or (
                    value < self.best if self._op_mode == "min" else value > self.best)):
                return
            self.best = float(value)
        path = _format_path("ModelCheckpoint", self.path, logs)
        try:
            if self.save_weights_only:
                from cutedl import checkpoint

                checkpoint.save_weights(self.model, path)
            else:
                self.model.save(path)
        except OSError as err:
            self._warn("the checkpoint", path, err)
            return
        self.saved.append(path)

    def get_state(self) -> dict:
        return {"best": self.best, "saved": list(self.saved)}

    def set_state(self, state: dict) -> None:
        _set_fields(self, state, ("best", "saved"))

    def __repr__(self) -> str:
        return (f"ModelCheckpoint({os.fspath(self.path)!r}, monitor={self.monitor!r}, "
                f"save_best_only={self.save_best_only})")


class BackupAndRestore(_WarnOnce, Listener):
    """Keep a full training checkpoint in ``backup_dir`` and resume from it (Keras' BackupAndRestore).

    The checkpoint (``backup_dir/training-state.npz``, see :mod:`cutedl.checkpoint`) holds the
    model, the optimizer state, every listener's state, the History, the position in the epoch,
    the data order and every random generator. It is written atomically at boundaries: after
    every epoch (``every='epoch'``) or every ``every`` steps, and when Ctrl-C stops the fit.
    When ``fit`` starts with this listener and the file exists, everything is restored from it
    and training continues exactly where it stopped: a resumed run gives the same weights and
    History (the ``time`` column aside) as one that never stopped.

    Pass the same model architecture, optimizer type, listeners (same kinds, same order) and
    data to the resuming ``fit``. A listener's exception leaves the last checkpoint in place.

    Args:
        backup_dir: directory for the checkpoint (created when needed).
        every: 'epoch', or a number of steps.
        delete_checkpoint: remove the checkpoint when the fit ends other than by an interrupt.

    Attributes:
        restored: the position resumed from (``{'epoch', 'batches_done', 'epoch_done', ...}``), or None.
        writes: checkpoints written during this fit.
    """

    FILENAME = "training-state.npz"

    def __init__(self, backup_dir, every="epoch", delete_checkpoint: bool = True):
        try:
            self.backup_dir = os.fspath(backup_dir)
        except TypeError:
            raise TypeError(f"BackupAndRestore: backup_dir must be a str or a path, got {backup_dir!r}.") from None
        if every != "epoch" and (isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1):
            raise ValueError(f"BackupAndRestore: every must be 'epoch' or a positive number of steps, got {every!r}.")
        self.every = every if every == "epoch" else int(every)
        self.delete_checkpoint = bool(delete_checkpoint)
        self.restored = None
        self.writes = 0

    @property
    def path(self) -> str:
        return os.path.join(self.backup_dir, self.FILENAME)

    def on_fit_start(self, logs=None):
        self._warned = False
        self.restored, self.writes = None, 0
        self._last = None

    def _resume(self) -> None:
        """Called by fit right after on_fit_start: restore from the checkpoint if there is one."""
        from cutedl import checkpoint

        if not os.path.exists(self.path):
            return
        state = checkpoint.load_state(self.path, "BackupAndRestore")
        self.restored = checkpoint.restore(self.session, state, self.session._train, self.session._val, self.path)
        self._last = self._key()

    def _key(self):
        pos = self.session._position
        return self.session.step, pos["epoch"], pos["batches_done"], pos["epoch_done"]

    def _at_boundary(self, final: bool) -> None:
        """Called by fit at every boundary; ``final`` when an interrupt ends the fit there."""
        pos = self.session._position
        if not final:
            if self.every == "epoch":
                if not pos["epoch_done"]:
                    return
            elif pos["epoch_done"] or self.session.step % self.every:
                return
        if self._key() == self._last:
            return
        from cutedl import checkpoint

        try:
            checkpoint.save_state(self.path, self.session.training_state())
        except OSError as err:
            self._warn("the training checkpoint", self.path, err)
            return
        self._last = self._key()
        self.writes += 1

    def on_fit_end(self, logs=None):
        if self.delete_checkpoint and self.session.history.stop_reason != "interrupted":
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            except OSError as err:
                self._warn("(remove) the training checkpoint", self.path, err)

    def __repr__(self) -> str:
        return f"BackupAndRestore({self.backup_dir!r}, every={self.every!r})"


class CSVLogger(_WarnOnce, Listener):
    """Write every History row (one per check) as a line of a CSV file.

    Args:
        path: the CSV file.
        separator: between values (default ',').
        append: keep an existing file and add rows to it (its header is kept) instead of starting
            a new one.

    A resumed fit (BackupAndRestore) cuts the file back to the lines it had at the checkpoint
    and goes on from there, so no row is lost or repeated. Lines are written as they come
    (each check opens, appends and closes the file). A file that cannot be written warns once
    and training goes on.
    """

    def __init__(self, path, separator: str = ",", append: bool = False):
        try:
            self.path = os.fspath(path)
        except TypeError:
            raise TypeError(f"CSVLogger: path must be a str or a path, got {path!r}.") from None
        if not isinstance(separator, str) or not separator or "\n" in separator:
            raise ValueError(f"CSVLogger: separator must be a non-empty string without newlines, got {separator!r}.")
        self.separator = separator
        self.append = bool(append)
        self.lines = 0

    def on_fit_start(self, logs=None):
        self._warned = False
        self._keys = None
        self._resume_lines = None
        self._failed = False

    def _open(self):
        """First write of this fit: decide the columns and the starting content of the file."""
        keys = self.session.log_keys()
        existing = []
        if (self.append or self._resume_lines is not None) and os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                existing = f.read().splitlines(keepends=True)
        if self._resume_lines is not None:
            existing = existing[:self._resume_lines]
        if existing:
            self._keys = existing[0].rstrip("\r\n").split(self.separator)
            text = "".join(line if line.endswith("\n") else line + "\n" for line in existing)
        else:
            self._keys = keys
            text = self.separator.join(keys) + "\n"
        from cutedl._io import atomic_write_text

        atomic_write_text(self.path, text)
        self.lines = text.count("\n")

    def on_val_end(self, step, logs=None):
        if self._failed:
            return
        try:
            if self._keys is None:
                self._open()
            line = self.separator.join(_csv_value(logs.get(k)) for k in self._keys) + "\n"
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
            self.lines += 1
        except OSError as err:
            self._failed = True
            self._warn("the CSV log", self.path, err)

    def get_state(self) -> dict:
        return {"lines": self.lines}

    def set_state(self, state: dict) -> None:
        _set_fields(self, state, ("lines",))
        self._resume_lines = int(self.lines)

    def __repr__(self) -> str:
        return f"CSVLogger({self.path!r}, append={self.append})"


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)
