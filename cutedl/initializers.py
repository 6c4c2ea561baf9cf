"""Weight initializers, by name through one registry: ``initializers.get('glorot_uniform')``.

An initializer is called as ``init(shape, dtype=None) -> array`` and always returns a new host
(NumPy) array of exactly ``backend.resolve_dtype(dtype)`` (float32 unless asked otherwise);
``Layer.add_param`` moves it to the device. Draws are made in float64 on the host and rounded, so
the same seed gives the same weights in float32 and float64 up to rounding, on any backend.

Fans follow Keras: for a 2-D kernel ``(fan_in, fan_out)``; for a conv kernel
``(filters, in_channels, kh, kw)`` fan_in is ``in_channels*kh*kw`` and fan_out ``filters*kh*kw``.

Randomness: without ``seed`` the draws come from the global generator (``rng.global_rng()``), so
``cutedl.set_seed`` makes a whole model repeatable. With ``seed=n`` every call starts a fresh
generator from ``n``: the same initializer object returns the same array each time.

    >>> from cutedl import initializers
    >>> w = initializers.get('he_normal')((784, 256))    # float32, std ~ sqrt(2 / 784)
"""
from __future__ import annotations

import math

from cutedl import backend, rng
from cutedl._registry import Configurable, Registry
from cutedl._validate import check_choice, check_int, check_number, is_int
from cutedl.backend import np  # draws are made on the host, from NumPy generators

# Standard deviation of N(0, 1) truncated to [-2, 2]: Var = 1 - 4 phi(2) / (2 Phi(2) - 1).
# Variance-scaling normal initializers divide by it so that the *truncated* draws have the
# requested standard deviation (the Keras convention).
_TRUNC_STD = math.sqrt(
    1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(2.0 / math.sqrt(2.0)))


def _check_shape(owner: str, shape) -> tuple:
    """``shape`` (an int or a sequence of ints >= 0) as a tuple of Python ints.

    Not ``_validate.check_shape``: a weight may have a zero-size axis (an empty layer).
    """
    if is_int(shape):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{owner}: shape must be a tuple of ints, got {type(shape).__name__} {shape!r}.") from None
    if not all(is_int(d) and d >= 0 for d in dims):
        raise ValueError(f"{owner}: shape must be a tuple of non-negative ints, got {shape!r}.")
    return tuple(int(d) for d in dims)


class Initializer(Configurable):
    """Base class: ``__call__(shape, dtype=None)`` returns a new array.

    Args:
        seed: None (draw from the global generator) or a non-negative int (a fresh generator
            from that seed on every call).
    """

    registry_name = "initializer"

    def __init__(self, seed=None):
        self.seed = check_int(type(self).__name__, "seed", seed, minimum=0, allow_none=True,
                              what="None or an int >= 0")

    def _rng(self) -> np.random.Generator:
        return rng.global_rng() if self.seed is None else rng.make_rng(self.seed)

    def __call__(self, shape, dtype=None):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"seed": self.seed} if self.seed is not None else {}


registry = Registry("initializer", Initializer)


def get(identifier=None) -> Initializer:
    """An initializer from a name (case-insensitive, aliases accepted), an instance, a class, a
    config dict, or None (glorot_uniform).

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    if identifier is None:
        return GlorotUniform()
    return registry.get(identifier)


def compute_fans(shape) -> tuple[float, float]:
    """(fan_in, fan_out) for a weight of ``shape``.

    () -> (1, 1); (n,) -> (n, n); (in, out) -> (in, out);
    (filters, in_channels, *kernel) -> (in_channels * prod(kernel), filters * prod(kernel)).
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = float(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def _truncated_standard_normal(gen: np.random.Generator, shape: tuple) -> np.ndarray:
    """N(0, 1) draws restricted to [-2, 2]: draws outside are redrawn (float64)."""
    z = gen.standard_normal(shape)
    flat = z.reshape(-1)  # a view
    bad = np.flatnonzero(np.abs(flat) > 2.0)
    # ~4.6% redrawn per round, so a handful of rounds suffice.
    while bad.size:
        flat[bad] = gen.standard_normal(bad.size)
        bad = bad[np.abs(flat[bad]) > 2.0]
    return z


@registry.register("zeros", "zero")
class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype=None):
        return np.zeros(_check_shape("Zeros", shape), dtype=backend.resolve_dtype(dtype))


