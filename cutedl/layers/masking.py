"""Masking: mark padded time steps of a float sequence so that later layers skip them.

The layer that creates a mask from the data itself (steps whose features all equal
``mask_value``); see :mod:`cutedl.layers.base` for how masks travel through a model.
"""
from __future__ import annotations

from cutedl import backend
from cutedl._validate import check_number
from cutedl.layers.base import Layer, registry


@registry.register("Masking")
class Masking(Layer):
    """Mask every time step whose features all equal ``mask_value`` (Keras ``Masking``).

    The output is the input with masked steps set to zero; the output mask (see
    :mod:`cutedl.layers.base`) is True where at least one feature differs from ``mask_value``.
    A following RNN leaves its state unchanged on masked steps, so padding does not change its
    result; masked steps get no gradient.

    Args:
        mask_value: the padding value (default 0.0).
    Input shape: ``(batch, T, features...)``. Output shape: the same.
    Example:
        >>> Model([Masking(0.0, inshape=(None, 3)), LSTM(16), Dense(1)])
    """

    def __init__(self, mask_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        # inf is a valid padding value; NaN is not (it never equals itself, so nothing would be masked)
        self.mask_value = check_number("Masking", "mask_value", mask_value, finite=False,
                                       what="a number, not NaN (NaN never equals itself)")

    def build(self, inshape):
        if len(inshape) < 2:
            raise ValueError(f"Layer {self.describe()} needs input (batch, T, features), got "
                             f"(batch, {', '.join(map(str, inshape))}). Add a features axis, e.g. "
                             f"x[..., None] and inshape=(T, 1).")
        self.outshape = tuple(inshape)

    def compute_mask(self, x, mask=None):
        # True where any feature of the step differs from mask_value: (batch, T)
        keep = x != self.mask_value
        return keep.any(axis=tuple(range(2, keep.ndim)))  # no reshape: works on an empty batch too

    def forward(self, x, training=False):
        self.check_input(x)
        self._keep = self.compute_mask(x)  # (batch, T) bool
        return self._zero_masked(x)

    def backward(self, grad):
        return self._zero_masked(grad)

    def _zero_masked(self, a):
        keep = self._keep.reshape(self._keep.shape + (1,) * (a.ndim - 2))
        return backend.xp.multiply(a, keep, dtype=a.dtype)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(mask_value=self.mask_value)
        return cfg
