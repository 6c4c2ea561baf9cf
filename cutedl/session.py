"""Session: the training loop. Runs ``fit`` with a loss, an optimizer, a validation schedule and listeners.

    >>> sess = Session(model, loss='categorical_crossentropy', optimizer=Adam(1e-3), metrics=['accuracy'])
    >>> history = sess.fit(train_ds, epochs=20, val_data=test_ds, listeners=[EarlyStopping(patience=3)])

A *check* happens every ``val_epochs`` epochs (or every ``val_steps`` steps when > 0) and once more
at the end if steps were run since the last one. At each check the Session validates (if
``val_data`` is given), appends one row to the History (training loss = mean over the batches
since the previous check) and fires ``on_val_end``.

A *boundary* is a point where training can stop and later resume exactly: after a step, its
``on_batch_end`` and its check (if one was due), or after an epoch's check and ``on_epoch_end``.
:class:`~cutedl.listeners.BackupAndRestore` writes its checkpoints there, Ctrl-C stops there,
and ``fit`` resumes from there (see :mod:`cutedl.checkpoint`).
"""
from __future__ import annotations

import math
import signal
import threading
import time
import warnings

import numpy as np

from cutedl import checkpoint
from cutedl import losses as losses_mod
from cutedl import metrics as metrics_mod
from cutedl import optimizers as optimizers_mod
from cutedl.data import Dataset
from cutedl.history import History
from cutedl.listeners import BackupAndRestore, Listener, ProgressBar, TerminateOnNaN


