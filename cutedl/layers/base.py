"""The layer contract: :class:`Param` and :class:`Layer`.

Lifecycle of a layer:

1. ``__init__`` only stores arguments (nothing is allocated).
2. ``build(inshape)`` creates parameters with :meth:`Layer.add_param` and sets ``outshape``.
   Shapes never include the batch axis: ``Dense(10).build((784,))`` -> ``outshape == (10,)``.
3. ``forward(x, training=False)`` computes the output and caches what ``backward`` needs.
4. ``backward(grad)`` *assigns* every ``param.grad`` and returns dL/dx. Neither ``x`` nor ``grad``
   is ever modified in place.

Masks (sequences padded to a common length):

- A mask is a bool array ``(batch, T)``, True where the time step is real, False where it is
  padding; ``None`` means "no mask" (every step is real).
- ``compute_mask(x, mask=None)`` returns the mask of the layer's *output*, given its input ``x``
  and the input's mask. The default passes ``mask`` through when the class sets
  ``supports_masking = True`` (layers that keep the time axis and treat steps independently:
  Dense, Dropout, Activation, TimeDistributed) and returns None otherwise, so a mask is dropped by
  layers that cannot honour it (Flatten, Reshape, ...). Layers that create a mask override it
  (``Embedding(mask_zero=True)`` returns ``x != 0``, ``Masking`` marks all-``mask_value`` steps),
  and so do layers that consume one (an RNN with ``return_sequences=False`` returns None).
- A layer *receives* its input mask by declaring a ``mask=None`` keyword in ``forward``:
  ``forward(x, training=False, mask=None)``. :class:`~cutedl.Model` calls ``compute_mask`` after
  every layer and passes the current mask to the next layer whose ``forward`` takes ``mask``
  (see :func:`forward_takes_mask`). Such a layer caches the mask it needs, so ``backward(grad)``
  keeps its signature: a masked step gets no gradient.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import re

from cutedl import backend
from cutedl._registry import Registry
from cutedl._validate import check_bool, check_shape

_name_counts: collections.Counter = collections.Counter()

_GRAD_ENABLED = True


def grad_enabled() -> bool:
    """False inside :func:`no_grad`: layers then keep no activation caches for ``backward``."""
    return _GRAD_ENABLED


@contextlib.contextmanager
def no_grad():
    """Inference without training caches (PyTorch's ``no_grad`` idea).

    ``Model.predict``, ``Session.evaluate`` and validation run inside it: a layer's ``forward``
    computes its output but stores nothing for ``backward`` (im2col columns, pooling argmaxes,
    normalised activations), so peak memory is the size of the live activations only. Calling
    ``backward`` after such a forward is a RuntimeError. Nests; restores the previous mode.
    """
    global _GRAD_ENABLED
    previous = _GRAD_ENABLED
    _GRAD_ENABLED = False
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def snake_case(name: str) -> str:
    """'BatchNormalization' -> 'batch_normalization'; a digit binds to its word: 'Conv2D' -> 'conv2d'."""
    s = re.sub(r"(?<=[a-z])([A-Z])", r"_\1", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


def unique_name(prefix: str, taken=None) -> str:
    """``prefix_N`` with the smallest N >= 1 not in ``taken`` (or a process-wide counter)."""
    if taken is not None:
        n = 1
        while f"{prefix}_{n}" in taken:
            n += 1
        return f"{prefix}_{n}"
    _name_counts[prefix] += 1
    return f"{prefix}_{_name_counts[prefix]}"


class Param:
    """A trainable array with its gradient.

    Attributes:
        name: stable readable name, ``'<layer>/<param>'`` (e.g. ``'dense_1/weight'``).
        value: the array (float32 by default).
        grad: dL/dvalue from the last ``backward`` (same shape and dtype), or None before it.
        trainable: optimizers skip params with ``trainable=False``.
        regularizer: optional regularizer adding a penalty to the loss and its gradient.
    """

    __slots__ = ("name", "value", "grad", "trainable", "regularizer")

    def __init__(self, name: str, value, trainable: bool = True, regularizer=None):
        self.name = name
        self.value = value
        self.grad = None
        self.trainable = trainable
        self.regularizer = regularizer

    @property
    def shape(self) -> tuple:
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def size(self) -> int:
        return int(self.value.size)

    def __repr__(self) -> str:
        flag = "" if self.trainable else ", trainable=False"
        return f"Param({self.name!r}, shape={self.shape}, dtype={self.dtype}{flag})"


def fmt_shape(shape) -> str:
    return "(batch, " + ", ".join("?" if d is None else str(d) for d in shape) + ")" if shape else "(batch,)"


class Layer:
    """Base class of all layers.

    Args:
        inshape: input shape without the batch axis; required on the first layer of a model.
        input_shape: Keras' name for ``inshape`` (``Dense(32, input_shape=(784,))``); give one
            of the two. The layer stores and saves it as ``inshape``.
        name: layer name (default: snake-case class name + counter, e.g. ``dense_1``).
        trainable: when False, optimizers leave this layer's params alone.
        dtype: 'float32' (default) or 'float64'.

    Subclasses implement ``build``, ``forward``, ``backward`` and, if they take extra
    arguments, ``get_config``.

    Class attribute ``supports_masking``: True when the input mask (see the module docstring)
    applies unchanged to the output, so :meth:`compute_mask` passes it on.

    Attribute ``integer_input``: None for layers that read floats; a layer that reads integer
    indices (Embedding) gives the exclusive upper bound of its indices instead. A Model whose
    first layer has one passes integer batches through uncast (else it casts every input to its
    float dtype), and ``testing.check_gradients`` draws indices in ``[0, integer_input)``.
    """

    supports_masking = False
    integer_input = None
    multi_input = False  # True for layers that take a list of inputs (merge layers: Add, Concatenate...)

    def __init__(self, inshape=None, name: str | None = None, trainable: bool = True, dtype=None,
                 input_shape=None):
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"Layer name must be a non-empty string without '/', got {name!r}.")
        if input_shape is not None:
            if inshape is not None:
                raise ValueError(f"{type(self).__name__}: give the input shape once, as inshape (cutedl) or "
                                 f"input_shape (Keras' name), got inshape={inshape!r} and "
                                 f"input_shape={input_shape!r}. Keep one of them.")
            inshape = input_shape
        self.inshape = _as_shape(inshape, type(self).__name__) if inshape is not None else None
        self.name = name
        self.trainable = check_bool(type(self).__name__, "trainable", trainable)
        self.dtype = backend.resolve_dtype(dtype)
        self.outshape = None
        self.built = False
        self.activation = None
        self._params: list[Param] = []
        # When True, backward skips dL/dx (set by Model on its first layer; see Model.backward).
        self.skip_input_grad = False
        # When True, forward returns the pre-activation output (set by Model for fused losses).
        self.output_logits = False

    # ------------------------------------------------------------------ lifecycle
    def build(self, inshape) -> None:
        """Create parameters for input shape ``inshape`` and set ``self.outshape``."""
        self.outshape = tuple(inshape)

    def _build(self, inshape) -> None:
        """Called by Model/testing: validate ``inshape``, name the layer, build it."""
        inshape = _as_shape(inshape, self.describe())
        if self.inshape is not None and not _shapes_match(self.inshape, inshape):
            raise ValueError(
                f"Layer {self.describe()} was created with inshape={self.inshape} but receives "
                f"input of shape {fmt_shape(inshape)} from the previous layer. Remove the "
                f"inshape argument or fix the previous layer."
            )
        if self.name is None:
            self.name = unique_name(snake_case(type(self).__name__))
        self._params = []
        self.inshape = inshape
        self.build(inshape)
        if self.outshape is None:
            raise RuntimeError(f"{type(self).__name__}.build did not set outshape.")
        self.outshape = tuple(self.outshape)
        self.built = True

    def add_param(self, name: str, shape, initializer="zeros", regularizer=None,
                  trainable: bool = True) -> Param:
        """Create a parameter ``<layer>/<name>`` of ``shape`` initialised by ``initializer``."""
        from cutedl import initializers, regularizers

        init = initializers.get(initializer)
        # Initializers draw on the host; the param lives on the device. C order always: some
        # initializers (Orthogonal of a wide matrix) return a transposed view, and in-place updates
        # through reshape(-1) views must reach the parameter itself.
        value = backend.xp.ascontiguousarray(backend.asarray(init(tuple(shape), dtype=self.dtype)),
                                             dtype=self.dtype)
        reg = regularizers.get(regularizer) if regularizer is not None else None
        p = Param(f"{self.name}/{name}", value, trainable=trainable and self.trainable, regularizer=reg)
        self._params.append(p)
        return p

    @property
    def params(self) -> list[Param]:
        """Parameters in creation order."""
        return list(self._params)

    def count_params(self) -> int:
        return sum(p.size for p in self._params)

    def describe(self) -> str:
        return f"'{self.name}' ({type(self).__name__})" if self.name else type(self).__name__

    # ------------------------------------------------------------------ computation
    def forward(self, x, training: bool = False):
        """Output for input ``x`` of shape ``(batch, *inshape)``."""
        raise NotImplementedError

    def backward(self, grad):
        """Given dL/doutput, assign every ``param.grad`` and return dL/dinput."""
        raise NotImplementedError

    def compute_mask(self, x, mask=None):
        """The output's mask (bool ``(batch, T)``, True = real step) or None.

        ``x`` is this layer's input and ``mask`` the input's mask. The default passes ``mask``
        through when ``supports_masking`` is True, else drops it (None).
        """
        return mask if self.supports_masking else None

    def check_input(self, x):
        """Raise a teaching error unless ``x`` is a float array of shape ``(batch, *inshape)``."""
        if not self.built:
            raise RuntimeError(
                f"Layer {self.describe()} is not built. Call model.assemble() (or layer._build(inshape)) first."
            )
        shape = getattr(x, "shape", None)
        if shape is None:
            raise TypeError(f"Layer {self.describe()} expects an array, got {type(x).__name__}.")
        if len(shape) != len(self.inshape) + 1 or not _shapes_match(self.inshape, shape[1:]):
            hint = ""
            if len(shape) > len(self.inshape) + 1 and len(self.inshape) == 1:
                hint = " Did you forget Flatten()?"
            raise ValueError(
                f"Layer {self.describe()} expected input of shape {fmt_shape(self.inshape)}, "
                f"got {tuple(shape)}.{hint}"
            )

    # Activation helpers for layers that take an ``activation`` argument.
    def _set_activation(self, activation):
        from cutedl import activations

        self.activation = activations.get(activation)

    def _activate(self, z):
        """Apply the activation (or skip it when output_logits is set); caches z and y."""
        self._z = z
        if self.output_logits or self.activation.is_linear:
            self._y = z
        else:
            self._y = self.activation.forward(z)
        return self._y

    def _activate_backward(self, grad):
        """dL/dz from dL/dy, the inverse step of :meth:`_activate`."""
        if self.output_logits or self.activation.is_linear:
            return grad
        return self.activation.backward(self._z, self._y, grad)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        """Constructor arguments as JSON-friendly values (subclasses extend it)."""
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}
        if self.inshape is not None:
            cfg["inshape"] = list(self.inshape)
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        return cls(**config)

    def __repr__(self) -> str:
        out = f", outshape={self.outshape}" if self.built else ""
        return f"{type(self).__name__}(name={self.name!r}{out})"

    # ------------------------------------------------------------------ functional models
    def __call__(self, inputs):
        """Call the layer on symbolic tensors (functional models) or on an array (eager).

        ``layer(node)`` (or ``layer([node_a, node_b])`` for a merge layer) builds the layer for the
        inputs' shapes on its first call and returns a :class:`Node`, the symbolic output used to
        describe a graph: ``Model(inputs=x, outputs=y)``. Calling the same layer again shares it:
        its params get the gradients of every call. ``layer(array)`` builds it if needed and
        returns ``forward(array)``.
        """
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        symbolic = [isinstance(i, Node) for i in items]
        if any(symbolic) and not all(symbolic):
            raise TypeError(f"Layer {self.describe()}: call it on symbolic tensors (from layers.Input or another "
                            f"layer call) or on arrays, not a mix.")
        if self.multi_input != isinstance(inputs, (list, tuple)):
            raise TypeError(f"Layer {self.describe()} takes "
                            + ("a list of inputs, e.g. layer([a, b])." if self.multi_input else
                               f"one input, got a {type(inputs).__name__} of {len(items)}."))
        if not all(symbolic):
            if not self.built:
                self._build([tuple(a.shape[1:]) for a in items] if self.multi_input else tuple(inputs.shape[1:]))
            return self.forward(inputs)
        shapes = [n.shape for n in items]
        if not self.built:
            self._build(shapes if self.multi_input else shapes[0])
        elif not self.multi_input and not _shapes_match(self.inshape, shapes[0]):
            raise ValueError(f"Layer {self.describe()} was built for input {fmt_shape(self.inshape)} and is now "
                             f"called on {fmt_shape(shapes[0])}; a shared layer takes the same shape at every call.")
        return Node(self.outshape, self, items)


@functools.lru_cache(maxsize=None)
def _takes_mask(forward_func) -> bool:
    return "mask" in inspect.signature(forward_func).parameters


def forward_takes_mask(layer) -> bool:
    """Whether ``layer.forward`` accepts a ``mask=`` keyword (how a layer asks for its input mask)."""
    return _takes_mask(type(layer).forward)


def _as_shape(shape, who) -> tuple:
    """``inshape`` (an int or a tuple of positive ints; None for a free length) as a tuple."""
    return check_shape(who, "inshape", shape, allow_none_dims=True)


def _shapes_match(expected, actual) -> bool:
    if len(expected) != len(actual):
        return False
    return all(e is None or a is None or e == a for e, a in zip(expected, actual))


class Node:
    """A symbolic tensor: the output of a layer call, or a model input (:func:`Input`).

    Attributes:
        shape: the shape without the batch axis.
        layer: the layer whose call produced it (an :class:`InputLayer` for an input).
        inputs: the nodes that call took (empty for an input).
    """

    _count = 0

    def __init__(self, shape, layer, inputs=()):
        self.shape = tuple(shape)
        self.layer = layer
        self.inputs = list(inputs)
        Node._count += 1
        self.id = Node._count

    def __repr__(self) -> str:
        return f"Node(shape={fmt_shape(self.shape)}, layer={self.layer.name!r})"


class InputLayer(Layer):
    """The layer behind :func:`Input`: holds a model input's shape; forward is the identity."""

    def __init__(self, shape=None, inshape=None, **kwargs):
        shape = shape if shape is not None else inshape
        if shape is None:
            raise ValueError("Input needs a shape without the batch axis, e.g. layers.Input((784,)).")
        super().__init__(inshape=shape, **kwargs)
        self._build(self.inshape)

    def forward(self, x, training: bool = False):
        return x

    def backward(self, grad):
        return grad


def Input(shape, name: str | None = None, dtype=None) -> Node:
    """A model input of ``shape`` (without the batch axis), for functional models.

    Example:
        >>> x = layers.Input((784,))
        >>> y = layers.Dense(10, activation='softmax')(layers.Dense(64, activation='relu')(x))
        >>> model = Model(inputs=x, outputs=y)
    """
    layer = InputLayer(shape, name=name, dtype=dtype)
    return Node(layer.outshape, layer, [])


#: Every layer class, by class name; Model.load only creates layers found here.
registry = Registry("layer", Layer)
registry.register("InputLayer")(InputLayer)


_fmt_shape = fmt_shape  # old private name, still imported by normalization.py until it moves to fmt_shape
