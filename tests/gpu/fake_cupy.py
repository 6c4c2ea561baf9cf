"""A fake CuPy for CI machines without a GPU: NumPy underneath, CuPy's rules on top.

``install(monkeypatch)`` puts a ``cupy`` and a ``cupyx`` module into ``sys.modules`` so that
``cutedl.backend.use_backend('cupy')`` takes them. The fake is *stricter* than CuPy where CuPy
would be slow or would hide a transfer, so that a test run on it catches what a GPU run would
pay for:

- Device arrays are :class:`ndarray`, a wrapper around a NumPy array and not a NumPy subclass
  (NumPy never asks a subclass for ``__array__``, so ``np.asarray(device_array)`` or
  ``np.savez(..., device_array)`` would pass silently; with a wrapper they raise, as on CuPy).
- Implicit device->host conversions raise: ``__array__``, ``float()``, ``int()``, ``bool()``
  (``if device_array:``), ``operator.index``, ``.item()``, ``.tolist()``, ``.get()`` and
  formatting with a spec. Code must go through ``cutedl.backend.item`` / ``to_host``, which use
  :func:`asnumpy`, the one way out.
- Mixing host and device arrays in an operation raises TypeError (as CuPy), and so does an
  assignment of a host array into a device array (CuPy would copy it implicitly, uncounted).
- Host NumPy called on a device array raises: ``np.exp(d)``, ``np.mean(d)``,
  ``np.concatenate([d])`` (``from cutedl.backend import np`` must never see device data).
  A NumPy *scalar* operand is fine (``np.float32(2) * d``), as on CuPy.
- Functions CuPy lacks are missing: ``errstate``, ``vecdot``; ``einsum`` refuses ``out=`` and
  ``optimize=`` other than False.
- Reductions return 0-d device arrays (as CuPy), never NumPy scalars.
- Floating-point warnings are silenced (a GPU does not warn on overflow).

``calls`` counts the calls of each module function (``fake.calls['asnumpy']``).
"""
from __future__ import annotations

import collections
import copy
import sys
import types

import numpy

_MISSING = {"errstate", "vecdot", "seterr", "geterr", "add_docstring", "set_printoptions"}
_CONSTRUCTORS = {"asarray", "array", "asanyarray"}  # may take host data (an explicit host->device copy)


class TransferError(TypeError):
    """An implicit device->host conversion or host/device mix that CuPy would refuse or sync on."""


def _refuse(what: str):
    raise TransferError(f"fake cupy: {what} on a device array is an implicit device->host transfer; use "
                        f"cutedl.backend.item / to_host (or avoid it in a step).")


def _base(a, allow_host: bool = False):
    """The NumPy array behind a device array; host arrays refused unless ``allow_host``."""
    if isinstance(a, ndarray):
        return a._a
    if isinstance(a, numpy.ndarray) and not allow_host:
        raise TypeError(f"fake cupy: a host numpy.ndarray {a.shape} {a.dtype} was passed where a device array is "
                        f"expected (CuPy: 'Unsupported type <class 'numpy.ndarray'>'). Copy it with "
                        f"cutedl.backend.to_device first.")
    if isinstance(a, (list, tuple)):
        return type(a)(_base(v, allow_host) for v in a)
    return a


def _wrap(r):
    if isinstance(r, numpy.ndarray):
        return ndarray(r)
    if isinstance(r, numpy.generic):
        return ndarray(numpy.asarray(r))  # CuPy reductions give 0-d arrays, not scalars
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


def _call(fn, args, kwargs, allow_host=False):
    out = kwargs.get("out")
    args = _base(args, allow_host)
    kwargs = {k: _base(v, allow_host) for k, v in kwargs.items()}
    with numpy.errstate(all="ignore"):
        r = fn(*args, **kwargs)
    if isinstance(out, ndarray):
        return out
    return _wrap(r)


def _wrap_indices(shape, key):
    """CuPy wraps out-of-bounds integer-array indices around instead of raising (data-dependent
    errors would need a sync); the fake does the same, so that deferred checks get to report."""
    items = key if isinstance(key, tuple) else (key,)
    if any(k is None or k is Ellipsis for k in items):
        return key
    out = tuple(k % shape[i] if isinstance(k, numpy.ndarray) and k.dtype.kind in "iu" and shape[i] else k
                for i, k in enumerate(items))
    return out if isinstance(key, tuple) else out[0]


