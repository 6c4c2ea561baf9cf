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
``self.session.stop_fit(reason)``.
"""
from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np

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

    def on_val_end(self, step, logs=None):
        value = logs.get(self.monitor, math.nan)
        epoch = logs.get("epoch")
        if epoch is not None and epoch <= self.start_from_epoch:
            return
        if not math.isfinite(value):
            # a NaN never improves anything
            self.wait += 1
        elif self._improved(value):
            self.best, self.best_step, self.best_epoch = float(value), int(step), int(epoch)
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            self.session.history.best = {"monitor": self.monitor, "mode": self._op_mode, "value": self.best,
                                         "step": self.best_step, "epoch": self.best_epoch}
            return
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped_step, self.stopped_epoch = int(step), int(epoch)
            self.session.stop_fit("early_stopping")

    def on_fit_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.session.history.restored = {"step": self.best_step, "epoch": self.best_epoch}

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, min_delta={self.min_delta}, "
                f"mode={self.mode!r})")


class TerminateOnNaN(Listener):
    """Stop as soon as the training loss is NaN or infinite (stop_reason 'nan').

    The Session never applies an update computed from a non-finite loss, so the model keeps the
    last finite weights.
    """

    def on_batch_end(self, step, logs=None):
        loss = logs.get("loss") if logs else None
        if loss is not None and not math.isfinite(loss):
            self.session.stop_fit("nan")


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
        self._t0 = time.perf_counter()

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
