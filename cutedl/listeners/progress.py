"""Progress output: :class:`ProgressBar`, the one place cutedl prints during training.

On a terminal it draws a tqdm bar per epoch; otherwise it prints one line per epoch. ``fit``
adds one when ``verbose=1``.
"""
from __future__ import annotations

import math
import sys
import time

from cutedl.listeners.base import Listener

__all__ = ["ProgressBar"]


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
