"""Regularizers: penalties against their formulas, central-difference gradients, lookup, errors."""
import numpy as np
import pytest

from cutedl import regularizers
from cutedl.regularizers import L1, L1L2, L2


def _central_difference(f, w, eps=1e-6):
    """dF/dw elementwise, by (F(w + eps e_i) - F(w - eps e_i)) / 2 eps, on a float64 copy."""
    w = np.array(w, dtype=np.float64)
    g = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        old = w[i]
        w[i] = old + eps
        fp = f(w)
        w[i] = old - eps
        fm = f(w)
        w[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def _weights(shape=(4, 3), seed=0):
    rs = np.random.default_rng(seed)
    # |w| >= 0.05 keeps the L1 kink at 0 out of every central difference.
    return rs.uniform(0.05, 1.5, size=shape) * rs.choice([-1.0, 1.0], size=shape)


@pytest.mark.parametrize("reg, formula", [
    (L1(0.3), lambda w: 0.3 * np.abs(w).sum()),
    (L2(0.2), lambda w: 0.2 * (w ** 2).sum()),
    (L1L2(l1=0.1, l2=0.4), lambda w: 0.1 * np.abs(w).sum() + 0.4 * (w ** 2).sum()),
])
def test_penalty_matches_formula_and_gradient_matches_central_differences(reg, formula):
    w = _weights((3, 2, 4))
    value = reg.loss(w)
    assert isinstance(value, float)
    assert value == pytest.approx(formula(w), rel=1e-12)
    assert reg(w) == value
    numeric = _central_difference(reg.loss, w)
    np.testing.assert_allclose(reg.grad(w), numeric, rtol=1e-6, atol=1e-9)


def test_known_values():
    w = np.array([[1.0, -2.0], [0.0, 3.0]])
    assert L1(0.5).loss(w) == pytest.approx(3.0)
    assert L2(0.5).loss(w) == pytest.approx(7.0)
    assert L1L2(0.5, 0.5).loss(w) == pytest.approx(10.0)
    np.testing.assert_allclose(L1(0.5).grad(w), [[0.5, -0.5], [0.0, 0.5]])
    np.testing.assert_allclose(L2(0.5).grad(w), [[1.0, -2.0], [0.0, 3.0]])
    np.testing.assert_allclose(L1L2(0.5, 0.5).grad(w), [[1.5, -2.5], [0.0, 3.5]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reg", [L1(), L2(), L1L2(0.01, 0.02)])
def test_grad_keeps_dtype_and_does_not_touch_w(reg, dtype):
    w = _weights().astype(dtype)
    w0 = w.copy()
    g = reg.grad(w)
    assert g.dtype == dtype and g.shape == w.shape
    assert isinstance(reg.loss(w), float)
    np.testing.assert_array_equal(w, w0)


def test_zero_factors_give_zero():
    w = _weights()
    assert L1L2().loss(w) == 0.0
    np.testing.assert_array_equal(L1L2().grad(w), np.zeros_like(w))


def test_get_by_name_uses_keras_defaults():
    assert regularizers.get("l1") == L1(0.01)
    assert regularizers.get("L2") == L2(0.01)
    # Keras 3: the string 'l1_l2' means 0.01 each, while L1L2() defaults to 0.0 each.
    assert regularizers.get("l1_l2") == L1L2(l1=0.01, l2=0.01)
    assert regularizers.get("L1L2") == L1L2(l1=0.01, l2=0.01)
    assert L1L2().get_config() == {"l1": 0.0, "l2": 0.0}


def test_get_instances_configs_and_none():
    assert regularizers.get(None) is None
    reg = L2(1e-4)
    assert regularizers.get(reg) is reg
    cfg = regularizers.registry.serialize(L1L2(l1=0.2, l2=0.0))
    assert cfg == {"class_name": "l1_l2", "config": {"l1": 0.2, "l2": 0.0}}
    assert regularizers.get(cfg) == L1L2(l1=0.2, l2=0.0)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown regularizer 'l3'.*l1.*l1_l2.*l2"):
        regularizers.get("l3")


@pytest.mark.parametrize("make, err, match", [
    (lambda: L1(-0.1), ValueError, "L1: l1 must be a finite number >= 0"),
    (lambda: L2(-1e-3), ValueError, "L2: l2 must be a finite number >= 0"),
    (lambda: L1L2(l1=0.1, l2=-0.1), ValueError, "L1L2: l2 must be"),
    (lambda: L1L2(l1=-0.1), ValueError, "L1L2: l1 must be"),
    (lambda: L2(float("nan")), ValueError, "finite"),
    (lambda: L2("0.1"), TypeError, "l2 must be a finite number >= 0, got str"),
])
def test_invalid_factors(make, err, match):
    with pytest.raises(err, match=match):
        make()
