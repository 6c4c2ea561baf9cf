"""The listener protocol: hooks called at named moments of ``Session.fit`` (Keras' callbacks).

Events, in order::

    on_fit_start
      on_epoch_start(epoch)
        on_batch_start(step)  on_batch_end(step, logs)      # every training batch
        on_val_start(step)    on_val_end(step, logs)        # every check (see Session.fit)
      on_epoch_end(epoch, logs)
      on_boundary(state, final)                             # where a fit can stop and resume
    on_fit_end(logs)

``epoch`` is 1-based; ``step`` counts training steps since the first fit of the session. A
listener sees its session as ``self.session`` (and the model as ``self.model``) and may call
``self.session.stop_fit(reason)``. An exception raised in a hook propagates out of ``fit`` with
the listener's name added to its message.

A listener with state worth resuming implements ``get_state`` / ``set_state``; a listener that
keeps training checkpoints implements ``keeps_checkpoints``, ``resume_state`` and ``resumed``
(see :class:`~cutedl.listeners.files.BackupAndRestore`). Also here: :class:`FitListener` and
:class:`LambdaListener` (hooks from functions) and :class:`WarnOnce` (file listeners warn once
about a file they cannot write, and training goes on).
"""
from __future__ import annotations

import math
import warnings

from cutedl import backend
from cutedl._validate import is_int, is_number
from cutedl.training.events import EVENTS

__all__ = ["EVENTS", "Listener", "FitListener", "LambdaListener", "WarnOnce", "check_fields", "restore_fields"]


class Listener:
    """Base class: override the hooks you need; every hook does nothing by default."""

    session = None
    keeps_checkpoints = False
    """True for a listener that offers a training checkpoint to resume from (at most one per fit)."""

    def set_session(self, session) -> None:
        self.session = session

    @property
    def model(self):
        return self.session.model if self.session is not None else None

    @property
    def is_main(self) -> bool:
        """False on the ranks other than 0 of a data-parallel fit (:mod:`cutedl.distributed`): only
        the main process writes files and prints."""
        strategy = getattr(self.session, "strategy", None)
        return strategy is None or strategy.is_main()

    def on_fit_start(self, logs=None): pass
    def on_epoch_start(self, epoch, logs=None): pass
    def on_batch_start(self, step, logs=None): pass
    def on_batch_end(self, step, logs=None): pass
    def on_val_start(self, step, logs=None): pass
    def on_val_end(self, step, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_fit_end(self, logs=None): pass

    def on_boundary(self, state, final: bool = False, logs=None) -> None:
        """The fit is at a boundary: ``state`` (a TrainingState) says where; a checkpoint taken now
        resumes exactly. ``final``: an interrupt ends the fit here."""

    # Training checkpoints (listeners.BackupAndRestore) save every listener's state and give it
    # back on resume, right after on_fit_start. The state may hold numbers, strings, None, lists,
    # dicts and NumPy arrays (lists of arrays included).
    def get_state(self) -> dict:
        """What this listener must remember across a resume (default: nothing)."""
        return {}

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned."""

    def check_state(self, state: dict) -> None:
        """Raise ValueError if ``state`` is not something :meth:`set_state` accepts.

        A resume checks every part of a checkpoint before it changes anything, so a corrupt
        checkpoint leaves the model, the optimizer and every listener as they were."""

    def resume_state(self):
        """``(checkpoint dict, path)`` for ``fit`` to resume from, or None (the default).

        Called once, after every listener's ``on_fit_start``."""
        return None

    def resumed(self, position: dict) -> None:
        """``fit`` resumed from this listener's checkpoint at ``position``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_KINDS = {
    "int": lambda v: is_int(v),
    "int?": lambda v: v is None or is_int(v),
    "number?": lambda v: v is None or (is_number(v) and math.isfinite(v)),
    "arrays?": lambda v: v is None or (isinstance(v, list) and all(backend.is_array(a) for a in v)),
    "list": lambda v: isinstance(v, list),
}


def check_fields(obj, state, spec: dict) -> None:
    """Raise ValueError unless ``state`` is a dict with every field of ``spec`` of its kind.

    ``spec`` maps a field name to a kind: 'int', 'int?' (or None), 'number?' (finite or None),
    'arrays?' (a list of arrays, or None), 'list'.
    """
    who = type(obj).__name__
    if not isinstance(state, dict):
        raise ValueError(f"{who}.set_state expects a dict, got {type(state).__name__}.")
    missing = [n for n in spec if n not in state]
    if missing:
        raise ValueError(f"{who}.set_state: the state lacks {missing}; was it saved by another kind of listener?")
    for name, kind in spec.items():
        if not _KINDS[kind](state[name]):
            raise ValueError(f"{who}.set_state: field {name!r} must be {kind.rstrip('?')}"
                             f"{' or None' if kind.endswith('?') else ''}, got {state[name]!r:.80}.")


def restore_fields(obj, state: dict, spec: dict) -> None:
    """Check ``state`` against ``spec`` (see :func:`check_fields`), then set those attributes."""
    check_fields(obj, state, spec)
    for n in spec:
        setattr(obj, n, state[n])


class WarnOnce:
    """Mixin: warn about a file that cannot be written, once per fit, and carry on."""

    _warned = False

    def warn_once(self, what: str, path, err) -> None:
        if not self._warned:
            warnings.warn(f"{type(self).__name__} could not write {what} {str(path)!r} ({err}); training goes on.",
                          UserWarning, stacklevel=3)
            self._warned = True


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
