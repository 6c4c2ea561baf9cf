"""Layer wrappers: Bidirectional (an RNN read both ways) and TimeDistributed (a layer per time step).

A wrapper owns fresh copies of the layer it wraps (built from the template's config), exposes
their params under its own name and shares one random generator among them.
"""
from __future__ import annotations

from cutedl import backend
from cutedl._validate import check_choice
from cutedl.layers.base import Layer, forward_takes_mask, registry

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Wrapper(Layer):
    """Base of layers that own one or more inner layers (their params are the wrapper's).

    Inner params are renamed ``<wrapper>/<role>/<param>`` (e.g. ``bidirectional_1/forward/kernel``)
    so names stay unique within a model and readable in checkpoints.
    """

    def __init__(self, layer: Layer, **kwargs):
        # ``layer`` is a template: build() makes fresh copies from its config, so the same
        # template may be wrapped twice and a gradient check's float64 copy stays faithful.
        if not isinstance(layer, Layer):
            raise TypeError(f"{type(self).__name__} wraps a cutedl Layer, got {type(layer).__name__}: {layer!r}.")
        if kwargs.get("inshape") is None and layer.inshape is not None:
            kwargs["inshape"] = layer.inshape  # Bidirectional(LSTM(8, inshape=(T, F))) works as in Keras
        super().__init__(**kwargs)
        self.layer = layer
        self._rng = None

    def _clone(self, **changes) -> Layer:
        """A fresh, unbuilt copy of the wrapped layer (its config with ``changes``)."""
        cfg = self.layer.get_config()
        cfg.pop("name", None)
        cfg.pop("inshape", None)
        cfg.update(changes)
        return type(self.layer).from_config(cfg)

    def _build_inner(self, inner: Layer, inshape, role: str):
        inner.dtype = self.dtype
        inner.trainable = inner.trainable and self.trainable  # a frozen wrapper freezes its layers
        inner.name = f"{self.name}_{role}"
        inner._build(inshape)
        # Inner layers with random draws (dropout) share one generator, exposed as the wrapper's
        # own ``_rng``: replaying its state replays every draw (testing.check_gradients does).
        if getattr(inner, "_rng", None) is not None:
            if getattr(self, "_rng", None) is None:
                self._rng = inner._rng
            inner._rng = self._rng
        for p in inner.params:
            p.name = f"{self.name}/{role}/{p.name.split('/', 1)[1]}"
        return inner

    def _inner_forward(self, inner, x, training, mask):
        if mask is not None and forward_takes_mask(inner):
            return inner.forward(x, training=training, mask=mask)
        return inner.forward(x, training=training)

    def reset_states(self) -> None:
        for inner in self._inner_layers():
            reset = getattr(inner, "reset_states", None)
            if reset is not None:
                reset()

    def _inner_layers(self):
        return [l for l in (getattr(self, "inner", None),) if l is not None]

    def get_config(self):
        cfg = super().get_config()
        inner = self.layer.get_config()
        inner.pop("name", None)
        inner.pop("inshape", None)
        inner.pop("dtype", None)  # the wrapper's dtype applies
        cfg["layer"] = {"class_name": type(self.layer).__name__, "config": inner}
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> "Wrapper":
        config = dict(config)
        entry = config.pop("layer", None)
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise ValueError(f"{cls.__name__} config needs a 'layer' entry with class_name and config, got {entry!r}.")
        inner = registry.lookup(entry.get("class_name")).from_config(entry["config"])
        return cls(inner, **config)

    def __repr__(self) -> str:
        out = f", outshape={self.outshape}" if self.built else ""
        return f"{type(self).__name__}({self.layer!r}, name={self.name!r}{out})"


