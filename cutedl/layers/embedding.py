"""Embedding: integer token ids -> dense vectors, the first layer of a text model."""
from __future__ import annotations

import numpy as np

from cutedl import initializers, regularizers
from cutedl.backend import xp
from cutedl.layers.base import Layer, registry
from cutedl.layers.core import _check_units, _ser_reg


@registry.register("Embedding")
class Embedding(Layer):
    """Look up a learned vector for every integer index: ``y[..., :] = embeddings[x[...]]``.

    Args:
        input_dim: vocabulary size; valid indices are ``0 .. input_dim - 1``.
        output_dim: length of each vector.
        mask_zero: index 0 is padding: :meth:`compute_mask` returns ``x != 0`` so that recurrent
            layers downstream skip padded steps (index 0 must then not be a real token, so
            ``input_dim`` is the vocabulary size + 1).
        embeddings_initializer: default ``'uniform'`` (uniform in [-0.05, 0.05], as Keras).
        embeddings_regularizer: e.g. ``'l2'``.
        inshape: ``(T,)`` for sequences of T steps; default ``(None,)``, any length (batches may
            then differ in length, e.g. from :class:`cutedl.sequences.SequenceDataset`).
    Input shape: ``(batch, T)`` (or any ``(batch, ...)``) of integers, any int dtype; floats
        holding exact integers are accepted too (as Keras does). The input is never cast to
        float, and it has no gradient: ``backward`` returns None.
    Output shape: ``(batch, T, output_dim)``.
    Params: ``embeddings (input_dim, output_dim)``. Its gradient sums the output gradients of
        every position holding the same index.
    Example:
        >>> Embedding(10000, 64, mask_zero=True, inshape=(200,))
    """

    def __init__(self, input_dim: int, output_dim: int, mask_zero: bool = False,
                 embeddings_initializer="uniform", embeddings_regularizer=None, **kwargs):
        # Without inshape, the layer is a valid first layer for sequences of any length, and it
        # accepts whatever input rank it is built with.
        self._any_inshape = kwargs.get("inshape") is None
        if self._any_inshape:
            kwargs["inshape"] = (None,)
        super().__init__(**kwargs)
        self.input_dim = _check_units("Embedding", "input_dim", input_dim)
        self.output_dim = _check_units("Embedding", "output_dim", output_dim)
        self.mask_zero = bool(mask_zero)
        if self.mask_zero and self.input_dim < 2:
            raise ValueError(f"Embedding: with mask_zero=True index 0 is padding, so input_dim must be at "
                             f"least 2 (vocabulary size + 1), got {self.input_dim}.")
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)

    @property
    def integer_input(self) -> int:
        """Inputs are integer indices in ``[0, integer_input)``: Model does not cast them to float,
        and ``testing.check_gradients`` draws such indices and checks no input gradient."""
        return self.input_dim

    def _build(self, inshape):
        if self._any_inshape:
            self.inshape = None
        super()._build(inshape)

    def build(self, inshape):
        self.embeddings = self.add_param("embeddings", (self.input_dim, self.output_dim),
                                         self.embeddings_initializer, self.embeddings_regularizer)
        self.outshape = tuple(inshape) + (self.output_dim,)

    def _indices(self, x) -> np.ndarray:
        """``x`` as an intp index array, or a teaching error for non-integers and out-of-range ids."""
        kind = x.dtype.kind
        if kind == "f":
            bad = ~np.isfinite(x)
            bad[~bad] = x[~bad] != np.floor(x[~bad])
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"Layer {self.describe()} expects integer token indices, got {x[where]!r} at "
                                 f"position {where}. Pass an integer array (e.g. from pad_sequences).")
        elif kind not in "iu":
            raise TypeError(f"Layer {self.describe()} expects integer token indices, got an array of dtype "
                            f"{x.dtype}. Pass an integer array (e.g. from pad_sequences).")
        if x.size:
            lo, hi = x.min(), x.max()
            if lo < 0 or hi >= self.input_dim:
                bad_value = lo if lo < 0 else hi
                where = tuple(int(i) for i in np.argwhere(x == bad_value)[0])
                raise ValueError(f"Layer {self.describe()}: index {bad_value.item()!r} at position {where} is "
                                 f"out of range; valid indices are 0 .. {self.input_dim - 1} "
                                 f"(input_dim={self.input_dim}). Raise input_dim to the vocabulary size "
                                 f"(+ 1 with mask_zero) or map rare tokens to an out-of-vocabulary index.")
        return x.astype(np.intp, copy=False)

    def forward(self, x, training=False):
        self.check_input(x)
        self._idx = self._indices(x)
        return self.embeddings.value[self._idx]  # (batch, T) -> (batch, T, output_dim)

    def backward(self, grad):
        w = self.embeddings
        n, d = self.input_dim, self.output_dim
        idx = self._idx.reshape(-1)  # (batch*T,)
        g = grad.reshape(-1, d)  # (batch*T, output_dim)
        # Sum rows of g that share an index: one bincount over (index, column) pairs. Measured
        # faster than np.add.at and a sort + reduceat for vocabularies of 100 to 20,000; it sums
        # in float64, so a frequent token's gradient loses nothing to float32 rounding.
        flat = (idx[:, None] * d + np.arange(d)).reshape(-1)  # (batch*T*output_dim,)
        sums = np.bincount(flat, weights=g.reshape(-1), minlength=n * d)  # (input_dim*output_dim,)
        if w.grad is None or w.grad.shape != w.shape:
            w.grad = xp.empty_like(w.value)
        np.copyto(w.grad, sums.reshape(n, d), casting="same_kind")
        return None  # integer input: no gradient

    def compute_mask(self, x, mask=None):
        """``(batch, T)`` bool, True where ``x`` is a real token (``x != 0``) with mask_zero, else None."""
        if not self.mask_zero:
            return None
        return xp.asarray(x) != 0

    def get_config(self):
        cfg = super().get_config()
        if self._any_inshape and not self.built:
            del cfg["inshape"]  # the "any length" default, not a fixed shape
        cfg.update(input_dim=self.input_dim, output_dim=self.output_dim, mask_zero=self.mask_zero,
                   embeddings_initializer=initializers.registry.serialize(self.embeddings_initializer),
                   embeddings_regularizer=_ser_reg(self.embeddings_regularizer))
        return cfg
