"""Pooling layers: MaxPool2D, AvgPool2D, MaxPool1D, AvgPool1D, GlobalAveragePooling2D,
GlobalMaxPooling2D (Keras names such as ``MaxPooling2D`` are aliases).

Channels-first like the convolutions. The window layers loop over the ``ph * pw`` offsets of the
pooling window, each step a vectorised operation on the whole batch (one strided slice per
offset), never over output positions. Max pooling sends the gradient of a window to its first
maximum (row-major order), like TensorFlow and PyTorch, so ties never double-count.
"""
from __future__ import annotations

from cutedl import backend
from cutedl._validate import check_bool
from cutedl.layers import _spatial as sp
from cutedl.layers.base import Layer, grad_enabled, registry


def _no_cache_error(layer) -> RuntimeError:
    return RuntimeError(f"Layer {layer.describe()}: backward called after a forward under no_grad() (which "
                        f"keeps nothing for backward), or before any forward. Run the forward pass outside "
                        f"no_grad() to train.")


class _Pool(Layer):
    """Shared code of the windowed pools (``rank`` 1 or 2 spatial axes; 1-D runs as a 1 x L image)."""

    rank = 2
    _fill = 0.0  # value of the padding ('same'): -inf for max pooling

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        who = type(self).__name__
        self.pool_size = sp.int_tuple(pool_size, self.rank, who, "pool_size")
        self.strides = self.pool_size if strides is None else sp.int_tuple(strides, self.rank, who, "strides")
        self.padding = sp.padding_arg(padding, self.rank, who, ("valid", "same"))
        if not isinstance(self.padding, str):
            raise ValueError(f"{who}: padding must be 'valid' or 'same', got {padding!r}.")

    def _hw(self, values):
        return (1,) + tuple(values) if self.rank == 1 else tuple(values)

    def _layout(self) -> str:
        return "(batch, channels, length)" if self.rank == 1 else "(batch, channels, height, width)"

    def _geometry(self, spatial):
        out, pads = [], []
        for a, (length, k, s) in enumerate(zip(self._hw(spatial), self._hw(self.pool_size), self._hw(self.strides))):
            if length is None:
                out.append(None)
                pads.append(None)
                continue
            pad = "valid" if (self.rank == 1 and a == 0) else self.padding
            axis = "length" if self.rank == 1 else ("height", "width")[a]
            o, before, after = sp.window_geometry(length, k, s, 1, pad, self.describe(), axis)
            out.append(o)
            pads.append((before, after))
        return tuple(out), tuple(pads)

    def build(self, inshape):
        if len(inshape) != self.rank + 1:
            raise ValueError(f"Layer {self.describe()} expects inputs of shape {self._layout()}, i.e. an inshape "
                             f"of {self.rank + 1} values, got inshape {tuple(inshape)}.")
        self.outshape = (inshape[0],) + self._geometry(inshape[1:])[0][-self.rank:]

    def check_input(self, x):
        shape = getattr(x, "shape", None)
        if self.built and shape is not None and len(shape) != self.rank + 2:
            raise ValueError(f"Layer {self.describe()} expected a {self.rank + 2}-D input {self._layout()} "
                             f"matching inshape {self.inshape}, got an array of shape {tuple(shape)}.")
        super().check_input(x)

    def forward(self, x, training=False):
        self.check_input(x)
        x4 = x[:, :, None, :] if self.rank == 1 else x
        out_hw, pads = self._geometry(x.shape[2:])
        xt = sp.to_chwn(x4, pads, fill=self._fill, contiguous=False)  # (C, Hp, Wp, N)
        self._x_shape, self._out_hw, self._pads = x4.shape, out_hw, pads
        self._xt = None
        y = self._pool(xt, out_hw)  # (C, Ho, Wo, N)
        if grad_enabled():
            self._xt = xt
        else:
            self._y = None
        y = y.transpose(3, 0, 1, 2)
        return y[:, :, 0, :] if self.rank == 1 else y

    def backward(self, grad):
        if getattr(self, "_xt", None) is None:
            raise _no_cache_error(self)
        g4 = grad[:, :, None, :] if self.rank == 1 else grad
        n, c, h, w = self._x_shape
        (pt, pb), (pl, pr) = self._pads
        shape = (c, h + pt + pb, w + pl + pr, n)
        # Every cell is written (not added to) when the windows tile the input exactly.
        tiled = all(s == k for s, k in zip(self._hw(self.strides), self._hw(self.pool_size))) and all(
            o * k == length for o, k, length in zip(self._out_hw, self._hw(self.pool_size), shape[1:3]))
        dxt = backend.xp.empty(shape, dtype=grad.dtype) if tiled and self._assigns else \
            backend.xp.zeros(shape, dtype=grad.dtype)
        self._unpool(g4.transpose(1, 2, 3, 0), dxt)
        dx = dxt[:, pt:pt + h, pl:pl + w].transpose(3, 0, 1, 2)
        return dx[:, :, 0, :] if self.rank == 1 else dx

    def _offsets(self):
        kh, kw = self._hw(self.pool_size)
        return [(i, j) for i in range(kh) for j in range(kw)]

    def _window(self, a, i, j):
        return sp.window(a, i, j, self._out_hw, self._hw(self.strides), (1, 1))

    def get_config(self):
        cfg = super().get_config()
        one = self.rank == 1
        cfg.update(pool_size=self.pool_size[0] if one else list(self.pool_size),
                   strides=self.strides[0] if one else list(self.strides), padding=self.padding)
        return cfg


