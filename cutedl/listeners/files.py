"""Listeners that write files: :class:`ModelCheckpoint`, :class:`BackupAndRestore`, :class:`CSVLogger`.

Every file is written atomically (or line by line, for the CSV log); a file that cannot be
written warns once and training goes on. BackupAndRestore keeps full training checkpoints
through the public protocol of :mod:`cutedl.training.checkpoint` and the ``on_boundary`` /
``resume_state`` hooks of :class:`~cutedl.listeners.base.Listener`.
"""
from __future__ import annotations

import math
import os
import string

from cutedl._io import atomic_write_text
from cutedl._validate import check_int
from cutedl.listeners.base import Listener, WarnOnce, check_fields, restore_fields
from cutedl.listeners.monitor import Monitor
from cutedl.training import checkpoint

__all__ = ["ModelCheckpoint", "BackupAndRestore", "CSVLogger"]


def _template_fields(who: str, path) -> list:
    """The field names of a path template; only plain names with an optional format spec
    (``{epoch:02d}``, ``{val_loss:.4f}``) are allowed: no attribute or index access, no conversion."""
    text = os.fspath(path)
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as err:
        raise ValueError(f"{who}: the path {text!r} is not a valid template ({err}). Use fields like "
                         f"{{epoch:02d}} or {{val_loss:.4f}}, and {{{{ }}}} for literal braces.") from None
    names = []
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or conversion is not None or "{" in (spec or ""):
            raise ValueError(f"{who}: the path {text!r} has the field {{{field}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}}; only plain log keys with a format spec are allowed, "
                             f"like {{epoch:02d}} or {{val_loss:.4f}}.")
        names.append(field)
    return names


def _format_path(who: str, path, logs: dict) -> str:
    """``path`` with ``{epoch}``, ``{step}``, ``{val_loss:.4f}``... filled from ``logs``."""
    _template_fields(who, path)
    try:
        return os.fspath(path).format(**logs)
    except KeyError as err:
        raise ValueError(f"{who}: the path {os.fspath(path)!r} names the field {err.args[0]!r}, which is not a "
                         f"log key; available: {', '.join(logs)}.") from None
    except (ValueError, IndexError) as err:
        raise ValueError(f"{who}: cannot fill in the path {os.fspath(path)!r} ({err}). Use fields like "
                         f"{{epoch:02d}} or {{val_loss:.4f}}.") from None


class ModelCheckpoint(WarnOnce, Listener):
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
        self._monitor = Monitor("ModelCheckpoint", monitor, mode)
        _template_fields("ModelCheckpoint", path)
        self.path, self.monitor, self.mode = path, monitor, mode
        self.save_best_only, self.save_weights_only = bool(save_best_only), bool(save_weights_only)
        self.best = None
        self.saved: list = []

    def on_fit_start(self, logs=None):
        self._warned = False
        self.best, self.saved = None, []
        keys = self.session.log_keys()
        if self.save_best_only:
            self._monitor.bind(self.session)
        _format_path("ModelCheckpoint", self.path, dict.fromkeys(keys, 1))

    def on_val_end(self, step, logs=None):
        if self.save_best_only:
            value = logs.get(self.monitor, math.nan)
            if not self._monitor.improved(value, self.best):
                return
            self.best = float(value)
        path = _format_path("ModelCheckpoint", self.path, logs)
        if not self.is_main:  # a data-parallel rank other than 0: rank 0 writes the file
            self.saved.append(path)
            return
        try:
            if self.save_weights_only:
                checkpoint.save_weights(self.model, path)
            else:
                self.model.save(path)
        except OSError as err:
            self.warn_once("the checkpoint", path, err)
            return
        self.saved.append(path)

    def get_state(self) -> dict:
        return {"best": self.best, "saved": list(self.saved)}

    def check_state(self, state: dict) -> None:
        check_fields(self, state, {"best": "number?", "saved": "list"})

    def set_state(self, state: dict) -> None:
        restore_fields(self, state, {"best": "number?", "saved": "list"})

    def __repr__(self) -> str:
        return (f"ModelCheckpoint({os.fspath(self.path)!r}, monitor={self.monitor!r}, "
                f"save_best_only={self.save_best_only})")