class ndarray:
    """A device array: a NumPy array that refuses to leave the device implicitly."""

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # -------------------------------------------------------------- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    def __getattr__(self, name):
        if name.startswith("__"):  # __array_interface__ & co.: NumPy would convert through them
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *args, **kwargs: _call(attr, args, kwargs)
        return _wrap(attr)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray(numpy.asarray(v)) for v in self._a)

    def __repr__(self):
        return f"fake_cupy.{repr(self._a)}"

    __str__ = __repr__

    def __format__(self, spec):
        if spec:
            _refuse(f"format(..., {spec!r})")
        return repr(self)

    def __getitem__(self, key):
        return _wrap(self._a[_wrap_indices(self._a.shape, _base(key, allow_host=True))])

    def __setitem__(self, key, value):
        if isinstance(value, numpy.ndarray) and value.ndim > 0:
            raise TransferError("fake cupy: assigning a host numpy.ndarray into a device array is an implicit, "
                                "uncounted host->device copy; use cutedl.backend.to_device / asarray.")
        self._a[_wrap_indices(self._a.shape, _base(key, allow_host=True))] = _base(value)

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(copy.deepcopy(self._a, memo))

    def __reduce__(self):
        _refuse("pickle")

    # -------------------------------------------------------------- refused conversions
    def __array__(self, *args, **kwargs):
        raise TransferError("fake cupy: implicit conversion to a NumPy array is not allowed (CuPy refuses it "
                            "too); use cutedl.backend.to_host.")

    def __float__(self):
        _refuse("float()")

    def __int__(self):
        _refuse("int()")

    def __bool__(self):
        _refuse("bool() (an `if`/`and`/`or` on an array)")

    def __index__(self):
        _refuse("operator.index()")

    def __complex__(self):
        _refuse("complex()")

    def item(self, *args):
        _refuse(".item()")

    def tolist(self):
        _refuse(".tolist()")

    def get(self, *args, **kwargs):
        _refuse(".get()")

    # -------------------------------------------------------------- NumPy's own dispatch
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        others = [v for v in inputs if not isinstance(v, ndarray)]
        if method != "__call__" or len(inputs) != 2 or not all(
                isinstance(v, (int, float, bool, numpy.generic)) for v in others):
            raise TypeError(f"fake cupy: host numpy.{ufunc.__name__}{'' if method == '__call__' else '.' + method} "
                            f"was called on a device array; use the backend's xp (cutedl.backend.xp).")
        return _call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        raise TypeError(f"fake cupy: host numpy.{func.__name__} was called on a device array; use the backend's xp "
                        f"(cutedl.backend.xp) or bring it back with cutedl.backend.to_host first.")


def _operand(v):
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, (numpy.ndarray, list, tuple)):
        raise TypeError(f"fake cupy: an operator mixes a device array with a host {type(v).__name__} (CuPy: "
                        f"'Unsupported type'); copy it with cutedl.backend.to_device / asarray.")
    return v


def _binary(name):
    def op(self, other):
        with numpy.errstate(all="ignore"):
            r = getattr(self._a, name)(_operand(other))
        return r if r is NotImplemented else _wrap(r)
    op.__name__ = name
    return op


def _inplace(name):
    def op(self, other):
        with numpy.errstate(all="ignore"):
            getattr(self._a, name)(_operand(other))
        return self
    op.__name__ = name
    return op


def _unary(name):
    def op(self):
        with numpy.errstate(all="ignore"):
            return _wrap(getattr(self._a, name)())
    op.__name__ = name
    return op


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift",
           "rshift"):
    setattr(ndarray, f"__{_n}__", _binary(f"__{_n}__"))
    setattr(ndarray, f"__r{_n}__", _binary(f"__r{_n}__"))
    setattr(ndarray, f"__i{_n}__", _inplace(f"__i{_n}__"))
for _n in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_n}__", _binary(f"__{_n}__"))
for _n in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_n}__", _unary(f"__{_n}__"))
ndarray.__hash__ = None


class _Ufunc:
    """A NumPy ufunc seen from the fake module: device arrays in and out, ``reduce``/``at``... too."""

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__

    def __call__(self, *args, **kwargs):
        return _call(self._uf, args, kwargs)

    def __getattr__(self, name):
        attr = getattr(self._uf, name)
        if callable(attr):
            return lambda *args, **kwargs: _call(attr, args, kwargs)
        return attr