@registry.register("Bidirectional")
class Bidirectional(Wrapper):
    """Run a recurrent layer forwards and a copy of it backwards, and merge the two outputs.

    ``layer`` is a template: the wrapper builds two copies, ``forward_layer`` and
    ``backward_layer`` (the same configuration with ``go_backwards`` flipped), each with its own
    weights. With ``return_sequences`` its output is re-aligned in time (reversed back), so step
    t of the result sees the whole sequence: steps 0..t through the forward layer and t..T-1
    through the backward one. Masks are honoured by both directions.

    Args:
        layer: a SimpleRNN, LSTM or GRU (``return_state`` not supported: read
            ``forward_layer.states`` / ``backward_layer.states`` after a forward instead).
        merge_mode: ``'concat'`` (default; 2·units features), ``'sum'``, ``'mul'``, ``'ave'``, or
            None: ``forward`` then returns the list ``[forward_output, backward_output]`` and
            ``backward`` takes a list of two gradients (usable standalone, not in a sequential Model).
    Input shape: ``(batch, T, features)``. Output shape: the layer's, with units doubled for concat.
    Params: ``<name>/forward/...`` then ``<name>/backward/...``, each the wrapped layer's layout.
    Example:
        >>> Model([Embedding(10000, 64, mask_zero=True, inshape=(None,)),
        ...        Bidirectional(LSTM(32)), Dense(1, activation='sigmoid')])
    """

    def __init__(self, layer: Layer, merge_mode="concat", **kwargs):
        super().__init__(layer, **kwargs)
        if not hasattr(layer, "go_backwards") or not hasattr(layer, "return_sequences"):
            raise TypeError(f"Bidirectional wraps a recurrent layer (SimpleRNN, LSTM, GRU), got "
                            f"{type(layer).__name__}.")
        if getattr(layer, "return_state", False):
            raise ValueError("Bidirectional does not support return_state=True on the wrapped layer; use "
                             "return_state=False and read forward_layer.states / backward_layer.states.")
        self.merge_mode = check_choice("Bidirectional", "merge_mode", merge_mode, MERGE_MODES)
        self.forward_layer = None
        self.backward_layer = None

    @property
    def returns_list(self) -> bool:
        return self.merge_mode is None

    @property
    def return_sequences(self) -> bool:
        return self.layer.return_sequences

    def _inner_layers(self):
        return [l for l in (self.forward_layer, self.backward_layer) if l is not None]

    def build(self, inshape):
        self.forward_layer = self._build_inner(self._clone(), inshape, "forward")
        self.backward_layer = self._build_inner(self._clone(go_backwards=not self.layer.go_backwards),
                                                inshape, "backward")
        self._params = self.forward_layer.params + self.backward_layer.params
        out = self.forward_layer.outshape
        self.outshape = out[:-1] + (2 * out[-1],) if self.merge_mode == "concat" else out

    def compute_mask(self, x, mask=None):
        return mask if self.return_sequences else None

    def forward(self, x, training=False, mask=None):
        self.check_input(x)
        yf = self._inner_forward(self.forward_layer, x, training, mask)
        yb = self._inner_forward(self.backward_layer, x, training, mask)
        if self.return_sequences:
            yb = yb[:, ::-1]  # back in input order: step t of yb read steps T-1..t
        self._yf, self._yb = yf, yb
        mode = self.merge_mode
        if mode == "concat":
            return backend.xp.concatenate([yf, yb], axis=-1)
        if mode == "sum":
            return yf + yb
        if mode == "mul":
            return yf * yb
        if mode == "ave":
            out = yf + yb
            out *= 0.5
            return out
        return [yf, yb.copy()]

    def backward(self, grad):
        xp = backend.xp
        mode = self.merge_mode
        if mode is None:
            if not isinstance(grad, (list, tuple)) or len(grad) != 2:
                raise ValueError(f"Layer {self.describe()} has merge_mode=None: backward takes a list of two "
                                 f"gradients [d_forward, d_backward], got {type(grad).__name__}.")
            gf, gb = grad
        elif mode == "concat":
            units = self._yf.shape[-1]
            gf, gb = grad[..., :units], grad[..., units:]
        elif mode == "sum":
            gf = gb = grad
        elif mode == "mul":
            gf, gb = grad * self._yb, grad * self._yf
        else:  # ave
            gf = gb = grad * 0.5
        if self.return_sequences:
            gb = gb[:, ::-1]
        for inner in self._inner_layers():
            inner.skip_input_grad = self.skip_input_grad
        dxf = self.forward_layer.backward(xp.ascontiguousarray(gf))
        dxb = self.backward_layer.backward(xp.ascontiguousarray(gb))
        if self.skip_input_grad:
            return None
        dxf += dxb
        return dxf

    def get_config(self):
        cfg = super().get_config()
        cfg.update(merge_mode=self.merge_mode)
        return cfg


@registry.register("TimeDistributed")
class TimeDistributed(Wrapper):
    """Apply a layer to every time step: input ``(batch, T, ...)`` is run as ``(batch·T, ...)``.

    Steps are independent, so a mask passes through unchanged (the wrapped layer does not see it).
    Dense already works on the last axis of a sequence; this wraps any layer, e.g. a Flatten or a
    small stack of layers over image frames.

    Args:
        layer: the layer to apply; the wrapper builds its own copy (``.inner``) for the per-step
            shape ``inshape[1:]``, so ``layer`` itself stays a template.
    Input shape: ``(batch, T, *step_shape)``. Output shape: ``(batch, T, *layer_outshape)``.
    Params: the wrapped layer's, named ``<name>/layer/<param>``.
    Example:
        >>> Model([LSTM(32, return_sequences=True, inshape=(None, 8)), TimeDistributed(Dense(1))])
    """

    supports_masking = True

    def build(self, inshape):
        if len(inshape) < 2:
            raise ValueError(f"Layer {self.describe()} needs input (batch, T, ...) with a time axis, got "
                             f"(batch, {', '.join(map(str, inshape))}).")
        self.inner = self._build_inner(self._clone(), inshape[1:], "layer")
        self._params = self.inner.params
        self.outshape = (inshape[0],) + tuple(self.inner.outshape)

    def forward(self, x, training=False):
        self.check_input(x)
        batch, steps = x.shape[:2]
        y = self.inner.forward(x.reshape((batch * steps,) + x.shape[2:]), training=training)
        if getattr(y, "ndim", 0) < 1 or y.shape[0] != batch * steps:
            raise ValueError(f"Layer {self.describe()}: the wrapped layer must return one row per step, "
                             f"got {getattr(y, 'shape', type(y).__name__)} for {batch * steps} steps.")
        return y.reshape((batch, steps) + y.shape[1:])

    def backward(self, grad):
        batch, steps = grad.shape[:2]
        self.inner.skip_input_grad = self.skip_input_grad
        dx = self.inner.backward(grad.reshape((batch * steps,) + grad.shape[2:]))
        if dx is None:
            return None
        return dx.reshape((batch, steps) + dx.shape[1:])

