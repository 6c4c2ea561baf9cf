"""Arguments shared by layers that own weights: sizes, rates, initializers and regularizers.

Dense, Conv*, the recurrent layers, Embedding and the normalization layers all take
``<name>_initializer`` / ``<name>_regularizer`` pairs and write them back into their config.
This module holds that boilerplate once:

    >>> self.units = check_units("Dense", "units", units)
    >>> set_weight_args(self, kernel=(kernel_initializer, kernel_regularizer),
    ...                 bias=(bias_initializer, bias_regularizer))
    >>> cfg.update(weight_args_config(self, "kernel", "bias"))
"""
from __future__ import annotations

from cutedl import initializers, regularizers
from cutedl._validate import check_int, check_number

__all__ = ["check_units", "check_rate", "set_weight_args", "weight_args_config", "serialize_regularizer"]


def check_units(who: str, arg: str, value) -> int:
    """A positive layer size (units, filters, input_dim...) as an int, or a teaching error."""
    return check_int(who, arg, value, minimum=1, what="a positive integer")


def check_rate(who: str, arg: str, value) -> float:
    """A dropout fraction in [0, 1) as a float, or a teaching error."""
    return check_number(who, arg, value, minimum=0.0, maximum=1.0, high_open=True,
                        what="a number in [0, 1) (the fraction dropped)")


def serialize_regularizer(reg):
    """A regularizer's config entry (None stays None)."""
    return None if reg is None else regularizers.registry.serialize(reg)


def set_weight_args(layer, **pairs) -> None:
    """For each ``name=(initializer, regularizer)`` set ``layer.<name>_initializer`` / ``_regularizer``.

    Each is resolved through its registry (a name, an alias, an instance or a config dict), so
    a bad name fails at construction with the list of valid ones.
    """
    for name, (init, reg) in pairs.items():
        setattr(layer, f"{name}_initializer", initializers.get(init))
        setattr(layer, f"{name}_regularizer", regularizers.get(reg))


def weight_args_config(layer, *names, regularizers_too: bool = True) -> dict:
    """``{<name>_initializer: ..., <name>_regularizer: ...}`` of ``layer`` for its ``get_config``."""
    cfg = {}
    for name in names:
        cfg[f"{name}_initializer"] = initializers.registry.serialize(getattr(layer, f"{name}_initializer"))
        if regularizers_too:
            cfg[f"{name}_regularizer"] = serialize_regularizer(getattr(layer, f"{name}_regularizer"))
    return cfg
