"""Embedding: integer token ids -> dense vectors, the first layer of a text model.

Owns the index validation (integers in ``[0, input_dim)``, with the position of a bad one), the
lookup and its gradient (a scatter-add of the output gradients onto the rows they came from),
and the ``mask_zero`` padding mask.
"""
from __future__ import annotations

from cutedl import backend
from cutedl._validate import check_bool
from cutedl.layers._args import check_units, set_weight_args, weight_args_config
from cutedl.layers.base import Layer, registry


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
        inshape: ``(T,)`` for sequences of T steps (``input_shape``, Keras' spelling, works too);
            default ``(None,)``, any length (batches may then differ in length, e.g. from
            :class:`cutedl.sequences.SequenceDataset`).
    Input shape: ``(batch, T)`` (or any ``(batch, ...)``) of integers, any int dtype; floats
        holding exact integers are accepted too (as Keras does), checked in their own dtype
        (float32 ids only below 2**24). The input is never cast to float, and it has no
        gradient: ``backward`` returns None.
    Output shape: ``(batch, T, output_dim)``.
    Params: ``embeddings (input_dim, output_dim)``. Its gradient sums the output gradients of
        every position holding the same index.
    Example:
        >>> Embedding(10000, 64, mask_zero=True, inshape=(200,))
    """

    def __init__(self, input_dim: int, output_dim: int, mask_zero: bool = False,
                 embeddings_initializer="uniform", embeddings_regularizer=None, **kwargs):
        # Without inshape (or Keras' input_shape), the layer is a valid first layer for sequences
        # of any length, and it accepts whatever input rank it is built with.
        self._any_inshape = kwargs.get("inshape") is None and kwargs.get("input_shape") is None
        if self._any_inshape:
            kwargs.pop("input_shape", None)
            kwargs["inshape"] = (None,)
        super().__init__(**kwargs)
        self.input_dim = check_units("Embedding", "input_dim", input_dim)
        self.output_dim = check_units("Embedding", "output_dim", output_dim)
        self.mask_zero = check_bool("Embedding", "mask_zero", mask_zero)
        if self.mask_zero and self.input_dim < 2:
            raise ValueError(f"Embedding: with mask_zero=True index 0 is padding, so input_dim must be at "
                             f"least 2 (vocabulary size + 1), got {self.input_dim}.")
        set_weight_args(self, embeddings=(embeddings_initializer, embeddings_regularizer))

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

    def _indices(self, x):
        """``x`` as an intp index array, or a teaching error for non-integers and out-of-range ids.

        Float ids are checked in their own dtype, before any conversion: 1.00000001 in float64 is
        not an integer. A float dtype holds every integer exactly only below 2**(mantissa bits + 1)
        (2**24 = 16777216 for float32): above that an id may already have been rounded to its
        neighbour (16777217 -> 16777216), so such ids are refused when the vocabulary reaches there.
        """
        xp = backend.xp
        kind = x.dtype.kind
        # Data checks go through backend.check: on a GPU their flags come back with the loss value
        # instead of costing a device->host round trip each.
        if kind == "f":
            bad = ~xp.isfinite(x)
            bad |= x != xp.floor(x)  # floor(inf) == inf: only NaN and fractions add to ~isfinite

            def not_integer():
                where = tuple(int(i) for i in backend.to_host(xp.argwhere(bad)[0]))
                raise ValueError(f"Layer {self.describe()} expects integer token indices, got "
                                 f"{backend.to_host(x[where]).item()!r} at position {where}. Pass an integer array "
                                 f"(e.g. from pad_sequences).")
            backend.check(bad.any(), not_integer)
            exact = 2 ** (xp.finfo(x.dtype).nmant + 1)  # float32: 16777216
            if self.input_dim > exact and x.size:
                def inexact():
                    where = tuple(int(i) for i in backend.to_host(xp.argwhere(xp.abs(x) >= exact)[0]))
                    raise ValueError(f"Layer {self.describe()}: token index {backend.to_host(x[where]).item()!r} at "
                                     f"position {where} is a {x.dtype} value at or above 2**{exact.bit_length() - 1} "
                                     f"= {exact}, where {x.dtype} cannot tell neighbouring integers apart (16777217 "
                                     f"is stored as 16777216 in float32). Pass the ids as an integer array "
                                     f"(int32/int64).")
                backend.check(xp.abs(x).max() >= exact, inexact)
        elif kind not in "iu":
            raise TypeError(f"Layer {self.describe()} expects integer token indices, got an array of dtype "
                            f"{x.dtype}. Pass an integer array (e.g. from pad_sequences).")
        if x.size:
            lo, hi = x.min(), x.max()

            def out_of_range():
                bad_value = lo if backend.item(lo) < 0 else hi
                where = tuple(int(i) for i in backend.to_host(xp.argwhere(x == bad_value)[0]))
                raise ValueError(f"Layer {self.describe()}: index {backend.to_host(bad_value).item()!r} at position "
                                 f"{where} is out of range; valid indices are 0 .. {self.input_dim - 1} "
                                 f"(input_dim={self.input_dim}). Raise input_dim to the vocabulary size "
                                 f"(+ 1 with mask_zero) or map rare tokens to an out-of-vocabulary index.")
            backend.check((lo < 0) | (hi >= self.input_dim), out_of_range)
        return x.astype(xp.intp, copy=False)

    def forward(self, x, training=False):
        self.check_input(x)
        self._idx = self._indices(x)
        return self.embeddings.value[self._idx]  # (batch, T) -> (batch, T, output_dim)

    def backward(self, grad):
        xp = backend.xp
        w = self.embeddings
        n, d = self.input_dim, self.output_dim
        idx = self._idx.reshape(-1)  # (batch*T,)
        # Sum the rows of grad that share an index, in float64 so that a frequent token's gradient
        # loses nothing to float32 rounding, then round once into the param's dtype. A scatter-add
        # over flat (index, column) positions with values of the sum's own dtype: NumPy's fast
        # 1-D path (a 2-D or mixed-dtype np.add.at is 5-30x slower).
        flat = (idx[:, None] * d + xp.arange(d)).reshape(-1)  # (batch*T*output_dim,)
        sums = xp.zeros(n * d, dtype=xp.float64)  # (input_dim*output_dim,)
        backend.scatter_add(sums, flat, grad.reshape(-1).astype(xp.float64, copy=False))
        if w.grad is None or w.grad.shape != w.shape:
            w.grad = xp.empty_like(w.value)
        xp.copyto(w.grad, sums.reshape(n, d), casting="same_kind")
        return None  # integer input: no gradient

    def compute_mask(self, x, mask=None):
        """``(batch, T)`` bool, True where ``x`` is a real token (``x != 0``) with mask_zero, else None."""
        if not self.mask_zero:
            return None
        return backend.xp.asarray(x) != 0

    def get_config(self):
        cfg = super().get_config()
        if self._any_inshape and not self.built:
            del cfg["inshape"]  # the "any length" default, not a fixed shape
        cfg.update(input_dim=self.input_dim, output_dim=self.output_dim, mask_zero=self.mask_zero)
        cfg.update(weight_args_config(self, "embeddings"))
        return cfg
