"""Decode pickles from dataset files without letting them run code.

A pickle reaches code only through the globals it names (``os.system``, ``builtins.eval``, a
class whose ``__reduce__`` does anything). :class:`RestrictedUnpickler` resolves a global only
when it is in an explicit allowlist, ``{(module, name): object}``, and refuses every other one
*before* it is imported or looked up; persistent references are refused too. The object an entry
maps to is what the pickle gets, so an entry can be a checked stand-in for the real global
(e.g. NumPy's array rebuilder that accepts plain ``ndarray`` only).

    >>> from cutedl.datasets import safe_pickle
    >>> allowed = safe_pickle.numpy_array_globals(kinds="u")     # uint8 arrays, nothing else
    >>> safe_pickle.decode(raw, allowed, what="data_batch_1", content="a CIFAR-10 batch")

:func:`decode` turns every failure (a refused global, a refused value, a corrupt or truncated
stream) into a ``ValueError`` that names the file part and says what to do. The allowlist
building blocks below cover NumPy arrays, NumPy numeric scalars and the ``_codecs.encode`` call
that Python 3 protocol-2 pickles use for ``bytes``.
"""
from __future__ import annotations

import io
import pickle
import struct
from typing import Callable, Mapping

import numpy as np

__all__ = ["RestrictedUnpickler", "Refused", "decode", "numpy_array_globals", "NUMPY_SCALAR_GLOBALS",
           "LATIN1_BYTES_GLOBALS"]

# The module names NumPy's array-pickling functions are found under: NumPy 1 files say
# numpy.core.multiarray, NumPy 2 writes numpy._core.multiarray. Both must load.
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
# NumPy's own array rebuilder, whatever module this NumPy version keeps it in.
_NUMPY_RECONSTRUCT = np.empty(0).__reduce__()[0]


class Refused(pickle.UnpicklingError):
    """The pickle names a global, a value or a reference that its allowlist does not permit."""


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only the globals of ``allowed``.

    Args:
        file: a binary file positioned at the pickle.
        allowed: ``{(module, name): object}``; a pickle naming ``module.name`` gets ``object``.
            Any other global raises :class:`Refused` without being imported.
        encoding: how Python 2 ``str`` objects are decoded (``'bytes'`` keeps them as bytes;
            ``'latin1'`` is how NumPy reads Python 2 arrays), as for ``pickle.Unpickler``.
    """

    def __init__(self, file, allowed: Mapping[tuple, object], *, encoding: str = "ASCII"):
        if not isinstance(allowed, Mapping) or not all(
                isinstance(k, tuple) and len(k) == 2 and all(isinstance(s, str) for s in k) for k in allowed):
            raise TypeError("RestrictedUnpickler: allowed must be a mapping {(module, name): object} with "
                            f"str module and name, got {allowed!r}.")
        super().__init__(file, encoding=encoding)
        self._allowed = dict(allowed)

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise Refused(f"refused to load the global {module}.{name}") from None

    def persistent_load(self, pid):
        raise Refused("refused a persistent reference")


def decode(data: bytes, allowed: Mapping[tuple, object], *, encoding: str = "ASCII",
          what: str = "pickle", content: str = "this file", hint: str = ""):
    """Decode ``data`` with a :class:`RestrictedUnpickler` over ``allowed``.

    Args:
        data: the pickle bytes.
        allowed: the allowlist, ``{(module, name): object}``.
        encoding: Python 2 ``str`` decoding (see :class:`RestrictedUnpickler`).
        what: names the data in error messages (e.g. ``'imdb.npz:x_train'``).
        content: what the data should hold, for messages (e.g. ``'a CIFAR-10 batch'``).
        hint: the fix, appended to every error message (e.g. "Delete it and download it again.").
    Returns:
        The decoded object.
    Raises:
        ValueError: a refused global or value (nothing was run), a corrupt/truncated stream, or
            one declaring sizes that cannot be allocated (BINBYTES8 of 2**62 bytes).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"safe_pickle.decode: data must be bytes, got {type(data).__name__}.")
    tail = f" {hint}" if hint else ""
    try:
        return RestrictedUnpickler(io.BytesIO(data), allowed, encoding=encoding).load()
    except MemoryError:
        # Python's C unpickler allocates what a counted opcode (BINBYTES8, BYTEARRAY8) or an
        # array's shape declares *before* reading the data, and offers no hook in between; a
        # hostile stream declares 2**62 bytes in a dozen. No real size can exceed the data.
        raise ValueError(f"{what} is not a valid pickle of {content}: decoding it asks for more memory than "
                         f"is available, for a size or shape far beyond its {len(data):,} bytes (a corrupt or "
                         f"malicious file; nothing in it was run).{tail}") from None
    except Refused as err:
        raise ValueError(f"{what}: {err}: {content} never holds it, so the file is not what it claims "
                         f"(it may be corrupt or malicious). Nothing in it was run.{tail}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError, struct.error) as err:
        raise ValueError(f"{what} is not a valid pickle of {content} (corrupt or truncated: "
                         f"{type(err).__name__}: {err}).{tail}") from None


def numpy_array_globals(kinds: str = "biuf") -> dict:
    """Allowlist entries that rebuild plain NumPy arrays whose dtype kind is in ``kinds``.

    ``'biuf'`` (bool, int, uint, float) holds no Python objects; add ``'O'`` for object arrays
    (their elements are unpickled through the same allowlist, so they are no way around it).
    Array subclasses are refused (``ndarray`` is the only type the rebuilder accepts).
    """
    if not isinstance(kinds, str) or not kinds or set(kinds) - set("biufcO"):
        raise ValueError(f"numpy_array_globals: kinds must be dtype kind letters from 'biufcO', got {kinds!r}.")

    def reconstruct(subtype, shape, typecode):
        if subtype is not np.ndarray:
            raise Refused(f"refused to build an array of type {subtype!r}; only numpy.ndarray")
        # NumPy pickles an array as an empty one plus a state that holds the data (and is
        # checked against it); a shape here would only allocate memory the data never fills.
        if shape != (0,):
            raise Refused(f"refused to preallocate an array of shape {shape!r}; NumPy pickles start from (0,)")
        return _NUMPY_RECONSTRUCT(np.ndarray, shape, typecode)

    def dtype(spec, align=False, copy=False):
        dt = np.dtype(spec.decode("latin-1") if isinstance(spec, bytes) else spec, align, copy)
        if dt.kind not in kinds:
            raise Refused(f"refused dtype {dt} (allowed kinds: {kinds!r})")
        return dt

    entries: dict = {(m, "_reconstruct"): reconstruct for m in _MULTIARRAY}
    entries[("numpy", "ndarray")] = np.ndarray
    entries[("numpy", "dtype")] = dtype
    return entries


def _numeric_scalar(dtype, data=None):
    """``numpy...multiarray.scalar`` for numeric dtypes only (for dtype object it would unpickle
    its argument as a Python object)."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes) \
            or len(data) != dtype.itemsize:
        raise Refused("refused a NumPy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes: latin1 str -> bytes only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused("refused _codecs.encode with anything but latin1 text")
    return text.encode("latin1")


#: NumPy numeric scalars (``np.int64(4)`` inside a list, as Keras-era files hold).
NUMPY_SCALAR_GLOBALS: Mapping[tuple, Callable] = {(m, "scalar"): _numeric_scalar for m in _MULTIARRAY}
#: ``_codecs.encode(text, 'latin1')``: how Python 3 writes ``bytes`` in protocol 2 (NumPy arrays too).
LATIN1_BYTES_GLOBALS: Mapping[tuple, Callable] = {("_codecs", "encode"): _latin1_encode}