@registry.register("ones", "one")
class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype=None):
        return np.ones(_check_shape("Ones", shape), dtype=backend.resolve_dtype(dtype))


@registry.register("constant")
class Constant(Initializer):
    """Every element equal to ``value``.

    Args:
        value: the constant (default 0.0).
    """

    def __init__(self, value: float = 0.0):
        super().__init__()
        self.value = check_number("Constant", "value", value)

    def __call__(self, shape, dtype=None):
        return np.full(_check_shape("Constant", shape), self.value, dtype=backend.resolve_dtype(dtype))

    def get_config(self) -> dict:
        return {"value": self.value}


@registry.register("random_uniform", "uniform")
class RandomUniform(Initializer):
    """U(minval, maxval).

    Args:
        minval, maxval: bounds, ``minval < maxval`` (default -0.05, 0.05).
        seed: see :class:`Initializer`.
    """

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed=None):
        super().__init__(seed)
        self.minval = check_number("RandomUniform", "minval", minval)
        self.maxval = check_number("RandomUniform", "maxval", maxval)
        if not self.minval < self.maxval:
            raise ValueError(f"RandomUniform: minval must be < maxval, got minval={minval!r}, "
                             f"maxval={maxval!r}. Swap them or widen the interval.")

    def __call__(self, shape, dtype=None):
        shape = _check_shape("RandomUniform", shape)
        dt = backend.resolve_dtype(dtype)
        return self._rng().uniform(self.minval, self.maxval, size=shape).astype(dt)

    def get_config(self) -> dict:
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class _MeanStd(Initializer):
    """Shared argument checks of the normal initializers."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        super().__init__(seed)
        name = type(self).__name__
        self.mean = check_number(name, "mean", mean)
        self.stddev = check_number(name, "stddev", stddev, minimum=0)

    def get_config(self) -> dict:
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


@registry.register("random_normal", "normal")
class RandomNormal(_MeanStd):
    """N(mean, stddev^2).

    Args:
        mean: default 0.0.
        stddev: >= 0, default 0.05.
        seed: see :class:`Initializer`.
    """

    def __call__(self, shape, dtype=None):
        shape = _check_shape("RandomNormal", shape)
        dt = backend.resolve_dtype(dtype)
        return self._rng().normal(self.mean, self.stddev, size=shape).astype(dt)


@registry.register("truncated_normal")
class TruncatedNormal(_MeanStd):
    """N(mean, stddev^2) restricted to [mean - 2 stddev, mean + 2 stddev] (redrawn outside).

    As in Keras, ``stddev`` is that of the normal *before* truncation: the draws' own standard
    deviation is about 0.88 * stddev.

    Args:
        mean: default 0.0.
        stddev: >= 0, default 0.05.
        seed: see :class:`Initializer`.
    """

    def __call__(self, shape, dtype=None):
        shape = _check_shape("TruncatedNormal", shape)
        dt = backend.resolve_dtype(dtype)
        z = _truncated_standard_normal(self._rng(), shape)
        z *= self.stddev
        z += self.mean
        return z.astype(dt)


@registry.register("variance_scaling")
class VarianceScaling(Initializer):
    """Draws with variance ``scale / n``, n the fan chosen by ``mode``.

    Args:
        scale: > 0 (default 1.0).
        mode: 'fan_in', 'fan_out' or 'fan_avg' (mean of both); see :func:`compute_fans`.
        distribution: 'truncated_normal' (N(0, s^2) truncated at 2 s, s corrected so that the
            draws have std sqrt(scale / n)), 'untruncated_normal' (N(0, scale / n)) or 'uniform'
            (U(-l, l), l = sqrt(3 scale / n)).
        seed: see :class:`Initializer`.
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed=None):
        super().__init__(seed)
        name = type(self).__name__
        self.scale = check_number(name, "scale", scale, minimum=0, low_open=True)
        self.mode = check_choice(name, "mode", mode, self._MODES)
        if distribution == "normal":  # Keras accepts it as a synonym
            distribution = "truncated_normal"
        self.distribution = check_choice(name, "distribution", distribution, self._DISTRIBUTIONS)

    def _variance(self, shape: tuple) -> float:
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        # A zero-size weight has no fan; any finite variance does (nothing is drawn).
        return self.scale / max(1.0, fan)

    def __call__(self, shape, dtype=None):
        shape = _check_shape(type(self).__name__, shape)
        dt = backend.resolve_dtype(dtype)
        var = self._variance(shape)
        gen = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return gen.uniform(-limit, limit, size=shape).astype(dt)
        if self.distribution == "untruncated_normal":
            return gen.normal(0.0, math.sqrt(var), size=shape).astype(dt)
        z = _truncated_standard_normal(gen, shape)
        z *= math.sqrt(var) / _TRUNC_STD
        return z.astype(dt)

    def get_config(self) -> dict:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **super().get_config()}


