"""The listener list of a fit: event dispatch, error wrapping, the stop flag and Ctrl-C.

:class:`Events` calls one hook on every listener in order. An exception raised by a hook comes
out of ``fit`` with the same type and the listener's name and the moment added to its message.
The stop flag (:meth:`Events.request_stop`) is how listeners, ``Session.stop_fit`` and Ctrl-C
ask the loop to stop at the next boundary. :class:`InterruptGuard` turns the first Ctrl-C of a
fit into such a request and lets the second one abort.

Events, in order (see :mod:`cutedl.listeners.base` for the hooks)::

    fit_start, [resume], epoch_start, batch_start, batch_end, val_start, val_end, epoch_end,
    boundary (after every batch and every epoch: a point where a fit can stop and resume), fit_end
"""
from __future__ import annotations

import signal
import threading

__all__ = ["EVENTS", "Events", "InterruptGuard", "listener_error"]

EVENTS = ("fit_start", "epoch_start", "batch_start", "batch_end", "val_start", "val_end", "epoch_end", "fit_end")


def listener_error(err: Exception, listener, event: str, step: int) -> Exception:
    """``err`` again, same type, its message prefixed with the listener and the moment.

    A KeyError keeps its type too (its message is its first argument). A type whose constructor
    does not take one message becomes a RuntimeError naming the original type.
    """
    if getattr(err, "cutedl_listener", None) is not None:
        return err
    msg = f"listener {listener!r} failed in on_{event} (step {step}): {err}"
    try:
        new = type(err)(msg)
        if (str(new) != msg and not isinstance(new, KeyError)) or (isinstance(new, KeyError) and new.args != (msg,)):
            raise TypeError
    except Exception:
        new = RuntimeError(f"{msg} ({type(err).__name__})")
    new.cutedl_listener = repr(listener)
    return new


class Events:
    """The listeners of one fit, in call order, and the fit's stop flag.

    Args:
        listeners: :class:`~cutedl.listeners.Listener` objects.
        step: a callable giving the current step, for error messages.
    """

    def __init__(self, listeners=(), step=lambda: 0):
        self.listeners = list(listeners)
        self.stop_reason: str | None = None
        self._step = step

    def __iter__(self):
        return iter(self.listeners)

    def __len__(self) -> int:
        return len(self.listeners)

    def __getitem__(self, i):
        return self.listeners[i]

    def emit(self, event: str, *args, logs=None) -> None:
        """Call ``on_<event>(*args, logs=logs)`` on every listener, in order."""
        for lst in self.listeners:
            hook = getattr(lst, f"on_{event}")
            try:
                hook(*args, logs=logs)
            except Exception as err:
                raise listener_error(err, lst, event, self._step()) from err

    def boundary(self, state, final: bool = False) -> None:
        """The fit is at a boundary (``final``: and ends there because of an interrupt)."""
        for lst in self.listeners:
            try:
                lst.on_boundary(state, final=final)
            except Exception as err:
                raise listener_error(err, lst, "boundary", self._step()) from err

    def finish(self, logs, aborting=lambda: False) -> bool:
        """``on_fit_end`` on every listener, even after one raised KeyboardInterrupt.

        Returns True when a listener raised KeyboardInterrupt (the fit then counts as
        interrupted); a second Ctrl-C (``aborting()`` True) still aborts at once.
        """
        interrupted = False
        for lst in self.listeners:
            try:
                lst.on_fit_end(logs=logs)
            except KeyboardInterrupt:
                if aborting():
                    raise
                interrupted = True
            except Exception as err:
                raise listener_error(err, lst, "fit_end", self._step()) from err
        return interrupted

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop at the next boundary; the first reason given wins."""
        if self.stop_reason is None:
            self.stop_reason = reason

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None


class InterruptGuard:
    """During fit, the first Ctrl-C asks for a stop at the next boundary; the second aborts.

    Installed only in the main thread and only over Python's default SIGINT handler (a handler
    the user installed is left alone).
    """

    def __init__(self, events: Events):
        self.events = events
        self.installed = False
        self.aborting = False
        self.presses = 0
        self.previous = None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._handler)
            self.installed = True
        return self

    def _handler(self, signum, frame):
        self.presses += 1
        if self.presses == 1:
            self.events.stop_reason = "interrupted"
            return
        self.aborting = True
        self.restore()
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
            self.installed = False

    def __exit__(self, *exc):
        self.restore()
        return False
