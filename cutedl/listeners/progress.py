"""Progress output: :class:`ProgressBar`, the one place cutedl prints during training.

On a terminal it draws a tqdm bar per epoch; otherwise it prints one line per epoch. ``fit``
adds one when ``verbose=1``.
"""
from __future__ import annotations

import math
import shutil
import sys
import textwrap
import time

from cutedl.listeners.base import Listener

__all__ = ["ProgressBar", "format_logs", "format_value", "restored_text"]


class ProgressBar(Listener):
    """Progress with loss and metrics: a tqdm bar on a terminal, one line per epoch otherwise.

    On a terminal the bar shows the running loss during the epoch; when the epoch ends the bar
    closes and the epoch's summary (every loss and metric of its last check, ``val_`` ones
    included) is printed as its own full line, wrapped at the terminal's width, never cut.
    Values print with four decimals, or three significant digits when smaller than 1e-3
    (``1.23e-05``). When training stops early the last line says why, where, and which check's
    weights were restored.

    Added by ``fit`` when ``verbose=1``; ``verbose=0`` shows nothing.

    Args:
        stream: where to write (default ``sys.stdout``).
        tty: force the bar on (True) or off (False); default: whether ``stream`` is a terminal.
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

    def _print(self, text: str) -> None:
        if not self.is_main:
            return
        width = shutil.get_terminal_size((0, 0)).columns if self._is_tty() else 0
        if width >= 20 and len(text) > width:
            text = "\n".join(textwrap.wrap(text, width=width, subsequent_indent="    ", break_long_words=False,
                                           break_on_hyphens=False))
        print(text, file=self._out(), flush=True)

    def on_fit_start(self, logs=None):
        self._epochs = self.session.fit_params.get("epochs")
        self._steps = self.session.fit_params.get("steps_per_epoch")
        self._t0 = self._epoch_t0 = time.perf_counter()  # a resumed fit starts inside an epoch

    def on_epoch_start(self, epoch, logs=None):
        self._epoch_t0 = time.perf_counter()
        if self.is_main and self._is_tty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self._steps, desc=f"Epoch {epoch}/{self._epochs}", file=self._out(),
                             leave=False, dynamic_ncols=True, unit="step")

    def on_batch_end(self, step, logs=None):
        if self._bar is not None:
            self._bar.update(1)
            if step % 10 == 0:
                self._bar.set_postfix_str(format_logs({"loss": logs.get("loss", math.nan)}), refresh=False)

    def on_val_end(self, step, logs=None):
        if self._bar is not None:
            self._bar.set_postfix_str(format_logs(logs), refresh=True)

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        dt = time.perf_counter() - self._epoch_t0
        text = format_logs(logs or {})
        self._print(f"Epoch {epoch}/{self._epochs} - {dt:.1f}s" + (f" - {text}" if text else ""))

    def on_fit_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        h = self.session.history
        if h.stop_reason and h.stop_reason != "completed":
            self._print(f"Training stopped: {h.stop_reason} at step {h.stopped_step} (epoch {h.stopped_epoch})."
                        + restored_text(h))


def restored_text(history) -> str:
    """`` Restored the weights of epoch 7 (step 3311): val_loss = 0.0712.`` or '' when none were."""
    r = history.restored
    if not isinstance(r, dict) or r.get("step") is None:
        return ""
    text = f" Restored the weights of epoch {r.get('epoch')} (step {r['step']})"
    monitor = (history.best or {}).get("monitor") if isinstance(history.best, dict) else None
    steps = history.history.get("step", [])
    if monitor in history.history and r["step"] in steps:
        text += f": {monitor} = {format_value(history.history[monitor][steps.index(r['step'])])}"
    return text + "."


def format_value(v) -> str:
    """Four decimals, or three significant digits for magnitudes below 1e-3 (``1.23e-05``)."""
    if isinstance(v, float) and math.isfinite(v) and v != 0.0 and abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.4f}"


def format_logs(logs: dict) -> str:
    """``loss: 0.1359 - accuracy: 0.9591 - val_loss: ...``: the losses and metrics of a log row."""
    skip = ("step", "epoch", "time", "lr")
    return " - ".join(f"{k}: {format_value(v)}" for k, v in logs.items()
                      if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool))
