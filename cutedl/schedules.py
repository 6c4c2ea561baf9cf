"""Learning-rate schedules: ``lr(step) -> float``, usable as any optimizer's ``lr``.

    >>> opt = Adam(lr=CosineDecay(1e-3, decay_steps=10_000, warmup_steps=500, warmup_target=3e-3))

The optimizer calls the schedule with its ``iterations`` (steps applied so far: 0 for the first
step), so a schedule counts optimisation steps, not epochs, and resumes exactly when the optimizer
state is restored. Every schedule is described fully by ``get_config()`` and registered by name,
so an optimizer's config (and a training checkpoint) stores it as
``{'class_name': 'cosine_decay', 'config': {...}}``.
"""
from __future__ import annotations

import math

from cutedl._registry import Configurable, Registry
from cutedl._validate import check_bool, check_int, check_number


class LearningRateSchedule(Configurable):
    """Base class: subclasses implement ``__call__(step) -> float`` and ``get_config``."""

    registry_name = "learning_rate_schedule"

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "LearningRateSchedule":
        return cls(**config)


registry = Registry("learning-rate schedule", LearningRateSchedule)


def get(identifier) -> LearningRateSchedule:
    """A schedule from an instance, a name with no arguments needed, or a config dict."""
    return registry.get(identifier)


def serialize(schedule: LearningRateSchedule) -> dict:
    """``{'class_name': name, 'config': {...}}``."""
    return registry.serialize(schedule)


def deserialize(config: dict) -> LearningRateSchedule:
    """Inverse of :func:`serialize`; only registered schedules can be created."""
    return registry.deserialize(config)


def _step(who: str, step) -> int:
    return check_int(who, "step", step, minimum=0)


@registry.register("step_decay", "step")
class StepDecay(LearningRateSchedule):
    """Multiply the lr by ``decay_rate`` every ``decay_steps`` steps (PyTorch's StepLR)::

        lr(step) = initial_lr * decay_rate ** (step // decay_steps)

    Args:
        initial_lr: lr of the first ``decay_steps`` steps (>= 0).
        decay_steps: steps between drops (>= 1).
        decay_rate: factor of each drop, in [0, 1] (default 0.5).

    Example:
        >>> StepDecay(0.1, decay_steps=1000, decay_rate=0.1)(2500)   # 0.1 * 0.1**2
        0.001...
    """

    def __init__(self, initial_lr: float, decay_steps: int, decay_rate: float = 0.5):
        who = type(self).__name__
        self.initial_lr = check_number(who, "initial_lr", initial_lr, minimum=0)
        self.decay_steps = check_int(who, "decay_steps", decay_steps, minimum=1)
        self.decay_rate = check_number(who, "decay_rate", decay_rate, minimum=0, maximum=1)

    def __call__(self, step: int) -> float:
        step = _step(type(self).__name__, step)
        return self.initial_lr * self.decay_rate ** (step // self.decay_steps)

    def get_config(self) -> dict:
        return {"initial_lr": self.initial_lr, "decay_steps": self.decay_steps, "decay_rate": self.decay_rate}


@registry.register("exponential_decay", "exponential")
class ExponentialDecay(LearningRateSchedule):
    """Keras' ExponentialDecay::

        lr(step) = initial_lr * decay_rate ** (step / decay_steps)      # staircase: step // decay_steps

    Args:
        initial_lr: lr at step 0 (>= 0).
        decay_steps: steps over which the lr is multiplied by ``decay_rate`` once (>= 1).
        decay_rate: in (0, 1] (1 keeps the lr constant). A rate above 1 is refused: the lr would
            grow without bound and overflow (2 ** 5000 at step 5000 of decay_steps=1), long
            after it had made training diverge.
        staircase: drop in steps instead of continuously (default False).
    """

    def __init__(self, initial_lr: float, decay_steps: int, decay_rate: float, staircase: bool = False):
        who = type(self).__name__
        self.initial_lr = check_number(who, "initial_lr", initial_lr, minimum=0)
        self.decay_steps = check_int(who, "decay_steps", decay_steps, minimum=1)
        try:
            self.decay_rate = check_number(who, "decay_rate", decay_rate, minimum=0, maximum=1, low_open=True)
        except ValueError as err:
            if not (decay_rate > 1 and math.isfinite(decay_rate)):
                raise
            raise ValueError(f"{err} A rate above 1 makes the lr grow exponentially until it overflows. To decay, "
                             f"use a rate below 1 (e.g. {1 / decay_rate:.3g}); for a rising lr use "
                             f"CosineDecay(warmup_steps=..., warmup_target=...).") from None
        self.staircase = check_bool(who, "staircase", staircase)

    def __call__(self, step: int) -> float:
        step = _step(type(self).__name__, step)
        p = step // self.decay_steps if self.staircase else step / self.decay_steps
        return self.initial_lr * self.decay_rate ** p

    def get_config(self) -> dict:
        return {"initial_lr": self.initial_lr, "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}


@registry.register("piecewise_constant_decay", "piecewise_constant")
class PiecewiseConstantDecay(LearningRateSchedule):
    """Constant lr between step boundaries (Keras' PiecewiseConstantDecay)::

        lr(step) = values[0]   for step <= boundaries[0]
                   values[i]   for boundaries[i-1] < step <= boundaries[i]
                   values[-1]  for step > boundaries[-1]

    Args:
        boundaries: strictly increasing step counts (integers >= 0).
        values: one more lr than boundaries (each >= 0).

    Example:
        >>> PiecewiseConstantDecay([1000, 5000], [1e-2, 1e-3, 1e-4])
    """

    def __init__(self, boundaries, values):
        who = type(self).__name__
        try:
            boundaries, values = list(boundaries), list(values)
        except TypeError:
            raise TypeError(f"{who}: boundaries and values must be lists, got {boundaries!r} and {values!r}.") from None
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"{who}: values must have one more entry than boundaries, got "
                             f"{len(boundaries)} boundaries and {len(values)} values.")
        self.boundaries = [check_int(who, "each boundary", b, minimum=0) for b in boundaries]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"{who}: boundaries must be strictly increasing, got {self.boundaries}.")
        self.values = [check_number(who, "each value", v, minimum=0) for v in values]

    def __call__(self, step: int) -> float:
        step = _step(type(self).__name__, step)
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self) -> dict:
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


