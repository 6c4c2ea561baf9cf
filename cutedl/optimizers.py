"""Optimizers, by name through one registry: ``optimizers.get('adam')``.

An optimizer updates parameters in place from their gradients::

    opt = optimizers.get('adam')          # or Adam(lr=1e-3, weight_decay=0.0, clipnorm=1.0)
    model.backward(...)                   # assigns every param.grad
    opt.step(model.params)                # p.value updated in place; opt.iterations += 1

Every optimizer follows Keras 3's update formulas and default hyper-parameters; each class
docstring writes its formula out. One step does, for each param with ``trainable=True`` and a
gradient:

1. clip the gradient (``clipnorm`` / ``global_clipnorm``, then ``clipvalue``) into a buffer of
   our own, so ``p.grad`` is never modified;
2. decoupled weight decay, Keras 3 style: ``p -= lr * weight_decay * p``;
3. the optimizer's own update.

Speed matters here (the optimizer is about a third of an MLP epoch), so updates run in place with
``out=`` arguments on state and scratch buffers allocated once per parameter, in the parameter's
dtype (Python float scalars never promote float32 arrays). Optimizer state lives in
``opt.state[param_name]`` (never glued onto the params), so a checkpoint is ``get_state()``.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Iterable, Union

from cutedl import backend
from cutedl._registry import Registry
from cutedl._validate import check_bool, check_int, check_number, is_number

LearningRate = Union[float, Callable[[int], float]]


class _HyperparameterTypeError(ValueError, TypeError):
    """A hyper-parameter of the wrong type.

    It is both a ValueError (every invalid hyper-parameter raises ValueError, so one
    ``except ValueError`` catches them all) and a TypeError (the house rule for wrong types).
    """


def _sumsq(g) -> float:
    """sum(g**2) as a Python float, without a param-sized temporary in the common case."""
    xp = backend.xp
    flat = g.reshape(-1)  # a view for contiguous gradients
    s = backend.item(xp.dot(flat, flat))
    if not math.isfinite(s) and backend.item(xp.isfinite(g).all()):
        # The float32 accumulation overflowed although every entry is finite: redo it in float64
        # (rare, so the copy is acceptable).
        flat = flat.astype(xp.float64)
        s = backend.item(xp.dot(flat, flat))
    return s


# A large param is updated a block of values at a time: the dozen elementwise passes of an Adam
# update then run in the CPU cache, and param, gradient and state stream through memory once
# instead of once per pass (the MNIST CNN's 3.2M-value dense weight at 1 thread: 7.9 instead of
# 11.3 ms per update; blocks of 32K-128K values do about as well, smaller ones lose to the
# per-call overhead). The math is elementwise, so results are bit-identical.
_BLOCK_VALUES = 1 << 16


def _blocks(value, grad, state: dict, buf):
    """``(value, grad, state, buf)`` over consecutive blocks of the flattened arrays (views, so
    updates land in place), or the whole arrays once for a small or non-contiguous param."""
    size = value.size
    arrays = (value, grad, buf, *state.values())
    if size <= _BLOCK_VALUES or not all(a.flags.c_contiguous for a in arrays):
        yield value, grad, state, buf
        return
    value, grad, buf = value.reshape(-1), grad.reshape(-1), buf.reshape(-1)
    flat = {key: arr.reshape(-1) for key, arr in state.items()}
    for s in range(0, size, _BLOCK_VALUES):
        b = slice(s, s + _BLOCK_VALUES)
        n = min(_BLOCK_VALUES, size - s)
        yield value[b], grad[b], {key: arr[b] for key, arr in flat.items()}, buf[:n]


class Optimizer:
    """Base class: gradient clipping, weight decay, lazily created state, checkpoints.

    Args:
        lr: learning rate >= 0, or a callable schedule ``lr(iterations) -> float`` called with
            the number of steps applied so far (0 for the first step): a
            :mod:`cutedl.schedules` schedule (saved in ``get_config``), its serialized dict, or
            any function.
        weight_decay: decoupled weight decay >= 0 (Keras 3): ``p -= lr * weight_decay * p``
            before each update. None means 0.
        clipnorm: if set (> 0), each gradient is rescaled so that its L2 norm is at most this:
            ``g * clipnorm / max(||g||, clipnorm)``.
        clipvalue: if set (> 0), each gradient entry is clipped to ``[-clipvalue, clipvalue]``
            (after any norm clipping; Keras 3 allows only one clip option, we allow this one
            together with a norm clip).
        global_clipnorm: if set (> 0), all gradients of a step are rescaled together so that
            their global L2 norm is at most this. At most one of clipnorm / global_clipnorm.

    Attributes:
        iterations: steps applied so far.
        state: ``{param_name: {key: array}}`` created on a param's first step, same shape and
            dtype as the param (keys per optimizer: 'velocity', 'm', 'v', ...).

    Subclasses define ``_state_spec`` (state keys and their initial values), ``_n_scratch``
    (number of param-sized work buffers), ``_begin_step`` (per-step scalars) and ``_update``.
    """

    registry_name = "optimizer"
    #: Param-sized work buffers the update needs (allocated once per param).
    _n_scratch = 1

    def __init__(self, lr: LearningRate = 0.01, weight_decay: float | None = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None):
        self.lr = lr
        self.weight_decay = self._check_number("weight_decay", 0.0 if weight_decay is None else weight_decay,
                                               low=0)
        self.clipnorm = self._check_number("clipnorm", clipnorm, low=0, low_open=True, allow_none=True)
        self.clipvalue = self._check_number("clipvalue", clipvalue, low=0, low_open=True, allow_none=True)
        self.global_clipnorm = self._check_number("global_clipnorm", global_clipnorm, low=0, low_open=True,
                                                  allow_none=True)
        if self.clipnorm is not None and self.global_clipnorm is not None:
            raise ValueError(
                f"{type(self).__name__}: set at most one of clipnorm (per-parameter norm) and "
                f"global_clipnorm (norm over all parameters), got clipnorm={clipnorm!r} and "
                f"global_clipnorm={global_clipnorm!r}."
            )
        self.iterations = 0
        self.state: dict[str, dict] = {}
        # Work buffers per param name: [update buffers..., clip buffer]; never checkpointed.
        self._scratch: dict[str, list] = {}

    # ------------------------------------------------------------------ hyper-parameters
    def _default_hint(self, name: str) -> str:
        """' The default is name=value.' for a constructor argument with a non-None default."""
        default = inspect.signature(type(self).__init__).parameters.get(name)
        if default is None or default.default in (None, inspect.Parameter.empty):
            return ""
        return f" The default is {name}={default.default!r}."

    def _check_number(self, name: str, value, *, low=None, high=None, low_open=False, high_open=False,
                      allow_none=False):
        """``value`` as a float within the range (``_validate.check_number``), the error naming the
        default; a wrong type raises :class:`_HyperparameterTypeError` (a TypeError and a ValueError)."""
        who = type(self).__name__
        # every optional hyper-parameter is a positive threshold that None switches off
        what = "a finite number > 0 (or None to disable it)" if allow_none else None
        try:
            return check_number(who, name, value, minimum=low, maximum=high, low_open=low_open,
                                high_open=high_open, allow_none=allow_none, what=what)
        except TypeError as err:
            raise _HyperparameterTypeError(f"{err}{self._default_hint(name)}") from None
        except ValueError as err:
            raise ValueError(f"{err}{self._default_hint(name)}") from None

    def _check_bool(self, name: str, value) -> bool:
        try:
            return check_bool(type(self).__name__, name, value)
        except TypeError as err:
            raise _HyperparameterTypeError(str(err)) from None

    @property
    def lr(self) -> LearningRate:
        """The learning rate: a float, or a callable schedule ``lr(iterations) -> float``."""
        return self._lr

    @lr.setter
    def lr(self, value: LearningRate) -> None:
        # Setting a new float (ReduceLROnPlateau, user code) goes through the same check.
        if isinstance(value, dict):
            # A serialized schedule, as get_config() writes it.
            from cutedl import schedules

            value = schedules.deserialize(value)
        if callable(value):
            self._lr = value
            return
        if not is_number(value):
            raise _HyperparameterTypeError(
                f"{type(self).__name__}: lr must be a number >= 0 or a callable schedule "
                f"lr(iterations) -> float, got {type(value).__name__} {value!r}. Example: lr=0.001."
            )
        self._lr = self._check_number("lr", value, low=0)

    @property
    def current_lr(self) -> float:
        """The learning rate the next step uses (the schedule evaluated at ``iterations``)."""
        if not callable(self._lr):
            return self._lr
        value = self._lr(self.iterations)
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"{type(self).__name__}: the lr schedule {self._lr!r} returned {value!r} at step "
                f"{self.iterations}; it must return a number >= 0."
            ) from None
        if not (v >= 0.0 and math.isfinite(v)):
            raise ValueError(
                f"{type(self).__name__}: the lr schedule {self._lr!r} returned {v!r} at step "
                f"{self.iterations}; it must return a finite number >= 0."
            )
        return v

    # ------------------------------------------------------------------ the update
    def _state_spec(self) -> dict:
        """State key -> initial fill value, for the current configuration."""
        return {}

    def _begin_step(self, lr: float):
        """Per-step scalars handed to every ``_update`` of this step (default: the lr)."""
        return lr

    def _update(self, value, grad, state: dict, scratch: list, k) -> None:
        """Update ``value`` (and ``state``) in place from ``grad``; ``scratch`` are work buffers."""
        raise NotImplementedError

    def step(self, params: Iterable) -> None:
        """Apply one update to every trainable param that has a gradient, in place.

        Args:
            params: iterable of :class:`cutedl.layers.base.Param`. Params with
                ``trainable=False`` or ``grad=None`` are skipped. ``p.grad`` is only read.
        """
        who = type(self).__name__
        active = []
        for p in params:
            if not p.trainable or p.grad is None:
                continue
            if getattr(p.grad, "shape", None) != p.value.shape:
                raise ValueError(
                    f"{who}: param {p.name!r} has shape {p.value.shape} but its grad has shape "
                    f"{getattr(p.grad, 'shape', type(p.grad).__name__)}; a layer's backward must "
                    f"assign a gradient shaped like its param."
                )
            active.append(p)
        if len(active) > 1 and len({p.name for p in active}) != len(active):
            seen, dups = set(), set()
            for p in active:
                (dups if p.name in seen else seen).add(p.name)
            raise ValueError(
                f"{who}: several params are named {sorted(dups)}; optimizer state is kept by "
                f"param name, so names must be unique. Give the layers distinct names."
            )

        lr = self.current_lr
        scale = 1.0
        if self.global_clipnorm is not None and active:
            norm = math.sqrt(sum(_sumsq(p.grad) for p in active))
            if norm > self.global_clipnorm:
                scale = self.global_clipnorm / norm
        decay = 1.0 - lr * self.weight_decay if self.weight_decay else 1.0
        k = self._begin_step(lr)

        for p in active:
            value = p.value
            scratch = self._scratch.get(p.name)
            if scratch is None or scratch[0].shape != value.shape:
                scratch = self._prepare(p)
            grad = self._clip(p.grad, scratch, scale)
            if decay != 1.0:
                value *= decay  # p -= lr * weight_decay * p
            self._update(value, grad, self.state[p.name], scratch, k)
        self.iterations += 1

    def _clip(self, grad, scratch: list, scale: float):
        """The gradient to use: ``grad`` itself, or its clipped copy in the clip buffer."""
        xp = backend.xp
        if self.clipnorm is not None:
            norm = math.sqrt(_sumsq(grad))
            if norm > self.clipnorm:
                scale = self.clipnorm / norm
        out = grad
        if scale != 1.0:
            buf = scratch[-1]
            xp.multiply(grad, scale, out=buf)
            out = buf
        if self.clipvalue is not None:
            buf = scratch[-1]
            xp.clip(out, -self.clipvalue, self.clipvalue, out=buf)
            out = buf
        return out

    def _prepare(self, p):
        """First step of a param here: create (or check loaded) state and the work buffers."""
        xp = backend.xp
        who = type(self).__name__
        value = p.value
        if not backend.is_array(value) or value.dtype.kind != "f":
            raise TypeError(
                f"{who}: param {p.name!r} must be a float array to be updated in place, got "
                f"{type(value).__name__} of dtype {getattr(value, 'dtype', None)}."
            )
        spec = self._state_spec()
        st = self.state.get(p.name)
        if st is None:
            self.state[p.name] = {key: xp.full(value.shape, fill, dtype=value.dtype) for key, fill in spec.items()}
        else:
            # State loaded by set_state (or left by another model with the same names).
            for key, arr in st.items():
                if arr.shape != value.shape:
                    raise ValueError(
                        f"{who}: state {key!r} of param {p.name!r} has shape {arr.shape} but the "
                        f"param has shape {value.shape}. The optimizer state belongs to another "
                        f"model; create a new optimizer or load the matching checkpoint."
                    )
                if arr.dtype != value.dtype:
                    st[key] = arr.astype(value.dtype)
            missing = sorted(set(spec) - set(st))
            if missing:
                raise ValueError(
                    f"{who}: state of param {p.name!r} lacks {missing} (has {sorted(st)}); the "
                    f"optimizer's configuration changed since the state was created."
                )
        n = self._n_scratch + (1 if self._clips() else 0)
        scratch = [xp.empty(value.shape, dtype=value.dtype) for _ in range(n)]
        self._scratch[p.name] = scratch
        return scratch

    def _clips(self) -> bool:
        return self.clipnorm is not None or self.clipvalue is not None or self.global_clipnorm is not None

    # ------------------------------------------------------------------ config and checkpoints
    def get_config(self) -> dict:
        """Constructor arguments. A :mod:`cutedl.schedules` lr is serialized as
        ``{'class_name', 'config'}`` (the constructor accepts that dict back); any other callable
        lr is returned as it is (it cannot be saved as JSON)."""
        from cutedl import schedules

        lr = schedules.serialize(self._lr) if isinstance(self._lr, schedules.LearningRateSchedule) else self._lr
        return {"lr": lr, "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    def get_state(self) -> dict:
        """``{'iterations': int, 'state': {param_name: {key: array}}}``, copies, for checkpoints."""
        xp = backend.xp
        return {"iterations": int(self.iterations),
                "state": {name: {k: xp.array(a, copy=True) for k, a in st.items()} for name, st in self.state.items()}}

    def set_state(self, d: dict) -> None:
        """Restore what :meth:`get_state` returned (copies it).

        Raises:
            ValueError: when the structure, the state keys, the param names (if this optimizer
                already has state) or the shapes do not match.
        """
        who = type(self).__name__
        if not isinstance(d, dict) or set(d) != {"iterations", "state"}:
            raise ValueError(
                f"{who}.set_state expects the dict returned by get_state(), with keys "
                f"'iterations' and 'state', got {type(d).__name__}"
                f"{' with keys ' + str(sorted(d)) if isinstance(d, dict) else ''}."
            )
        it = check_int(f"{who}.set_state", "'iterations'", d["iterations"], minimum=0)
        states = d["state"]
        if not isinstance(states, dict):
            raise ValueError(f"{who}.set_state: 'state' must be a dict param name -> dict of arrays, "
                             f"got {type(states).__name__}.")
        if self.state and set(states) != set(self.state):
            missing = sorted(set(self.state) - set(states))
            extra = sorted(set(states) - set(self.state))
            raise ValueError(
                f"{who}.set_state: the checkpoint's param names do not match this optimizer's: "
                f"missing {missing}, unexpected {extra}. Load the checkpoint of the same model."
            )
        spec = set(self._state_spec())
        new = {}
        for name, st in states.items():
            if not isinstance(st, dict) or set(st) != spec:
                got = sorted(st) if isinstance(st, dict) else type(st).__name__
                raise ValueError(
                    f"{who}.set_state: state of param {name!r} must have keys {sorted(spec)} for "
                    f"{self!r}, got {got}. Was it saved by a differently configured optimizer?"
                )
            arrays = {}
            shape = None
            for key, a in st.items():
                a = backend.xp.array(a, copy=True)
                if a.dtype.kind != "f":
                    raise ValueError(f"{who}.set_state: state {key!r} of param {name!r} must be a float "
                                     f"array, got dtype {a.dtype}.")
                if shape is not None and a.shape != shape:
                    raise ValueError(f"{who}.set_state: the state arrays of param {name!r} have "
                                     f"different shapes {shape} and {a.shape}.")
                shape = a.shape
                if name in self.state and key in self.state[name] and self.state[name][key].shape != a.shape:
                    raise ValueError(
                        f"{who}.set_state: state {key!r} of param {name!r} has shape {a.shape}, "
                        f"expected {self.state[name][key].shape}. Load the checkpoint of the same model."
                    )
                arrays[key] = a
            new[name] = arrays
        self.state = new
        self._scratch = {}  # shapes and dtypes are checked again on each param's next step
        self.iterations = it

    def __repr__(self) -> str:
        cfg = {**self.get_config(), "lr": self._lr}
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if v is not None)
        return f"{type(self).__name__}({args})"


registry = Registry("optimizer", Optimizer)


def get(identifier, **kwargs) -> Optimizer:
    """An optimizer from a name (case-insensitive, e.g. 'adam', 'Fixed'), an instance, a class
    or a config dict; ``kwargs`` go to the constructor with a name or a class."""
    if identifier is None:
        raise TypeError(
            f"optimizers.get: None is not an optimizer; pass a name ({', '.join(registry.names())}) "
            f"or an instance such as Adam(lr=1e-3)."
        )
    return registry.get(identifier, **kwargs)


def serialize(opt: Optimizer) -> dict:
    """``{'class_name': name, 'config': {...}}``."""
    return registry.serialize(opt)


# ---------------------------------------------------------------------- the optimizers
@registry.register("sgd", "fixed")
class SGD(Optimizer):
    """Gradient descent, optionally with (Nesterov) momentum (Keras 3 formulas).

    ``momentum == 0``::

        p = p - lr * g

    ``momentum > 0`` (state ``'velocity'``, initially 0)::

        velocity = momentum * velocity - lr * g
        p = p + velocity                                  # nesterov=False
        p = p + momentum * velocity - lr * g              # nesterov=True (the new velocity)

    Args:
        lr: learning rate (default 0.01) or schedule.
        momentum: in [0, 1] (default 0.0).
        nesterov: Nesterov momentum (default False; no effect with momentum 0).
        weight_decay, clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.

    Example:
        >>> opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    """

    def __init__(self, lr: LearningRate = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float | None = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None):
        super().__init__(lr=lr, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.momentum = self._check_number("momentum", momentum, low=0, high=1)
        self.nesterov = self._check_bool("nesterov", nesterov)

    def _state_spec(self) -> dict:
        return {"velocity": 0.0} if self.momentum > 0 else {}

    def _begin_step(self, lr):
        return lr, self.momentum, self.nesterov

    def _update(self, value, grad, state, scratch, k):
        xp = backend.xp
        lr, momentum, nesterov = k
        buf = scratch[0]
        xp.multiply(grad, lr, out=buf)  # lr * g
        if momentum <= 0:
            value -= buf
            return
        vel = state["velocity"]
        vel *= momentum
        vel -= buf  # velocity = momentum * velocity - lr * g
        if nesterov:
            value -= buf
            xp.multiply(vel, momentum, out=buf)
            value += buf  # p += momentum * velocity - lr * g
        else:
            value += vel

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


#: cute-dl's name for plain gradient descent.
Fixed = SGD


@registry.register("momentum")
class Momentum(SGD):
    """SGD with momentum 0.9 by default: the same update as :class:`SGD`.

    Args:
        lr: learning rate (default 0.01) or schedule.
        momentum: in [0, 1] (default 0.9).
        nesterov: Nesterov momentum (default False).
        weight_decay, clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.
    """

    def __init__(self, lr: LearningRate = 0.01, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float | None = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None):
        super().__init__(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm)


@registry.register("adagrad")
class Adagrad(Optimizer):
    """Adagrad (Keras 3 formulas); state ``'accumulator'`` starts at ``initial_accumulator_value``::

        accumulator = accumulator + g**2
        p = p - lr * g / sqrt(accumulator + epsilon)

    Args:
        lr: learning rate (default 0.001) or schedule.
        initial_accumulator_value: >= 0 (default 0.1).
        epsilon: > 0 (default 1e-7).
        weight_decay, clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.
    """

    def __init__(self, lr: LearningRate = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, weight_decay: float | None = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None):
        super().__init__(lr=lr, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.initial_accumulator_value = self._check_number("initial_accumulator_value",
                                                            initial_accumulator_value, low=0)
        self.epsilon = self._check_number("epsilon", epsilon, low=0, low_open=True)

    def _state_spec(self) -> dict:
        return {"accumulator": self.initial_accumulator_value}

    def _begin_step(self, lr):
        return lr, self.epsilon

    def _update(self, value, grad, state, scratch, k):
        xp = backend.xp
        lr, eps = k
        acc, buf = state["accumulator"], scratch[0]
        xp.multiply(grad, grad, out=buf)
        acc += buf
        xp.add(acc, eps, out=buf)
        xp.sqrt(buf, out=buf)
        xp.divide(grad, buf, out=buf)
        buf *= lr
        value -= buf

    def get_config(self) -> dict:
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


@registry.register("rmsprop")
class RMSProp(Optimizer):
    """RMSProp (Keras 3 formulas); state ``'velocity'`` (mean square), plus ``'momentum'`` when
    momentum > 0 and ``'average_gradient'`` when centered, all starting at 0::

        velocity = rho * velocity + (1 - rho) * g**2
        denominator = velocity + epsilon                                # centered=False
        average_gradient = rho * average_gradient + (1 - rho) * g       # centered=True
        denominator = max(velocity - average_gradient**2, 0) + epsilon  # centered=True
        increment = lr * g / sqrt(denominator)
        momentum_buf = momentum * momentum_buf + increment; p = p - momentum_buf   # momentum > 0
        p = p - increment                                                           # momentum == 0

    The ``max(., 0)`` is ours: ``velocity - average_gradient**2`` is >= 0 in exact arithmetic but
    rounding can make it slightly negative with a steady gradient, and Keras then takes the
    square root of a negative number.

    Args:
        lr: learning rate (default 0.001) or schedule.
        rho: decay of the averages, in [0, 1) (default 0.9).
        momentum: in [0, 1] (default 0.0).
        epsilon: > 0 (default 1e-7).
        centered: divide by the estimated variance instead of the mean square (default False).
        weight_decay, clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.
    """

    def __init__(self, lr: LearningRate = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, weight_decay: float | None = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None):
        super().__init__(lr=lr, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.rho = self._check_number("rho", rho, low=0, high=1, high_open=True)
        self.momentum = self._check_number("momentum", momentum, low=0, high=1)
        self.epsilon = self._check_number("epsilon", epsilon, low=0, low_open=True)
        self.centered = self._check_bool("centered", centered)

    def _state_spec(self) -> dict:
        spec = {"velocity": 0.0}
        if self.momentum > 0:
            spec["momentum"] = 0.0
        if self.centered:
            spec["average_gradient"] = 0.0
        return spec

    def _begin_step(self, lr):
        return lr, self.rho, self.momentum, self.epsilon, self.centered

    def _update(self, value, grad, state, scratch, k):
        xp = backend.xp
        lr, rho, momentum, eps, centered = k
        vel, buf = state["velocity"], scratch[0]
        xp.multiply(grad, grad, out=buf)
        buf *= 1.0 - rho
        vel *= rho
        vel += buf  # velocity = rho * velocity + (1 - rho) * g**2
        if centered:
            avg = state["average_gradient"]
            xp.multiply(grad, 1.0 - rho, out=buf)
            avg *= rho
            avg += buf  # average_gradient = rho * average_gradient + (1 - rho) * g
            xp.multiply(avg, avg, out=buf)
            xp.subtract(vel, buf, out=buf)
            xp.maximum(buf, 0.0, out=buf)
            buf += eps
        else:
            xp.add(vel, eps, out=buf)
        xp.sqrt(buf, out=buf)
        xp.divide(grad, buf, out=buf)
        buf *= lr  # increment
        if momentum > 0:
            mom = state["momentum"]
            mom *= momentum
            mom += buf
            value -= mom
        else:
            value -= buf

    def get_config(self) -> dict:
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


@registry.register("adadelta")
class Adadelta(Optimizer):
    """Adadelta (Keras 3 formulas, with its lr); state ``'accumulated_grad'`` and
    ``'accumulated_delta_var'``, both starting at 0::

        accumulated_grad = rho * accumulated_grad + (1 - rho) * g**2
        delta = -sqrt(accumulated_delta_var + epsilon) / sqrt(accumulated_grad + epsilon) * g
        accumulated_delta_var = rho * accumulated_delta_var + (1 - rho) * delta**2
        p = p + lr * delta

    Keras' default lr=0.001 makes Adadelta slow; the original paper corresponds to lr=1.0.

    Args:
        lr: learning rate (default 0.001) or schedule.
        rho: decay rate in [0, 1) (default 0.95).
        epsilon: > 0 (default 1e-7).
        weight_decay, clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.
    """

    _n_scratch = 2

    def __init__(self, lr: LearningRate = 0.001, rho: float = 0.95, epsilon: float = 1e-7,
                 weight_decay: float | None = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None):
        super().__init__(lr=lr, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.rho = self._check_number("rho", rho, low=0, high=1, high_open=True)
        self.epsilon = self._check_number("epsilon", epsilon, low=0, low_open=True)

    def _state_spec(self) -> dict:
        return {"accumulated_grad": 0.0, "accumulated_delta_var": 0.0}

    def _begin_step(self, lr):
        return lr, self.rho, self.epsilon

    def _update(self, value, grad, state, scratch, k):
        xp = backend.xp
        lr, rho, eps = k
        acc_g, acc_d = state["accumulated_grad"], state["accumulated_delta_var"]
        buf, buf2 = scratch[0], scratch[1]
        xp.multiply(grad, grad, out=buf)
        buf *= 1.0 - rho
        acc_g *= rho
        acc_g += buf
        # buf = -delta = sqrt(acc_d + eps) * g / sqrt(acc_g + eps)
        xp.add(acc_d, eps, out=buf)
        xp.sqrt(buf, out=buf)
        buf *= grad
        xp.add(acc_g, eps, out=buf2)
        xp.sqrt(buf2, out=buf2)
        buf /= buf2
        xp.multiply(buf, buf, out=buf2)
        buf2 *= 1.0 - rho
        acc_d *= rho
        acc_d += buf2
        buf *= lr
        value -= buf  # p += lr * delta

    def get_config(self) -> dict:
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


@registry.register("adam")
class Adam(Optimizer):
    """Adam (Keras 3 formulas); state ``'m'``, ``'v'`` (and ``'v_hat'`` with amsgrad), all
    starting at 0. With ``t = iterations + 1``::

        m = m + (g - m) * (1 - beta_1)
        v = v + (g**2 - v) * (1 - beta_2)
        v_hat = max(v_hat, v); v = v_hat                        # amsgrad only
        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)      # bias correction, one scalar
        p = p - alpha * m / (sqrt(v) + epsilon)

    Args:
        lr: learning rate (default 0.001) or schedule.
        beta_1: decay of the first moment, in [0, 1) (default 0.9).
        beta_2: decay of the second moment, in [0, 1) (default 0.999).
        epsilon: > 0 (default 1e-7).
        amsgrad: use the running maximum of v (default False).
        weight_decay, clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.

    Example:
        >>> opt = Adam(lr=1e-3, clipnorm=1.0)
    """

    def __init__(self, lr: LearningRate = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, weight_decay: float | None = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None):
        super().__init__(lr=lr, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.beta_1 = self._check_number("beta_1", beta_1, low=0, high=1, high_open=True)
        self.beta_2 = self._check_number("beta_2", beta_2, low=0, high=1, high_open=True)
        self.epsilon = self._check_number("epsilon", epsilon, low=0, low_open=True)
        self.amsgrad = self._check_bool("amsgrad", amsgrad)

    def _state_spec(self) -> dict:
        spec = {"m": 0.0, "v": 0.0}
        if self.amsgrad:
            spec["v_hat"] = 0.0
        return spec

    def _begin_step(self, lr):
        t = self.iterations + 1
        b1, b2 = self.beta_1, self.beta_2
        alpha = lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        return alpha, 1.0 - b1, 1.0 - b2, self.epsilon, self.amsgrad

    def _update(self, value, grad, state, scratch, k):
        for block in _blocks(value, grad, state, scratch[0]):
            self._update_block(*block, k)

    def _update_block(self, value, grad, state, buf, k):
        xp = backend.xp
        alpha, one_minus_b1, one_minus_b2, eps, amsgrad = k
        m, v = state["m"], state["v"]
        xp.subtract(grad, m, out=buf)
        buf *= one_minus_b1
        m += buf
        xp.multiply(grad, grad, out=buf)
        buf -= v
        buf *= one_minus_b2
        v += buf
        if amsgrad:
            v_hat = state["v_hat"]
            xp.maximum(v_hat, v, out=v_hat)
            v = v_hat
        xp.sqrt(v, out=buf)
        buf += eps
        xp.divide(m, buf, out=buf)
        buf *= alpha
        value -= buf

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


@registry.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay 0.004 by default (Keras 3's AdamW)::

        p = p - lr * weight_decay * p
        (then the Adam update of :class:`Adam`)

    Args:
        lr: learning rate (default 0.001) or schedule.
        weight_decay: >= 0 (default 0.004).
        beta_1, beta_2, epsilon, amsgrad: as :class:`Adam`.
        clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.
    """

    def __init__(self, lr: LearningRate = 0.001, weight_decay: float | None = 0.004, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None):
        super().__init__(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)


