"""Convolution layers: Conv2D, Conv1D, Conv2DTranspose; ZeroPadding2D and UpSampling2D.

Channels-first, as in cute-dl and PyTorch: ``Conv2D`` takes ``(batch, channels, height, width)``
and its kernel is ``(filters, in_channels, kh, kw)``.

How they are computed (see :mod:`cutedl.layers._spatial` for the memory layout): the input is
unrolled with kh*kw strided slice copies into an im2col matrix ``(C*kh*kw, Ho*Wo*batch)`` kept in
a reused buffer, the forward pass is one GEMM, the kernel gradient one GEMM, and the input
gradient one GEMM followed by kh*kw vectorised adds (col2im). No Python loop ever runs over
output positions.
"""
from __future__ import annotations

from cutedl import activations, backend
from cutedl._validate import check_bool
from cutedl.layers import _spatial as sp
from cutedl.layers._args import check_units, set_weight_args, weight_args_config
from cutedl.layers.base import Layer, grad_enabled, registry

#: Bias + activation run over the GEMM output a block of rows at a time, about this many values
#: (256 KB in float32), so the second pass finds the block still in cache.
_EPILOGUE_VALUES = 1 << 16


def _weight_args(layer, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                 bias_regularizer):
    """Store the activation/bias/initializer/regularizer arguments every convolution takes."""
    layer._set_activation(activation)
    layer.use_bias = check_bool(type(layer).__name__, "use_bias", use_bias)
    set_weight_args(layer, kernel=(kernel_initializer, kernel_regularizer), bias=(bias_initializer, bias_regularizer))


def _weight_config(layer) -> dict:
    return dict(activation=activations.serialize(layer.activation), use_bias=layer.use_bias,
                **weight_args_config(layer, "kernel", "bias"))


def _add_weights(layer, kernel_shape):
    """Create ``weight`` (``kernel_shape``) and, with use_bias, ``bias`` (filters,)."""
    layer.weight = layer.add_param("weight", kernel_shape, layer.kernel_initializer, layer.kernel_regularizer)
    layer.bias = layer.add_param("bias", (layer.filters,), layer.bias_initializer,
                                 layer.bias_regularizer) if layer.use_bias else None


def _grad_buffer(param):
    """``param.grad``, (re)allocated when missing or of the wrong shape/dtype, for ``out=`` writes."""
    if param.grad is None or param.grad.shape != param.shape or param.grad.dtype != param.dtype:
        param.grad = backend.xp.empty_like(param.value)
    return param.grad


def _is_relu(layer) -> bool:
    return not layer.output_logits and getattr(layer.activation, "registry_name", None) == "relu"


