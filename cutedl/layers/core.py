"""Core layers: Dense, Dropout, Flatten, Reshape, Activation.

The layers every model uses: a fully connected layer with an optional fused activation, dropout
(its mask drawn on the device from the layer's own generator), the two shape layers and an
activation as a layer of its own. Shared argument checks live in :mod:`cutedl.layers._args`.
"""
from __future__ import annotations

import math

from cutedl import activations, backend, rng
from cutedl._validate import check_bool, is_int
from cutedl.layers._args import check_rate, check_units, serialize_regularizer, set_weight_args, weight_args_config
from cutedl.layers.base import Layer, registry

# kept for modules not yet moved to _args
_check_units = check_units
_check_rate = check_rate
_ser_reg = serialize_regularizer


@registry.register("Dense")
class Dense(Layer):
    """Fully connected layer: ``y = activation(x @ weight + bias)``, on the last axis of ``x``.

    Args:
        units: output features.
        activation: name or object (default linear).
        use_bias: add a bias vector.
        kernel_initializer / bias_initializer: initializer names or objects.
        kernel_regularizer / bias_regularizer: e.g. ``'l2'`` or ``regularizers.L2(1e-4)``.
    Input shape: ``(batch, ..., in_features)``. Output shape: ``(batch, ..., units)``.
    Params: ``weight (in_features, units)``, ``bias (units,)``.
    Example:
        >>> Dense(10, inshape=784, activation='relu')
    """

    supports_masking = True  # per-step: a (batch, T) mask applies unchanged to the output

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_units("Dense", "units", units)
        self._set_activation(activation)
        self.use_bias = check_bool("Dense", "use_bias", use_bias)
        set_weight_args(self, kernel=(kernel_initializer, kernel_regularizer),
                        bias=(bias_initializer, bias_regularizer))

    def build(self, inshape):
        if inshape[-1] is None:
            raise ValueError(f"Layer {self.describe()} needs a known last input dimension, got {inshape}.")
        self.weight = self.add_param("weight", (inshape[-1], self.units), self.kernel_initializer,
                                     self.kernel_regularizer)
        self.bias = self.add_param("bias", (self.units,), self.bias_initializer,
                                   self.bias_regularizer) if self.use_bias else None
        self.outshape = tuple(inshape[:-1]) + (self.units,)

    def forward(self, x, training=False):
        self.check_input(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        self._x = x
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x
        z = x2 @ self.weight.value  # (n, in) @ (in, units) -> (n, units)
        if self.bias is not None:
            z += self.bias.value
        if x.ndim > 2:
            z = z.reshape(x.shape[:-1] + (self.units,))
        return self._activate(z)

    def backward(self, grad):
        xp = backend.xp
        g = self._activate_backward(grad)
        x = self._x
        g2 = g.reshape(-1, self.units)  # (n, units)
        x2 = x.reshape(-1, x.shape[-1])  # (n, in)
        w = self.weight
        if w.grad is None or w.grad.shape != w.shape:
            w.grad = xp.empty_like(w.value)
        xp.matmul(x2.T, g2, out=w.grad)  # (in, n) @ (n, units) -> (in, units)
        if self.bias is not None:
            if self.bias.grad is None:
                self.bias.grad = xp.empty_like(self.bias.value)
            xp.sum(g2, axis=0, out=self.bias.grad)
        if self.skip_input_grad:
            return None
        return (g2 @ w.value.T).reshape(x.shape)  # (n, units) @ (units, in) -> (n, in)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=activations.serialize(self.activation),
                   use_bias=self.use_bias)
        cfg.update(weight_args_config(self, "kernel", "bias"))
        return cfg


@registry.register("Dropout")
class Dropout(Layer):
    """Randomly zero a fraction ``rate`` of the inputs while training (Keras meaning).

    Kept values are scaled by ``1 / (1 - rate)`` so the expected output equals the input; at
    inference the layer is the identity.

    Args:
        rate: fraction of units dropped, in [0, 1).
        seed: seed of the layer's own generator (default: drawn from the global one).
    Input/Output shape: any, unchanged.
    """

    supports_masking = True

    def __init__(self, rate: float, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate("Dropout", "rate", rate)
        self.seed = seed
        self._rng = rng.make_rng(seed)

    def forward(self, x, training=False):
        self.check_input(x)
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        xp = backend.xp
        # float32 uniforms keep the whole op in the input's dtype
        u = backend.uniform(self._rng, x.shape, "float32" if x.dtype == xp.float32 else "float64")
        self._mask = u >= self.rate  # bool (batch, ...)
        y = xp.multiply(x, self._mask, dtype=x.dtype)
        y *= x.dtype.type(1.0 / (1.0 - self.rate))
        return y

    def backward(self, grad):
        if self._mask is None:
            return grad
        dx = backend.xp.multiply(grad, self._mask, dtype=grad.dtype)
        dx *= grad.dtype.type(1.0 / (1.0 - self.rate))
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed)
        return cfg


@registry.register("Flatten")
class Flatten(Layer):
    """Flatten every axis but the batch: ``(batch, d1, d2, ...) -> (batch, d1*d2*...)``."""

    def build(self, inshape):
        if any(d is None for d in inshape):
            raise ValueError(f"Layer {self.describe()} needs a fully known input shape, got {inshape}.")
        self.outshape = (math.prod(inshape),)

    def forward(self, x, training=False):
        self.check_input(x)
        self._shape = x.shape
        # (batch, d1, d2, ...) -> (batch, d1*d2*...); an empty batch too
        return x.reshape((x.shape[0],) + self.outshape)

    def backward(self, grad):
        return grad.reshape(self._shape)


@registry.register("Reshape")
class Reshape(Layer):
    """Reshape to ``target_shape`` (batch axis excluded; one entry may be -1).

    Example: ``Reshape((1, 28, 28), inshape=784)``.
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        dims = (target_shape,) if is_int(target_shape) else target_shape
        try:
            target = tuple(dims)
        except TypeError:
            target = None
        if target is None or not all(is_int(d) for d in target):
            raise TypeError(f"Reshape: target_shape must be a tuple of ints, got {type(target_shape).__name__} "
                            f"{target_shape!r}.")
        target = tuple(int(d) for d in target)
        if sum(d == -1 for d in target) > 1 or any(d == 0 or d < -1 for d in target):
            raise ValueError(f"Reshape: target_shape must hold positive ints and at most one -1, got {target}.")
        self.target_shape = target

    def build(self, inshape):
        n = math.prod(inshape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if n % known:
                raise ValueError(f"Layer {self.describe()} cannot reshape {inshape} ({n} values) to "
                                 f"{self.target_shape}: {n} is not divisible by {known}.")
            out = tuple(n // known if d == -1 else d for d in self.target_shape)
        else:
            out = self.target_shape
        if math.prod(out) != n:
            raise ValueError(f"Layer {self.describe()} cannot reshape {inshape} ({n} values) to "
                             f"{out} ({math.prod(out)} values); the counts must match.")
        self.outshape = out

    def forward(self, x, training=False):
        self.check_input(x)
        return x.reshape((x.shape[0],) + self.outshape)

    def backward(self, grad):
        return grad.reshape((grad.shape[0],) + self.inshape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(target_shape=list(self.target_shape))
        return cfg


@registry.register("Activation")
class Activation(Layer):
    """Apply an activation function as its own layer: ``Activation('softmax')``."""

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._set_activation(activation)

    def forward(self, x, training=False):
        self.check_input(x)
        return self._activate(x)

    def backward(self, grad):
        return self._activate_backward(grad)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(activation=activations.serialize(self.activation))
        return cfg
