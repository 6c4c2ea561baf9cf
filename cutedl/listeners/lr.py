"""Learning-rate listeners: :class:`LearningRateScheduler` (a function of the epoch) and
:class:`ReduceLROnPlateau` (lower the lr when a monitored value stops improving).

Both set ``session.optimizer.lr`` to a float; an optimizer whose lr is already a schedule
(:mod:`cutedl.schedules`) is refused, since the two would fight over it.
"""
from __future__ import annotations

import inspect
import math

from cutedl._validate import check_int, check_number
from cutedl.listeners.base import Listener, check_fields, restore_fields
from cutedl.listeners.monitor import Monitor

__all__ = ["LearningRateScheduler", "ReduceLROnPlateau"]


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


_PLATEAU_STATE = {"wait": "int", "best": "number?", "cooldown_counter": "int", "reductions": "list"}


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
        who = "ReduceLROnPlateau"
        self._monitor = Monitor(who, monitor, mode, min_delta)
        self.monitor, self.mode, self.min_delta = monitor, mode, self._monitor.min_delta
        self.factor = check_number(who, "factor", factor, minimum=0.0, maximum=1.0, low_open=True, high_open=True,
                                   what="in (0, 1) (new lr = lr * factor)")
        self.min_lr = check_number(who, "min_lr", min_lr, minimum=0.0)
        self.patience = check_int(who, "patience", patience, minimum=0, what="a non-negative integer")
        self.cooldown = check_int(who, "cooldown", cooldown, minimum=0, what="a non-negative integer")
        self._reset()

    def _reset(self):
        self.wait = 0
        self.best = None
        self.cooldown_counter = 0
        self.reductions = []

    def on_fit_start(self, logs=None):
        self._reset()
        self._monitor.bind(self.session)
        _float_lr(self)

    def on_val_end(self, step, logs=None):
        value = logs.get(self.monitor, math.nan)
        if self._monitor.improved(value, self.best):
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

    def check_state(self, state: dict) -> None:
        check_fields(self, state, _PLATEAU_STATE)

    def set_state(self, state: dict) -> None:
        restore_fields(self, state, _PLATEAU_STATE)
        self.reductions = [tuple(r) for r in self.reductions]

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor}, patience={self.patience}, "
                f"min_lr={self.min_lr}, cooldown={self.cooldown})")
