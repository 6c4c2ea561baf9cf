"""One answer to "did the monitored value improve?", shared by every listener that watches a log key.

:class:`Monitor` holds a log key, a mode ('min', 'max' or 'auto': the key's own direction, from
the session's metrics or :func:`cutedl.metrics.direction`) and a ``min_delta``. At fit start
:meth:`Monitor.bind` checks that the key will appear in this fit's logs (with a message that
lists the keys there are) and resolves 'auto'. :meth:`Monitor.improved` then compares a value
with a reference: a value improves when it is finite and beats the reference by more than
``min_delta``; NaN and infinities never improve; no reference means any finite value improves.
EarlyStopping, ReduceLROnPlateau and ModelCheckpoint all use it.
"""
from __future__ import annotations

import math

from cutedl import metrics as metrics_mod
from cutedl._validate import check_choice, check_number

__all__ = ["Monitor"]


class Monitor:
    """A watched log key: its mode and what counts as an improvement.

    Args:
        who: the listener's name, for messages.
        key: a log key, e.g. 'val_loss', 'val_accuracy', 'loss'.
        mode: 'min', 'max' or 'auto'.
        min_delta: smallest change that counts as an improvement (>= 0).
    """

    def __init__(self, who: str, key: str, mode: str = "auto", min_delta: float = 0.0):
        if not isinstance(key, str) or not key:
            raise TypeError(f"{who}: monitor must be a log key like 'val_loss', got {key!r}.")
        self.who = who
        self.key = key
        self.mode = check_choice(who, "mode", mode, ("auto", "min", "max"))
        self.min_delta = check_number(who, "min_delta", min_delta, minimum=0.0)
        self.op_mode = None if mode == "auto" else mode

    def resolve(self, session=None) -> str:
        """'min' or 'max': the mode, with 'auto' answered by the session's metrics (or the registry)."""
        if self.mode != "auto":
            return self.mode
        if session is not None:
            return session.direction(self.key)
        return metrics_mod.direction(self.key)

    def bind(self, session) -> None:
        """At fit start: the key must appear in this fit's logs; 'auto' is resolved."""
        keys = session.log_keys()
        if self.key not in keys:
            raise ValueError(f"{self.who}: monitor {self.key!r} will never appear in the logs; available keys: "
                             f"{', '.join(keys)}."
                             + (" Pass val_data to fit to get val_ keys." if self.key.startswith("val_") else ""))
        self.op_mode = self.resolve(session)

    def improved(self, value, reference) -> bool:
        """True when ``value`` is finite and beats ``reference`` by more than ``min_delta``."""
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if reference is None:
            return True
        if (self.op_mode or self.resolve()) == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def __repr__(self) -> str:
        return f"Monitor({self.key!r}, mode={self.mode!r}, min_delta={self.min_delta})"
