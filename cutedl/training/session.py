"""Session: the training loop. ``fit`` runs epochs of steps, checks and listener events.

    >>> sess = Session(model, loss='categorical_crossentropy', optimizer=Adam(1e-3), metrics=['accuracy'])
    >>> history = sess.fit(train_ds, epochs=20, val_data=val_ds, listeners=[EarlyStopping(patience=3)])

A *check* happens every ``val_epochs`` epochs (or every ``val_steps`` steps when > 0) and once more
at the end if steps were run since the last one. At each check the Session validates (if
``val_data`` is given), appends one row to the History (training loss = mean over the batches
since the previous check) and fires ``on_val_end``.

What a step does is :meth:`Session.train_step` (override it, or pass ``train_step=fn``): by
default :func:`~cutedl.training.step.compute_grads` then :func:`~cutedl.training.step.apply_grads`.
Where the fit stands is the public :class:`~cutedl.training.state.TrainingState`
(``session.state``); listeners are dispatched by :class:`~cutedl.training.events.Events`; a
listener that keeps training checkpoints (BackupAndRestore) resumes the fit through the
public ``resume_state`` / ``on_boundary`` protocol (see :mod:`cutedl.training.checkpoint`).
"""
from __future__ import annotations

import copy
import math
import warnings

from cutedl import backend
from cutedl import losses as losses_mod
from cutedl import metrics as metrics_mod
from cutedl import optimizers as optimizers_mod
from cutedl._validate import check_int, check_number, is_int
from cutedl.data.dataset import Dataset
from cutedl.data.sources import GeneratorSource, IndexedSource, as_source, is_source
from cutedl.layers.base import no_grad
from cutedl.listeners.base import Listener
from cutedl.listeners.progress import ProgressBar
from cutedl.model import Model
from cutedl.training import checkpoint, step as step_mod
from cutedl.training.events import Events, InterruptGuard
from cutedl.training.history import History
from cutedl.training.state import Accumulator, TrainingState

__all__ = ["Session"]


