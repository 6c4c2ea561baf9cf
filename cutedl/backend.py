"""The array backend: the one module of cutedl that names an array library.

Two array libraries meet here:

- ``xp``: the *device* library, where params, activations and gradients live. NumPy by default;
  :func:`use_backend` ('numpy' or 'cupy') switches it before a model is built.
- ``np``: the *host* library, always NumPy: files, reports, History figures, data parsing. Code
  outside this module writes ``from cutedl.backend import np`` when it works on host arrays and
  ``from cutedl.backend import xp`` (or ``backend.xp`` when it must see a later switch) when it
  computes on the device.

Crossing between the two goes through :func:`to_device` and :func:`to_host` (and
:func:`item` for a logged scalar), which count their crossings in :data:`transfers`, so a test
can assert that a training step copies each batch to the device once and brings back only the
logged scalars. With the NumPy backend both are free (no copy) but are counted all the same.

Random draws that must happen on the device (dropout masks, noise) go through :func:`uniform`,
:func:`normal` and :func:`bernoulli`, which take a generator from :mod:`cutedl.rng`.
Deliberately thin: no wrapper class around arrays.
"""
from __future__ import annotations

import contextlib
import importlib
import os

import numpy
import numpy as np  # the host library, re-exported: ``from cutedl.backend import np``

xp = numpy
"""The device array library (NumPy unless :func:`use_backend` switched it)."""

_NAME = "numpy"
_DEVICE = None  # the device library once activated: its arrays still come home after a switch back
_FLOATX = np.dtype("float32")

__all__ = ["np", "xp", "current", "use_backend", "floatx", "set_floatx", "resolve_dtype", "asarray",
           "to_device", "to_host", "to_numpy", "item", "is_array", "is_host_array", "as_array", "transfers",
           "count_transfers", "check", "flush_checks", "scatter_add", "einsum", "uniform", "normal", "bernoulli",
           "ndarray_types"]


# ---------------------------------------------------------------------------- choosing the backend
def current() -> str:
    """The name of the active backend: 'numpy' or 'cupy'."""
    return _NAME


def use_backend(name: str) -> None:
    """Switch the device array library: 'numpy' (default) or 'cupy' (an NVIDIA GPU).

    Call it before building a model: params are created on the backend active at ``build`` time.
    ``CUTEDL_BACKEND=cupy`` in the environment does the same at import.

    Raises:
        ValueError: an unknown name.
        RuntimeError: 'cupy' without CuPy installed, or without a usable GPU (the message says
            which, and how to fix it).
    """
    global xp, _NAME, _DEVICE
    if not isinstance(name, str) or name.lower() not in ("numpy", "cupy"):
        raise ValueError(f"use_backend: the backend must be 'numpy' or 'cupy', got {name!r}.")
    name = name.lower()
    _pending_checks.clear()
    if name == "numpy":
        xp, _NAME = numpy, "numpy"
        return
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as err:
        raise RuntimeError(f"use_backend('cupy'): CuPy is not installed ({err}). Install the wheel matching your "
                           f"CUDA version, e.g. pip install -e \".[gpu]\" (cupy-cuda12x) or cupy-cuda13x.") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken: CuPy raises its own error types
        raise RuntimeError(f"use_backend('cupy'): CuPy is installed but no usable NVIDIA GPU was found ({err}). "
                           f"Check nvidia-smi and the CUDA driver, or stay on the 'numpy' backend.") from None
    if count < 1:
        raise RuntimeError("use_backend('cupy'): CuPy is installed but no NVIDIA GPU is visible "
                           "(CUDA_VISIBLE_DEVICES?). Stay on the 'numpy' backend or expose a GPU.")
    xp, _NAME, _DEVICE = cupy, "cupy", cupy


# ---------------------------------------------------------------------------- dtypes
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