class BackupAndRestore(WarnOnce, Listener):
    """Keep a full training checkpoint in ``backup_dir`` and resume from it (Keras' BackupAndRestore).

    The checkpoint (``backup_dir/training-state.npz``, see :mod:`cutedl.training.checkpoint`) holds
    the model, the optimizer state, every listener's state, the History, the position in the
    epoch, the data order and every random generator. It is written atomically at boundaries:
    after every epoch (``every='epoch'``) or every ``every`` steps, and when Ctrl-C stops the fit.
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
    keeps_checkpoints = True

    def __init__(self, backup_dir, every="epoch", delete_checkpoint: bool = True):
        try:
            self.backup_dir = os.fspath(backup_dir)
        except TypeError:
            raise TypeError(f"BackupAndRestore: backup_dir must be a str or a path, got {backup_dir!r}.") from None
        if every != "epoch":
            every = check_int("BackupAndRestore", "every", every, minimum=1,
                              what="'epoch' or a positive number of steps")
        self.every = every
        self.delete_checkpoint = bool(delete_checkpoint)
        self.restored = None
        self.writes = 0
        self._last = None

    @property
    def path(self) -> str:
        return os.path.join(self.backup_dir, self.FILENAME)

    def on_fit_start(self, logs=None):
        self._warned = False
        self.restored, self.writes = None, 0
        self._last = None
        if getattr(self.session.train_data, "resumable", True) is False:
            raise ValueError("BackupAndRestore: training data from a generator cannot be rewound, so a fit from it "
                             "cannot resume exactly. Use an indexable source (__len__ and __getitem__(i) -> (x, y)) "
                             "or a Dataset, or leave BackupAndRestore out.")

    def resume_state(self):
        """The checkpoint in ``backup_dir`` (read and format-checked), or None when there is none."""
        if not os.path.exists(self.path):
            return None
        return checkpoint.load_state(self.path, "BackupAndRestore"), self.path

    def resumed(self, position: dict) -> None:
        self.restored = position
        self._last = self._key(self.session.state)

    @staticmethod
    def _key(state):
        return state.step, state.epoch, state.batches_done, state.epoch_done

    def on_boundary(self, state, final: bool = False, logs=None) -> None:
        """Write a checkpoint when one is due here (every epoch or ``every`` steps), or when the
        fit ends here because of an interrupt (``final``)."""
        if not final:
            if self.every == "epoch":
                if not state.epoch_done:
                    return
            elif state.epoch_done or state.step % self.every:
                return
        if self._key(state) == self._last:
            return
        try:
            state_now = self.session.training_state()  # on every rank: a data-parallel fit gathers from all
            if self.is_main:
                checkpoint.save_state(self.path, state_now)
        except OSError as err:
            self.warn_once("the training checkpoint", self.path, err)
            return
        self._last = self._key(state)
        self.writes += 1

    def on_fit_end(self, logs=None):
        if self.delete_checkpoint and self.session.history.stop_reason != "interrupted" and self.is_main:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            except OSError as err:
                self.warn_once("(remove) the training checkpoint", self.path, err)

    def __repr__(self) -> str:
        return f"BackupAndRestore({self.backup_dir!r}, every={self.every!r})"


class CSVLogger(WarnOnce, Listener):
    """Write every History row (one per check) as a line of a CSV file.

    Args:
        path: the CSV file.
        separator: between values (default ',').
        append: keep an existing file and add rows to it instead of starting a new one. The
            file's columns must be this fit's (a different header is a ValueError at fit start,
            never a row with misplaced or dropped values).

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
        if self.append:
            header = self._existing_header()
            keys = self.session.log_keys()
            if header is not None and header != keys:
                raise ValueError(f"CSVLogger: {self.path!r} has the columns {header} but this fit logs {keys}; "
                                 f"appending would misplace or drop values. Log to another file, or pass "
                                 f"append=False to start this one anew.")

    def _existing_header(self):
        """The column names of an existing, non-empty log file, or None."""
        try:
            with open(self.path, encoding="utf-8") as f:
                first = f.readline()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"CSVLogger: cannot read the existing log {self.path!r} to append to it ({err}).") from None
        first = first.rstrip("\r\n")
        return first.split(self.separator) if first else None

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
        atomic_write_text(self.path, text)
        self.lines = text.count("\n")

    def on_val_end(self, step, logs=None):
        if self._failed or not self.is_main:
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
            self.warn_once("the CSV log", self.path, err)

    def get_state(self) -> dict:
        return {"lines": self.lines}

    def check_state(self, state: dict) -> None:
        check_fields(self, state, {"lines": "int"})

    def set_state(self, state: dict) -> None:
        restore_fields(self, state, {"lines": "int"})
        self._resume_lines = int(self.lines)

    def __repr__(self) -> str:
        return f"CSVLogger({self.path!r}, append={self.append})"


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)
