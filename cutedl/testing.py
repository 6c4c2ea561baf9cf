"""Numerical gradient checks (float64 central differences), public so users can check their own layers.

    >>> from cutedl import layers, testing
    >>> testing.check_gradients(layers.Dense(3, activation='tanh'), inshape=(4,))

For a layer the scalar checked is ``L = sum(forward(x) * r)`` for a fixed random ``r``; its
analytic gradients come from ``backward(r)`` and are compared with
``(L(v + eps) - L(v - eps)) / (2 eps)`` for every element of ``x`` and of every parameter.

Random inputs and weights ``r`` are drawn on the host and copied to the device once; the
perturbations happen in place on the device arrays and only the scalar ``L`` and the analytic
gradients come back to the host, where the comparison is made.
"""
from __future__ import annotations

from cutedl import backend
from cutedl.backend import np


class GradientCheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


def numerical_gradient(f, v, eps: float = 1e-6) -> np.ndarray:
    """dF/dv (a host float64 array) by central differences; ``f()`` reads ``v`` (a host or device
    array), which is perturbed in place and restored."""
    g = np.zeros_like(v, dtype=np.float64)
    flat = v.reshape(-1)  # a view: writing it perturbs v
    gflat = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def _compare(what: str, analytic, numeric, rtol: float, atol: float) -> float:
    if backend.is_array(analytic):
        analytic = backend.to_host(analytic)
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise GradientCheckError(f"{what}: analytic gradient has shape {analytic.shape}, expected {numeric.shape}.")
    err = np.abs(analytic - numeric)
    tol = atol + rtol * np.abs(numeric)
    if not np.all(err <= tol):
        i = int(np.argmax(err - tol))
        raise GradientCheckError(
            f"{what}: analytic and numerical gradients differ (max abs error {err.max():.3e}); "
            f"at flat index {i}: analytic {analytic.reshape(-1)[i]:.8g} vs numerical {numeric.reshape(-1)[i]:.8g}."
        )
    return float(err.max()) if err.size else 0.0


def _as_float64_layer(layer, inshape):
    """A float64, built copy of ``layer`` (weights copied when it was already built)."""
    cfg = layer.get_config()
    cfg["dtype"] = "float64"
    clone = type(layer).from_config(cfg)
    clone._build(inshape if inshape is not None else layer.inshape)
    if layer.built:
        for src, dst in zip(layer.params, clone.params):
            dst.value[...] = src.value
    return clone


def check_gradients(target, x=None, inshape=None, y=None, batch_size: int = 3, training: bool = False,
                    eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7, seed: int = 0) -> dict:
    """Check the gradients of a layer, an activation or a loss against central differences.

    Args:
        target: a ``Layer`` (built or not; checked as a float64 copy), an activation (name or
            object) or a ``Loss`` instance.
        x: input (float64); drawn from N(0, 1) with ``batch_size`` rows when None (uniform integers
            in ``[0, layer.integer_input)`` for a layer that takes indices, like Embedding). An
            integer ``x`` has no input gradient: only the parameters are checked.
        inshape: input shape without batch, when ``x`` is None and the layer has none.
        y: targets for a loss (required for losses).
        training: forward mode for layers (random layers replay the same draws each call).
    Returns:
        ``{'input': max_abs_error, '<param name>': max_abs_error, ...}`` (no ``'input'`` for integer
        x); a non-trainable param that ``backward`` leaves without a gradient (layer state such as
        moving statistics) maps to None: it is not checked.
    Raises:
        GradientCheckError: on the first disagreeing gradient, naming it.
    """
    from cutedl import activations
    from cutedl.layers.base import Layer
    from cutedl.losses import Loss

    rs = np.random.default_rng(seed)
    if isinstance(target, Loss):
        if y is None:
            raise ValueError("check_gradients on a loss needs targets y.")
        x = backend.asarray(np.array(x, dtype=np.float64))

        def f():
            return float(target(y, x))

        target(y, x)
        analytic = target.backward()
        numeric = numerical_gradient(f, x, eps)
        return {"input": _compare(f"{type(target).__name__} input", analytic, numeric, rtol, atol)}

    if not isinstance(target, Layer):
        act = activations.get(target)
        if x is None:
            x = rs.standard_normal((batch_size,) + tuple(inshape or (5,)))
        x = backend.asarray(np.array(x, dtype=np.float64))
        r = backend.asarray(rs.standard_normal(act.forward(x).shape))

        def f():
            return float(backend.xp.sum(act.forward(x) * r))

        yv = act.forward(x)
        analytic = act.backward(x, yv, r)
        return {"input": _compare(f"activation {act!r} input", analytic, numerical_gradient(f, x, eps), rtol, atol)}

    if x is not None:
        x = np.array(x)
        if x.dtype.kind == "f":
            x = x.astype(np.float64)
        inshape = x.shape[1:]
    layer = _as_float64_layer(target, inshape)
    if x is None:
        high = getattr(layer, "integer_input", None)  # e.g. Embedding: indices in [0, high)
        shape = (batch_size,) + tuple(layer.inshape)
        x = rs.standard_normal(shape) if high is None else rs.integers(0, high, shape)
    x = backend.asarray(x)
    gen = getattr(layer, "_rng", None)
    state = gen.bit_generator.state if gen is not None else None

    def fwd():
        if state is not None:
            gen.bit_generator.state = state
        return layer.forward(x, training=training)

    out = fwd()
    r = backend.asarray(rs.standard_normal(out.shape))

    def f():
        return float(backend.xp.sum(fwd() * r))

    fwd()
    dx = layer.backward(r)
    grads = {p.name: None if p.grad is None else backend.to_host(p.grad).astype(np.float64) for p in layer.params}
    report = {}
    if x.dtype.kind == "f":
        report["input"] = _compare(f"layer {layer.describe()} input", dx, numerical_gradient(f, x, eps), rtol, atol)
    for p in layer.params:
        if grads[p.name] is None and not p.trainable:
            # State, not a parameter the loss trains (e.g. BatchNormalization's moving statistics):
            # backward leaves its grad None by design, and the report says it was not checked.
            report[p.name] = None
            continue
        if grads[p.name] is None:
            raise GradientCheckError(f"layer {layer.describe()}: backward did not set {p.name}.grad.")
        report[p.name] = _compare(p.name, grads[p.name], numerical_gradient(f, p.value, eps), rtol, atol)
    return report
