"""Adam updates a large param a cache-sized block at a time: the same values as the textbook
formula, and bit-identical to the whole-array update that a non-contiguous param takes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cutedl.layers.base import Param
from cutedl.optimizers import _BLOCK_VALUES, Adam, AdamW


def _reference_adam(w, grads, lr, b1, b2, eps):
    """Keras 3's Adam in float64, written out once more (independent of the optimizer code)."""
    w, m, v = w.astype(np.float64), np.zeros(w.shape), np.zeros(w.shape)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        w -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return w


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_blocked_update_is_bit_identical_to_whole_array(cls, amsgrad):
    rs = np.random.default_rng(0)
    shape = (3, _BLOCK_VALUES + 1001)   # two full blocks and a partial one
    w0 = rs.standard_normal(shape).astype(np.float32)
    grads = [rs.standard_normal(shape).astype(np.float32) for _ in range(3)]
    blocked = Param("dense_1/weight", w0.copy())
    whole = Param("dense_1/weight", np.asfortranarray(w0))   # not C-contiguous: one whole-array update
    for p in (blocked, whole):
        opt = cls(lr=1e-2, amsgrad=amsgrad)
        for g in grads:
            p.grad = g
            opt.step([p])
    assert blocked.value.flags.c_contiguous and not whole.value.flags.c_contiguous
    assert blocked.value.tobytes() == np.ascontiguousarray(whole.value).tobytes()


def test_blocked_update_matches_the_formula():
    rs = np.random.default_rng(1)
    w0 = rs.standard_normal(2 * _BLOCK_VALUES + 7).astype(np.float32)
    grads = [rs.standard_normal(w0.shape).astype(np.float32) for _ in range(4)]
    p, opt = Param("dense_1/weight", w0.copy()), Adam(lr=1e-2)
    for g in grads:
        p.grad = g
        opt.step([p])
    expected = _reference_adam(w0, grads, 1e-2, 0.9, 0.999, 1e-7)
    np.testing.assert_allclose(p.value, expected, rtol=1e-5, atol=1e-6)