class _MaxPool(_Pool):
    _fill = float("-inf")
    _assigns = True   # _unpool writes every window cell when the windows are disjoint

    def _pool(self, xt, out_hw):
        xp = backend.xp
        offsets = self._offsets()
        y = self._window(xt, *offsets[0]).copy(order="K")
        for i, j in offsets[1:]:
            xp.maximum(y, self._window(xt, i, j), out=y)
        self._y = y
        return y

    def _unpool(self, g, dxt):
        xp = backend.xp
        offsets = self._offsets()
        # Windows that do not overlap write disjoint cells: assign instead of accumulating.
        disjoint = all(s >= k for s, k in zip(self.strides, self.pool_size))
        # Only the first maximum of each window (row-major) gets the gradient: once an offset has
        # matched, its window's entry of ``left`` becomes NaN, which equals nothing after it.
        left = self._y
        hit = xp.empty(left.shape, dtype=bool)
        for k, (i, j) in enumerate(offsets):
            xp.equal(self._window(self._xt, i, j), left, out=hit)
            if disjoint:
                xp.multiply(g, hit, out=self._window(dxt, i, j))
            else:
                self._window(dxt, i, j)[...] += g * hit
            if k + 1 < len(offsets):
                if left is self._y:
                    left = left.copy()
                xp.copyto(left, xp.nan, where=hit)

class _AvgPool(_Pool):
    """Average over the window; with 'same' padding the padded cells are not counted (Keras)."""

    _assigns = False

    def _inverse_counts(self, xt, out_hw):
        """1 / (number of real input cells in each window), shape (1, Ho, Wo, 1)."""
        xp = backend.xp
        n, c, h, w = self._x_shape
        counts = []
        for length, o, k, s, (before, _) in zip((h, w), out_hw, self._hw(self.pool_size), self._hw(self.strides),
                                               self._pads):
            start = xp.arange(o) * s - before
            counts.append(xp.minimum(start + k, length) - xp.maximum(start, 0))
        inv = 1.0 / (counts[0][:, None] * counts[1][None, :])
        return inv.astype(xt.dtype)[None, :, :, None]

    def _pool(self, xt, out_hw):
        offsets = self._offsets()
        y = self._window(xt, *offsets[0]).copy(order="K")
        for i, j in offsets[1:]:
            y += self._window(xt, i, j)
        self._inv = self._inverse_counts(xt, out_hw)
        y *= self._inv
        return y

    def _unpool(self, g, dxt):
        g = g * self._inv
        for i, j in self._offsets():
            self._window(dxt, i, j)[...] += g


_POOL_DOC = """{kind} pooling over {what}.

    Args:
        pool_size: {size} (default 2).
        strides: {size} (default: pool_size).
        padding: 'valid' (windows inside the input) or 'same' (output ``ceil(in / stride)``, padding
            split like TensorFlow{pad_note}).
    Input shape: ``{inshape}``. Output shape: ``{outshape}``.
    """


