"""Preparing loaded arrays for training: ``normalize`` pixels, ``one_hot`` labels."""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from cutedl.backend import resolve_dtype


def normalize(x, scale: float = 255.0, *, mean=None, std=None, dtype=None) -> np.ndarray:
    """Scale an array to floats: ``x / scale``, then optionally ``(. - mean) / std``.

    With the defaults, uint8 pixels 0..255 become floats in [0, 1].

    Args:
        x: array-like of numbers, any shape (e.g. uint8 ``(n, 28, 28)`` or ``(n, 784)``).
        scale: positive divisor applied first (255 for 8-bit pixels; 1 to skip scaling).
        mean: subtracted after scaling, so in scaled units (e.g. 0.1307 for MNIST); a number or
            an array broadcastable to ``x`` (per-feature statistics). Default 0.
        std: positive divisor applied after ``mean`` (e.g. 0.3081 for MNIST). Default 1.
        dtype: 'float32' or 'float64'; default float64 for float64 ``x``, else
            ``backend.floatx()`` (float32).
    Returns:
        A new array of ``x``'s shape and ``dtype``; ``x`` is not modified.
    Example:
        >>> normalize(np.array([0, 51, 255], dtype=np.uint8))
        array([0. , 0.2, 1. ], dtype=float32)
    """
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"normalize: x must be an array of real numbers, got dtype {arr.dtype}.")
    # float64 in, float64 out (the library-wide rule); anything else becomes floatx().
    dt = np.dtype(np.float64) if dtype is None and arr.dtype == np.float64 else resolve_dtype(dtype)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"normalize: scale must be a positive finite number, got {scale!r}.")
    # astype(copy=True) then in-place ops: one full-size allocation, and x itself is never touched.
    out = arr.astype(dt, copy=True)
    out /= dt.type(scale)
    if mean is not None:
        out -= _stat(mean, "mean", dt, positive=False)
    if std is not None:
        out /= _stat(std, "std", dt, positive=True)
    return out


def one_hot(labels, num_classes: Optional[int] = None, dtype=None) -> np.ndarray:
    """One-hot encode integer class labels (Keras' ``to_categorical``).

    Args:
        labels: class indices, any shape ``S``; integers, or floats with integral values.
        num_classes: length of the encoding; default ``max(labels) + 1``.
        dtype: 'float32' or 'float64'; default ``backend.floatx()`` (float32).
    Returns:
        Shape ``S + (num_classes,)``, 1 at each label's index and 0 elsewhere.
    Raises:
        ValueError: a label is negative, not an integer, or ``>= num_classes`` (the message names it).
        TypeError: labels are not numbers.
    Example:
        >>> one_hot([2, 0], 3)
        array([[0., 0., 1.],
               [1., 0., 0.]], dtype=float32)
    """
    dt = resolve_dtype(dtype)
    arr = np.asarray(labels)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"one_hot: labels must be integer class indices, got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.floor(np.where(np.isfinite(arr), arr, 0)))
        if bad.any():
            value, where = _first(arr, bad)
            raise ValueError(f"one_hot: labels must be integers, got {value!r} at index {where}. "
                             f"Round or cast the labels first.")
    if arr.size and arr.min() < 0:
        value, where = _first(arr, arr < 0)
        raise ValueError(f"one_hot: labels must be >= 0, got {value!r} at index {where}.")
    if num_classes is None:
        if arr.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from empty labels; pass num_classes.")
        num_classes = int(arr.max()) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"one_hot: num_classes must be an int, got {type(num_classes).__name__}.")
    elif num_classes <= 0:
        raise ValueError(f"one_hot: num_classes must be positive, got {num_classes}.")
    num_classes = int(num_classes)
    if arr.size and arr.max() >= num_classes:
        value, where = _first(arr, arr >= num_classes)
        raise ValueError(f"one_hot: labels must be < num_classes={num_classes}, got {value!r} at index "
                         f"{where}. Pass a larger num_classes or check the labels.")
    index = arr.astype(np.intp).reshape(-1)
    out = np.zeros((index.size, num_classes), dtype=dt)
    out[np.arange(index.size), index] = 1   # (n,) rows x (n,) columns -> one 1 per row
    return out.reshape(arr.shape + (num_classes,))


def _stat(value, what: str, dt: np.dtype, positive: bool) -> np.ndarray:
    """``mean`` / ``std`` as an array of ``dt`` (a float64 statistic must not promote the output)."""
    try:
        stat = np.asarray(value, dtype=dt)
    except (TypeError, ValueError) as err:
        raise TypeError(f"normalize: {what} must be a number or an array of numbers, got {value!r}.") from err
    if not np.all(np.isfinite(stat)) or (positive and not np.all(stat > 0)):
        need = "positive finite" if positive else "finite"
        raise ValueError(f"normalize: {what} must be {need}, got {value!r}.")
    return stat


def _first(arr: np.ndarray, mask: np.ndarray):
    """The first value of ``arr`` where ``mask`` holds, as a Python number, and its index (an int
    for 1-D, a tuple otherwise) -- for error messages."""
    where = tuple(int(i) for i in np.argwhere(mask)[0])
    return arr[where].item(), (where[0] if len(where) == 1 else where)
