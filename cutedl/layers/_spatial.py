"""Shared machinery of the convolution and pooling layers: argument parsing, output geometry,
and the strided im2col / col2im kernels.

Layout. The public layout is channels-first, ``(batch, channels, height, width)``. Internally the
convolutions work on ``(channels, height, width, batch)`` ("CHWN") arrays: a window slice
``a[:, i:i+Ho, j:j+Wo]`` of such an array is made of contiguous runs of ``Wo * batch`` floats, so
im2col copies and col2im adds move long runs instead of rows of ``Wo`` floats (3x faster here),
and the GEMM ``(filters, C*kh*kw) @ (C*kh*kw, Ho*Wo*batch)`` lands directly in CHWN. The layers
return NCHW-*shaped* views of CHWN memory (``y.transpose(3, 0, 1, 2)``): NumPy operations accept
any strides, elementwise ops and pooling keep the memory order, and the next convolution reads
its input back as CHWN without a copy.
"""
from __future__ import annotations

import math

from cutedl import backend
from cutedl._validate import is_int

#: Inference forwards whose im2col matrix would exceed this many elements (64 MB in float32) run
#: in batch chunks, so ``predict`` on a large batch does not allocate gigabytes.
INFERENCE_CHUNK_ELEMENTS = 1 << 24


def int_tuple(value, n: int, who: str, arg: str, minimum: int = 1) -> tuple:
    """``value`` (an int or a sequence of ``n`` ints, each >= ``minimum``) as an ``n``-tuple."""
    items = (value,) * n if _is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if items is None or len(items) != n or not all(_is_int(v) and int(v) >= minimum for v in items):
        what = "an int" if n == 1 else f"an int or a tuple of {n} ints"
        raise ValueError(f"{who}: {arg} must be {what}, each >= {minimum}, got {value!r}.")
    return tuple(int(v) for v in items)


def _is_int(v) -> bool:
    return is_int(v)


def padding_arg(padding, n: int, who: str, allowed=("valid", "same")):
    """Normalise ``padding``: a mode name from ``allowed``, or explicit ``((before, after),) * n``.

    Accepted: a mode name; an int ``p`` (p on every side); ``n`` ints (symmetric per axis); or
    ``n`` pairs ``(before, after)`` (for ``n == 1`` the bare pair too).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in allowed:
            raise ValueError(f"{who}: padding must be one of {', '.join(repr(a) for a in allowed)} "
                             f"or ints, got {padding!r}.")
        return mode
    err = ValueError(f"{who}: padding must be one of {', '.join(repr(a) for a in allowed)}, an int, "
                     f"{n} ints or {n} (before, after) pairs of ints >= 0, got {padding!r}.")
    if _is_int(padding):
        padding = (padding,) * n
    try:
        items = tuple(padding)
    except TypeError:
        raise err from None
    if n == 1 and len(items) == 2 and all(_is_int(v) for v in items):
        items = (items,)  # 1-D: a bare (before, after) pair
    if len(items) != n:
        raise err
    pairs = []
    for item in items:
        if _is_int(item):
            item = (item, item)
        try:
            item = tuple(item)
        except TypeError:
            raise err from None
        if len(item) != 2 or not all(_is_int(v) and int(v) >= 0 for v in item):
            raise err
        pairs.append((int(item[0]), int(item[1])))
    return tuple(pairs)


def serialize_padding(padding):
    return padding if isinstance(padding, str) else [list(p) for p in padding]


def window_geometry(length, kernel: int, stride: int, dilation: int, padding, who: str, axis: str):
    """``(out_length, pad_before, pad_after)`` of a sliding window along one axis.

    ``padding`` is 'valid', 'same' (output ``ceil(length / stride)``, the total padding split
    like TensorFlow: the extra one goes after), 'causal' (all padding before) or a
    ``(before, after)`` pair.
    """
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        before = after = 0
    elif padding == "same":
        out = -(-length // stride)
        total = max((out - 1) * stride + span - length, 0)
        before, after = total // 2, total - total // 2
    elif padding == "causal":
        before, after = span - 1, 0
    else:
        before, after = padding
    padded = length + before + after
    if padded < span:
        what = f"the dilated kernel ({span})" if dilation > 1 else f"the kernel ({span})"
        fix = "use padding='same' or a smaller kernel/pool" if padding == "valid" else "use more padding"
        raise ValueError(f"Layer {who}: input {axis} {length} (padded: {padded}) is smaller than {what} "
                         f"with padding={serialize_padding(padding)!r}; {fix}.")
    return (padded - span) // stride + 1, before, after


def to_chwn(x, pads=((0, 0), (0, 0)), fill=0.0, contiguous: bool = True):
    """``x`` (N, C, H, W) as a CHWN array padded by ``pads`` (a view when no copy is needed)."""
    xt = x.transpose(1, 2, 3, 0)
    (pt, pb), (pl, pr) = pads
    if pt or pb or pl or pr:
        c, h, w, n = xt.shape
        buf = backend.xp.full((c, h + pt + pb, w + pl + pr, n), fill, dtype=x.dtype)
        buf[:, pt:pt + h, pl:pl + w] = xt
        return buf
    if contiguous and not xt.flags.c_contiguous:
        return backend.xp.ascontiguousarray(xt)
    return xt


def window(a, i: int, j: int, out_hw, stride, dilation):
    """The CHWN slice that kernel offset ``(i, j)`` sees at every output position: (C, Ho, Wo, N)."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return a[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]


