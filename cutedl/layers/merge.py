"""Merge layers for functional models: :class:`Add`, :class:`Subtract`, :class:`Multiply`,
:class:`Average`, :class:`Maximum`, :class:`Minimum` and :class:`Concatenate`.

Each takes a list of inputs (``layers.Add()([a, b])``) and returns one array; ``backward``
returns the list of the inputs' gradients. Element-wise merges need inputs of one shape;
Concatenate joins along ``axis`` (Keras meaning: the batch axis is axis 0, default the last).
Masks: the output mask is the logical AND of the inputs' masks (a step is real only where it is
real in every input); inputs without a mask count as all real.
"""
from __future__ import annotations

from cutedl import backend
from cutedl._validate import check_int
from cutedl.layers.base import Layer, fmt_shape, grad_enabled, registry, snake_case, unique_name

__all__ = ["Merge", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]


class Merge(Layer):
    """Base class of layers that combine a list of inputs into one output.

    Input shape: a list of ``(batch, *shape)`` arrays. Output shape: ``(batch, *shape)`` for the
    element-wise merges.
    """

    multi_input = True
    min_inputs = 2
    max_inputs = None

    def _build(self, inshape) -> None:
        if not isinstance(inshape, (list, tuple)) or not inshape or not all(
                isinstance(s, (list, tuple)) for s in inshape):
            raise ValueError(f"Layer {self.describe()} merges a list of inputs; got the input shape {inshape!r}.")
        shapes = [tuple(s) for s in inshape]
        n = len(shapes)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            want = self.min_inputs if self.max_inputs == self.min_inputs else f"at least {self.min_inputs}"
            raise ValueError(f"Layer {self.describe()} takes {want} inputs, got {n}.")
        if self.name is None:
            self.name = unique_name(snake_case(type(self).__name__))
        self._params = []
        self.inshape = tuple(shapes)
        self.build(shapes)
        self.outshape = tuple(self.outshape)
        self.built = True

    def build(self, shapes) -> None:
        first = shapes[0]
        for s in shapes[1:]:
            if len(s) != len(first) or any(a is not None and b is not None and a != b for a, b in zip(s, first)):
                raise ValueError(f"Layer {self.describe()} needs inputs of one shape, got "
                                 f"{', '.join(fmt_shape(x) for x in shapes)}. Reshape them, or use Concatenate.")
        self.outshape = first

    def check_inputs(self, xs) -> None:
        if not self.built:
            raise RuntimeError(f"Layer {self.describe()} is not built: call it on symbolic inputs or arrays first.")
        if not isinstance(xs, (list, tuple)) or len(xs) != len(self.inshape):
            raise ValueError(f"Layer {self.describe()} expects a list of {len(self.inshape)} arrays, got "
                             f"{type(xs).__name__}.")
        for x, s in zip(xs, self.inshape):
            if x.ndim != len(s) + 1 or any(e is not None and e != a for e, a in zip(s, x.shape[1:])):
                raise ValueError(f"Layer {self.describe()} expected an input of shape {fmt_shape(s)}, got "
                                 f"{tuple(x.shape)}.")

    def compute_mask(self, x, mask=None):
        masks = [m for m in (mask or []) if m is not None]
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = out & m
        return out

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}


@registry.register("Add")
class Add(Merge):
    """Element-wise sum of its inputs (residual connections): ``y = x_1 + ... + x_n``."""

    def forward(self, xs, training=False):
        self.check_inputs(xs)
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out += x
        return out

    def backward(self, grad):
        return [grad] * len(self.inshape)


@registry.register("Subtract")
class Subtract(Merge):
    """``y = x_1 - x_2`` (exactly two inputs)."""

    max_inputs = 2

    def forward(self, xs, training=False):
        self.check_inputs(xs)
        return xs[0] - xs[1]

    def backward(self, grad):
        return [grad, -grad]


@registry.register("Average")
class Average(Merge):
    """Element-wise mean of its inputs."""

    def forward(self, xs, training=False):
        self.check_inputs(xs)
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out += x
        out *= out.dtype.type(1.0 / len(xs))
        return out

    def backward(self, grad):
        g = grad * grad.dtype.type(1.0 / len(self.inshape))
        return [g] * len(self.inshape)