class _Generator:
    """``cupy.random.Generator``: draws as NumPy's Generator would, returned on the device."""

    def __init__(self, seed):
        self._g = numpy.random.default_rng(seed)

    def __getattr__(self, name):
        attr = getattr(self._g, name)
        return lambda *args, **kwargs: _wrap(attr(*args, **kwargs))


def _einsum(*args, **kwargs):
    if "out" in kwargs:
        raise TypeError("fake cupy: cupy.einsum has no out= argument.")
    if kwargs.get("optimize", False) not in (False,):
        raise TypeError("fake cupy: cupy.einsum supports optimize=False only (or cuTensorNet).")
    return _call(numpy.einsum, args, kwargs)


def _asarray(a, dtype=None, order=None, copy=None):
    if isinstance(a, ndarray):
        if not copy and (dtype is None or numpy.dtype(dtype) == a.dtype):
            return a
        return ndarray(numpy.array(a._a, dtype=dtype, order=order, copy=True))
    return ndarray(numpy.array(_base(a, allow_host=True), dtype=dtype, order=order, copy=True))


def _ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):  # cupy.ascontiguousarray takes cupy arrays only
        raise TypeError(f"fake cupy: ascontiguousarray takes a device array, got {type(a).__name__}.")
    out = numpy.ascontiguousarray(a._a, dtype=dtype)
    return a if out is a._a else ndarray(out)


def _asnumpy(a, *args, **kwargs):
    calls["asnumpy"] += 1
    if isinstance(a, ndarray):
        return numpy.array(a._a, copy=True)
    return numpy.asarray(a)


calls: collections.Counter = collections.Counter()


class _FakeModule(types.ModuleType):
    """The ``cupy`` namespace: NumPy's names, wrapped, minus what CuPy lacks."""

    def __getattr__(self, name):
        if name in _MISSING or name.startswith("__"):
            raise AttributeError(f"module 'cupy' has no attribute {name!r}")
        calls[name] += 1
        attr = getattr(numpy, name)
        if isinstance(attr, numpy.ufunc):
            return _Ufunc(attr)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, finfo, nan, newaxis...
        if name in _CONSTRUCTORS:
            return lambda a, *args, **kwargs: _asarray(a, *args, **kwargs)
        return lambda *args, **kwargs: _call(attr, args, kwargs)


def _make_modules(device_count: int = 1):
    cupy = _FakeModule("cupy")
    cupy.__version__ = "fake"
    cupy.ndarray = ndarray
    cupy.einsum = _einsum
    cupy.asnumpy = _asnumpy
    cupy.ascontiguousarray = _ascontiguousarray
    cupy.get_array_module = lambda *arrays: cupy if any(isinstance(a, ndarray) for a in arrays) else numpy

    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    device = types.SimpleNamespace(synchronize=lambda: None)
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count),
                                      Device=lambda *a: device)
    cupy.random = types.SimpleNamespace(default_rng=_Generator)
    as_strided = numpy.lib.stride_tricks.as_strided
    window = numpy.lib.stride_tricks.sliding_window_view
    cupy.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
        as_strided=lambda x, *a, **k: _call(as_strided, (x,) + a, k),
        sliding_window_view=lambda x, *a, **k: _call(window, (x,) + a, k)))
    cupy.linalg = types.SimpleNamespace(norm=lambda *a, **k: _call(numpy.linalg.norm, a, k))

    cupyx = types.ModuleType("cupyx")

    def scatter_add(target, indices, values):
        calls["scatter_add"] += 1
        numpy.add.at(_base(target), _base(indices), _base(values))

    cupyx.scatter_add = scatter_add
    return cupy, cupyx


def install(monkeypatch, device_count=1):
    """Put the fake ``cupy``/``cupyx`` into ``sys.modules`` (undone by ``monkeypatch``); returns ``cupy``.

    ``device_count``: what ``cupy.cuda.runtime.getDeviceCount()`` returns, or an exception it raises.
    """
    cupy, cupyx = _make_modules(device_count)
    calls.clear()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    return cupy


def is_device(a) -> bool:
    return isinstance(a, ndarray)