def _span(length: int, out_len: int, offset: int, stride: int, before: int) -> tuple:
    """Window positions ``[first, last)`` whose cell ``o * stride + offset - before`` lies inside
    ``[0, length)``, and the cell of ``first``: the part of one kernel offset that is not padding."""
    first = max(0, -(-(before - offset) // stride))
    last = min(out_len, (length - 1 + before - offset) // stride + 1)
    return first, max(first, last), first * stride + offset - before


def _offsets(kernel, out_hw, stride, dilation, pad_before, hw):
    """For each kernel offset: (i, j, rows, cols, input slices) of its non-padding part."""
    (kh, kw), (ho, wo), (sh, sw), (dh, dw), (pt, pl), (h, w) = kernel, out_hw, stride, dilation, pad_before, hw
    for i in range(kh):
        h0, h1, r = _span(h, ho, i * dh, sh, pt)
        for j in range(kw):
            w0, w1, c = _span(w, wo, j * dw, sw, pl)
            src = (slice(None), slice(r, r + sh * (h1 - h0 - 1) + 1, sh), slice(c, c + sw * (w1 - w0 - 1) + 1, sw))
            yield i, j, (h0, h1), (w0, w1), src


def im2col(a, kernel, out_hw, stride, dilation, pad_before, out, clean: bool = False):
    """Fill ``out`` (C, kh, kw, Ho, Wo, N) with the windows of CHWN ``a`` padded (virtually) with
    zeros, ``pad_before = (top, left)`` cells before it: kh*kw slice copies, no padded copy of ``a``.

    Cells of ``out`` that fall in the padding are zeroed, unless ``clean``: the caller knows they
    still hold the zeros of a previous call with the same geometry (a reused buffer).
    """
    for i, j, (h0, h1), (w0, w1), src in _offsets(kernel, out_hw, stride, dilation, pad_before, a.shape[1:3]):
        dst = out[:, i, j]
        if h1 > h0 and w1 > w0:
            dst[:, h0:h1, w0:w1] = a[src]
        if not clean:
            dst[:, :h0] = 0
            dst[:, h1:] = 0
            dst[:, h0:h1, :w0] = 0
            dst[:, h0:h1, w1:] = 0
    return out


def col2im(cols, kernel, out_hw, stride, dilation, pad_before, out):
    """Add ``cols`` (C, kh, kw, Ho, Wo, N) into CHWN ``out`` at the cells :func:`im2col` reads
    (padding dropped): its adjoint, kh*kw vectorised adds.

    ``out`` is an array to add into, or a shape ``(C, H, W, N)``: then a new array is returned,
    and when one kernel offset covers every cell (stride 1 with 'same' padding: the centre) it is
    assigned first instead of adding into zeros, which saves two passes over the output.
    """
    offsets = list(_offsets(kernel, out_hw, stride, dilation, pad_before, out[1:3] if isinstance(out, tuple)
                            else out.shape[1:3]))
    if isinstance(out, tuple):
        shape, out, first = out, None, None
        for k, (i, j, (h0, h1), (w0, w1), src) in enumerate(offsets):
            if (src[1].step == 1 and src[1].start == 0 and h1 - h0 == shape[1]
                    and src[2].step == 1 and src[2].start == 0 and w1 - w0 == shape[2]):
                first = k
                break
        if first is None:
            out = backend.xp.zeros(shape, dtype=cols.dtype)
        else:
            i, j, (h0, h1), (w0, w1), _ = offsets.pop(first)
            out = backend.xp.empty(shape, dtype=cols.dtype)
            out[...] = cols[:, i, j, h0:h1, w0:w1]
    for i, j, (h0, h1), (w0, w1), src in offsets:
        if h1 > h0 and w1 > w0:
            out[src] += cols[:, i, j, h0:h1, w0:w1]
    return out


class Scratch:
    """A reusable buffer: ``get(shape, dtype)`` returns a view of memory kept between calls.

    Big temporaries (im2col matrices) that are freed and re-allocated every step are returned to
    the OS and faulted back in each time; reusing one buffer avoids that.
    """

    __slots__ = ("_buf", "_key")

    def __init__(self):
        self._buf = None
        self._key = None

    def get(self, shape, dtype, key=None):
        """``(array, same)``: ``same`` is True when the previous call had the same non-None ``key``
        and the memory was kept, so whatever that call left in the buffer is still there."""
        size = math.prod(shape)
        buf = self._buf
        same = key is not None and key == self._key
        if buf is None or buf.dtype != dtype or buf.size < size or not isinstance(buf, backend.xp.ndarray):
            buf = self._buf = backend.xp.empty(size, dtype=dtype)
            same = False
        self._key = None if key is None else key
        return buf[:size].reshape(shape), same


def fmt_hw(shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)
