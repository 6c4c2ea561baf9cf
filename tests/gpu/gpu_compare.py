"""Run the same layer or model on the NumPy backend and on the device backend, and compare.

Shared by the fake-CuPy tests (CPU, every CI run) and the real-GPU tests. Params are created on
the NumPy backend and copied to the device, so both sides compute from the same numbers; inputs
and upstream gradients are host draws copied with ``backend.to_device``.
"""
from __future__ import annotations

import copy

import numpy as np

from cutedl import backend, layers


def has_randomness(layer) -> bool:
    """Dropout-like draws: the device generator's stream differs from NumPy's, so no comparison."""
    if getattr(layer, "rate", 0) or getattr(layer, "dropout", 0) or getattr(layer, "recurrent_dropout", 0):
        return True
    inner = [getattr(layer, a, None) for a in ("layer", "forward_layer", "backward_layer")]
    return any(has_randomness(i) for i in inner if i is not None)


def _host(a):
    if isinstance(a, (list, tuple)):
        return [_host(v) for v in a]
    return None if a is None else backend.to_host(a)


def run_layer(name, kwargs, inshape, training, dtype, device: bool, batch: int = 3, seed: int = 0,
              params=None):
    """Forward and backward of layer ``name`` on the active backend; host results.

    Returns ``(params, y, dx, grads)``: the host param values used (``params`` when given, else the
    layer's own init), the output, the input gradient (None for integer input) and the param grads
    (``{name: host array or None}``).
    """
    cls = layers.registry.lookup(name)
    layer = cls(**copy.deepcopy(kwargs), dtype=dtype)
    multi = getattr(layer, "multi_input", False)
    layer._build([inshape] * 2 if multi else inshape)
    if params is not None:
        for p, v in zip(layer.params, params):
            p.value[...] = backend.to_device(v)
    used = [backend.to_host(p.value).copy() for p in layer.params]
    rs = np.random.default_rng(seed)
    high = getattr(layer, "integer_input", None)
    shape = (batch,) + tuple(inshape)
    x = [rs.standard_normal(shape).astype(dtype) for _ in range(2)] if multi else (
        rs.standard_normal(shape).astype(dtype) if high is None else rs.integers(0, high, shape))
    xd = [backend.to_device(v) for v in x] if multi else backend.to_device(x)
    y = layer.forward(xd, training=training)
    r = rs.standard_normal(tuple(y.shape)).astype(dtype)
    dx = layer.backward(backend.to_device(r))
    grads = {p.name.split("/", 1)[1]: (None if p.grad is None else backend.to_host(p.grad)) for p in layer.params}
    return used, backend.to_host(y), _host(dx), grads


def assert_close(a, b, rtol: float, what: str = ""):
    """``a`` == ``b`` within ``rtol`` of the largest magnitude of ``b`` (element-wise relative errors
    are meaningless next to cancellations)."""
    if a is None or b is None:
        assert a is None and b is None, f"{what}: one side is None"
        return
    if isinstance(b, list):
        assert len(a) == len(b), what
        for i, (u, v) in enumerate(zip(a, b)):
            assert_close(u, v, rtol, f"{what}[{i}]")
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} != {b.shape}"
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-30)
    err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if b.size else 0.0
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:g} x {scale:.3g}"


def compare_layer(name, kwargs, inshape, training, dtype, rtol: float, to_device_backend):
    """Run the case on NumPy, then on the device backend (``to_device_backend()`` switches to it) with
    the same params, and compare output, input gradient and param gradients."""
    backend.use_backend("numpy")
    params, y, dx, grads = run_layer(name, kwargs, inshape, training, dtype, device=False)
    to_device_backend()
    params2, y2, dx2, grads2 = run_layer(name, kwargs, inshape, training, dtype, device=True, params=params)
    for a, b in zip(params2, params):
        np.testing.assert_array_equal(a, b)
    assert_close(y2, y, rtol, f"{name} output")
    assert_close(dx2, dx, rtol, f"{name} input gradient")
    assert grads2.keys() == grads.keys()
    for k in grads:
        assert_close(grads2[k], grads[k], rtol, f"{name} grad of {k}")


def load_test_module(name: str):
    """A module of tests/ by file name (tests/ is not a package): e.g. the gradient-check CASES."""
    import importlib.util
    import pathlib
    import sys

    key = f"_cutedl_tests_{name}"
    if key not in sys.modules:
        path = pathlib.Path(__file__).resolve().parent.parent / f"{name}.py"
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def layer_cases():
    """``[(name, kwargs, inshape, training)]``: every case of tests/test_gradients.py, merge layers too."""
    grads = load_test_module("test_gradients")
    cases = [(n, *c) for n, cs in grads.CASES.items() for c in cs]
    cases += [(n, kw, (2, 3), False) for n, (kw, _) in grads.MERGE_CASES.items()]
    return cases