@registry.register("radam")
class RAdam(Optimizer):
    """Rectified Adam (Liu et al. 2019), PyTorch's ``torch.optim.RAdam`` with
    ``decoupled_weight_decay=True`` (Keras 3 has no RAdam); state ``'m'``, ``'v'``, both starting at
    0. With ``t = iterations + 1``::

        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g**2
        rho_inf = 2 / (1 - beta_2) - 1
        rho_t = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
        if rho_t > 5:    # the variance of the adaptive lr is tractable: rectify it
            r = sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p = p - lr * r * m / (1 - beta_1**t) * sqrt(1 - beta_2**t) / (sqrt(v) + epsilon)
        else:            # the first few steps: SGD with (bias-corrected) momentum
            p = p - lr * m / (1 - beta_1**t)

    The defaults are PyTorch's (epsilon 1e-8, not Keras' usual 1e-7). Weight decay is decoupled
    (``p -= lr * weight_decay * p`` first), as PyTorch's ``decoupled_weight_decay=True``.

    Args:
        lr: learning rate (default 0.001) or schedule.
        beta_1: decay of the first moment, in [0, 1) (default 0.9).
        beta_2: decay of the second moment, in [0, 1) (default 0.999).
        epsilon: > 0 (default 1e-8).
        weight_decay, clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.

    Example:
        >>> opt = RAdam(lr=1e-3, weight_decay=1e-2)
    """

    def __init__(self, lr: LearningRate = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, weight_decay: float | None = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None):
        super().__init__(lr=lr, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.beta_1 = self._check_number("beta_1", beta_1, low=0, high=1, high_open=True)
        self.beta_2 = self._check_number("beta_2", beta_2, low=0, high=1, high_open=True)
        self.epsilon = self._check_number("epsilon", epsilon, low=0, low_open=True)

    def _state_spec(self) -> dict:
        return {"m": 0.0, "v": 0.0}

    def _begin_step(self, lr):
        t = self.iterations + 1
        b1, b2 = self.beta_1, self.beta_2
        bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2 ** t / bc2
        if rho_t > 5.0:  # rho_t <= rho_inf, so rho_inf > 5 here and no denominator below is 0
            r = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            return lr * r * math.sqrt(bc2) / bc1, 1.0 - b1, 1.0 - b2, self.epsilon, True
        return lr / bc1, 1.0 - b1, 1.0 - b2, self.epsilon, False

    def _update(self, value, grad, state, scratch, k):
        xp = backend.xp
        alpha, one_minus_b1, one_minus_b2, eps, rectified = k
        m, v, buf = state["m"], state["v"], scratch[0]
        xp.subtract(grad, m, out=buf)
        buf *= one_minus_b1
        m += buf
        xp.multiply(grad, grad, out=buf)
        buf -= v
        buf *= one_minus_b2
        v += buf  # v is updated on every step, used only once rectified
        if rectified:
            xp.sqrt(v, out=buf)
            buf += eps
            xp.divide(m, buf, out=buf)
            buf *= alpha
        else:
            xp.multiply(m, alpha, out=buf)
        value -= buf

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


@registry.register("nadam")
class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat 2016), Keras 3's Nadam, which is also PyTorch's
    ``torch.optim.NAdam`` (with ``decoupled_weight_decay=True``); state ``'m'``, ``'v'``, both
    starting at 0. With ``t = iterations + 1``::

        mu_t = beta_1 * (1 - 0.5 * 0.96**(t * momentum_decay))       # momentum schedule
        mu_prod_t = mu_1 * mu_2 * ... * mu_t
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g**2
        denom = sqrt(v / (1 - beta_2**t)) + epsilon
        p = p - lr * (1 - mu_t) / (1 - mu_prod_t) * g / denom
              - lr * mu_{t+1} / (1 - mu_prod_t * mu_{t+1}) * m / denom

    ``mu_prod_t`` depends only on t, so it is recomputed from ``iterations`` (one product per
    step, a loop after :meth:`set_state`) rather than checkpointed. Defaults are Keras'
    (PyTorch's are lr=0.002, epsilon=1e-8).

    Args:
        lr: learning rate (default 0.001) or schedule.
        beta_1: in [0, 1) (default 0.9).
        beta_2: in [0, 1) (default 0.999).
        epsilon: > 0 (default 1e-7).
        momentum_decay: >= 0, the speed of the momentum schedule (default 0.004, fixed in Keras).
        weight_decay, clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.
    """

    _n_scratch = 2

    def __init__(self, lr: LearningRate = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, momentum_decay: float = 0.004, weight_decay: float | None = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None):
        super().__init__(lr=lr, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.beta_1 = self._check_number("beta_1", beta_1, low=0, high=1, high_open=True)
        self.beta_2 = self._check_number("beta_2", beta_2, low=0, high=1, high_open=True)
        self.epsilon = self._check_number("epsilon", epsilon, low=0, low_open=True)
        self.momentum_decay = self._check_number("momentum_decay", momentum_decay, low=0)
        self._mu_product = (0, 1.0)  # (t, mu_1 * ... * mu_t)

    def _mu(self, t: int) -> float:
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def _begin_step(self, lr):
        t = self.iterations + 1
        done, prod = self._mu_product
        if done != t - 1:  # restored or rewound: multiply up from the start, in the same order
            done, prod = 0, 1.0
        for i in range(done + 1, t + 1):
            prod *= self._mu(i)
        self._mu_product = (t, prod)
        mu, mu_next = self._mu(t), self._mu(t + 1)
        c_grad = lr * (1.0 - mu) / (1.0 - prod)
        c_m = lr * mu_next / (1.0 - prod * mu_next)
        return c_grad, c_m, 1.0 - self.beta_1, 1.0 - self.beta_2, 1.0 - self.beta_2 ** t, self.epsilon

    def _state_spec(self) -> dict:
        return {"m": 0.0, "v": 0.0}

    def _update(self, value, grad, state, scratch, k):
        xp = backend.xp
        c_grad, c_m, one_minus_b1, one_minus_b2, bc2, eps = k
        m, v = state["m"], state["v"]
        denom, buf = scratch[0], scratch[1]
        xp.subtract(grad, m, out=buf)
        buf *= one_minus_b1
        m += buf
        xp.multiply(grad, grad, out=buf)
        buf -= v
        buf *= one_minus_b2
        v += buf
        xp.divide(v, bc2, out=denom)
        xp.sqrt(denom, out=denom)
        denom += eps
        xp.divide(grad, denom, out=buf)
        buf *= c_grad
        value -= buf
        xp.divide(m, denom, out=buf)
        buf *= c_m
        value -= buf

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "momentum_decay": self.momentum_decay}


@registry.register("lion")
class Lion(Optimizer):
    """Lion, EvoLved Sign Momentum (Chen et al. 2023), as in the paper, ``lion-pytorch`` and Keras 3;
    state ``'m'``, starting at 0::

        p = p - lr * sign(beta_1 * m + (1 - beta_1) * g)
        m = beta_2 * m + (1 - beta_2) * g

    Every entry moves by exactly ``lr`` per step, so Lion wants an lr 3-10x smaller than Adam's
    and a weight decay 3-10x larger (decoupled: ``p -= lr * weight_decay * p`` first).

    Args:
        lr: learning rate (default 0.001, Keras'; lion-pytorch's is 1e-4) or schedule.
        beta_1: interpolation of the update direction, in [0, 1] (default 0.9).
        beta_2: decay of the momentum, in [0, 1] (default 0.99).
        weight_decay, clipnorm, clipvalue, global_clipnorm: see :class:`Optimizer`.

    Example:
        >>> opt = Lion(lr=1e-4, weight_decay=0.1)
    """

    def __init__(self, lr: LearningRate = 0.001, beta_1: float = 0.9, beta_2: float = 0.99,
                 weight_decay: float | None = 0.0, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None):
        super().__init__(lr=lr, weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                         global_clipnorm=global_clipnorm)
        self.beta_1 = self._check_number("beta_1", beta_1, low=0, high=1)
        self.beta_2 = self._check_number("beta_2", beta_2, low=0, high=1)

    def _state_spec(self) -> dict:
        return {"m": 0.0}

    def _begin_step(self, lr):
        return lr, self.beta_1, 1.0 - self.beta_2

    def _update(self, value, grad, state, scratch, k):
        xp = backend.xp
        lr, beta_1, one_minus_b2 = k
        m, buf = state["m"], scratch[0]
        xp.subtract(m, grad, out=buf)
        buf *= beta_1
        buf += grad  # beta_1 * m + (1 - beta_1) * g
        xp.sign(buf, out=buf)
        buf *= lr
        value -= buf
        xp.subtract(grad, m, out=buf)
        buf *= one_minus_b2
        m += buf  # m = beta_2 * m + (1 - beta_2) * g

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


__all__ = ["Optimizer", "SGD", "Fixed", "Momentum", "Adagrad", "RMSProp", "Adadelta", "Adam", "AdamW", "RAdam",
           "Nadam", "Lion", "registry", "get", "serialize"]
