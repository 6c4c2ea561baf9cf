"""Model: a stack of layers. Assemble, forward, backward, predict, summary, weights, save/load.

    >>> model = Model([Dense(400, inshape=784, activation='relu'), Dense(10)]).assemble()
    >>> model.predict(x).shape
    (n, 10)

This module owns the architecture and its computation; it has no training loop. Keras-style
sugar (``compile`` / ``fit`` / ``evaluate``) builds the trainer named by ``Model.session_class``,
which :mod:`cutedl.training.session` sets to :class:`cutedl.Session` when it is imported (as
``import cutedl`` always does), so this module never imports the training package.
"""
from __future__ import annotations

import math
import os

from cutedl import backend
from cutedl._io import load_json_npz, save_json_npz
from cutedl._validate import check_int
from cutedl.layers.base import Layer, fmt_shape, forward_takes_mask, no_grad, snake_case, unique_name
from cutedl.layers.base import registry as layer_registry

FORMAT = "cutedl-model"
FORMAT_VERSION = 1


class Model:
    """A sequential stack of layers.

    Args:
        layers: list of :class:`~cutedl.layers.Layer`; the first needs ``inshape``
            (or pass ``inshape`` to :meth:`assemble`).
        name: model name.
    """

    session_class = None
    """The trainer ``compile`` builds (``cutedl.Session``; set by :mod:`cutedl.training.session`)."""

    def __init__(self, layers=None, name: str = "model"):
        self.name = name
        self.layers: list[Layer] = []
        self.assembled = False
        self._session = None
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------ building
    def add(self, layer: Layer) -> "Model":
        """Append a layer (before :meth:`assemble`)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Model.add expects a cutedl Layer, got {type(layer).__name__}: {layer!r}.")
        if any(layer is l for l in self.layers):
            raise ValueError(f"Layer {layer.describe()} is already in this model; create a new one.")
        self.layers.append(layer)
        self.assembled = False
        return self

    def assemble(self, inshape=None) -> "Model":
        """Infer every layer's shapes from the first layer's ``inshape``, create all params.

        Returns the model, so ``Model([...]).assemble()`` reads naturally.
        """
        if not self.layers:
            raise ValueError("Model has no layers: pass a list of layers or call add() before assemble().")
        first = self.layers[0]
        shape = inshape if inshape is not None else first.inshape
        if shape is None:
            raise ValueError(
                f"The first layer {first.describe()} has no inshape, so the model cannot infer its shapes. "
                f"Give it one, e.g. {type(first).__name__}(..., inshape=784), or call assemble(inshape=...)."
            )
        taken = {l.name for l in self.layers if l.name is not None}
        if len(taken) != sum(l.name is not None for l in self.layers):
            raise ValueError(f"Layer names must be unique within a model, got {[l.name for l in self.layers]}.")
        for layer in self.layers:
            if layer.name is None:
                layer.name = unique_name(snake_case(type(layer).__name__), taken)
                taken.add(layer.name)
        for layer in self.layers:
            if getattr(layer, "returns_list", False):
                raise ValueError(
                    f"Layer {layer.describe()} returns a list of arrays (return_state=True, or "
                    f"Bidirectional with merge_mode=None), but a sequential Model passes one array from "
                    f"layer to layer. Use return_state=False and read layer.states after a forward (or "
                    f"a merge_mode), or call the layer on its own (layer._build(inshape); layer.forward(x)).")
        for i, layer in enumerate(self.layers):
            # Later layers must not keep an inshape from a previous assemble.
            if i > 0 and layer.built:
                layer.inshape = None
            layer._build(shape)
            shape = layer.outshape
        self.assembled = True
        return self

    def _require_assembled(self, what: str):
        if not self.assembled:
            raise RuntimeError(f"Model is not assembled: call model.assemble() before {what}.")

    @property
    def inshape(self):
        return self.layers[0].inshape if self.layers else None

    @property
    def outshape(self):
        return self.layers[-1].outshape if self.assembled else None

    @property
    def dtype(self):
        return self.layers[0].dtype if self.layers else backend.floatx()

    @property
    def params(self) -> list:
        """Every param, layer by layer, in creation order."""
        return [p for layer in self.layers for p in layer.params]

    @property
    def trainable_params(self) -> list:
        return [p for p in self.params if p.trainable]

    def count_params(self) -> int:
        return sum(p.size for p in self.params)

    # ------------------------------------------------------------------ computation
    def check_input(self, x):
        """Validate a batch: an array of shape ``(batch, *inshape)`` with finite numbers."""
        self._require_assembled("using it")
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            x = backend.as_array(x, "Model input", "x")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"Model input must be numeric, got an array of dtype {x.dtype}.")
        first = self.layers[0]
        if first.inshape is not None and (x.ndim != len(first.inshape) + 1 or any(
                e is not None and e != a for e, a in zip(first.inshape, x.shape[1:]))):
            hint = ""
            if x.ndim > 2 and len(first.inshape) == 1 and math.prod(x.shape[1:]) == first.inshape[0]:
                hint = " Reshape the data with x.reshape(len(x), -1) or start the model with Flatten()."
            raise ValueError(
                f"Model input: layer {first.describe()} expected input of shape {fmt_shape(first.inshape)}, "
                f"got {tuple(x.shape)}.{hint}"
            )
        return x

    def forward(self, x, training: bool = False, logits: bool = False):
        """Run every layer. ``logits=True`` makes the last layer skip its activation (fused losses).

        Masks flow along (see :mod:`cutedl.layers.base`): after each layer its ``compute_mask``
        gives the mask of its output, passed as ``mask=`` to the next layer whose ``forward``
        takes one. The last layer's output mask is kept in ``self.output_mask``.
        """
        # Integer indices stay integers for a first layer that reads them (Embedding has
        # an ``integer_input`` bound); anything else is cast to the model's float dtype.
        if x.dtype != self.dtype and (x.dtype.kind == "f" or getattr(self.layers[0], "integer_input", None) is None):
            x = x.astype(self.dtype)
        last = self.layers[-1]
        last.output_logits = logits
        mask = None
        for layer in self.layers:
            if mask is not None and forward_takes_mask(layer):
                y = layer.forward(x, training=training, mask=mask)
            else:
                y = layer.forward(x, training=training)
            mask = layer.compute_mask(x, mask)
            x = y
        self.output_mask = mask
        return x

    def backward(self, grad, input_grad: bool = False):
        """Backpropagate dL/doutput through every layer, setting every param's grad.

        Masks need no handling here: a layer that took a mask in ``forward`` cached it and gives
        masked steps no gradient.

        Returns dL/dinput when ``input_grad`` is True, else None: the first layer then skips its
        input gradient, a quarter of an MLP's backward FLOPs.
        """
        self.layers[0].skip_input_grad = not input_grad
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def reset_states(self) -> None:
        """Clear the carried state of every stateful layer (``stateful=True`` RNNs, wrappers)."""
        for layer in self.layers:
            reset = getattr(layer, "reset_states", None)
            if reset is not None:
                reset()

    def predict(self, x, batch_size: int | None = None):
        """Outputs for ``x`` (inference mode), ``batch_size`` rows at a time (all at once if None).

        Runs under :func:`~cutedl.layers.base.no_grad` (no training caches are kept) and returns
        a host (NumPy) array whatever the backend.
        """
        if batch_size is not None:
            batch_size = check_int("predict", "batch_size", batch_size, minimum=1, what="a positive integer")
        x = self.check_input(x)
        np = backend.np
        if x.dtype.kind == "f":
            finite = backend.to_host(backend.xp.isfinite(x)) if not backend.is_host_array(x) else np.isfinite(x)
            if not finite.all():
                raise ValueError(f"predict: the input holds {x.size - int(finite.sum())} NaN/inf value(s); "
                                 f"clean or impute them first.")
        n = len(x)
        with no_grad():
            if batch_size is None or batch_size >= n:
                return backend.to_host(self.forward(backend.to_device(x), training=False))
            out = None
            for i in range(0, n, batch_size):
                y = backend.to_host(self.forward(backend.to_device(x[i:i + batch_size]), training=False))
                if out is None:
                    out = np.empty((n,) + y.shape[1:], dtype=y.dtype)
                out[i:i + len(y)] = y
        return out

    def __call__(self, x, training: bool = False):
        return self.forward(self.check_input(x), training=training)

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> list:
        """Copies of every param value, layer by layer, in creation order (Keras order)."""
        return [p.value.copy() for p in self.params]

    def set_weights(self, weights) -> None:
        """Load values from :meth:`get_weights`' list (shapes must match exactly)."""
        self._require_assembled("set_weights()")
        params = self.params
        weights = list(weights)
        if len(weights) != len(params):
            raise ValueError(f"set_weights: the model has {len(params)} params, got {len(weights)} arrays.")
        for p, w in zip(params, weights):
            w = w if backend.is_array(w) else backend.np.asarray(w)
            if tuple(w.shape) != tuple(p.shape):
                raise ValueError(f"set_weights: {p.name} has shape {p.shape}, got an array of shape {w.shape}.")
        for p, w in zip(params, weights):
            p.value[...] = backend.asarray(w)

    # ------------------------------------------------------------------ description
    def summary(self) -> str:
        """A table of layers (name, type, output shape, params) with totals, as a string."""
        rows = [("Layer", "Type", "Output shape", "Params")]
        for layer in self.layers:
            out = fmt_shape(layer.outshape) if layer.built else "?"
            rows.append((layer.name or "?", type(layer).__name__, out, f"{layer.count_params():,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "-" * (sum(widths) + 6)

        def fmt(r):
            return f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}"

        total = self.count_params()
        trainable = sum(p.size for p in self.params if p.trainable)
        out = [f'Model "{self.name}"', line, fmt(rows[0]), line] + [fmt(r) for r in rows[1:]] + [line]
        out += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                f"Non-trainable params: {total - trainable:,}"]
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, layers={[l.name or type(l).__name__ for l in self.layers]})"

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict:
        return {"name": self.name,
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers]}

    @classmethod
    def from_config(cls, config: dict) -> "Model":
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("Not a cutedl model config: expected a dict with a 'layers' list.")
        layers = []
        for entry in config["layers"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
                raise ValueError(f"Bad layer entry in model config: {entry!r}.")
            cls_ = layer_registry.lookup(entry.get("class_name"))
            layers.append(cls_.from_config(entry["config"]))
        return cls(layers, name=str(config.get("name", "model")))

    def save(self, path) -> None:
        """Save architecture (JSON) and weights (arrays) to one ``.npz`` file, atomically.

        The file holds only numeric arrays and a UTF-8 JSON document; loading never unpickles.
        """
        self._require_assembled("save()")
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": self.get_config(),
                "params": [p.name for p in self.params]}
        arrays = {f"param_{i}": backend.to_host(p.value) for i, p in enumerate(self.params)}
        save_json_npz(path, "__config__", meta, arrays)

    @classmethod
    def load(cls, path) -> "Model":
        """Rebuild a model saved by :meth:`save`: same layers, same weights, same predictions."""
        path = os.fspath(path)
        meta, files = load_json_npz(path, "__config__", "Model.load", "model file")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"Model.load: {path!r} is not a cutedl model file.")
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"Model.load: {path!r} has format version {meta.get('version')}, "
                             f"this cutedl reads version {FORMAT_VERSION}.")
        try:
            model = cls.from_config(meta.get("config")).assemble()
        except (TypeError, ValueError, RuntimeError, KeyError) as err:
            # e.g. an unknown layer or activation name, or arguments no cutedl layer takes
            raise ValueError(f"Model.load: {path!r} has an architecture cutedl cannot rebuild: "
                             f"{type(err).__name__}: {err}") from None
        params = model.params
        if len(params) != len([k for k in files if k.startswith("param_")]):
            raise ValueError(f"Model.load: {path!r} holds a different number of arrays than its architecture needs.")
        weights = []
        for i, p in enumerate(params):
            w = files.get(f"param_{i}")
            if w is None or w.dtype.kind != "f":
                raise ValueError(f"Model.load: {path!r} has a missing or non-float array for {p.name}.")
            weights.append(w)
        model.set_weights(weights)
        return model

    # ------------------------------------------------------------------ Keras-style sugar
    def compile(self, loss, optimizer="adam", metrics=None, **session_kwargs) -> None:
        """Attach a loss, optimizer and metrics (assembling the model if needed).

        Extra keyword arguments go to the trainer (``cutedl.Session``): ``train_step``, ``strategy``.
        """
        if not self.assembled:
            self.assemble()
        self._session = self.session_class(self, loss=loss, optimizer=optimizer, metrics=metrics, **session_kwargs)

    @property
    def session(self):
        if self._session is None:
            raise RuntimeError("Model is not compiled: call model.compile(loss=..., optimizer=...) first, "
                               "or train it with cutedl.Session(model, loss, optimizer).fit(...).")
        return self._session

    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose: int = 1,
            callbacks=None, listeners=None, validation_split: float = 0.0, validation_data=None,
            shuffle: bool = True, initial_epoch: int = 0, validation_steps: int | None = None,
            validation_freq: int = 1, val_epochs: int | None = None, val_steps: int = 0,
            val_batches: int = -1, history=None):
        """Keras-style ``fit`` on :meth:`cutedl.Session.fit`; returns the History.

        ``callbacks`` and ``listeners`` are the same thing. ``x`` may be a Dataset (then no
        ``y``); ``validation_data`` a Dataset or an ``(x_val, y_val)`` tuple. Keras names map to
        Session's: ``validation_freq`` → ``val_epochs``, ``validation_steps`` → ``val_batches``;
        ``initial_epoch`` and ``history`` (a History to continue) pass through unchanged.
        """
        if isinstance(validation_data, tuple) and len(validation_data) != 2:
            raise ValueError(f"Model.fit: validation_data must be (x_val, y_val) or a Dataset, got a tuple of "
                             f"{len(validation_data)} items (cutedl has no sample weights).")
        if val_epochs is None:
            val_epochs = validation_freq
        elif validation_freq != 1:
            raise ValueError("Model.fit: pass validation_freq or val_epochs, not both (they are the same).")
        if validation_steps is not None:
            if val_batches != -1:
                raise ValueError("Model.fit: pass validation_steps or val_batches, not both (they are the same).")
            val_batches = validation_steps
        data = x if y is None else (x, y)
        return self.session.fit(data, epochs=epochs, batch_size=batch_size, val_data=validation_data,
                                validation_split=validation_split, val_epochs=val_epochs,
                                val_steps=val_steps, val_batches=val_batches,
                                listeners=list(callbacks or []) + list(listeners or []),
                                verbose=verbose, shuffle=shuffle, initial_epoch=initial_epoch, history=history)

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose: int = 0,
                 steps: int | None = None) -> dict:
        """Keras-style ``evaluate``: ``{'loss': ..., <metric>: ...}`` over at most ``steps`` batches.

        ``verbose`` is accepted for Keras code; evaluation shows no progress bar.
        """
        steps = check_int("Model.evaluate", "steps", steps, minimum=1, allow_none=True,
                          what="a positive integer or None (all batches)")
        data = x if y is None else (x, y)
        return self.session.evaluate(data, batch_size=batch_size, max_batches=-1 if steps is None else int(steps))