class Session:
    """Trains a :class:`~cutedl.Model`.

    Args:
        model: an assembled model.
        loss: a loss name or :class:`~cutedl.losses.Loss`.
        optimizer: an optimizer name or instance (default 'adam').
        metrics: list of metric names or instances, e.g. ``['accuracy']``.
        train_step: optional function ``train_step(session, batch) -> logs`` replacing
            :meth:`train_step` (see there).
        strategy: optional data-parallel strategy (``cutedl.distributed.DataParallel``).
        loss_weights: for a model with several outputs, a list (or ``{output name: weight}``) of
            the weights of each output's loss in the total (default 1 each).
        log_keys: the keys of the logs a custom ``train_step`` returns (e.g. ``['d_loss',
            'g_loss']``), so that listeners can monitor them from the start of ``fit``; a
            subclass may override :meth:`train_log_keys` instead. A custom step may also leave
            ``loss`` out (it computes its own) and train on data without labels.

    A model with several outputs takes ``loss`` as one loss for all outputs, a list (one per
    output) or a dict ``{output layer name: loss}``; its logs hold the total ``loss``, each
    ``<output>_loss`` and every metric per output as ``<output>_<metric>``.

    When the model ends in softmax (sigmoid) and the loss is a categorical (binary)
    crossentropy on probabilities, the Session trains on the logits instead: the same loss,
    computed stably, with gradient ``softmax(z) - y``.

    Attributes:
        model, loss, optimizer, metrics: as given (resolved).
        history: the :class:`History` of the last fit.
        state: the :class:`TrainingState` of the last fit.
        listeners: the :class:`Events` (listener list) of the last fit.
        train_data, val_data: the Datasets of the last fit.
        tracked: extra models and optimizers saved in checkpoints (see :meth:`track`).
    """

    def __init__(self, model, loss=None, optimizer="adam", metrics=None, train_step=None, strategy=None,
                 loss_weights=None, log_keys=None):
        if not isinstance(model, Model):
            raise TypeError(f"Session expects a cutedl Model, got {type(model).__name__}.")
        if not model.assembled:
            raise RuntimeError("Session: the model is not assembled. Call model.assemble() before "
                               "creating a Session (or fitting).")
        if train_step is not None and not callable(train_step):
            raise TypeError(f"Session: train_step must be a function (session, batch) -> logs, got {train_step!r}.")
        self.model = model
        self.custom_step = train_step is not None or type(self).train_step is not Session.train_step
        if loss is None and not self.custom_step:
            raise TypeError("Session: pass a loss, e.g. Session(model, loss='categorical_crossentropy'); only a "
                            "custom train_step (which computes its own losses) may leave it out.")
        self.losses = [] if loss is None else self._resolve_losses(loss)
        self.loss = (self.losses[0] if self.losses else None) if model.num_outputs == 1 else list(self.losses)
        if log_keys is not None:
            if isinstance(log_keys, str) or not all(isinstance(k, str) and k for k in log_keys):
                raise TypeError(f"Session: log_keys must be a list of the key names a custom train_step returns, "
                                f"got {log_keys!r}.")
            log_keys = list(log_keys)
        self.step_log_keys = log_keys
        self.loss_weights = self._resolve_loss_weights(loss_weights)
        self.optimizer = optimizers_mod.get(optimizer)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, metrics_mod.Metric)):
            metrics = [metrics]
        self.metrics = [metrics_mod.get(m) for m in metrics]
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"Session: metric names must be unique and not 'loss', got {names}.")
        # Stateful metrics (precision, AUC, confusion matrix...) accumulate over a check's batches:
        # one instance per log key for training and one for validation.
        keys = [(m, m.name if n is None else f"{n}_{m.name}") for n in
                (model.output_names if model.num_outputs > 1 else [None]) for m in self.metrics
                if getattr(m, "stateful", False)]
        self.stateful_metrics = {"train": {k: copy.deepcopy(m) for m, k in keys},
                                 "val": {k: copy.deepcopy(m) for m, k in keys}}
        for group in self.stateful_metrics.values():
            for m in group.values():
                m.reset()
        plans = [self._plan_loss(fn, layer) for fn, layer in zip(self.losses, model.output_layers)]
        self.train_losses = [p[0] for p in plans]
        self.fused = [p[1] for p in plans] if model.num_outputs > 1 else (plans[0][1] if plans else False)
        self.regularized = [p for p in model.params if p.regularizer is not None]
        self.strategy = strategy
        self.step_function = train_step
        self.tracked: dict = {}
        self.history = History()
        self.state = TrainingState()
        self.listeners = Events()
        self.train_data = self.val_data = None
        self.fit_params: dict = {}
        self.batch_weight = None
        if strategy is not None:
            strategy.setup(self)

    def _resolve_losses(self, loss) -> list:
        """One Loss per model output, from a loss, a list of them or ``{output name: loss}``."""
        n, names = self.model.num_outputs, self.model.output_names
        if isinstance(loss, dict):
            unknown = sorted(set(loss) - set(names))
            if unknown or set(names) - set(loss):
                raise ValueError(f"Session: loss dict keys must be the output names {names}, got {sorted(loss)}.")
            return [losses_mod.get(loss[k]) for k in names]
        if isinstance(loss, (list, tuple)):
            if len(loss) != n:
                raise ValueError(f"Session: {len(loss)} losses for a model with {n} output(s) {names}.")
            return [losses_mod.get(l) for l in loss]
        first = losses_mod.get(loss)
        return [first] + [losses_mod.get(losses_mod.registry.serialize(first)) for _ in range(n - 1)]

    def _resolve_loss_weights(self, weights) -> list:
        n, names = self.model.num_outputs, self.model.output_names
        if weights is None:
            return [1.0] * n
        if isinstance(weights, dict):
            if set(weights) != set(names):
                raise ValueError(f"Session: loss_weights keys must be the output names {names}, got "
                                 f"{sorted(weights)}.")
            weights = [weights[k] for k in names]
        if not isinstance(weights, (list, tuple)) or len(weights) != n:
            raise ValueError(f"Session: loss_weights must be a list of {n} numbers (one per output), got {weights!r}.")
        return [check_number("Session", "loss_weights", w, minimum=0.0) for w in weights]

    @staticmethod
    def _plan_loss(loss, last):
        """Decide whether to train on an output layer's logits (fusing softmax/sigmoid into the loss)."""
        act_name = getattr(getattr(last, "activation", None), "registry_name", None)
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

    @property
    def train_loss(self):
        """The loss the step computes on the (first) output: with logits when fused."""
        return self.train_losses[0]

    @property
    def fused_logits(self) -> bool:
        """Whether the (first) output trains on its logits (softmax/sigmoid fused into the loss)."""
        return self.fused[0] if isinstance(self.fused, list) else self.fused

    # ------------------------------------------------------------------ public helpers
    @property
    def step(self) -> int:
        """Training steps done since this session's first fit."""
        return self.state.step

    @property
    def epoch(self) -> int:
        return self.state.epoch

    def track(self, **objects) -> "Session":
        """Register extra models, optimizers and random generators (a GAN's discriminator, its
        optimizer, the generator its noise is drawn from) so that training checkpoints save and
        restore them with the session's own. Returns the session.
        """
        for name, obj in objects.items():
            if not isinstance(obj, (Model, optimizers_mod.Optimizer, backend.np.random.Generator)):
                raise TypeError(f"Session.track: {name} must be a cutedl Model, an Optimizer or a numpy "
                                f"Generator, got {type(obj).__name__}.")
            self.tracked[name] = obj
        return self

    def train_log_keys(self) -> list:
        """Keys of a training step's logs: loss, each output's loss (several outputs), metrics; the
        ``log_keys`` given for a custom step."""
        if self.step_log_keys is not None:
            return list(self.step_log_keys)
        names = self.model.output_names if self.model.num_outputs > 1 else [None]
        keys = ["loss"] + ([f"{n}_loss" for n in names] if names != [None] else [])
        for n in names:
            keys += [m.name if n is None else f"{n}_{m.name}" for m in self.metrics]
        return keys

    def log_keys(self) -> list:
        """Keys every history row will have in this fit."""
        train = self.train_log_keys()
        keys = ["step", "epoch"] + train
        if self.fit_params.get("has_val"):
            keys += [f"val_{k}" for k in train]
        return keys + ["lr", "time"]

    def direction(self, key: str) -> str:
        """'min' or 'max': which way is better for log key ``key`` (the session's metrics first)."""
        name = key[4:] if key.startswith("val_") else key
        for prefix in [""] + [f"{n}_" for n in self.model.output_names]:
            if prefix and name.startswith(prefix):
                name = name[len(prefix):]
        if name == "loss":
            return "min"
        for m in self.metrics:
            if m.name == name:
                return m.direction
        return metrics_mod.direction(key)

    def stop_fit(self, reason: str = "stop_fit") -> None:
        """Ask ``fit`` to stop at the next batch boundary."""
        self.listeners.request_stop(reason)

    def outputs(self, out):
        """Model outputs as the user sees them (probabilities when training on logits)."""
        if self.model.num_outputs == 1:
            return self.output_activation(out, None)
        return [self.output_activation(o, n) for o, n in zip(out, self.model.output_names)]

    def output_activation(self, out, name=None):
        """One output as the user sees it: its activation applied when it trains on logits."""
        k = 0 if name is None else self.model.output_names.index(name)
        fused = self.fused[k] if isinstance(self.fused, list) else self.fused
        return self.model.output_layers[k].activation.forward(out) if fused else out

    # ------------------------------------------------------------------ one step
    def compute_grads(self, x, y):
        """Forward, loss and backward of a device batch: ``(loss, logs)``; see :mod:`cutedl.training.step`."""
        return step_mod.compute_grads(self, x, y)

    def apply_grads(self, params=None, optimizer=None) -> None:
        """Optimizer update from the grads (after the strategy's reduction); see :mod:`cutedl.training.step`."""
        step_mod.apply_grads(self, params, optimizer)

    def train_step(self, batch) -> dict:
        """One optimisation step on ``batch = (x, y)`` (device arrays); returns the logs.

        Override it in a subclass (or pass ``Session(..., train_step=fn)``) to train two models
        (a GAN), add a loss (distillation) or use several optimizers: call
        :meth:`compute_grads` / :meth:`apply_grads`, or the models' ``forward``/``backward`` and
        optimizers' ``step`` directly, and return ``{'loss': float, ...}`` of host floats. The
        keys returned by the first step are the training columns of the History; fit,
        listeners, checkpoints and reports work unchanged. Set ``self.batch_weight`` to weigh
        the batch in the means (default: its number of samples).
        """
        if self.step_function is not None:
            return self.step_function(self, batch)
        x, y = batch
        loss, logs = self.compute_grads(x, y)
        finite = math.isfinite(loss)
        if self.strategy is not None:
            finite = self.strategy.all_finite(finite)  # every rank updates, or skips, together
        if finite:
            self.apply_grads()
        elif not self.state.warned_nan and not any(type(l).__name__ == "TerminateOnNaN" for l in self.listeners):
            warnings.warn(f"Session: non-finite training loss ({loss}) at step {self.step + 1}; the update was "
                          f"skipped. Add listeners.TerminateOnNaN() to stop, or lower the learning rate.",
                          UserWarning, stacklevel=3)
            self.state.warned_nan = True
        return logs

    def train_on_batch(self, x, y) -> dict:
        """One optimisation step on a host batch; returns ``{'loss': ..., <metric>: ...}``."""
        self.batch_weight = None
        return self.train_step((step_mod.to_device(x), step_mod.to_device(y)))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, data, batch_size: int | None = None, max_batches: int = -1) -> dict:
        """Loss and metrics over ``data`` (a Dataset or ``(x, y)``), averaged per sample.

        A Dataset's ``transform`` (training augmentation) is not applied; no training caches are
        kept (:func:`~cutedl.layers.base.no_grad`). With a masked sequence output the means are
        over the real (unmasked) steps of all batches.
        """
        ds = self._as_dataset(data, batch_size, shuffle=False, who="evaluate")
        if getattr(ds, "resumable", True) is False and max_batches < 0 and not len(ds):
            raise ValueError("evaluate: a generator without an end needs max_batches (val_batches in fit).")
        acc, seen = Accumulator(), 0
        for m in self.stateful_metrics["val"].values():
            m.reset()
        with no_grad():
            for b, (x, y) in enumerate(ds.batches(transform=False)):
                if 0 <= max_batches <= b:
                    break
                seen += 1
                if self.strategy is not None:  # this rank's shard of the batch
                    x, y = self.strategy.local_batch(x, y, training=False)
                    if not step_mod.batch_rows(x):
                        continue
                x, y = step_mod.to_device(x), step_mod.to_device(y)
                parts: dict = {}
                out, loss, mask = step_mod.forward_loss(self, x, y, training=False, parts=parts)
                logs = step_mod.metric_logs(self, {"loss": step_mod.host_float(loss), **parts}, y, out, mask,
                                            kind="val")
                acc.add(logs, step_mod.batch_weight(x, mask))
        if self.strategy is not None:
            acc = self.strategy.reduce_accumulator(acc)
        if not acc.count:
            if seen:
                raise ValueError("evaluate: the data has no real (unmasked) time step: every step is padding.")
            raise ValueError("evaluate: the data yielded no batches.")
        return {**{k: float(v) for k, v in acc.means().items()}, **self._stateful_results("val")}

    def _stateful_results(self, kind: str) -> dict:
        """``{log key: result}`` of the stateful metrics of ``kind`` ('train' or 'val'), then reset."""
        out = {}
        for key, m in self.stateful_metrics[kind].items():
            if self.strategy is not None and hasattr(self.strategy, "reduce_metric"):
                self.strategy.reduce_metric(m)
            out[key] = float(m.result())
            m.reset()
        return out

    def predict(self, x, batch_size: int | None = None):
        """The model's outputs for ``x`` as a host array (see :meth:`Model.predict`)."""
        return self.model.predict(x, batch_size=batch_size)

    # ------------------------------------------------------------------ fit
    def fit(self, data, y=None, epochs: int = 1, val_data=None, val_epochs: int = 1, val_steps: int = 0,
            val_batches: int = -1, listeners=None, verbose: int = 1, batch_size: int | None = None,
            validation_split: float = 0.0, shuffle: bool = True, initial_epoch: int = 0,
            history: History | None = None, steps_per_epoch: int | None = None) -> History:
        """Train until epoch ``epochs``; returns the :class:`~cutedl.training.history.History`.

        Args:
            data: a :class:`Dataset`, an ``(x, y)`` tuple, ``x`` with the labels as ``y`` (Keras'
                ``fit(x, y, ...)``; arrays are batched by ``batch_size``, default 32), or data that does
                not fit in memory: an object with ``__len__`` and ``__getitem__(i) -> (x, y)``, or a
                generator of ``(x, y)`` batches (see :mod:`cutedl.data.sources`).
            y: the labels when ``data`` is the inputs.
            epochs: index of the last epoch to run (Keras meaning with ``initial_epoch``).
            val_data: validation Dataset or ``(x, y)``.
            val_epochs: check every this many epochs.
            val_steps: when > 0, check every this many steps instead.
            val_batches: validate on at most this many batches (-1: all).
            listeners: a :class:`~cutedl.listeners.Listener` or a list of them.
            verbose: 1 shows progress (a ProgressBar is added), 0 silent.
            validation_split: hold out this last fraction of ``data`` for validation.
            initial_epoch: epoch to start from (Keras meaning: a new History whose epochs count
                from ``initial_epoch + 1``).
            history: a History to continue instead of starting a new one, e.g.
                ``fit(ds, epochs=10, history=sess.history)`` after ``fit(ds, epochs=5)``, or one
                from ``History.load``: rows are appended to it, ``initial_epoch`` defaults to its
                last epoch, steps count on from its last step and ``time`` from its last time.
            steps_per_epoch: batches per epoch from a generator or an indexable source.

        With a listener that keeps training checkpoints (:class:`~cutedl.listeners.BackupAndRestore`)
        whose directory holds one, fit first restores everything from it and continues there.

        Ctrl-C (SIGINT) stops at the next batch boundary: ``on_fit_end`` runs (reports, restored
        weights, a checkpoint) and the History has ``stop_reason='interrupted'``; a second Ctrl-C
        aborts at once. A ``KeyboardInterrupt`` raised by a listener also ends the fit as
        'interrupted'. An exception raised by a listener propagates, naming the listener; the
        model keeps the weights of the last completed step.
        """
        train, val = self._prepare(data, y, epochs, val_data, val_epochs, val_steps, val_batches, listeners,
                                   verbose, batch_size, validation_split, shuffle, initial_epoch, history,
                                   steps_per_epoch)
        events, state = self.listeners, self.state
        guard = InterruptGuard(events)
        with guard:
            try:
                events.emit("fit_start")
                self._resume()
                self._epochs(train)
            except KeyboardInterrupt:
                if guard.aborting:
                    raise
                # raised by a listener (or Ctrl-C outside the main thread): the fit ends here
                events.stop_reason = "interrupted"
                if state.at_boundary:
                    events.boundary(state, final=True)
            try:
                if state.accumulator and events.stop_reason != "nan" and not state.in_check:
                    self._check()
            except KeyboardInterrupt:
                if guard.aborting:
                    raise
                events.stop_reason = "interrupted"  # the closing check is not recorded
            self._close(lambda: guard.aborting)
        return self.history

    def _epochs(self, train) -> None:
        """The epoch and batch loops, from the boundary ``self.state`` is at."""
        state, events, p = self.state, self.listeners, self.fit_params
        resumed = not state.epoch_done  # inside an epoch whose on_epoch_start already ran
        first = state.epoch if resumed else state.epoch + 1
        for epoch in range(first, p["epochs"] + 1):
            skip = state.batches_done if resumed else 0
            if resumed:  # the data generators were restored to this epoch's start
                state.epoch_data = checkpoint.generator_states(train)
            else:
                state.at_boundary = False
                events.emit("epoch_start", epoch)
                state.start_epoch(epoch, checkpoint.generator_states(train))
            resumed = False
            for b, x, y in _epoch_batches(train, skip):
                self._one_step(x, y)
                state.boundary(b + 1, False)
                events.boundary(state)
                if events.stopping:
                    break
            if getattr(train, "exhausted", False) and state.batches_done == 0:
                warnings.warn("fit: the generator ran out of batches; training stops. Pass steps_per_epoch with a "
                              "generator that loops (e.g. itertools.cycle) to train several epochs.", UserWarning,
                              stacklevel=3)
                events.request_stop("data_exhausted")
            if events.stopping:  # stopped in the batch loop: resume later at this batch boundary
                if events.stop_reason == "interrupted":
                    events.boundary(state, final=True)
                state.at_boundary = False
                events.emit("epoch_end", epoch, logs=self.history.last())
                break
            state.at_boundary = False
            if not p["val_steps"] and (epoch - state.check_origin) % p["val_epochs"] == 0:
                self._check()
            events.emit("epoch_end", epoch, logs=self.history.last())
            state.boundary(len(train) or state.batches_done, True)
            events.boundary(state)
            if events.stopping:
                if events.stop_reason == "interrupted":
                    events.boundary(state, final=True)
                break

    def _one_step(self, x, y) -> None:
        state, events = self.state, self.listeners
        events.emit("batch_start", state.step + 1)
        state.at_boundary = False
        self.batch_weight = None
        if self.strategy is not None:  # this rank's slice of the global batch
            x, y = self.strategy.local_batch(x, y)
        logs = self.train_step((step_mod.to_device(x), step_mod.to_device(y)))
        state.step += 1
        state.accumulator.add(logs, step_mod.batch_rows(x) if self.batch_weight is None else self.batch_weight)
        events.emit("batch_end", state.step, logs=logs)
        val_steps = self.fit_params["val_steps"]
        if not events.stopping and val_steps and state.step % val_steps == 0:
            self._check()

    def _check(self) -> dict:
        """Validate, append a History row from the logs since the last check, fire val_end."""
        state, events = self.state, self.listeners
        state.in_check = True
        events.emit("val_start", state.step)
        acc = state.accumulator
        if self.strategy is not None:
            acc = self.strategy.reduce_accumulator(acc)
        row = {"step": state.step, "epoch": state.epoch, **acc.means(), **self._stateful_results("train")}
        state.accumulator = Accumulator()
        if self.val_data is not None:
            for k, v in self.evaluate(self.val_data, max_batches=self.fit_params["val_batches"]).items():
                row[f"val_{k}"] = v
        row["lr"] = float(self.optimizer.current_lr)
        row["time"] = state.elapsed()
        self.history.append(row)
        events.emit("val_end", state.step, logs=row)
        state.in_check = False
        return row

    def _close(self, aborting) -> None:
        """Record how the fit ended and fire ``on_fit_end`` on every listener."""
        h, state, events = self.history, self.state, self.listeners
        h.stop_reason = events.stop_reason or "completed"
        h.stopped_step, h.stopped_epoch = state.step, state.epoch
        if isinstance(h.best, dict) and h.best.get("monitor") in h.history and h.best.get("mode") in ("min", "max"):
            h.best = h.best_row(h.best["monitor"], h.best["mode"])  # the monitor's best over the whole History
        else:
            h.best = h.best_row("val_loss" if self.val_data is not None else "loss", "min")
        h.wall_time = state.elapsed()
        if events.finish(h.last(), aborting):
            h.stop_reason = "interrupted"

    # ------------------------------------------------------------------ setting up a fit
    def _prepare(self, data, y, epochs, val_data, val_epochs, val_steps, val_batches, listeners, verbose,
                 batch_size, validation_split, shuffle, initial_epoch, history, steps_per_epoch=None):
        """Validate fit's arguments, build the datasets, listeners, History and TrainingState."""
        if is_int(y):
            raise TypeError(f"fit: the second argument is the labels y (Keras' fit(x, y, ...)), got the integer "
                            f"{y!r}; pass the number of epochs by name: fit(data, epochs={y}).")
        epochs = check_int("fit", "epochs", epochs, minimum=1)
        val_epochs = check_int("fit", "val_epochs", val_epochs, minimum=1)
        val_steps = check_int("fit", "val_steps", val_steps, minimum=0)
        initial_epoch = check_int("fit", "initial_epoch", initial_epoch, minimum=0)
        if not is_int(val_batches) or val_batches == 0 or val_batches < -1:
            raise ValueError(f"fit: val_batches must be -1 (all) or a positive integer, got {val_batches!r}.")
        if history is not None and not isinstance(history, History):
            raise TypeError(f"fit: history must be a cutedl History to continue, got {type(history).__name__}.")
        step = self.state.step
        if history is not None and len(history):
            initial_epoch = initial_epoch or int(history.history.get("epoch", [0])[-1])
            step = max(step, int(history.history.get("step", [0])[-1]))
        if initial_epoch >= epochs:
            raise ValueError(f"fit: initial_epoch={initial_epoch} must be smaller than epochs={epochs}.")
        if y is not None:
            if isinstance(data, Dataset):
                raise TypeError("fit: a Dataset already holds its labels; pass y only with an array of inputs, "
                                "as fit(x, y, ...).")
            data = (data, y)
        train = self._as_dataset(data, batch_size, shuffle, who="fit", steps=steps_per_epoch)
        if validation_split and not hasattr(train, "split"):
            raise ValueError("fit: validation_split needs arrays or a Dataset to split; with a generator or an "
                             "indexable source pass val_data instead.")
        if validation_split:
            if val_data is not None:
                raise ValueError("fit: pass either val_data or validation_split, not both.")
            train, val_data = train.split(validation_split)
        val = None if val_data is None else self._as_dataset(val_data, batch_size or train.batch_size, False,
                                                             who="fit", what="val_data")
        self._check_first_batch(train, "data")
        if val is not None:
            self._check_first_batch(val, "val_data")
        self.listeners = self._make_listeners(listeners, verbose)
        continuing = history is not None
        self.history = history if continuing else History()
        self.train_data, self.val_data = train, val
        self.fit_params = {"epochs": epochs, "initial_epoch": initial_epoch, "steps_per_epoch": len(train),
                           "batch_size": train.batch_size, "samples": train.num_samples, "has_val": val is not None,
                           "val_epochs": val_epochs, "val_steps": val_steps, "val_batches": int(val_batches)}
        self.history.params = dict(self.fit_params)
        state = TrainingState(train.num_samples, initial_epoch, len(train), step=step)
        state.warned_nan = self.state.warned_nan
        h = self.history
        state.set_elapsed(max(h.wall_time, h.history["time"][-1]) if continuing and len(h) and "time" in h.history
                          else 0.0)
        self.state = state
        for lst in self.listeners:
            lst.set_session(self)
        if self.strategy is not None:
            self.strategy.begin_fit(self)
        return train, val

    def _make_listeners(self, listeners, verbose) -> Events:
        if listeners is None:
            listeners = []
        elif isinstance(listeners, Listener):
            listeners = [listeners]
        elif not isinstance(listeners, (list, tuple)):
            raise TypeError(f"fit: listeners must be a Listener or a list of them, got {type(listeners).__name__}.")
        listeners = list(listeners)
        for lst in listeners:
            if not isinstance(lst, Listener):
                raise TypeError(f"fit: listeners must be cutedl Listener objects, got {lst!r}.")
        if sum(lst.keeps_checkpoints for lst in listeners) > 1:
            raise ValueError(f"fit: at most one listener that keeps training checkpoints (BackupAndRestore), got "
                             f"{[lst for lst in listeners if lst.keeps_checkpoints]}.")
        if verbose and not any(isinstance(lst, ProgressBar) for lst in listeners):
            listeners.append(ProgressBar())
        return Events(listeners, step=lambda: self.state.step)

    def _resume(self) -> None:
        """Restore from the checkpoint a listener offers (``resume_state``), if any."""
        for lst in self.listeners:
            if self.strategy is None:
                offer = lst.resume_state()
            else:  # rank 0's checkpoint, for every rank
                offer = self.strategy.broadcast(lst.resume_state() if self.strategy.is_main() else None)
            if offer is not None:
                saved, path = offer
                lst.resumed(checkpoint.restore(self, saved, path))

    def training_state(self) -> dict:
        """Everything needed to resume at the current boundary (see :mod:`cutedl.training.checkpoint`)."""
        if self.train_data is None:
            raise RuntimeError("Session.training_state: nothing to save before the first fit.")
        if not self.state.at_boundary:
            raise RuntimeError("Session.training_state: the fit is between two boundaries (in the middle of a "
                               "step, a check or an event); listeners.BackupAndRestore saves at the boundaries, "
                               "or call it after fit.")
        return checkpoint.capture(self)

    def _as_dataset(self, data, batch_size, shuffle, who, what="data", steps=None):
        if isinstance(data, (IndexedSource, GeneratorSource)):
            return data
        if isinstance(data, Dataset):
            if steps is not None:
                raise ValueError(f"Session.{who}: steps_per_epoch is for generators and indexable sources; a Dataset "
                                 f"has len(dataset) batches per epoch.")
            return data
        if is_source(data):
            return as_source(data, steps)
        if isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = data
            if batch_size is not None:
                check_int(who, "batch_size", batch_size, minimum=1)
            return Dataset(x, y, batch_size=32 if batch_size is None else batch_size, shuffle=shuffle)
        raise TypeError(f"Session.{who}: {what} must be a cutedl Dataset, an (x, y) tuple, an indexable source "
                        f"(__len__ and __getitem__) or a generator of (x, y) batches, got {type(data).__name__}.")

    def _warn_unscaled(self, x) -> None:
        """Warn when float inputs of a Dense/Conv first layer look unscaled (e.g. 0-255 pixels)."""
        first = self.model.first_layers[0]
        if isinstance(x, tuple):
            x = x[0] if self.model.num_inputs > 1 else x
        if getattr(x, "dtype", None) is None or x.dtype.kind != "f" or not x.size:
            return
        if not (type(first).__name__.startswith(("Dense", "Conv"))):
            return
        peak = float(backend.np.max(backend.np.abs(x)))
        if peak > 50:
            warnings.warn(f"fit: the first batch of inputs reaches |x| = {peak:g}, far outside the usual range for "
                          f"layer {first.describe()}; unscaled inputs (0-255 pixels) train poorly. Scale them, e.g. "
                          f"x / 255 or cutedl.datasets.normalize(x).", UserWarning, stacklevel=4)

    def _check_first_batch(self, ds, what):
        """Catch shape/label problems before training starts, with the loss's own message.

        Layers that carry state between batches (``stateful=True`` RNNs) are not run: the check
        then builds zero outputs of the model's output shape, so no state leaks into training.
        """
        if self.custom_step and what == "data":
            return  # a custom step decides what it reads: nothing to check here
        if not self.losses:
            raise ValueError("fit: validation needs a loss; this Session has none (a custom train_step without "
                             "loss=). Pass loss= too, or leave val_data out.")
        xb, y = ds.head(ds.batch_size)  # one read of the first batch (a source's batch 0)
        if y is None:
            raise ValueError(f"fit: {what} has no labels (y is None); supervised training needs (x, y).")
        if what == "data":
            self._warn_unscaled(xb)
        x = tuple(a[:2] for a in xb) if isinstance(xb, tuple) else xb[:2]
        y = tuple(a[:2] for a in y) if isinstance(y, tuple) else y[:2]
        x = self.model.check_input(step_mod.to_device(x))
        y = step_mod.to_device(y)
        if any(getattr(layer, "stateful", False) for layer in self.model.layers):
            n = step_mod.batch_rows(x)
            x0 = x[0] if isinstance(x, (tuple, list)) else x
            shapes = self.model.outshape if self.model.num_outputs > 1 else [self.model.outshape]
            outs = [backend.xp.zeros((n,) + tuple(x0.shape[i + 1] if d is None and i + 1 < x0.ndim else (d or 1)
                                                 for i, d in enumerate(shape)), dtype=self.model.dtype)
                    for shape in shapes]
            out = outs if self.model.num_outputs > 1 else outs[0]
            self.model.output_mask, self.model.output_masks = None, [None] * len(outs)
            step_mod.forward_loss_of(self, y, out)
        else:
            with no_grad():
                step_mod.forward_loss(self, x, y, training=False)


def _epoch_batches(train, skip):
    """``(index, x, y)`` of an epoch's batches from batch ``skip`` on.

    A Dataset draws the whole epoch (same order, same per-batch random draws) and skipped batches
    are dropped; a source reads from ``skip`` on directly."""
    if hasattr(train, "epoch_from"):
        yield from train.epoch_from(skip)
        return
    for b, (x, y) in enumerate(train):
        if b >= skip:
            yield b, x, y


Model.session_class = Session  # what Model.compile builds (model.py knows no trainer)