class Session:
    """Trains a :class:`~cutedl.Model`.

    Args:
        model: an assembled model.
        loss: a loss name or :class:`~cutedl.losses.Loss`.
        optimizer: an optimizer name or instance (default 'adam').
        metrics: list of metric names or instances, e.g. ``['accuracy']``.

    When the model ends in softmax (sigmoid) and the loss is a categorical (binary)
    crossentropy on probabilities, the Session trains on the logits instead: the same loss,
    computed stably, with gradient ``softmax(z) - y``.
    """

    def __init__(self, model, loss, optimizer="adam", metrics=None):
        from cutedl.model import Model

        if not isinstance(model, Model):
            raise TypeError(f"Session expects a cutedl Model, got {type(model).__name__}.")
        if not model.assembled:
            raise RuntimeError("Session: the model is not assembled. Call model.assemble() before "
                               "creating a Session (or fitting).")
        self.model = model
        self.loss = losses_mod.get(loss)
        self.optimizer = optimizers_mod.get(optimizer)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, metrics_mod.Metric)):
            metrics = [metrics]
        self.metrics = [metrics_mod.get(m) for m in metrics]
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"Session: metric names must be unique and not 'loss', got {names}.")
        self._train_loss, self._fused = self._plan_loss()
        self.history = History()
        self.fit_params: dict = {}
        self.step = 0
        self.epoch = 0
        self._stop_reason = None
        self._warned_nan = False
        self._regularized = [p for p in model.params if p.regularizer is not None]
        self.listeners: list = []
        self._train = self._val = self._backup = None
        self._dirty = False

    def _plan_loss(self):
        """Decide whether to train on the last layer's logits (fusing softmax/sigmoid into the loss)."""
        last = self.model.layers[-1]
        act = getattr(last, "activation", None)
        act_name = getattr(act, "registry_name", None)
        loss = self.loss
        wants = getattr(loss, "output_activation", None)
        if getattr(loss, "from_logits", False) and act_name in ("softmax", "sigmoid"):
            raise ValueError(
                f"Layer {last.describe()} ends in {act_name} but the loss {type(loss).__name__} has "
                f"from_logits=True, so {act_name} would be applied twice. Either remove the activation "
                f"(activation=None) and keep from_logits=True, or keep {act_name} and use from_logits=False "
                f"(cutedl then computes the loss from the logits, stably)."
            )
        if wants is not None and act_name == wants and not getattr(loss, "from_logits", False):
            return loss.with_logits(), True
        return loss, False

    # ------------------------------------------------------------------ helpers for listeners
    def log_keys(self) -> list:
        """Keys every history row will have in this fit."""
        keys = ["step", "epoch", "loss"] + [m.name for m in self.metrics]
        if self.fit_params.get("has_val"):
            keys += ["val_loss"] + [f"val_{m.name}" for m in self.metrics]
        return keys + ["lr", "time"]

    def direction(self, key: str) -> str:
        """'min' or 'max': which way is better for log key ``key``."""
        name = key[4:] if key.startswith("val_") else key
        if name == "loss":
            return "min"
        for m in self.metrics:
            if m.name == name:
                return m.direction
        return metrics_mod.direction(key)

    def stop_fit(self, reason: str = "stop_fit") -> None:
        """Ask ``fit`` to stop at the next batch boundary."""
        if self._stop_reason is None:
            self._stop_reason = reason

    # ------------------------------------------------------------------ data
    def _as_dataset(self, data, batch_size, shuffle, what="data"):
        if isinstance(data, Dataset):
            return data
        if isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = data
            if batch_size is not None:
                _check_int("batch_size", batch_size, 1)
            return Dataset(x, y, batch_size=32 if batch_size is None else batch_size, shuffle=shuffle)
        raise TypeError(f"Session: {what} must be a cutedl Dataset or an (x, y) tuple, got {type(data).__name__}.")

    # ------------------------------------------------------------------ one step
    def _forward_loss(self, x, y, training):
        """Outputs, loss and output mask of a batch.

        With a masked sequence output (``model.output_mask`` not None) the loss and the
        metrics count the real steps only, and the batch weighs its number of real steps in
        the means over batches (``self._weight``); otherwise it weighs its samples.
        """
        x = self.model.check_input(x)
        out = self.model.forward(x, training=training, logits=self._fused)
        mask = self.model.output_mask
        if mask is None:
            loss = self._train_loss(y, out)
            self._weight = len(x)
        else:
            loss = self._train_loss(y, out, mask=mask)
            self._weight = metrics_mod.mask_weight(mask, len(x))
        return out, loss, mask

    def _metric_logs(self, logs, y, out, mask):
        pred = self._outputs(out)
        for m in self.metrics:
            logs[m.name] = float(m(y, pred) if mask is None else m(y, pred, mask=mask))

    def _outputs(self, out):
        """Model outputs as the user sees them (probabilities when training on logits)."""
        if self._fused:
            return self.model.layers[-1].activation.forward(out)
        return out

    def train_on_batch(self, x, y) -> dict:
        """One optimisation step on a batch; returns ``{'loss': ..., <metric>: ...}``."""
        out, loss, mask = self._forward_loss(x, y, training=True)
        for p in self._regularized:
            loss += p.regularizer.loss(p.value)
        logs = {"loss": float(loss)}
        if math.isfinite(loss):
            grad = self._train_loss.backward()
            self.model.backward(grad)
            for p in self._regularized:
                if p.grad is not None:
                    p.grad += p.regularizer.grad(p.value)
            self.optimizer.step(self.model.trainable_params)
        elif not self._warned_nan and not any(isinstance(l, TerminateOnNaN) for l in self.listeners):
            warnings.warn(f"Session: non-finite training loss ({loss}) at step {self.step + 1}; the update was "
                          f"skipped. Add listeners.TerminateOnNaN() to stop, or lower the learning rate.",
                          UserWarning, stacklevel=2)
            self._warned_nan = True
        if self.metrics:
            self._metric_logs(logs, y, out, mask)
        return logs

    def evaluate(self, data, batch_size: int | None = None, max_batches: int = -1) -> dict:
        """Loss and metrics over ``data`` (a Dataset or ``(x, y)``), averaged per sample.

        A Dataset's ``transform`` (training augmentation) is not applied. With a masked
        sequence output the means are over the real (unmasked) steps of all batches.
        """
        ds = self._as_dataset(data, batch_size, shuffle=False)
        sums = dict.fromkeys(["loss"] + [m.name for m in self.metrics], 0.0)
        n = seen = 0
        logs: dict = {}
        for b, (x, y) in enumerate(ds.batches(transform=False)):
            if 0 <= max_batches <= b:
                break
            seen += 1
            out, loss, mask = self._forward_loss(x, y, training=False)
            k = self._weight
            sums["loss"] += loss * k
            if self.metrics:
                self._metric_logs(logs, y, out, mask)
                for name, v in logs.items():
                    sums[name] += v * k
            n += k
        if n == 0:
            if seen:
                raise ValueError("evaluate: the data has no real (unmasked) time step: every step is padding.")
            raise ValueError("evaluate: the data yielded no batches.")
        return {k: float(v / n) for k, v in sums.items()}

    def predict(self, x, batch_size: int | None = None):
        return self.model.predict(x, batch_size=batch_size)

    # ------------------------------------------------------------------ fit
    def fit(self, data, epochs: int = 1, val_data=None, val_epochs: int = 1, val_steps: int = 0,
            val_batches: int = -1, listeners=None, verbose: int = 1, batch_size: int | None = None,
            validation_split: float = 0.0, shuffle: bool = True, initial_epoch: int = 0,
            history: History | None = None) -> History:
        """Train for ``epochs`` epochs.

        Args:
            data: a :class:`Dataset` or an ``(x, y)`` tuple (batched by ``batch_size``, default 32).
            epochs: index of the last epoch to run (Keras meaning with ``initial_epoch``).
            val_data: validation Dataset or ``(x, y)``.
            val_epochs: check every this many epochs.
            val_steps: when > 0, check every this many steps instead.
            val_batches: validate on at most this many batches (-1: all).
            listeners: list of :class:`~cutedl.listeners.Listener`.
            verbose: 1 shows progress (a ProgressBar is added), 0 silent.
            validation_split: hold out this last fraction of ``data`` for validation.
            initial_epoch: epoch to start from (for continuing a run; Keras meaning: a new
                History whose epochs count from ``initial_epoch + 1``).
            history: a History to continue instead of starting a new one, e.g.
                ``fit(ds, epochs=10, history=sess.history)`` after ``fit(ds, epochs=5)``, or one
                from ``History.load``: rows are appended to it, ``initial_epoch`` defaults to its
                last epoch, steps count on from its last step and ``time`` from its last time.
        Returns:
            the :class:`~cutedl.history.History`.

        With a :class:`~cutedl.listeners.BackupAndRestore` listener whose directory holds a
        checkpoint, fit first restores everything from it and continues exactly there.

        Ctrl-C (SIGINT) stops at the next batch boundary: ``on_fit_end`` runs (reports, restored
        weights, a BackupAndRestore checkpoint) and the History has ``stop_reason='interrupted'``.
        A second Ctrl-C aborts at once. A ``KeyboardInterrupt`` raised by a listener also ends
        the fit as 'interrupted'. An exception raised by a listener propagates, naming the
        listener; the model keeps the weights of the last completed step.
        """
        _check_int("epochs", epochs, 1)
        _check_int("val_epochs", val_epochs, 1)
        _check_int("val_steps", val_steps, 0)
        _check_int("initial_epoch", initial_epoch, 0)
        if isinstance(val_batches, bool) or not isinstance(val_batches, (int, np.integer)) or val_batches == 0 or val_batches < -1:
            raise ValueError(f"fit: val_batches must be -1 (all) or a positive integer, got {val_batches!r}.")
        if history is not None and not isinstance(history, History):
            raise TypeError(f"fit: history must be a cutedl History to continue, got {type(history).__name__}.")
        if history is not None and len(history):
            last_epoch = history.history.get("epoch", [0])[-1]
            if not initial_epoch:
                initial_epoch = int(last_epoch)
            self.step = max(self.step, int(history.history.get("step", [0])[-1]))
        if initial_epoch >= epochs:
            raise ValueError(f"fit: initial_epoch={initial_epoch} must be smaller than epochs={epochs}.")
        train = self._as_dataset(data, batch_size, shuffle)
        if validation_split:
            if val_data is not None:
                raise ValueError("fit: pass either val_data or validation_split, not both.")
            train, val_data = train.split(validation_split)
        val = None if val_data is None else self._as_dataset(val_data, batch_size or train.batch_size, False,
                                                             "val_data")
        self._check_first_batch(train, "data")
        if val is not None:
            self._check_first_batch(val, "val_data")

        listeners = list(listeners or [])
        for lst in listeners:
            if not isinstance(lst, Listener):
                raise TypeError(f"fit: listeners must be cutedl Listener objects, got {lst!r}.")
        backups = [lst for lst in listeners if isinstance(lst, BackupAndRestore)]
        if len(backups) > 1:
            raise ValueError(f"fit: at most one BackupAndRestore listener, got {len(backups)}.")
        if verbose and not any(isinstance(lst, ProgressBar) for lst in listeners):
            listeners.append(ProgressBar())
        for lst in listeners:
            lst.set_session(self)
        self.listeners = listeners
        self._backup = backups[0] if backups else None

        continuing = history is not None
        history = history if continuing else History()
        self.history = history
        self._stop_reason = None
        self.fit_params = {"epochs": int(epochs), "initial_epoch": int(initial_epoch),
                           "steps_per_epoch": len(train), "batch_size": train.batch_size,
                           "samples": train.num_samples, "has_val": val is not None,
                           "val_epochs": int(val_epochs), "val_steps": int(val_steps),
                           "val_batches": int(val_batches)}
        history.params = dict(self.fit_params)
        # seconds already trained: a continued History's last time, or a resumed checkpoint's
        self._t_offset = float(max(history.wall_time, history.history["time"][-1])) if continuing and len(
            history) and "time" in history.history else 0.0
        self._t0 = time.perf_counter()
        self._acc = _Accumulator()
        self._check_origin = int(initial_epoch)  # val_epochs counts from here
        self._position = {"epoch": int(initial_epoch), "batches_done": len(train), "epoch_done": True,
                          "samples": train.num_samples}
        self._dirty = False
        self._in_check = False
        self._train, self._val = train, val
        self._epoch_data_state = {}

        def check(epoch):
            self._in_check = True
            self._emit("val_start", self.step)
            row = {"step": self.step, "epoch": epoch}
            row.update(self._acc.means())
            self._acc = _Accumulator()
            if val is not None:
                for k, v in self.evaluate(val, max_batches=val_batches).items():
                    row[f"val_{k}"] = v
            row["lr"] = float(self.optimizer.current_lr)
            row["time"] = self._t_offset + time.perf_counter() - self._t0
            history.append(row)
            self._emit("val_end", self.step, row)
            self._in_check = False
            return row

        self._emit("fit_start", None)
        if self._backup is not None:
            self._backup._resume()
        start = self._position
        row = history.last()
        guard = _InterruptGuard(self)
        try:
            with guard:
                row = self._epochs(train, start, int(epochs), val_steps, val_epochs, check, row)
        except KeyboardInterrupt:
            if guard.aborting:
                raise
            # Raised by a listener (or by Ctrl-C outside the main thread): the fit ends here.
            self._stop_reason = "interrupted"
            if self._backup is not None and not self._dirty:
                self._backup._at_boundary(final=True)
        if self._acc.sums and self._stop_reason != "nan" and not self._in_check:
            row = check(self.epoch)
        history.stop_reason = self._stop_reason or "completed"
        history.stopped_step, history.stopped_epoch = self.step, self.epoch
        if history.best is None:
            history.best = _best_of(history, "val_loss" if val is not None else "loss")
        history.wall_time = self._t_offset + time.perf_counter() - self._t0
        self._emit("fit_end", None, history.last())
        return history

    def _epochs(self, train, start, epochs, val_steps, val_epochs, check, row):
        """The epoch and batch loops, from the boundary ``start``; returns the last check's row."""
        first = start["epoch"] + 1 if start["epoch_done"] else start["epoch"]
        resumed = not start["epoch_done"]  # inside an epoch whose on_epoch_start already ran
        skip = start["batches_done"] if resumed else 0
        n_batches = len(train)
        self.epoch = start["epoch"]
        for epoch in range(first, epochs + 1):
            self.epoch = epoch
            if not resumed:
                self._dirty = True
                self._emit("epoch_start", epoch)
                self._position = {"epoch": epoch, "batches_done": 0, "epoch_done": False,
                                  "samples": train.num_samples}
                self._dirty = False
            resumed = False
            # the data generators before this epoch's order is drawn: a resumed epoch redraws it
            self._epoch_data_state = checkpoint.generator_states(train)
            for b, (x, y) in enumerate(train):
                if b < skip:
                    continue  # fast-forward a resumed epoch: same order, same per-batch draws
                self._emit("batch_start", self.step + 1)
                self._dirty = True
                logs = self.train_on_batch(x, y)
                self.step += 1
                self._acc.add(logs, self._weight)
                self._emit("batch_end", self.step, logs)
                if self._stop_reason is None and val_steps and self.step % val_steps == 0:
                    row = check(epoch)
                self._boundary(epoch, b + 1, False)
                if self._stop_reason is not None:
                    break
            skip = 0
            if self._stop_reason is not None:
                if self._stop_reason == "interrupted" and self._backup is not None:
                    self._backup._at_boundary(final=True)
                self._dirty = True
                self._emit("epoch_end", epoch, row)
                break
            self._dirty = True
            if not val_steps and (epoch - self._check_origin) % val_epochs == 0:
                row = check(epoch)
            self._emit("epoch_end", epoch, row)
            self._boundary(epoch, n_batches, True)
            if self._stop_reason is not None:
                if self._stop_reason == "interrupted" and self._backup is not None:
                    self._backup._at_boundary(final=True)
                break
        return row

    def _boundary(self, epoch, batches_done, epoch_done):
        """A point where training can stop and resume exactly (see cutedl.checkpoint)."""
        self._position = {"epoch": int(epoch), "batches_done": int(batches_done), "epoch_done": bool(epoch_done),
                          "samples": self._train.num_samples}
        self._dirty = False
        if self._backup is not None:
            self._backup._at_boundary(final=False)

    def training_state(self) -> dict:
        """Everything needed to resume at the current boundary (see :mod:`cutedl.checkpoint`)."""
        if self._train is None:
            raise RuntimeError("Session.training_state: nothing to save before the first fit.")
        if self._dirty:
            raise RuntimeError("Session.training_state: the fit is between two boundaries (in the middle of a "
                               "step, a check or an event); listeners.BackupAndRestore saves at the boundaries, "
                               "or call it after fit.")
        data_state = (self._epoch_data_state if not self._position["epoch_done"]
                      else checkpoint.generator_states(self._train))
        return checkpoint.capture(self, self._train, self._val, data_state)

    def _check_first_batch(self, ds, what):
        """Catch shape/label problems before training starts, with the loss's own message."""
        x, y = ds.head(2)
        if y is None:
            raise ValueError(f"fit: {what} has no labels (y is None); supervised training needs (x, y).")
        x = self.model.check_input(x)
        out = self.model.forward(x, training=False, logits=self._fused)
        mask = self.model.output_mask
        self._train_loss(y, out) if mask is None else self._train_loss(y, out, mask=mask)

    def _emit(self, event, arg, logs=None):
        for lst in self.listeners:
            hook = getattr(lst, f"on_{event}")
            try:
                if arg is None:
                    hook(logs=logs)
                else:
                    hook(arg, logs=logs)
            except Exception as err:
                raise _listener_error(err, lst, event, self.step) from err