# ---------------------------------------------------------------------------- host <-> device
class Transfers:
    """Counts of host->device (``to_device``) and device->host (``to_host``/``item``) crossings."""

    __slots__ = ("to_device", "to_host")

    def __init__(self):
        self.to_device = 0
        self.to_host = 0

    def __repr__(self) -> str:
        return f"Transfers(to_device={self.to_device}, to_host={self.to_host})"


transfers = Transfers()
"""Running counts since import (tests read differences, or use :func:`count_transfers`)."""


@contextlib.contextmanager
def count_transfers():
    """``with count_transfers() as t: ...``: ``t.to_device`` / ``t.to_host`` crossings inside the block."""
    t = Transfers()
    d0, h0 = transfers.to_device, transfers.to_host
    try:
        yield t
    finally:
        t.to_device = transfers.to_device - d0
        t.to_host = transfers.to_host - h0


def ndarray_types() -> tuple:
    """The array types of the host and the active device library."""
    return (np.ndarray,) if xp is numpy else (np.ndarray, xp.ndarray)


def is_array(a) -> bool:
    """True for a host (NumPy) or device (active backend) array."""
    return isinstance(a, ndarray_types())


def is_host_array(a) -> bool:
    """True for a NumPy array (host memory)."""
    return isinstance(a, np.ndarray)


def asarray(a, dtype=None):
    """``a`` as an array of the device library (no copy when it already is one of that dtype).

    Not counted as a transfer: use it for values created on the host side of the code itself
    (constants, configs). Data batches go through :func:`to_device`.
    """
    return xp.asarray(a, dtype=dtype)


def to_device(a, dtype=None):
    """Copy a host array (or nested list) to the device; counted in :data:`transfers`.

    With the NumPy backend this is ``numpy.asarray`` (no copy when the dtype matches).
    """
    transfers.to_device += 1
    return xp.asarray(a, dtype=dtype)


def to_host(a) -> np.ndarray:
    """Bring an array back to host memory as a NumPy array; counted in :data:`transfers`."""
    transfers.to_host += 1
    if _pending_checks:
        flush_checks()
    if xp is not numpy and isinstance(a, xp.ndarray):
        return xp.asnumpy(a)
    if _DEVICE is not None and isinstance(a, _DEVICE.ndarray):  # built on the device, backend since switched
        return _DEVICE.asnumpy(a)
    return np.asarray(a)


to_numpy = to_host


def item(a) -> float:
    """A 0-d (or size-1) device value as a Python float; one device->host crossing (counted).

    Data checks waiting on the device (:func:`check`) travel back in the same crossing, and the
    first one that failed raises its error here.
    """
    transfers.to_host += 1
    if xp is not numpy and isinstance(a, xp.ndarray):
        if _pending_checks:
            checks = _take_checks()
            # (value, flag 1, flag 2, ...) as one float64 vector: one copy instead of 1 + len(checks)
            host = xp.asnumpy(xp.concatenate([a.reshape(1).astype(xp.float64)] +
                                             [xp.asarray(bad, dtype=xp.float64).reshape(1) for bad, _ in checks]))
            _raise_failed(checks, host[1:])
            return float(host[0])
        a = xp.asnumpy(a)
    elif _pending_checks:
        flush_checks()
    if hasattr(a, "item"):
        return float(a.item())
    return float(a)


def as_array(a, who: str, what: str):
    """``a`` as an array; a ragged nested list raises a ValueError naming ``who`` and ``what``."""
    if is_array(a):
        return a
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{who}: {what} cannot be turned into an array ({err}). Are all samples the same "
                         f"shape? Pad or trim them first.") from None


# ---------------------------------------------------------------------------- data checks
# Validating device data (labels in range, integer token ids) must not cost a device->host round
# trip per step. check() records a 0-d bool flag; the next item() brings the flags back together
# with its value (a step always brings its loss back), and to_host() or flush_checks() read them
# otherwise. On the NumPy backend the flag is read at once: errors are raised where they were.
_pending_checks: list = []


