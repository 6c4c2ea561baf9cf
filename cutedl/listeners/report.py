"""FitReport: a PNG fit report redrawn during training (see :func:`cutedl.reports.fit_report`).

Imports :mod:`cutedl.reports` (and so matplotlib) only when the first report is drawn:
``import cutedl`` stays light.
"""
from __future__ import annotations

import time
import warnings

from cutedl._validate import check_number
from cutedl.listeners.base import Listener

__all__ = ["FitReport"]


class FitReport(Listener):
    """Redraw a PNG fit report during training and at the end (see :func:`cutedl.reports.fit_report`).

    Drawing a report takes a few tenths of a second, comparable to an epoch of a small model, so
    redraws are paced: after a check, the report is redrawn only when at least ``budget`` times
    the last drawing time has passed since the last draw (default 10: drawing costs at most ~10 %
    of training time). The final report is always drawn. A report that cannot be written warns
    once and training goes on.

    Args:
        path: PNG file to (re)write.
        title: figure title; None builds one from the session: the model's name, the loss and the
            optimizer, e.g. ``'mnist_mlp: CategoricalCrossentropy, Adam(lr=0.001)'``.
        budget: pace of redraws (see above); 0 redraws after every check.
        log_loss: log scale for the loss panels: 'auto' (when the loss spans more than two
            decades), True or False (see :func:`cutedl.reports.fit_report`).
        **report_kwargs: passed to :func:`cutedl.reports.fit_report` (``panels``, ``dpi``...).
    """

    def __init__(self, path, title: str | None = None, budget: float = 10.0, log_loss="auto", **report_kwargs):
        check_number("FitReport", "budget", budget, minimum=0, what="a number >= 0")
        if not ((isinstance(log_loss, str) and log_loss == "auto") or isinstance(log_loss, bool)):
            raise ValueError(f"FitReport: log_loss must be 'auto', True or False, got {log_loss!r}.")
        self.path = path
        self.title = title
        self.log_loss = log_loss
        self.budget = float(budget)
        self.report_kwargs = report_kwargs
        self._warned = False
        self._last_end = None
        self._last_cost = 0.0
        self.draws = 0

    def _draw(self):
        if not self.is_main:
            return
        from cutedl import reports  # lazy: matplotlib only once a report is drawn

        t0 = time.perf_counter()
        try:
            reports.fit_report(self.session.history, self.path, title=self.default_title() if self.title is None
                               else self.title, log_loss=self.log_loss, **self.report_kwargs)
            self.draws += 1
        except (OSError, ValueError, OverflowError, RuntimeError) as err:
            # a report must never end training (matplotlib raises ValueError on extreme values)
            if not self._warned:
                warnings.warn(f"FitReport could not write {self.path!r} ({type(err).__name__}: {err}); "
                              f"training goes on.", UserWarning, stacklevel=2)
                self._warned = True
        self._last_end = time.perf_counter()
        self._last_cost = self._last_end - t0

    def default_title(self) -> str:
        """``'<model name>: <loss>, <optimizer>(lr=...)'`` of the session being trained."""
        sess = self.session
        losses = sess.loss if isinstance(sess.loss, list) else [sess.loss]
        names = list(dict.fromkeys(type(l).__name__ for l in losses))
        opt = sess.optimizer
        try:
            lr = f"(lr={float(opt.current_lr):g})"
        except (TypeError, ValueError, AttributeError):
            lr = ""
        return f"{sess.model.name}: {' + '.join(names)}, {type(opt).__name__}{lr}"

    def on_fit_start(self, logs=None):
        self._last_end = None
        self.draws = 0

    def on_val_end(self, step, logs=None):
        if self._last_end is None or time.perf_counter() - self._last_end >= self.budget * self._last_cost:
            self._draw()

    def on_fit_end(self, logs=None):
        self._draw()