@registry.register("cosine_decay", "cosine")
class CosineDecay(LearningRateSchedule):
    """Cosine decay with an optional linear warm-up (Keras 3's CosineDecay).

    Without warm-up (``warmup_steps=0``) the lr falls from ``initial_lr`` along half a cosine to
    ``alpha * initial_lr`` over ``decay_steps`` steps, then stays there::

        lr(step) = initial_lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)

    With ``warmup_steps > 0`` the lr first rises linearly from ``initial_lr`` to ``warmup_target``
    (default: ``initial_lr``) over ``warmup_steps`` steps; the cosine then starts from
    ``warmup_target`` at step ``warmup_steps``.

    Args:
        initial_lr: lr at step 0 (>= 0).
        decay_steps: length of the cosine part (>= 1).
        alpha: final lr as a fraction of the peak, in [0, 1] (default 0).
        warmup_steps: linear warm-up steps (default 0).
        warmup_target: peak lr reached after warm-up (default: ``initial_lr``).

    Example:
        >>> s = CosineDecay(0.0, decay_steps=900, warmup_steps=100, warmup_target=1e-3)
        >>> s(50), s(100), s(1000)
        (0.0005, 0.001, 0.0)
    """

    def __init__(self, initial_lr: float, decay_steps: int, alpha: float = 0.0, warmup_steps: int = 0,
                 warmup_target: float | None = None):
        who = type(self).__name__
        self.initial_lr = check_number(who, "initial_lr", initial_lr, minimum=0)
        self.decay_steps = check_int(who, "decay_steps", decay_steps, minimum=1)
        self.alpha = check_number(who, "alpha", alpha, minimum=0, maximum=1)
        self.warmup_steps = check_int(who, "warmup_steps", warmup_steps, minimum=0)
        self.warmup_target = check_number(who, "warmup_target", warmup_target, minimum=0, allow_none=True)

    def __call__(self, step: int) -> float:
        step = _step(type(self).__name__, step)
        peak = self.initial_lr if self.warmup_target is None else self.warmup_target
        if step < self.warmup_steps:
            return self.initial_lr + (peak - self.initial_lr) * step / self.warmup_steps
        t = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        return peak * ((1.0 - self.alpha) * 0.5 * (1.0 + math.cos(math.pi * t)) + self.alpha)

    def get_config(self) -> dict:
        return {"initial_lr": self.initial_lr, "decay_steps": self.decay_steps, "alpha": self.alpha,
                "warmup_steps": self.warmup_steps, "warmup_target": self.warmup_target}


__all__ = ["LearningRateSchedule", "StepDecay", "ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay",
           "registry", "get", "serialize", "deserialize"]