class _FixedVarianceScaling(VarianceScaling):
    """A VarianceScaling with fixed settings; only ``seed`` is an argument."""

    _settings: tuple = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed=None):
        super().__init__(*self._settings, seed=seed)

    def get_config(self) -> dict:
        return Initializer.get_config(self)


@registry.register("glorot_uniform", "xavier_uniform")
class GlorotUniform(_FixedVarianceScaling):
    """U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""

    _settings = (1.0, "fan_avg", "uniform")


@registry.register("glorot_normal", "xavier_normal")
class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal (at 2 std, redrawn) whose draws have std sqrt(2 / (fan_in + fan_out)),
    as in Keras (the pre-truncation std is larger by 1 / 0.8796)."""

    _settings = (1.0, "fan_avg", "truncated_normal")


@registry.register("he_uniform", "kaiming_uniform")
class HeUniform(_FixedVarianceScaling):
    """U(-limit, limit) with limit = sqrt(6 / fan_in) (He et al., 2015), for ReLU layers."""

    _settings = (2.0, "fan_in", "uniform")


@registry.register("he_normal", "kaiming_normal")
class HeNormal(_FixedVarianceScaling):
    """Truncated normal whose draws have std sqrt(2 / fan_in) (Keras convention), for ReLU layers."""

    _settings = (2.0, "fan_in", "truncated_normal")


@registry.register("lecun_uniform")
class LecunUniform(_FixedVarianceScaling):
    """U(-limit, limit) with limit = sqrt(3 / fan_in)."""

    _settings = (1.0, "fan_in", "uniform")


@registry.register("lecun_normal")
class LecunNormal(_FixedVarianceScaling):
    """Truncated normal whose draws have std sqrt(1 / fan_in) (Keras convention); pairs with SELU."""

    _settings = (1.0, "fan_in", "truncated_normal")


@registry.register("orthogonal")
class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al., 2014).

    The weight is viewed as a matrix of shape ``(shape[0], prod(shape[1:]))``: a Dense kernel
    ``(in, out)`` as it is, a conv kernel ``(filters, in_channels, kh, kw)`` as one row per filter.
    If that matrix is tall (rows >= cols) its columns are orthonormal (``W.T @ W = gain^2 I``),
    otherwise its rows are (``W @ W.T = gain^2 I``). It is the Q factor of the QR decomposition of
    a standard normal matrix, with column signs fixed by the signs of R's diagonal so that it is
    uniformly (Haar) distributed.

    Args:
        gain: multiplicative factor (default 1.0).
        seed: see :class:`Initializer`.
    """

    def __init__(self, gain: float = 1.0, seed=None):
        super().__init__(seed)
        self.gain = check_number("Orthogonal", "gain", gain)

    def __call__(self, shape, dtype=None):
        shape = _check_shape("Orthogonal", shape)
        dt = backend.resolve_dtype(dtype)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: needs a weight of at least 2 dimensions, got shape {shape}. "
                             "Use it for kernels, not biases.")
        rows = shape[0]
        cols = int(np.prod(shape[1:]))
        if rows == 0 or cols == 0:
            return np.zeros(shape, dtype=dt)
        big, small = max(rows, cols), min(rows, cols)
        a = self._rng().standard_normal((big, small))
        q, r = np.linalg.qr(a)  # q: (big, small) with orthonormal columns
        # QR is unique only up to column signs; making diag(R) positive gives the Haar measure.
        signs = np.sign(np.diagonal(r))
        signs[signs == 0] = 1.0
        q *= signs
        if rows < cols:
            q = q.T  # (small, big) with orthonormal rows
        return (self.gain * q).reshape(shape).astype(dt)

    def get_config(self) -> dict:
        return {"gain": self.gain, **super().get_config()}