@registry.register("MaxPool2D", "MaxPooling2D")
class MaxPool2D(_MaxPool):
    __doc__ = _POOL_DOC.format(kind="Max", what="height and width", size="int or (ph, pw)",
                               pad_note="; padded cells never win",
                               inshape="(batch, channels, height, width)",
                               outshape="(batch, channels, out_height, out_width)")
    rank = 2


@registry.register("AvgPool2D", "AveragePooling2D")
class AvgPool2D(_AvgPool):
    __doc__ = _POOL_DOC.format(kind="Average", what="height and width", size="int or (ph, pw)",
                               pad_note="; padded cells are left out of the average",
                               inshape="(batch, channels, height, width)",
                               outshape="(batch, channels, out_height, out_width)")
    rank = 2


_POOL1D = dict(what="the length axis", size="int", pad_note="", inshape="(batch, channels, length)",
               outshape="(batch, channels, out_length)")


@registry.register("MaxPool1D", "MaxPooling1D")
class MaxPool1D(_MaxPool):
    __doc__ = _POOL_DOC.format(kind="Max", **_POOL1D)
    rank = 1


@registry.register("AvgPool1D", "AveragePooling1D")
class AvgPool1D(_AvgPool):
    __doc__ = _POOL_DOC.format(kind="Average", **_POOL1D)
    rank = 1


class _GlobalPool(Layer):
    def __init__(self, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = check_bool(type(self).__name__, "keepdims", keepdims)

    def build(self, inshape):
        if len(inshape) != 3:
            raise ValueError(f"Layer {self.describe()} expects inputs of shape (batch, channels, height, width), "
                             f"got inshape {tuple(inshape)}.")
        self.outshape = (inshape[0], 1, 1) if self.keepdims else (inshape[0],)

    def _out(self, y):
        return y[:, :, None, None] if self.keepdims else y

    def _grad(self, grad):
        return grad.reshape(grad.shape[0], grad.shape[1])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(keepdims=self.keepdims)
        return cfg


@registry.register("GlobalAveragePooling2D", "GlobalAvgPool2D")
class GlobalAveragePooling2D(_GlobalPool):
    """Mean over height and width: ``(batch, channels, h, w) -> (batch, channels)``.

    Args:
        keepdims: keep the spatial axes as size 1: ``(batch, channels, 1, 1)``.
    """

    def forward(self, x, training=False):
        self.check_input(x)
        self._x_shape = x.shape
        return self._out(x.mean(axis=(2, 3)))

    def backward(self, grad):
        n, c, h, w = self._x_shape
        g = self._grad(grad) * grad.dtype.type(1.0 / (h * w))
        dx = backend.xp.empty(self._x_shape, dtype=grad.dtype)
        dx[...] = g[:, :, None, None]
        return dx


@registry.register("GlobalMaxPooling2D", "GlobalMaxPool2D")
class GlobalMaxPooling2D(_GlobalPool):
    """Maximum over height and width: ``(batch, channels, h, w) -> (batch, channels)``.

    The gradient goes to the first maximum of each map. Args: ``keepdims`` as in
    :class:`GlobalAveragePooling2D`.
    """

    def forward(self, x, training=False):
        self.check_input(x)
        n, c = x.shape[:2]
        xp = backend.xp
        flat = x.reshape(n, c, -1)  # (n, c, h*w)
        arg = flat.argmax(axis=2)[:, :, None]
        self._arg = arg if grad_enabled() else None
        self._x_shape = x.shape
        return self._out(xp.take_along_axis(flat, arg, axis=2)[:, :, 0])

    def backward(self, grad):
        if getattr(self, "_arg", None) is None:
            raise _no_cache_error(self)
        xp = backend.xp
        n, c = self._x_shape[:2]
        dx = xp.zeros((n, c, self._x_shape[2] * self._x_shape[3]), dtype=grad.dtype)
        xp.put_along_axis(dx, self._arg, self._grad(grad)[:, :, None], axis=2)
        return dx.reshape(self._x_shape)
