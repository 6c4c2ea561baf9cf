"""Argument checks with one error style: ``<who>: <name> must be <what>, got <value>.``

Every public entry point validates its arguments here instead of writing its own
``isinstance(value, bool) or not isinstance(value, int) ...`` idiom. A check returns the value
converted to a plain Python type (``int``, ``float``, ``bool``, ``tuple``), so callers store
what it returns. Booleans are never accepted as numbers (``True`` is not a batch size).

Errors: TypeError when the value is of the wrong kind (a string for a number), ValueError
when it is of the right kind but out of range; the message names the caller (``who``), the
argument, what was expected and what was given.

    >>> check_int("Dataset", "batch_size", 0, minimum=1)
    ValueError: Dataset: batch_size must be an integer >= 1, got 0.
"""
from __future__ import annotations

import math
import numbers

__all__ = ["is_int", "is_number", "check_int", "check_number", "check_bool", "check_choice", "check_shape"]


def _is_bool(value) -> bool:
    """True for Python bools and NumPy bools (``numpy.bool_``, named ``numpy.bool`` in NumPy 2)."""
    t = type(value)
    return isinstance(value, bool) or (t.__module__ == "numpy" and t.__name__ in ("bool", "bool_"))


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def is_number(value) -> bool:
    """True for real numbers (ints and floats, NumPy's included), False for bools."""
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _range_text(minimum, maximum, low_open=False, high_open=False) -> str:
    if minimum is not None and maximum is not None:
        return f" in {'(' if low_open else '['}{minimum}, {maximum}{')' if high_open else ']'}"
    if minimum is not None:
        return f" {'>' if low_open else '>='} {minimum}"
    if maximum is not None:
        return f" {'<' if high_open else '<='} {maximum}"
    return ""


def check_int(who: str, name: str, value, minimum: int | None = None, maximum: int | None = None,
              allow_none: bool = False, what: str | None = None):
    """``value`` as an int within ``[minimum, maximum]`` (either bound optional); None if allowed.

    ``what`` replaces the default description ('an integer >= 1') in the message, e.g.
    'a positive integer'.
    """
    if value is None and allow_none:
        return None
    desc = what or ("an integer" + _range_text(minimum, maximum)) + (" or None" if allow_none and not what else "")
    if not is_int(value):
        if is_number(value) or value is None:
            raise ValueError(f"{who}: {name} must be {desc}, got {value!r}.")
        raise TypeError(f"{who}: {name} must be {desc}, got {type(value).__name__} {value!r}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{who}: {name} must be {desc}, got {value!r}.")
    return int(value)


def check_number(who: str, name: str, value, minimum: float | None = None, maximum: float | None = None,
                 low_open: bool = False, high_open: bool = False, finite: bool = True, allow_none: bool = False,
                 what: str | None = None):
    """``value`` as a float within the bounds (open or closed); finite unless ``finite=False``."""
    if value is None and allow_none:
        return None
    desc = what or (("a finite number" if finite else "a number")
                    + _range_text(minimum, maximum, low_open, high_open))
    if not is_number(value):
        raise TypeError(f"{who}: {name} must be {desc}, got {type(value).__name__} {value!r}.")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise ValueError(f"{who}: {name} must be {desc}, got {value!r}.")
    if minimum is not None and (v <= minimum if low_open else v < minimum):
        raise ValueError(f"{who}: {name} must be {desc}, got {value!r}.")
    if maximum is not None and (v >= maximum if high_open else v > maximum):
        raise ValueError(f"{who}: {name} must be {desc}, got {value!r}.")
    return v


def check_bool(who: str, name: str, value) -> bool:
    """``value`` as a bool: True/False (NumPy bools included) only."""
    if _is_bool(value):
        return bool(value)
    raise TypeError(f"{who}: {name} must be True or False, got {type(value).__name__} {value!r}.")


def check_choice(who: str, name: str, value, choices):
    """``value`` if it is one of ``choices`` (compared with ==), else a ValueError listing them."""
    for c in choices:
        if type(value) is type(c) and value == c:
            return value
    listed = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{who}: {name} must be one of {listed}, got {value!r}.")


def check_shape(who: str, name: str, value, allow_none_dims: bool = False) -> tuple:
    """``value`` (an int or a sequence of ints >= 1) as a tuple; ``None`` dims if allowed."""
    dims = (value,) if is_int(value) else value
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"{who}: {name} must be an int or a tuple of ints, got {type(value).__name__} "
                        f"{value!r}.") from None
    out = []
    for d in dims:
        if d is None and allow_none_dims:
            out.append(None)
        elif is_int(d) and d >= 1:
            out.append(int(d))
        else:
            raise ValueError(f"{who}: {name} must hold positive integers"
                             f"{' (or None)' if allow_none_dims else ''}, got {value!r}.")
    return tuple(out)
