"""The array backend: dtypes, counted host/device crossings, scatter_add, device random draws,
use_backend, and the boundary (only backend.py names numpy)."""
import importlib.util
import pathlib
import re

import numpy as np
import pytest

from cutedl import backend


@pytest.fixture
def restore_floatx():
    saved = backend.floatx()
    yield
    backend.set_floatx(saved)


# ---------------------------------------------------------------------------- dtypes
def test_floatx_defaults_to_float32_and_can_be_set(restore_floatx):
    assert backend.floatx() == np.dtype("float32")
    backend.set_floatx("float64")
    assert backend.floatx() == np.dtype("float64")
    assert backend.resolve_dtype(None) == np.dtype("float64")
    backend.set_floatx(np.float32)
    assert backend.floatx() == np.dtype("float32")


def test_set_floatx_rejects_other_dtypes(restore_floatx):
    with pytest.raises(ValueError, match=r"set_floatx: dtype must be 'float32' or 'float64', got 'int32'"):
        backend.set_floatx("int32")
    assert backend.floatx() == np.dtype("float32")


def test_resolve_dtype():
    assert backend.resolve_dtype(None) == backend.floatx()
    assert backend.resolve_dtype("float64") == np.dtype("float64")
    assert backend.resolve_dtype(np.float32) == np.dtype("float32")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64', got 'float16'"):
        backend.resolve_dtype("float16")
    with pytest.raises(TypeError, match="dtype must be 'float32' or 'float64', got 'nonsense'"):
        backend.resolve_dtype("nonsense")


# ---------------------------------------------------------------------------- host <-> device
def test_to_device_to_host_and_item_are_counted():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    with backend.count_transfers() as t:
        d = backend.to_device(a)
        d2 = backend.to_device([[1, 2], [3, 4]], dtype="float64")
        h = backend.to_host(d)
        v = backend.item(d.sum())
    assert (t.to_device, t.to_host) == (2, 2)
    assert isinstance(h, np.ndarray) and np.array_equal(h, a)
    assert d2.dtype == np.float64 and d2.shape == (2, 2)
    assert v == 15.0 and type(v) is float
    # numpy backend: no copy when the dtype already matches
    assert backend.to_device(a) is a


def test_count_transfers_counts_only_inside_the_block():
    backend.to_device(np.zeros(3))
    with backend.count_transfers() as t:
        pass
    assert (t.to_device, t.to_host) == (0, 0)
    before = backend.transfers.to_device
    backend.to_device(np.zeros(3))
    assert backend.transfers.to_device == before + 1
    assert "to_device=" in repr(t)


def test_asarray_is_not_counted():
    with backend.count_transfers() as t:
        backend.asarray([1.0, 2.0])
    assert t.to_device == 0


def test_is_array_and_is_host_array():
    a = np.zeros(3)
    assert backend.is_array(a) and backend.is_host_array(a)
    for other in ([0.0], 0.0, None, "a"):
        assert not backend.is_array(other) and not backend.is_host_array(other)
    assert np.ndarray in backend.ndarray_types()


def test_as_array_names_who_on_a_ragged_list():
    assert backend.as_array([[1, 2], [3, 4]], "Loss", "y_true").shape == (2, 2)
    with pytest.raises(ValueError, match="Loss: y_true cannot be turned into an array"):
        backend.as_array([[1, 2], [3]], "Loss", "y_true")


# ---------------------------------------------------------------------------- kernels
def test_scatter_add_accumulates_repeated_indices():
    rs = np.random.default_rng(0)
    target = rs.standard_normal((5, 3))
    idx = np.array([0, 3, 3, 1, 0, 3, 4])
    values = rs.standard_normal((len(idx), 3))
    expected = target.copy()
    for i, row in zip(idx, values):  # the hand loop: one row at a time, in order
        expected[i] += row
    backend.scatter_add(target, idx, values)
    np.testing.assert_array_equal(target, expected)


def test_scatter_add_flat():
    target = np.zeros(4)
    backend.scatter_add(target, np.array([1, 1, 1, 2]), np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(target, [0.0, 6.0, 4.0, 0.0])


# ---------------------------------------------------------------------------- random draws
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_normal_bernoulli_shapes_dtypes_and_ranges(dtype):
    gen = np.random.default_rng(0)
    u = backend.uniform(gen, (4, 5), dtype)
    n = backend.normal(gen, (3, 2), dtype, loc=1.0, scale=2.0)
    b = backend.bernoulli(gen, (1000,), keep=0.25, dtype=dtype)
    assert (u.shape, n.shape, b.shape) == ((4, 5), (3, 2), (1000,))
    assert u.dtype == n.dtype == b.dtype == np.dtype(dtype)
    assert np.all((u >= 0) & (u < 1))
    assert set(np.unique(b)) <= {0.0, 1.0} and 0.15 < b.mean() < 0.35


def test_random_draws_default_to_floatx():
    gen = np.random.default_rng(0)
    assert backend.uniform(gen, (2,)).dtype == backend.floatx()
    assert backend.normal(gen, (2,)).dtype == backend.floatx()
    assert backend.bernoulli(gen, (2,), keep=0.5).dtype == backend.floatx()


def test_random_draws_are_deterministic_and_match_the_generator():
    a = backend.uniform(np.random.default_rng(7), (3, 4), "float32")
    b = backend.uniform(np.random.default_rng(7), (3, 4), "float32")
    np.testing.assert_array_equal(a, b)
    # the same stream as the generator's own draw (what Dropout used before the backend existed)
    np.testing.assert_array_equal(a, np.random.default_rng(7).random((3, 4), dtype=np.float32))
    n1 = backend.normal(np.random.default_rng(3), (5,), "float64", loc=2.0, scale=0.5)
    n2 = 2.0 + 0.5 * np.random.default_rng(3).standard_normal(5)
    np.testing.assert_allclose(n1, n2, rtol=1e-15)
    m1 = backend.bernoulli(np.random.default_rng(1), (50,), keep=0.5, dtype="float64")
    m2 = backend.bernoulli(np.random.default_rng(1), (50,), keep=0.5, dtype="float64")
    np.testing.assert_array_equal(m1, m2)


# ---------------------------------------------------------------------------- use_backend
def test_use_backend_numpy():
    backend.use_backend("numpy")
    assert backend.current() == "numpy" and backend.xp is np
    backend.use_backend("NumPy")
    assert backend.xp is np


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_use_backend_cupy_without_cupy_names_cupy():
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        backend.use_backend("cupy")
    assert backend.current() == "numpy" and backend.xp is np


@pytest.mark.parametrize("name", ["tpu", "", None, 3])
def test_use_backend_unknown_name(name):
    with pytest.raises(ValueError, match=r"use_backend: the backend must be 'numpy' or 'cupy'"):
        backend.use_backend(name)
    assert backend.xp is np


# ---------------------------------------------------------------------------- the boundary
_PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "cutedl"
_ALLOWED = {"backend.py", "_io.py"}


def test_only_backend_imports_numpy():
    pattern = re.compile(r"^\s*(import numpy|from numpy)", re.MULTILINE)
    offenders = []
    for path in sorted(_PACKAGE.rglob("*.py")):
        rel = path.relative_to(_PACKAGE)
        if str(rel) in _ALLOWED or rel.parts[0] == "datasets":
            continue
        if pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(str(rel))
    assert not offenders, f"these modules import numpy directly (use cutedl.backend): {offenders}"
