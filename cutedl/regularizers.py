"""Weight regularizers: ``kernel_regularizer='l2'`` on a layer adds a penalty to the loss.

A regularizer has ``loss(w) -> float`` (the penalty) and ``grad(w) -> array`` (its gradient, same
shape and dtype as ``w``); the Session adds both. Penalties are sums, not means, as in Keras:

- ``L1(l1)``:      l1 * sum(|w|),   gradient l1 * sign(w) (0 at w == 0, a subgradient);
- ``L2(l2)``:      l2 * sum(w^2),   gradient 2 * l2 * w;
- ``L1L2(l1, l2)``: the sum of both.

By name, as in Keras 3: ``'l1'`` -> ``L1(0.01)``, ``'l2'`` -> ``L2(0.01)``, and ``'l1_l2'`` (or
``'l1l2'``) -> ``L1L2(l1=0.01, l2=0.01)``, although ``L1L2()`` built directly has both factors 0.
"""
from __future__ import annotations

from cutedl import backend
from cutedl._registry import Configurable, Registry
from cutedl._validate import check_number


def _check_factor(owner: str, name: str, value) -> float:
    """A regularization factor as a finite Python float >= 0, or a teaching error."""
    try:
        return check_number(owner, name, value, minimum=0)
    except ValueError as err:
        raise ValueError(f"{err} Typical values are 1e-5 to 1e-2.") from None


class Regularizer(Configurable):
    """Base class: ``loss(w) -> float`` and ``grad(w) -> array like w``; ``reg(w)`` is ``reg.loss(w)``."""

    registry_name = "regularizer"
    # Options used when the regularizer is created from its name by :func:`get`.
    name_defaults: dict = {}

    def loss(self, w) -> float:
        raise NotImplementedError

    def grad(self, w):
        raise NotImplementedError

    def __call__(self, w) -> float:
        return self.loss(w)

    def get_config(self) -> dict:
        return {}


registry = Registry("regularizer", Regularizer)


def get(identifier):
    """A regularizer from a name ('l1', 'l2', 'l1_l2'; case-insensitive), an instance, a class or
    a config dict; None -> None.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        cls = registry.lookup(identifier)
        return cls(**cls.name_defaults)
    return registry.get(identifier)


# The penalties are logged scalars: backend.item brings each one to the host (a counted crossing).
def _l1_loss(w) -> float:
    xp = backend.xp
    return backend.item(xp.sum(xp.abs(w)))


def _l2_loss(w) -> float:
    # vdot flattens both arguments and sums the products without a temporary array.
    xp = backend.xp
    w = xp.asarray(w)
    return backend.item(xp.vdot(w, w))


@registry.register("l1")
class L1(Regularizer):
    """penalty = l1 * sum(|w|).

    Args:
        l1: factor >= 0 (default 0.01, as in Keras).
    """

    def __init__(self, l1: float = 0.01):
        self.l1 = _check_factor("L1", "l1", l1)

    def loss(self, w) -> float:
        return self.l1 * _l1_loss(w)

    def grad(self, w):
        g = backend.xp.sign(w)
        g *= self.l1
        return g

    def get_config(self) -> dict:
        return {"l1": self.l1}


@registry.register("l2")
class L2(Regularizer):
    """penalty = l2 * sum(w**2).

    Args:
        l2: factor >= 0 (default 0.01, as in Keras).
    """

    def __init__(self, l2: float = 0.01):
        self.l2 = _check_factor("L2", "l2", l2)

    def loss(self, w) -> float:
        return self.l2 * _l2_loss(w)

    def grad(self, w):
        return w * (2.0 * self.l2)

    def get_config(self) -> dict:
        return {"l2": self.l2}


@registry.register("l1_l2", "l1l2")
class L1L2(Regularizer):
    """penalty = l1 * sum(|w|) + l2 * sum(w**2).

    Args:
        l1, l2: factors >= 0 (default 0.0 each, as in Keras 3; the name ``'l1_l2'`` gives 0.01 each).
    """

    name_defaults = {"l1": 0.01, "l2": 0.01}

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _check_factor("L1L2", "l1", l1)
        self.l2 = _check_factor("L1L2", "l2", l2)

    def loss(self, w) -> float:
        total = 0.0
        if self.l1:
            total += self.l1 * _l1_loss(w)
        if self.l2:
            total += self.l2 * _l2_loss(w)
        return total

    def grad(self, w):
        g = backend.xp.sign(w)
        g *= self.l1
        g += w * (2.0 * self.l2)
        return g

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}