@registry.register("Multiply")
class Multiply(Merge):
    """Element-wise product of its inputs (gating)."""

    def forward(self, xs, training=False):
        self.check_inputs(xs)
        self._xs = list(xs) if grad_enabled() else None
        out = xs[0] * xs[1]
        for x in xs[2:]:
            out *= x
        return out

    def backward(self, grad):
        xs = self._xs
        grads = []
        for i in range(len(xs)):
            g = grad
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            grads.append(g)
        return grads


class _Extremum(Merge):
    pick = None  # 'max' or 'min'

    def forward(self, xs, training=False):
        self.check_inputs(xs)
        xp = backend.xp
        stacked = xp.stack(xs)  # (n, batch, ...)
        winner = stacked.argmax(axis=0) if self.pick == "max" else stacked.argmin(axis=0)
        self._winner = winner if grad_enabled() else None
        return xp.take_along_axis(stacked, winner[None], axis=0)[0]

    def backward(self, grad):
        return [grad * (self._winner == i) for i in range(len(self.inshape))]


@registry.register("Maximum")
class Maximum(_Extremum):
    """Element-wise maximum of its inputs; the gradient goes to the largest (the first of equals)."""

    pick = "max"


@registry.register("Minimum")
class Minimum(_Extremum):
    """Element-wise minimum of its inputs; the gradient goes to the smallest (the first of equals)."""

    pick = "min"


@registry.register("Concatenate")
class Concatenate(Merge):
    """Join inputs along ``axis`` (Keras meaning: 0 is the batch axis; default -1, the last).

    Input shapes must agree except along ``axis``. Example: ``Concatenate()([a, b])`` with
    ``a: (batch, 3)``, ``b: (batch, 5)`` gives ``(batch, 8)``.
    """

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = check_int("Concatenate", "axis", axis)
        if self.axis == 0:
            raise ValueError("Concatenate: axis 0 is the batch axis; concatenate along a feature axis (e.g. -1).")

    def build(self, shapes) -> None:
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes):
            raise ValueError(f"Layer {self.describe()} needs inputs of one rank, got "
                             f"{', '.join(fmt_shape(s) for s in shapes)}.")
        ax = self.axis - 1 if self.axis > 0 else rank + self.axis  # index into the shape without batch
        if not 0 <= ax < rank:
            raise ValueError(f"Layer {self.describe()}: axis {self.axis} is out of range for inputs of shape "
                             f"{fmt_shape(shapes[0])}.")
        for s in shapes[1:]:
            if any(i != ax and a is not None and b is not None and a != b for i, (a, b) in enumerate(zip(s, shapes[0]))):
                raise ValueError(f"Layer {self.describe()}: inputs must agree except along axis {self.axis}, got "
                                 f"{', '.join(fmt_shape(x) for x in shapes)}.")
        self._ax = ax
        sizes = [s[ax] for s in shapes]
        out = list(shapes[0])
        out[ax] = None if None in sizes else sum(sizes)
        self.outshape = tuple(out)

    def forward(self, xs, training=False):
        self.check_inputs(xs)
        self._sizes = [x.shape[self._ax + 1] for x in xs]
        return backend.xp.concatenate(xs, axis=self._ax + 1)

    def backward(self, grad):
        xp = backend.xp
        cuts = []
        total = 0
        for n in self._sizes[:-1]:
            total += n
            cuts.append(total)
        return xp.split(grad, cuts, axis=self._ax + 1)

    def compute_mask(self, x, mask=None):
        if self._ax == 0 and mask and any(m is not None for m in mask):
            # joined along time: the output mask is the inputs' masks joined
            xp = backend.xp
            parts = [m if m is not None else xp.ones(xi.shape[:2], dtype=bool) for m, xi in zip(mask, x)]
            return xp.concatenate(parts, axis=1)
        return super().compute_mask(x, mask)

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg["axis"] = self.axis
        return cfg