def _bias_activate(layer, z, bias):
    """``z`` (F, M), a fresh GEMM output the layer owns, plus ``bias`` (F,) per row, activated.

    ReLU (the common case) runs in place together with the bias add, a block of rows at a time
    while it is in cache, and keeps only its output (``relu(z) > 0`` iff ``z > 0``). Other
    activations go through :meth:`Layer._activate`. Under ``no_grad()`` nothing is cached.
    """
    xp = backend.xp
    if _is_relu(layer):
        rows = max(1, _EPILOGUE_VALUES // max(1, z.shape[1]))
        for s in range(0, z.shape[0], rows):
            zs = z[s:s + rows]
            if bias is not None:
                zs += bias[s:s + rows, None]
            xp.maximum(zs, 0.0, out=zs)
        layer._z, layer._y = None, (z if grad_enabled() else None)
        return z
    if bias is not None:
        z += bias[:, None]
    y = layer._activate(z)
    if not grad_enabled():
        layer._z = layer._y = None
    return y


def _activation_grad(layer, grad):
    """dL/dz from dL/dy after :func:`_bias_activate` (grad is not modified)."""
    if _is_relu(layer):
        return grad * (layer._y > 0)
    return layer._activate_backward(grad)


def _no_cache_error(layer) -> RuntimeError:
    return RuntimeError(f"Layer {layer.describe()}: backward called after a forward under no_grad() (which "
                        f"keeps nothing for backward), a chunked inference forward, or before any forward. "
                        f"Run the forward pass outside no_grad() to train.")


class _Conv(Layer):
    """Shared code of Conv1D and Conv2D (``rank`` spatial axes; Conv1D runs as a 1 x L image)."""

    rank = 2
    _paddings = ("valid", "same")

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        who = type(self).__name__
        n = self.rank
        self.filters = check_units(who, "filters", filters)
        self.kernel_size = sp.int_tuple(kernel_size, n, who, "kernel_size")
        self.strides = sp.int_tuple(strides, n, who, "strides")
        self.dilation_rate = sp.int_tuple(dilation_rate, n, who, "dilation_rate")
        self.padding = sp.padding_arg(padding, n, who, self._paddings)
        _weight_args(self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                     bias_regularizer)
        self._cols_buf = sp.Scratch()
        self._dcols_buf = sp.Scratch()
        self._cols = None

    # The 2-D view of the geometry: Conv1D is a conv over a (1, L) image.
    def _hw(self, values):
        return (1,) + tuple(values) if self.rank == 1 else tuple(values)

    def _pads_hw(self):
        if isinstance(self.padding, str):
            return (("valid" if self.rank == 1 else self.padding), self.padding)
        return ((0, 0),) + self.padding if self.rank == 1 else self.padding

    def _layout(self) -> str:
        return "(batch, channels, length)" if self.rank == 1 else "(batch, channels, height, width)"

    def build(self, inshape):
        who = self.describe()
        if len(inshape) != self.rank + 1:
            hint = (" Reshape flat images first, e.g. Reshape((1, 28, 28), inshape=784)."
                    if self.rank == 2 and len(inshape) == 1 else "")
            raise ValueError(f"Layer {who} expects inputs of shape {self._layout()}, i.e. an inshape of "
                             f"{self.rank + 1} values, got inshape {tuple(inshape)}.{hint}")
        if inshape[0] is None:
            raise ValueError(f"Layer {who} needs a known number of input channels, got inshape {tuple(inshape)}.")
        _add_weights(self, (self.filters, inshape[0]) + self.kernel_size)
        self.outshape = (self.filters,) + self._geometry(inshape[1:])[0][-self.rank:]

    def _geometry(self, spatial):
        """((Ho, Wo), ((pt, pb), (pl, pr))) of the 2-D view for input spatial size ``spatial``.

        Unknown (None) axes give None entries.
        """
        out, pads = [], []
        for a, (length, k, s, d, pad) in enumerate(zip(self._hw(spatial), self._hw(self.kernel_size),
                                                        self._hw(self.strides), self._hw(self.dilation_rate),
                                                        self._pads_hw())):
            if length is None:
                out.append(None)
                pads.append(None)
                continue
            axis = "length" if self.rank == 1 else ("height", "width")[a]
            o, before, after = sp.window_geometry(length, k, s, d, pad, self.describe(), axis)
            out.append(o)
            pads.append((before, after))
        return tuple(out), tuple(pads)

    def check_input(self, x):
        shape = getattr(x, "shape", None)
        if self.built and shape is not None and len(shape) == self.rank + 2 and shape[1] != self.inshape[0]:
            raise ValueError(
                f"Layer {self.describe()} expected {self.inshape[0]} input channels (axis 1 of "
                f"{self._layout()}), got input of shape {tuple(shape)} with {shape[1]}. Data is "
                f"channels-first: for channels-last arrays use x.transpose({', '.join(self._to_cf())}).")
        if self.built and shape is not None and len(shape) != self.rank + 2:
            raise ValueError(
                f"Layer {self.describe()} expected a {self.rank + 2}-D input {self._layout()} matching "
                f"inshape {self.inshape}, got an array of shape {tuple(shape)}.")
        super().check_input(x)

    def _to_cf(self):
        return ("0", "2", "1") if self.rank == 1 else ("0", "3", "1", "2")

    # ------------------------------------------------------------------ computation
    def forward(self, x, training=False):
        self.check_input(x)
        xp = backend.xp
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        x4 = x[:, :, None, :] if self.rank == 1 else x
        n, c = x4.shape[:2]
        out_hw, pads = self._geometry(x.shape[2:])
        kh, kw = self._hw(self.kernel_size)
        per_sample = c * kh * kw * out_hw[0] * out_hw[1]  # im2col elements per sample
        self._x_shape, self._out_hw, self._pads = x4.shape, out_hw, pads
        self._cols = None
        keep = grad_enabled()
        if (not training or not keep) and n > 1 and per_sample * n > sp.INFERENCE_CHUNK_ELEMENTS:
            # Inference on a big batch: chunk it so the im2col matrix stays bounded.
            step = max(1, sp.INFERENCE_CHUNK_ELEMENTS // per_sample)
            y = xp.empty((self.filters,) + out_hw + (n,), dtype=self.dtype)
            for i in range(0, n, step):
                y[..., i:i + step] = self._forward_chwn(x4[i:i + step], out_hw, pads, cache=False)
            self._z = self._y = None   # a chunked forward keeps nothing for backward
        else:
            y = self._forward_chwn(x4, out_hw, pads, cache=keep)
        y = y.transpose(3, 0, 1, 2)  # CHWN memory seen as (N, F, Ho, Wo)
        return y[:, :, 0, :] if self.rank == 1 else y

    def _forward_chwn(self, x4, out_hw, pads, cache):
        """Convolve NCHW ``x4``; returns the activated output as CHWN ``(F, Ho, Wo, n)``."""
        n, c = x4.shape[:2]
        kernel, stride, dil = self._hw(self.kernel_size), self._hw(self.strides), self._hw(self.dilation_rate)
        xt = sp.to_chwn(x4)  # (C, H, W, n), padded only virtually by im2col
        shape = (c,) + kernel + out_hw + (n,)
        cols, same = self._cols_buf.get(shape, self.dtype, key=(shape, pads))
        sp.im2col(xt, kernel, out_hw, stride, dil, (pads[0][0], pads[1][0]), cols, clean=same)
        cols = cols.reshape(-1, out_hw[0] * out_hw[1] * n)
        w2 = self.weight.value.reshape(self.filters, -1)
        z = w2 @ cols  # (F, C*kh*kw) @ (C*kh*kw, Ho*Wo*n) -> (F, Ho*Wo*n)
        if cache:
            self._cols = cols
        return self._bias_activate_chwn(z, out_hw, n, cache)

    def _bias_activate_chwn(self, z, out_hw, n, cache):
        """``z`` (F, Ho*Wo*n), a fresh array, plus the bias and activated, as CHWN ``(F, Ho, Wo, n)``."""
        if self._elementwise_activation():
            y = _bias_activate(self, z, None if self.bias is None else self.bias.value)
            return y.reshape((self.filters,) + out_hw + (n,))
        # softmax & co. work on an axis of the public layout, so apply them there.
        if self.bias is not None:
            z += self.bias.value[:, None]
        y = self._activate(z.reshape((self.filters,) + out_hw + (n,)).transpose(3, 0, 1, 2))
        if not cache:
            self._z = self._y = None
        return y.transpose(1, 2, 3, 0)

    def _elementwise_activation(self) -> bool:
        return self.output_logits or not hasattr(self.activation, "axis")

    def backward(self, grad):
        if self._cols is None:
            raise _no_cache_error(self)
        xp = backend.xp
        n = grad.shape[0]
        f = self.filters
        g = self._grad_z(grad)   # (F, Ho*Wo*n)
        cols = self._cols
        w = self.weight
        xp.matmul(g, cols.T, out=_grad_buffer(w).reshape(f, -1))  # (F, HWn) @ (HWn, C*kh*kw) -> (F, C*kh*kw)
        if self.bias is not None:
            xp.sum(g, axis=1, out=_grad_buffer(self.bias))
        if self.skip_input_grad:
            return None
        kernel, stride, dil = self._hw(self.kernel_size), self._hw(self.strides), self._hw(self.dilation_rate)
        (pt, _), (pl, _) = self._pads
        _, c, h, wd = self._x_shape
        out_hw = self._out_hw
        dcols, _ = self._dcols_buf.get(cols.shape, self.dtype)
        xp.matmul(w.value.reshape(f, -1).T, g, out=dcols)  # (C*kh*kw, F) @ (F, HWn) -> (C*kh*kw, HWn)
        dxt = sp.col2im(dcols.reshape((c,) + kernel + out_hw + (n,)), kernel, out_hw, stride, dil, (pt, pl),
                        (c, h, wd, n))
        dx = dxt.transpose(3, 0, 1, 2)
        return dx[:, :, 0, :] if self.rank == 1 else dx

    def _grad_z(self, grad):
        """dL/dz ``(F, Ho*Wo*n)`` from dL/dy of the public layout, the inverse of :meth:`_bias_activate_chwn`."""
        g4 = grad[:, :, None, :] if self.rank == 1 else grad
        f = self.filters
        if self._elementwise_activation():
            g = _activation_grad(self, g4.transpose(1, 2, 3, 0).reshape(f, -1))
        else:
            g = self._activate_backward(g4).transpose(1, 2, 3, 0).reshape(f, -1)
        return g if g.dtype == self.dtype else g.astype(self.dtype)

    # ------------------------------------------------------------------ config
    def get_config(self):
        cfg = super().get_config()
        one = self.rank == 1
        cfg.update(filters=self.filters,
                   kernel_size=self.kernel_size[0] if one else list(self.kernel_size),
                   strides=self.strides[0] if one else list(self.strides),
                   padding=sp.serialize_padding(self.padding),
                   dilation_rate=self.dilation_rate[0] if one else list(self.dilation_rate), **_weight_config(self))
        return cfg


@registry.register("Conv2D", "Convolution2D")
class Conv2D(_Conv):
    """2-D convolution (cross-correlation, as in every framework) over channels-first images.

    Args:
        filters: number of output channels.
        kernel_size: int or ``(kh, kw)``.
        strides: int or ``(sh, sw)`` (default 1).
        padding: ``'valid'`` (none), ``'same'`` (output ``ceil(in / stride)``; works for even kernels
            and strides > 1, the extra padding going after, like TensorFlow), an int, ``(ph, pw)``
            or ``((top, bottom), (left, right))``.
        dilation_rate: int or ``(dh, dw)`` (default 1; may be combined with strides > 1).
        activation: name or object (default linear).
        use_bias: add a per-filter bias.
        kernel_initializer / bias_initializer, kernel_regularizer / bias_regularizer: as in Dense.
    Input shape: ``(batch, channels, height, width)``; ``inshape=(c, h, w)``.
    Output shape: ``(batch, filters, out_height, out_width)``.
    Params: ``weight (filters, channels, kh, kw)``, ``bias (filters,)``.
    Example:
        >>> Conv2D(32, 5, padding='same', activation='relu', inshape=(1, 28, 28))
    """

    rank = 2


@registry.register("Conv1D", "Convolution1D")
class Conv1D(_Conv):
    """1-D convolution over channels-first sequences ``(batch, channels, length)``.

    Args: as :class:`Conv2D` with ints for ``kernel_size``, ``strides``, ``dilation_rate``;
        ``padding`` is ``'valid'``, ``'same'``, ``'causal'`` (all padding on the left, so output
        ``t`` sees inputs up to ``t`` only), an int or a ``(left, right)`` pair.
    Input shape: ``(batch, channels, length)``. Output shape: ``(batch, filters, out_length)``.
    Params: ``weight (filters, channels, k)``, ``bias (filters,)``.
    """

    rank = 1
    _paddings = ("valid", "same", "causal")


@registry.register("Conv2DTranspose", "Convolution2DTranspose", "Deconvolution2D")
class Conv2DTranspose(Layer):
    """Transposed 2-D convolution (the gradient of Conv2D with respect to its input), channels-first.

    Args:
        filters: number of output channels.
        kernel_size, strides, dilation_rate: int or pair.
        padding: ``'valid'``, ``'same'`` or ints, as in Keras/PyTorch: without ``output_padding``,
            'valid' gives ``in * stride + max(k - stride, 0)`` and 'same' ``in * stride``; an int
            ``p`` (or ``(ph, pw)``) crops ``p`` from each side of the full output like PyTorch.
        output_padding: None, an int or a pair, each smaller than the stride (or the dilation):
            the output is ``(in - 1) * stride + k - 2 * pad + output_padding`` with ``pad`` =
            ``k // 2`` for 'same', 0 for 'valid', ``p`` for ints.
        activation, use_bias, initializers, regularizers: as in Conv2D.
    Input shape: ``(batch, channels, height, width)``. Output: ``(batch, filters, oh, ow)``.
    Params: ``weight (in_channels, filters, kh, kw)``, ``bias (filters,)``.
    Example:
        >>> Conv2DTranspose(16, 3, strides=2, padding='same')   # doubles height and width
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", output_padding=None,
                 dilation_rate=1, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        who = "Conv2DTranspose"
        self.filters = check_units(who, "filters", filters)
        self.kernel_size = sp.int_tuple(kernel_size, 2, who, "kernel_size")
        self.strides = sp.int_tuple(strides, 2, who, "strides")
        self.dilation_rate = sp.int_tuple(dilation_rate, 2, who, "dilation_rate")
        if isinstance(padding, str):
            self.padding = sp.padding_arg(padding, 2, who)
        else:
            pairs = sp.padding_arg(padding, 2, who)
            if any(a != b for a, b in pairs):
                raise ValueError(f"{who}: padding must be symmetric (an int or (ph, pw)), got {padding!r}.")
            self.padding = pairs
        if output_padding is None:
            self.output_padding = None
        else:
            self.output_padding = sp.int_tuple(output_padding, 2, who, "output_padding", minimum=0)
            for op, s, d in zip(self.output_padding, self.strides, self.dilation_rate):
                if op >= max(s, d):
                    raise ValueError(f"{who}: output_padding must be smaller than the stride or the dilation, "
                                     f"got output_padding={self.output_padding}, strides={self.strides}, "
                                     f"dilation_rate={self.dilation_rate}.")
        _weight_args(self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                     bias_regularizer)
        if hasattr(self.activation, "axis"):
            raise ValueError(f"{who}: activation {activations.serialize(self.activation)!r} is not elementwise; "
                             f"add it as a separate Activation layer.")
        self._cols_buf = sp.Scratch()
        self._x2 = None

    def build(self, inshape):
        who = self.describe()
        if len(inshape) != 3:
            raise ValueError(f"Layer {who} expects inputs of shape (batch, channels, height, width), i.e. an "
                             f"inshape of 3 values, got inshape {tuple(inshape)}.")
        if inshape[0] is None:
            raise ValueError(f"Layer {who} needs a known number of input channels, got inshape {tuple(inshape)}.")
        _add_weights(self, (inshape[0], self.filters) + self.kernel_size)
        out = tuple(None if d is None else self._axis_geometry(a, d)[0] for a, d in enumerate(inshape[1:]))
        self.outshape = (self.filters,) + out

    def _axis_geometry(self, axis: int, length: int):
        """(out_length, crop_start) along ``axis`` for input ``length``: the output is the full
        scatter ``(length - 1) * stride + span`` cropped from ``crop_start`` (zeros past its end)."""
        k, s, d = self.kernel_size[axis], self.strides[axis], self.dilation_rate[axis]
        span = (k - 1) * d + 1
        full = (length - 1) * s + span
        op = None if self.output_padding is None else self.output_padding[axis]
        if isinstance(self.padding, str):
            pad = {"valid": 0, "same": span // 2}[self.padding]
        else:
            pad = self.padding[axis][0]
        if op is None:
            if self.padding == "valid":
                out, start = length * s + max(span - s, 0), 0
            elif self.padding == "same":
                out, start = length * s, max(span - s, 0) // 2
            else:
                out, start = full - 2 * pad, pad
        else:
            out, start = full - 2 * pad + op, pad
        if out < 1:
            raise ValueError(f"Layer {self.describe()}: input {('height', 'width')[axis]} {length} gives an empty "
                             f"output ({out}) with padding={sp.serialize_padding(self.padding)!r}; use less padding.")
        return out, start

    def check_input(self, x):
        shape = getattr(x, "shape", None)
        if self.built and shape is not None and len(shape) == 4 and shape[1] != self.inshape[0]:
            raise ValueError(f"Layer {self.describe()} expected {self.inshape[0]} input channels (axis 1 of "
                             f"(batch, channels, height, width)), got input of shape {tuple(shape)}.")
        super().check_input(x)

    def forward(self, x, training=False):
        self.check_input(x)
        xp = backend.xp
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        n, c, h, w = x.shape
        (oh, ch), (ow, cw) = self._axis_geometry(0, h), self._axis_geometry(1, w)
        f = self.filters
        x2 = sp.to_chwn(x).reshape(c, -1)  # (C, H*W*n)
        cols, _ = self._cols_buf.get((f * self.kernel_size[0] * self.kernel_size[1], h * w * n), self.dtype)
        xp.matmul(self.weight.value.reshape(c, -1).T, x2, out=cols)  # (F*kh*kw, C) @ (C, HWn)
        # Scatter every input pixel's kernel-sized patch; cells before the crop start (or past the
        # output) are dropped, as if a full canvas were cropped.
        z = xp.zeros((f, oh, ow, n), dtype=self.dtype)
        sp.col2im(cols.reshape((f,) + self.kernel_size + (h, w, n)), self.kernel_size, (h, w), self.strides,
                  self.dilation_rate, (ch, cw), z)
        self._x2, self._x_shape, self._geo = (x2 if grad_enabled() else None), x.shape, ((oh, ch), (ow, cw))
        y = _bias_activate(self, z.reshape(f, -1), None if self.bias is None else self.bias.value)
        return y.reshape(z.shape).transpose(3, 0, 1, 2)

    def backward(self, grad):
        if self._x2 is None:
            raise _no_cache_error(self)
        xp = backend.xp
        n, c, h, w = self._x_shape
        (oh, ch), (ow, cw) = self._geo
        f = self.filters
        gt = grad.transpose(1, 2, 3, 0)  # (F, oh, ow, n)
        g = _activation_grad(self, gt.reshape(f, -1)).reshape(gt.shape)
        if g.dtype != self.dtype:
            g = g.astype(self.dtype)
        if self.bias is not None:
            xp.sum(g, axis=(1, 2, 3), out=_grad_buffer(self.bias))
        gcols, _ = self._cols_buf.get((f,) + self.kernel_size + (h, w, n), self.dtype)
        sp.im2col(g, self.kernel_size, (h, w), self.strides, self.dilation_rate, (ch, cw), gcols)
        gcols = gcols.reshape(-1, h * w * n)
        wt = self.weight
        xp.matmul(self._x2, gcols.T, out=_grad_buffer(wt).reshape(c, -1))  # (C, HWn) @ (HWn, F*kh*kw)
        if self.skip_input_grad:
            return None
        dx = wt.value.reshape(c, -1) @ gcols  # (C, F*kh*kw) @ (F*kh*kw, HWn) -> (C, HWn)
        return dx.reshape(c, h, w, n).transpose(3, 0, 1, 2)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                   padding=self.padding if isinstance(self.padding, str) else [p[0] for p in self.padding],
                   output_padding=None if self.output_padding is None else list(self.output_padding),
                   dilation_rate=list(self.dilation_rate), **_weight_config(self))
        return cfg


@registry.register("ZeroPadding2D")
class ZeroPadding2D(Layer):
    """Pad height and width with zeros.

    Args:
        padding: int (all sides), ``(ph, pw)`` (symmetric) or ``((top, bottom), (left, right))``.
    Input shape: ``(batch, channels, height, width)``.
    Output shape: ``(batch, channels, height + top + bottom, width + left + right)``.
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = sp.padding_arg(padding, 2, "ZeroPadding2D", allowed=())

    def build(self, inshape):
        if len(inshape) != 3:
            raise ValueError(f"Layer {self.describe()} expects inputs of shape (batch, channels, height, width), "
                             f"got inshape {tuple(inshape)}.")
        (t, b), (l, r) = self.padding
        c, h, w = inshape
        self.outshape = (c, None if h is None else h + t + b, None if w is None else w + l + r)

    def forward(self, x, training=False):
        self.check_input(x)
        (t, b), (l, r) = self.padding
        n, c, h, w = x.shape
        y = backend.xp.zeros((n, c, h + t + b, w + l + r), dtype=x.dtype)
        y[:, :, t:t + h, l:l + w] = x
        self._hw = (h, w)
        return y

    def backward(self, grad):
        (t, _), (l, _) = self.padding
        h, w = self._hw
        return grad[:, :, t:t + h, l:l + w]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(padding=sp.serialize_padding(self.padding))
        return cfg


@registry.register("UpSampling2D")
class UpSampling2D(Layer):
    """Repeat rows and columns (nearest-neighbour upsampling).

    Args:
        size: int or ``(sh, sw)``: output height ``h * sh``, width ``w * sw``.
        interpolation: ``'nearest'`` (the only one implemented).
    Input shape: ``(batch, channels, height, width)``. Output: ``(batch, channels, h * sh, w * sw)``.
    """

    def __init__(self, size=2, interpolation: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = sp.int_tuple(size, 2, "UpSampling2D", "size")
        if interpolation != "nearest":
            raise ValueError(f"UpSampling2D: only interpolation='nearest' is implemented, got {interpolation!r}.")
        self.interpolation = interpolation

    def build(self, inshape):
        if len(inshape) != 3:
            raise ValueError(f"Layer {self.describe()} expects inputs of shape (batch, channels, height, width), "
                             f"got inshape {tuple(inshape)}.")
        c, h, w = inshape
        sh, sw = self.size
        self.outshape = (c, None if h is None else h * sh, None if w is None else w * sw)

    def forward(self, x, training=False):
        self.check_input(x)
        n, c, h, w = x.shape
        sh, sw = self.size
        # (n, c, h, 1, w, 1) broadcast to (n, c, h, sh, w, sw), then merged: one copy
        y = backend.xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw))
        return y.reshape(n, c, h * sh, w * sw)

    def backward(self, grad):
        n, c, hh, ww = grad.shape
        sh, sw = self.size
        return grad.reshape(n, c, hh // sh, sh, ww // sw, sw).sum(axis=(3, 5))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(size=list(self.size), interpolation=self.interpolation)
        return cfg


@registry.register("DepthwiseConv2D")
class DepthwiseConv2D(_Conv):
    """Depthwise 2-D convolution: each input channel convolved with its own ``depth_multiplier`` kernels.

    Output channel ``c * depth_multiplier + m`` is input channel ``c`` convolved with kernel
    ``m`` of that channel (Keras' order, and PyTorch's ``Conv2d(C, C * M, k, groups=C)``).

    How it is computed: the im2col matrix of the input, ``(C, kh*kw, Ho*Wo*batch)``, then one
    einsum over channels, ``(C, M, kh*kw) x (C, kh*kw, P) -> (C, M, P)``; no loop over channels or
    output positions. (Measured on 64 channels, 3x3, 32x32x64 positions: the einsum takes 26 ms
    where NumPy's batched matmul, a GEMV per channel, takes 218 ms; the backward einsums likewise.)

    Args:
        kernel_size: int or ``(kh, kw)``.
        strides, padding, dilation_rate: as in :class:`Conv2D`.
        depth_multiplier: output channels per input channel.
        activation: name or object (default linear).
        use_bias: add a bias per output channel.
        depthwise_initializer / bias_initializer, depthwise_regularizer / bias_regularizer:
            as in Dense (Keras' names).
    Input shape: ``(batch, channels, height, width)``.
    Output shape: ``(batch, channels * depth_multiplier, out_height, out_width)``.
    Params: ``depthwise_weight (channels * depth_multiplier, 1, kh, kw)`` (PyTorch's layout of the
        grouped convolution's weight, so its fan-in is ``kh * kw``), ``bias (channels * depth_multiplier,)``.
    Example:
        >>> DepthwiseConv2D(3, padding='same', inshape=(32, 16, 16))   # 32 -> 32 channels, 288 weights
    """

    rank = 2

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier: int = 1, dilation_rate=1,
                 activation=None, use_bias: bool = True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None, **kwargs):
        Layer.__init__(self, **kwargs)   # _Conv.__init__ takes filters, which this layer derives
        who = type(self).__name__
        self.kernel_size = sp.int_tuple(kernel_size, 2, who, "kernel_size")
        self.strides = sp.int_tuple(strides, 2, who, "strides")
        self.dilation_rate = sp.int_tuple(dilation_rate, 2, who, "dilation_rate")
        self.padding = sp.padding_arg(padding, 2, who, self._paddings)
        self.depth_multiplier = check_units(who, "depth_multiplier", depth_multiplier)
        self._set_activation(activation)
        self.use_bias = check_bool(who, "use_bias", use_bias)
        set_weight_args(self, depthwise=(depthwise_initializer, depthwise_regularizer),
                        bias=(bias_initializer, bias_regularizer))
        self.filters = None   # output channels, known at build
        self._cols_buf = sp.Scratch()
        self._dcols_buf = sp.Scratch()
        self._cols = None

    def build(self, inshape):
        if len(inshape) != 3 or inshape[0] is None:
            raise ValueError(f"Layer {self.describe()} expects inputs of shape (batch, channels, height, width) "
                             f"with a known number of channels, got inshape {tuple(inshape)}.")
        c, m = inshape[0], self.depth_multiplier
        self.depthwise_weight = self.add_param("depthwise_weight", (c * m, 1) + self.kernel_size,
                                               self.depthwise_initializer, self.depthwise_regularizer)
        self._build_output(c * m)
        self.outshape = (self.filters,) + self._geometry(inshape[1:])[0]

    def _build_output(self, depth: int):
        """Create the bias; set ``filters`` (output channels) for the depthwise output of ``depth`` channels."""
        self.filters = depth
        self.bias = self.add_param("bias", (depth,), self.bias_initializer, self.bias_regularizer) \
            if self.use_bias else None

    def _depthwise(self, x4, out_hw, pads, cache):
        """The depthwise convolution of NCHW ``x4``, without bias: ``(C * M, Ho*Wo*n)``."""
        n, c = x4.shape[:2]
        kernel, stride, dil = self.kernel_size, self.strides, self.dilation_rate
        shape = (c,) + kernel + out_hw + (n,)
        cols, same = self._cols_buf.get(shape, self.dtype, key=(shape, pads))
        sp.im2col(sp.to_chwn(x4), kernel, out_hw, stride, dil, (pads[0][0], pads[1][0]), cols, clean=same)
        cols = cols.reshape(c, kernel[0] * kernel[1], -1)   # (C, K, P), P = Ho*Wo*n
        if cache:
            self._cols = cols
        w = self.depthwise_weight.value.reshape(c, self.depth_multiplier, -1)   # (C, M, K)
        return backend.xp.einsum("cmk,ckp->cmp", w, cols).reshape(c * self.depth_multiplier, -1)   # (C*M, P)

    def _pointwise(self, d, cache):
        """What follows the depthwise step before the bias (SeparableConv2D: a 1x1 convolution)."""
        return d

    def _pointwise_backward(self, g):
        """dL/d(depthwise output) from dL/dz; assigns the pointwise grads (none here)."""
        return g

    def _forward_chwn(self, x4, out_hw, pads, cache):
        n = x4.shape[0]
        z = self._pointwise(self._depthwise(x4, out_hw, pads, cache), cache)   # (F, Ho*Wo*n)
        return self._bias_activate_chwn(z, out_hw, n, cache)

    def backward(self, grad):
        if self._cols is None:
            raise _no_cache_error(self)
        xp = backend.xp
        g = self._grad_z(grad)   # (F, P)
        if self.bias is not None:
            xp.sum(g, axis=1, out=_grad_buffer(self.bias))
        cols = self._cols   # (C, K, P)
        c, k, p = cols.shape
        m = self.depth_multiplier
        gd = self._pointwise_backward(g).reshape(c, m, p)   # (C, M, P)
        wt = self.depthwise_weight
        backend.einsum("cmp,ckp->cmk", gd, cols, out=_grad_buffer(wt).reshape(c, m, k))   # (C, M, K)
        if self.skip_input_grad:
            return None
        dcols, _ = self._dcols_buf.get(cols.shape, self.dtype)
        backend.einsum("cmk,cmp->ckp", wt.value.reshape(c, m, k), gd, out=dcols)   # (C, K, P)
        n, _, h, w = self._x_shape
        (pt, _), (pl, _) = self._pads
        dxt = sp.col2im(dcols.reshape((c,) + self.kernel_size + self._out_hw + (n,)), self.kernel_size,
                        self._out_hw, self.strides, self.dilation_rate, (pt, pl), (c, h, w, n))
        return dxt.transpose(3, 0, 1, 2)

    def get_config(self):
        cfg = Layer.get_config(self)
        cfg.update(kernel_size=list(self.kernel_size), strides=list(self.strides),
                   padding=sp.serialize_padding(self.padding), depth_multiplier=self.depth_multiplier,
                   dilation_rate=list(self.dilation_rate), activation=activations.serialize(self.activation),
                   use_bias=self.use_bias, **weight_args_config(self, "depthwise", "bias"))
        return cfg


@registry.register("SeparableConv2D", "SeparableConvolution2D")
class SeparableConv2D(DepthwiseConv2D):
    """Depthwise separable 2-D convolution: a :class:`DepthwiseConv2D` then a 1x1 convolution to ``filters``.

    As in Keras, the bias and the activation come after the pointwise step only. Costs about
    ``1 / filters + 1 / (kh * kw)`` of a Conv2D's multiply-adds (Xception, MobileNet).

    Args:
        filters: output channels.
        kernel_size, strides, padding, depth_multiplier, dilation_rate, activation, use_bias:
            as in :class:`DepthwiseConv2D`.
        depthwise_initializer / pointwise_initializer / bias_initializer,
        depthwise_regularizer / pointwise_regularizer / bias_regularizer: as in Dense.
    Input shape: ``(batch, channels, height, width)``.
    Output shape: ``(batch, filters, out_height, out_width)``.
    Params: ``depthwise_weight (channels * depth_multiplier, 1, kh, kw)``,
        ``pointwise_weight (filters, channels * depth_multiplier, 1, 1)`` (a Conv2D 1x1 weight),
        ``bias (filters,)``.
    Example:
        >>> SeparableConv2D(64, 3, padding='same', activation='relu', inshape=(32, 16, 16))
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", depth_multiplier: int = 1,
                 dilation_rate=1, activation=None, use_bias: bool = True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(kernel_size, strides, padding, depth_multiplier, dilation_rate, activation, use_bias,
                         depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer, **kwargs)
        self.filters = check_units("SeparableConv2D", "filters", filters)
        set_weight_args(self, pointwise=(pointwise_initializer, pointwise_regularizer))
        self._d = None

    def _build_output(self, depth: int):
        self.pointwise_weight = self.add_param("pointwise_weight", (self.filters, depth, 1, 1),
                                               self.pointwise_initializer, self.pointwise_regularizer)
        super()._build_output(self.filters)

    def _pointwise(self, d, cache):
        self._d = d if cache else None
        w = self.pointwise_weight.value.reshape(self.filters, -1)
        return w @ d   # (F, C*M) @ (C*M, Ho*Wo*n) -> (F, Ho*Wo*n)

    def _pointwise_backward(self, g):
        w = self.pointwise_weight
        xp = backend.xp
        xp.matmul(g, self._d.T, out=_grad_buffer(w).reshape(self.filters, -1))   # (F, P) @ (P, C*M) -> (F, C*M)
        return w.value.reshape(self.filters, -1).T @ g   # (C*M, F) @ (F, P) -> (C*M, P)

    def get_config(self):
        cfg = super().get_config()
        cfg = {"filters": self.filters, **cfg, **weight_args_config(self, "pointwise")}
        return cfg
