"""History: what ``fit`` recorded, one row per check (every validation interval).

Saved as JSON (``History.save`` / ``History.load``): NaN is stored as null and infinities as the
strings "inf" / "-inf", so a diverged run round-trips.

``history.history`` is a dict of equal-length lists with the keys ``step`` (global steps done),
``epoch`` (1-based epoch the check fell in), ``loss`` (mean training loss over the batches since
the previous check), one key per metric, ``val_loss`` and ``val_<metric>`` when validation data
was given, ``lr`` and ``time`` (seconds since fit started). Every value is a plain float/int;
a key missing from a row is NaN there.
"""
from __future__ import annotations

import json
import math

from cutedl._io import atomic_write_text


class History:
    """Record of a fit.

    Attributes:
        history: dict of lists, see module docstring.
        stop_reason: 'completed', 'early_stopping', 'stop_fit', 'nan', 'interrupted' or None.
        stopped_step, stopped_epoch: where training stopped (global step, 1-based epoch).
        best: ``{'monitor', 'mode', 'value', 'step', 'epoch'}`` of the best monitored check, or None.
        restored: ``{'step', 'epoch'}`` of the weights restored at the end (early stopping), or None.
        params: fit settings (epochs, steps_per_epoch, batch_size...).
    """

    def __init__(self):
        self.history: dict[str, list] = {}
        self.stop_reason: str | None = None
        self.stopped_step: int | None = None
        self.stopped_epoch: int | None = None
        self.best: dict | None = None
        self.restored: dict | None = None
        self.params: dict = {}
        self.wall_time: float = 0.0

    def __len__(self) -> int:
        return len(self.history.get("step", []))

    def append(self, row: dict) -> None:
        """Add one row; new keys are back-filled with NaN, absent keys get NaN."""
        n = len(self)
        for k in row:
            if k not in self.history:
                self.history[k] = [math.nan] * n
        for k, col in self.history.items():
            v = row.get(k, math.nan)
            col.append(_plain(v))

    def last(self) -> dict:
        """The latest row as a dict (empty before the first check)."""
        if not len(self):
            return {}
        return {k: v[-1] for k, v in self.history.items()}

    def best_row(self, monitor: str, mode: str = "min") -> dict | None:
        """``{'monitor', 'mode', 'value', 'step', 'epoch'}`` of the best finite ``monitor`` value in
        the whole History (the first of equal ones), or None when the column is missing or has
        no finite value. ``mode`` is 'min' or 'max'.
        """
        col = self.history.get(monitor)
        if mode not in ("min", "max"):
            raise ValueError(f"History.best_row: mode must be 'min' or 'max', got {mode!r}.")
        best = None
        for i, v in enumerate(col or ()):
            if isinstance(v, (int, float)) and math.isfinite(v) and (
                    best is None or (v < col[best] if mode == "min" else v > col[best])):
                best = i
        if best is None:
            return None
        return {"monitor": monitor, "mode": mode, "value": float(col[best]), "step": int(self.history["step"][best]),
                "epoch": int(self.history["epoch"][best])}

    def __getitem__(self, key):
        return self.history[key]

    def keys(self):
        return self.history.keys()

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "history": {k: [_json_number(v) for v in col] for k, col in self.history.items()},
            "stop_reason": self.stop_reason,
            "stopped_step": self.stopped_step,
            "stopped_epoch": self.stopped_epoch,
            "best": self.best,
            "restored": self.restored,
            "params": self.params,
            "wall_time": self.wall_time,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        if not isinstance(d, dict) or not isinstance(d.get("history"), dict):
            raise ValueError("Not a cutedl History: expected a dict with a 'history' dict.")
        h = cls()
        for k, col in d["history"].items():
            if not isinstance(col, list):
                raise ValueError(f"History column {k!r} must be a list.")
            bad = [v for v in col if not (v is None or v in _NON_FINITE
                                          or (isinstance(v, (int, float)) and not isinstance(v, bool)))]
            if bad:
                raise ValueError(f"History column {k!r} must hold numbers (or null, 'inf', '-inf'), got {bad[0]!r}.")
            h.history[str(k)] = [math.nan if v is None else _NON_FINITE.get(v, v) if isinstance(v, str) else v
                                 for v in col]
        lengths = {len(c) for c in h.history.values()}
        if len(lengths) > 1:
            raise ValueError(f"History columns have different lengths: {sorted(lengths)}.")
        for k, types in (("stop_reason", str), ("stopped_step", int), ("stopped_epoch", int), ("best", dict),
                         ("restored", dict), ("params", dict), ("wall_time", (int, float))):
            v = d.get(k)
            if v is not None and (not isinstance(v, types) or isinstance(v, bool)):
                raise ValueError(f"History field {k!r} has the wrong type: got {v!r}.")
        for k in ("stop_reason", "stopped_step", "stopped_epoch", "best", "restored"):
            setattr(h, k, d.get(k))
        h.params = dict(d.get("params") or {})
        h.wall_time = float(d.get("wall_time") or 0.0)
        return h

    def save(self, path) -> None:
        """Write the history as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False))

    @classmethod
    def load(cls, path) -> "History":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"No history file at {str(path)!r}.") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise ValueError(f"{str(path)!r} is not a valid history JSON file: {err}.") from None
        return cls.from_dict(d)

    def __repr__(self) -> str:
        return f"History(rows={len(self)}, keys={list(self.history)}, stop_reason={self.stop_reason!r})"


_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _json_number(v):
    """A History value as JSON: NaN as null, infinities as the strings 'inf' / '-inf'."""
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _plain(v):
    """Python float/int from a NumPy scalar or array of size 1."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return v