def _listener_error(err: Exception, lst, event: str, step: int) -> Exception:
    """``err`` again, same type, its message prefixed with the listener and the moment."""
    if getattr(err, "_cutedl_listener", False):
        return err
    msg = f"listener {lst!r} failed in on_{event} (step {step}): {err}"
    try:
        new = type(err)(msg)
        if str(new) != msg:
            raise TypeError
    except Exception:
        new = RuntimeError(f"{msg} ({type(err).__name__})")
    new._cutedl_listener = True
    return new


class _InterruptGuard:
    """During fit, the first Ctrl-C asks for a stop at the next batch boundary; the second aborts.

    Installed only in the main thread and only over Python's default SIGINT handler (a handler
    the user installed is left alone).
    """

    def __init__(self, session):
        self.session = session
        self.installed = False
        self.aborting = False
        self.presses = 0

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._handler)
            self.installed = True
        return self

    def _handler(self, signum, frame):
        self.presses += 1
        if self.presses == 1:
            self.session._stop_reason = "interrupted"
            return
        self.aborting = True
        self._restore()
        raise KeyboardInterrupt

    def _restore(self):
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
            self.installed = False

    def __exit__(self, *exc):
        self._restore()
        return False


class _Accumulator:
    """Sample-weighted running means of batch logs."""

    def __init__(self):
        self.sums: dict = {}
        self.count = 0

    def add(self, logs: dict, n: int):
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count += n

    def means(self) -> dict:
        if not self.count:
            # no batch (empty), or only batches without a real step (weight 0): those log 0
            return dict.fromkeys(self.sums, 0.0)
        return {k: v / self.count for k, v in self.sums.items()}


def _best_of(history: History, key: str):
    col = history.history.get(key)
    if not col:
        return None
    vals = np.array(col, dtype=float)
    if not np.isfinite(vals).any():
        return None
    i = int(np.nanargmin(vals))
    return {"monitor": key, "mode": "min", "value": float(vals[i]), "step": int(history["step"][i]),
            "epoch": int(history["epoch"][i])}


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"fit: {name} must be an integer >= {minimum}, got {value!r}.")
