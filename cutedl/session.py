"""Session: the training loop. Runs ``fit`` with a loss, an optimizer, a validation schedule and listeners.

    >>> sess = Session(model, loss='categorical_crossentropy', optimizer=Adam(1e-3), metrics=['accuracy'])
    >>> history = sess.fit(train_ds, epochs=20, val_data=test_ds, listeners=[EarlyStopping(patience=3)])

A *check* happens every ``val_epochs`` epochs (or every ``val_steps`` steps when > 0) and once more
at the end if steps were run since the last one. At each check the Session validates (if
``val_data`` is given), appends one row to the History (training loss = mean over the batches
since the previous check) and fires ``on_val_end``.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np

from cutedl import losses as losses_mod
from cutedl import metrics as metrics_mod
from cutedl import optimizers as optimizers_mod
from cutedl.data import Dataset
from cutedl.history import History
from cutedl.listeners import Listener, ProgressBar, TerminateOnNaN


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
            return Dataset(x, y, batch_size=batch_size or 32, shuffle=shuffle)
        raise TypeError(f"Session: {what} must be a cutedl Dataset or an (x, y) tuple, got {type(data).__name__}.")

    # ------------------------------------------------------------------ one step
    def _forward_loss(self, x, y, training):
        x = self.model.check_input(x)
        out = self.model.forward(x, training=training, logits=self._fused)
        loss = self._train_loss(y, out)
        return out, loss

    def _outputs(self, out):
        """Model outputs as the user sees them (probabilities when training on logits)."""
        if self._fused:
            return self.model.layers[-1].activation.forward(out)
        return out

    def train_on_batch(self, x, y) -> dict:
        """One optimisation step on a batch; returns ``{'loss': ..., <metric>: ...}``."""
        out, loss = self._forward_loss(x, y, training=True)
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
            pred = self._outputs(out)
            for m in self.metrics:
                logs[m.name] = float(m(y, pred))
        return logs

    def evaluate(self, data, batch_size: int | None = None, max_batches: int = -1) -> dict:
        """Loss and metrics over ``data`` (a Dataset or ``(x, y)``), averaged per sample."""
        ds = self._as_dataset(data, batch_size, shuffle=False)
        sums = dict.fromkeys(["loss"] + [m.name for m in self.metrics], 0.0)
        n = 0
        for b, (x, y) in enumerate(ds):
            if 0 <= max_batches <= b:
                break
            out, loss = self._forward_loss(x, y, training=False)
            k = len(x)
            sums["loss"] += loss * k
            if self.metrics:
                pred = self._outputs(out)
                for m in self.metrics:
                    sums[m.name] += float(m(y, pred)) * k
            n += k
        if n == 0:
            raise ValueError("evaluate: the data yielded no batches.")
        return {k: float(v / n) for k, v in sums.items()}

    def predict(self, x, batch_size: int | None = None):
        return self.model.predict(x, batch_size=batch_size)

    # ------------------------------------------------------------------ fit
    def fit(self, data, epochs: int = 1, val_data=None, val_epochs: int = 1, val_steps: int = 0,
            val_batches: int = -1, listeners=None, verbose: int = 1, batch_size: int | None = None,
            validation_split: float = 0.0, shuffle: bool = True, initial_epoch: int = 0) -> History:
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
            initial_epoch: epoch to start from (for continuing a run).
        Returns:
            the :class:`~cutedl.history.History`.
        """
        _check_int("epochs", epochs, 1)
        _check_int("val_epochs", val_epochs, 1)
        _check_int("val_steps", val_steps, 0)
        _check_int("initial_epoch", initial_epoch, 0)
        if isinstance(val_batches, bool) or not isinstance(val_batches, (int, np.integer)) or val_batches == 0 or val_batches < -1:
            raise ValueError(f"fit: val_batches must be -1 (all) or a positive integer, got {val_batches!r}.")
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
        if verbose and not any(isinstance(lst, ProgressBar) for lst in listeners):
            listeners.append(ProgressBar())
        for lst in listeners:
            lst.set_session(self)
        self.listeners = listeners

        history = History()
        self.history = history
        self._stop_reason = None
        self.fit_params = {"epochs": int(epochs), "initial_epoch": int(initial_epoch),
                           "steps_per_epoch": len(train), "batch_size": train.batch_size,
                           "samples": train.num_samples, "has_val": val is not None,
                           "val_epochs": int(val_epochs), "val_steps": int(val_steps),
                           "val_batches": int(val_batches)}
        history.params = dict(self.fit_params)
        t0 = time.perf_counter()
        self._t0 = t0
        self._acc = _Accumulator()

        def check(epoch):
            self._emit("val_start", self.step)
            row = {"step": self.step, "epoch": epoch}
            row.update(self._acc.means())
            self._acc = _Accumulator()
            if val is not None:
                for k, v in self.evaluate(val, max_batches=val_batches).items():
                    row[f"val_{k}"] = v
            row["lr"] = float(self.optimizer.current_lr)
            row["time"] = time.perf_counter() - t0
            history.append(row)
            self._emit("val_end", self.step, row)
            return row

        self._emit("fit_start", None)
        row = {}
        for epoch in range(int(initial_epoch) + 1, int(epochs) + 1):
            self.epoch = epoch
            self._emit("epoch_start", epoch)
            for x, y in train:
                self._emit("batch_start", self.step + 1)
                logs = self.train_on_batch(x, y)
                self.step += 1
                self._acc.add(logs, len(x))
                self._emit("batch_end", self.step, logs)
                if self._stop_reason is None and val_steps and self.step % val_steps == 0:
                    row = check(epoch)
                if self._stop_reason is not None:
                    break
            if self._stop_reason is None and not val_steps and (epoch - initial_epoch) % val_epochs == 0:
                row = check(epoch)
            self._emit("epoch_end", epoch, row)
            if self._stop_reason is not None:
                break
        if self._acc.count and self._stop_reason != "nan":
            row = check(self.epoch)
        history.stop_reason = self._stop_reason or "completed"
        history.stopped_step, history.stopped_epoch = self.step, self.epoch
        if history.best is None:
            history.best = _best_of(history, "val_loss" if val is not None else "loss")
        history.wall_time = time.perf_counter() - t0
        self._emit("fit_end", None, history.last())
        return history

    def _check_first_batch(self, ds, what):
        """Catch shape/label problems before training starts, with the loss's own message."""
        x, y = ds.head(2)
        if y is None:
            raise ValueError(f"fit: {what} has no labels (y is None); supervised training needs (x, y).")
        x = self.model.check_input(x)
        out = self.model.forward(x, training=False, logits=self._fused)
        self._train_loss(y, out)

    def _emit(self, event, arg, logs=None):
        for lst in self.listeners:
            hook = getattr(lst, f"on_{event}")
            if arg is None:
                hook(logs=logs)
            else:
                hook(arg, logs=logs)


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
            return {}
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