def check(bad, fail) -> None:
    """Call ``fail()`` (which raises the error) when the 0-d bool array ``bad`` is True.

    NumPy backend: at once. Device backend: at the next :func:`item`, :func:`to_host` or
    :func:`flush_checks`, in that crossing (no crossing of its own); the code in between runs on
    the unchecked data, as it would on the GPU anyway. ``fail`` runs on the error path only, so it
    may bring device values back for its message (through :func:`to_host`).
    """
    if xp is numpy:
        if bad:
            fail()
        return
    _pending_checks.append((bad, fail))


def flush_checks() -> None:
    """Read the pending device checks now (one crossing when any is pending) and raise the first failure."""
    if not _pending_checks:
        return
    checks = _take_checks()
    flags = xp.stack([xp.asarray(bad, dtype=xp.bool_).reshape(()) for bad, _ in checks])
    _raise_failed(checks, xp.asnumpy(flags))


def _take_checks() -> list:
    checks = list(_pending_checks)
    _pending_checks.clear()
    return checks


def _raise_failed(checks, flags) -> None:
    for (_, fail), flag in zip(checks, flags):
        if flag:
            fail()


# ---------------------------------------------------------------------------- device kernels
def scatter_add(target, indices, values) -> None:
    """``target[indices] += values`` with repeated indices accumulated (``np.add.at``), in place.

    On CuPy this is ``cupyx.scatter_add`` (atomic adds: the order in which repeated indices are
    summed varies from run to run, so float sums may differ in their last bits).
    """
    if xp is numpy:
        np.add.at(target, indices, values)
    else:
        importlib.import_module("cupyx").scatter_add(target, indices, values)


def einsum(subscripts: str, *operands, out=None):
    """``xp.einsum`` with ``out=`` on every backend (CuPy's einsum has no ``out``: it is copied in)."""
    if xp is numpy or out is None:
        return xp.einsum(subscripts, *operands) if out is None else xp.einsum(subscripts, *operands, out=out)
    out[...] = xp.einsum(subscripts, *operands)
    return out


# ---------------------------------------------------------------------------- random draws
# Generators come from cutedl.rng (NumPy Generators, so that checkpoints can save their state and
# a run repeats bit for bit under cutedl.set_seed). On the NumPy backend the draw is made by that
# generator directly. On the CuPy backend the host generator draws one 63-bit seed per call and a
# CuPy generator seeded with it fills the array on the GPU: no array crosses host->device, the
# stream is still fixed by the host generator's state (so checkpoints and set_seed keep working),
# and a GPU run repeats bit for bit on the same GPU and CuPy version.
def _device_gen(gen):
    return xp.random.default_rng(int(gen.integers(0, 2**63 - 1)))


def uniform(gen, shape, dtype=None):
    """Uniform [0, 1) samples of ``shape`` from generator ``gen``, as a device array of ``dtype``."""
    dt = resolve_dtype(dtype)
    if xp is numpy:
        return gen.random(shape, dtype=dt)
    return _device_gen(gen).random(shape, dtype=dt)


def normal(gen, shape, dtype=None, loc: float = 0.0, scale: float = 1.0):
    """Normal(loc, scale) samples of ``shape`` from ``gen``, as a device array of ``dtype``."""
    dt = resolve_dtype(dtype)
    out = gen.standard_normal(shape, dtype=dt) if xp is numpy else _device_gen(gen).standard_normal(shape, dtype=dt)
    if scale != 1.0:
        out *= dt.type(scale)
    if loc != 0.0:
        out += dt.type(loc)
    return out


def bernoulli(gen, shape, keep: float, dtype=None):
    """A 0/1 mask of ``shape`` (1 with probability ``keep``) as a device array of ``dtype``."""
    dt = resolve_dtype(dtype)
    u = uniform(gen, shape, dt)
    return (u < keep).astype(dt)


if os.environ.get("CUTEDL_BACKEND"):
    use_backend(os.environ["CUTEDL_BACKEND"])
