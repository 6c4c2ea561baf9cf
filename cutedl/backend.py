"""The array backend: the one module that names the array library.

Layers, losses and optimizers write ``from cutedl.backend import xp`` and do their math with
``xp.matmul``, ``xp.exp``... ``xp`` is NumPy today; a CuPy backend can replace it later without
touching the layers. Deliberately thin: no wrapper classes around arrays.
"""
from __future__ import annotations

import numpy as np

xp = np

_FLOATX = np.dtype("float32")


def floatx() -> np.dtype:
    """The default float dtype for parameters and activations (float32 unless changed)."""
    return _FLOATX


def set_floatx(dtype) -> None:
    """Set the default float dtype: 'float32' (default) or 'float64' (for gradient checks)."""
    global _FLOATX
    dt = np.dtype(dtype)
    if dt not in (np.dtype("float32"), np.dtype("float64")):
        raise ValueError(f"set_floatx: dtype must be 'float32' or 'float64', got {dtype!r}.")
    _FLOATX = dt


def resolve_dtype(dtype=None) -> np.dtype:
    """``dtype`` as a NumPy float dtype, or the default when None."""
    if dtype is None:
        return _FLOATX
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}.") from err
    if dt not in (np.dtype("float32"), np.dtype("float64")):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    return dt


def to_numpy(x) -> np.ndarray:
    """Bring an array back to host memory as a NumPy array (identity for NumPy)."""
    return np.asarray(x)


def as_array(a, who: str, what: str):
    """``a`` as an array; a ragged nested list raises a ValueError naming ``who`` and ``what``."""
    if isinstance(a, xp.ndarray):
        return a
    try:
        return xp.asarray(a)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{who}: {what} cannot be turned into an array ({err}). Are all samples the same "
                         f"shape? Pad or trim them first.") from None
