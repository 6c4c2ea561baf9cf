"""Normalization layers: BatchNormalization, LayerNormalization, GroupNormalization, LocalResponseNormalization.

Batch, Layer and Group normalization compute ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``;
they differ in which axes the statistics are taken over:

* ``BatchNormalization`` normalizes each *channel* (or feature) with statistics over the batch
  and every other axis: over ``(batch, H, W)`` for a channels-first conv map ``(batch, C, H, W)``,
  over the batch for ``(batch, features)``. While training it uses the statistics of the current
  batch and updates moving averages of them; at inference it uses the moving averages.
* ``LayerNormalization`` normalizes each *sample* over its feature axes (the last by default),
  the same way in training and inference.
* ``GroupNormalization`` normalizes each sample per group of channels (over the group's channels
  and the spatial axes); ``LocalResponseNormalization`` divides by a power of the sum of squares
  over neighbouring channels (TensorFlow's ``tf.nn.lrn``; no learned params).

Variances are biased (divided by the count, not count - 1), in the batch statistics and in the
moving variance alike, as in Keras.
"""
from __future__ import annotations

import math

from cutedl import backend
from cutedl._validate import check_bool, check_int, check_number, is_int
from cutedl.layers._args import set_weight_args, weight_args_config
from cutedl.layers.base import Layer, fmt_shape, grad_enabled, registry


def _check_axis(who: str, axis) -> int:
    if not is_int(axis):
        raise TypeError(f"{who}: axis must be an int, got {type(axis).__name__} {axis!r}.")
    if axis == 0:
        raise ValueError(f"{who}: axis=0 is the batch axis and cannot be normalized over; use 1 for "
                         f"channels-first conv maps (batch, C, H, W) or -1 for the last (feature) axis.")
    return int(axis)


def _no_cache_error(layer) -> RuntimeError:
    return RuntimeError(f"Layer {layer.describe()}: backward called after a forward under no_grad() (which "
                        f"keeps nothing for backward), or before any forward. Run the forward pass outside "
                        f"no_grad() to train.")


def _resolve_axis(layer: Layer, axis: int, inshape) -> int:
    """``axis`` (negative allowed) as a positive index into ``(batch, *inshape)``, or a teaching error."""
    ndim = len(inshape) + 1
    a = axis + ndim if axis < 0 else axis
    if not 1 <= a < ndim:
        raise ValueError(f"Layer {layer.describe()}: axis={axis} is out of range for input of shape "
                         f"{fmt_shape(inshape)} ({ndim} axes, the batch axis 0 excluded). Use axis=1 for "
                         f"channels-first maps or axis=-1 for the last axis.")
    if inshape[a - 1] is None:
        raise ValueError(f"Layer {layer.describe()}: the normalized axis {axis} of input {fmt_shape(inshape)} "
                         f"must have a known size.")
    return a


# LayerNormalization works through its (rows, features) view a block of rows at a time, about this
# many values per block (512 KB in float32): the ten or so passes NumPy makes over a block then run
# in the L2 cache (measured: ~8 % faster than whole-array passes on (3200, 512); 64K-256K values
# per block all do about as well, smaller blocks lose to the per-call overhead).
_BLOCK_VALUES = 1 << 17


def _block_rows(features: int) -> int:
    return max(1, _BLOCK_VALUES // features)


def _row_dots(a):
    """``(a * a).sum(axis=1)`` of a 2-D block: ``vecdot`` on NumPy, an einsum on CuPy (no vecdot)."""
    xp = backend.xp
    return xp.vecdot(a, a) if hasattr(xp, "vecdot") else xp.einsum("ij,ij->i", a, a)


class _Normalization(Layer):
    """What both layers share: the affine ``gamma``/``beta`` options and their config."""

    def __init__(self, epsilon: float, center: bool, scale: bool, beta_initializer, gamma_initializer,
                 beta_regularizer, gamma_regularizer, **kwargs):
        super().__init__(**kwargs)
        who = type(self).__name__
        self.epsilon = check_number(who, "epsilon", epsilon, minimum=0.0, low_open=True)
        self.center = check_bool(who, "center", center)
        self.scale = check_bool(who, "scale", scale)
        set_weight_args(self, beta=(beta_initializer, beta_regularizer), gamma=(gamma_initializer, gamma_regularizer))

    def _add_affine(self, shape):
        self.gamma = self.add_param("gamma", shape, self.gamma_initializer, self.gamma_regularizer) \
            if self.scale else None
        self.beta = self.add_param("beta", shape, self.beta_initializer, self.beta_regularizer) \
            if self.center else None

    def _affine_config(self) -> dict:
        return {"epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **weight_args_config(self, "beta", "gamma")}

    def _buffer(self, name: str, shape, dtype):
        """A scratch array kept on the layer and reused while the shape stays the same.

        Only for arrays that never leave the layer (outputs and input gradients are always new):
        fresh activation-sized temporaries are page-faulted in on every step, which costs more
        than the arithmetic on them.
        """
        buf = self.__dict__.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype or not isinstance(buf, backend.xp.ndarray):
            buf = backend.xp.empty(shape, dtype=dtype)
            setattr(self, name, buf)
        return buf

    def _ones(self, size: int):
        """``size`` ones in the layer dtype (a cached vector): row and column sums as GEMVs."""
        ones = self.__dict__.get("_ones_vec")
        if ones is None or ones.size < size or ones.dtype != self.dtype or not isinstance(ones, backend.xp.ndarray):
            ones = self._ones_vec = backend.xp.ones(max(size, 1), dtype=self.dtype)
        return ones[:size]

    def _set_grad(self, param, value):
        """Assign ``param.grad`` from ``value`` (shape of the param), reusing the buffer."""
        if param is None:
            return
        value = value.reshape(param.shape)
        if param.grad is None or param.grad.shape != param.shape or param.grad.dtype != param.dtype:
            param.grad = backend.xp.array(value, dtype=param.dtype)
        else:
            param.grad[...] = value


@registry.register("BatchNormalization")
class BatchNormalization(_Normalization):
    """Normalize each channel with batch statistics while training, moving statistics at inference.

    Training (``forward(x, training=True)``): with ``mean`` and biased ``var`` of the batch taken
    per channel over every axis but ``axis``, ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``,
    and the moving statistics are updated in place:
    ``moving_mean = momentum * moving_mean + (1 - momentum) * mean`` (same for the variance).
    Inference (``training=False``) uses ``moving_mean`` / ``moving_variance`` instead and changes
    nothing. A layer created with ``trainable=False`` always runs in inference mode (the Keras
    rule for fine-tuning).

    Args:
        axis: the channel/feature axis of ``(batch, ...)``: 1 (default) is the channel axis of
            channels-first conv maps ``(batch, C, H, W)`` / ``(batch, C, L)`` and the feature axis
            of ``(batch, features)``; -1 is the last axis.
        momentum: weight of the old moving statistics, in [0, 1) (the Keras meaning: PyTorch's
            ``momentum=0.1`` is ``momentum=0.9`` here).
        epsilon: added to the variance, > 0.
        center: learn an offset ``beta`` (else 0).
        scale: learn a factor ``gamma`` (else 1).
        beta_initializer / gamma_initializer / moving_mean_initializer / moving_variance_initializer:
            initializer names or objects (default zeros / ones / zeros / ones).
        beta_regularizer / gamma_regularizer: optional regularizers.
        sync: in a data-parallel fit (:mod:`cutedl.distributed`), take the statistics of the
            global batch, summed over the ranks (SyncBatchNorm); the strategy sets
            ``communicator``. Alone it changes nothing.
    Input shape: ``(batch, ...)`` of at least 2 axes. Output shape: the same.
    Params: ``gamma (C,)``, ``beta (C,)``, and the non-trainable ``moving_mean (C,)``,
        ``moving_variance (C,)``, which optimizers leave alone but ``get_weights``/``save`` carry.
    Example:
        >>> Model([Conv2D(32, 3, inshape=(3, 32, 32)), BatchNormalization(), Activation('relu')])
    """

    def __init__(self, axis: int = 1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, sync: bool = False, **kwargs):
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, **kwargs)
        self.sync = check_bool("BatchNormalization", "sync", sync)
        self.communicator = None   # sync=True: the sum over ranks of a small array (set by the strategy)
        self.axis = _check_axis("BatchNormalization", axis)
        self.momentum = check_number("BatchNormalization", "momentum", momentum, minimum=0.0, maximum=1.0,
                                     high_open=True)
        set_weight_args(self, moving_mean=(moving_mean_initializer, None),
                        moving_variance=(moving_variance_initializer, None))

    def build(self, inshape):
        a = _resolve_axis(self, self.axis, inshape)
        channels = inshape[a - 1]
        ndim = len(inshape) + 1
        self._channel_axis = a   # statistics over every other axis
        self._bshape = tuple(channels if i == a else 1 for i in range(ndim))   # (C,) broadcast to x
        self._add_affine((channels,))
        self.moving_mean = self.add_param("moving_mean", (channels,), self.moving_mean_initializer,
                                          trainable=False)
        self.moving_variance = self.add_param("moving_variance", (channels,),
                                              self.moving_variance_initializer, trainable=False)
        self.outshape = tuple(inshape)

    def forward(self, x, training=False):
        self.check_input(x)
        xp = backend.xp
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        dt = self.dtype
        one = dt.type(1.0)
        eps = dt.type(self.epsilon)
        bshape = self._bshape
        keep = grad_enabled()
        self._training = bool(training) and self.trainable
        self._xc = self._x = None
        if self._training:
            count = total = x.size // self.moving_mean.size   # values per channel
            mean = self._channel_sum(x)   # (C,)
            synced = self.sync and self.communicator is not None and self.communicator.size > 1
            if synced:   # sums over the ranks: statistics of the global batch
                sums = self.communicator(xp.concatenate([mean, xp.full(1, count, dtype=dt)]))
                mean, total = sums[:-1], int(round(backend.item(sums[-1])))
            inv_count = dt.type(1.0 / total)
            mean *= inv_count
            # Centered once, in a reused buffer (or, under no_grad, in the output itself): the
            # variance of xc has no E[x^2] - mean^2 cancellation.
            y = xp.empty(x.shape, dtype=dt)
            xc = xp.subtract(x, mean.reshape(bshape), out=self._buffer("_xc_buf", x.shape, dt) if keep else y)
            var = self._channel_dot(xc, xc)
            if synced:
                var = self.communicator(var)
            var *= inv_count   # biased variance, (C,)
            inv = one / xp.sqrt(var + eps)   # (C,)
            m = dt.type(self.momentum)
            for stat, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
                stat.value *= m
                stat.value += (one - m) * batch
            if keep:
                self._count, self._share = count, (count / total if synced else None)
                self._xc = xc   # xhat = xc * inv is never stored: y comes from xc in one pass
            shift = None if self.beta is None else self.beta.value
            k = inv if self.gamma is None else inv * self.gamma.value   # (C,)
            xp.multiply(xc, k.reshape(bshape), out=y)
        else:
            inv = one / xp.sqrt(self.moving_variance.value + eps)
            if keep:
                self._x = x
                self._mean = self.moving_mean.value.copy().reshape(bshape)
            # y = x * k + (beta - mean * k)
            k = inv if self.gamma is None else inv * self.gamma.value   # (C,)
            mean = self.moving_mean.value
            shift = -mean * inv if self.gamma is None else -mean * inv * self.gamma.value
            if self.beta is not None:
                shift += self.beta.value
            y = xp.multiply(x, k.reshape(bshape))
        self._inv = inv.reshape(bshape)
        if shift is not None:
            y += shift.reshape(bshape)
        return y

    def backward(self, grad):
        if getattr(self, "_xc", None) is None and getattr(self, "_x", None) is None:
            raise _no_cache_error(self)
        xp = backend.xp
        if grad.dtype != self.dtype:
            grad = grad.astype(self.dtype)
        if self._training:
            xc = self._xc
        else:
            xc = xp.subtract(self._x, self._mean, out=self._buffer("_xc_buf", grad.shape, self.dtype))
        inv = self._inv.reshape(-1)   # (C,)
        dbeta = self._channel_sum(grad)   # (C,)
        dgamma = self._channel_dot(grad, xc)
        dgamma *= inv   # sum of grad * xhat per channel
        self._set_grad(self.beta, dbeta)
        self._set_grad(self.gamma, dgamma)
        if self.skip_input_grad:
            return None
        k = self._inv if self.gamma is None else self._inv * self.gamma.value.reshape(self._bshape)
        if not self._training:
            return grad * k   # the statistics are constants here
        # Closed form of the batch-statistics backward, per channel over n = count values:
        # dx = gamma * inv * (g - mean(g) - xhat * mean(g * xhat)), with xhat = xc * inv
        n = self.dtype.type(1.0 / self._count)
        if self._share is not None:   # sync: the global batch's sums, each rank's weighted by its share
            sums = self.communicator(xp.concatenate([dbeta, dgamma]) * self.dtype.type(self._share))
            dbeta, dgamma = sums[:dbeta.size], sums[dbeta.size:]
        dx = xp.multiply(xc, (dgamma * (inv * n)).reshape(self._bshape))
        dx += (dbeta * n).reshape(self._bshape)
        xp.subtract(grad, dx, out=dx)
        dx *= k
        return dx

    # Per-channel reductions on the (outer, C, inner) view of a (batch, ..., C, ...) array. Sums are
    # GEMVs (BLAS: multithreaded, one pass): ones(outer) @ (outer, C*inner), then the small
    # (C, inner) @ ones(inner). Sums of products are einsums (one pass, no temporary).
    def _channel_view(self, a):
        inner = math.prod(a.shape[self._channel_axis + 1:])
        return a.reshape(-1, self.moving_mean.size, inner), inner

    def _channel_sum(self, a):
        """Sum over every axis but the channel axis: (batch, ..., C, ...) -> (C,)."""
        v, inner = self._channel_view(a)
        outer, c = v.shape[0], v.shape[1]
        if not v.flags.c_contiguous:
            return backend.xp.einsum("ocs->c", v)
        cols = self._ones(outer) @ v.reshape(outer, c * inner)   # (outer,) @ (outer, C*inner) -> (C*inner,)
        return cols if inner == 1 else cols.reshape(c, inner) @ self._ones(inner)   # (C, inner) @ (inner,)

    def _channel_dot(self, a, b):
        """Per channel, the sum of ``a * b`` over every other axis, without an ``a * b`` temporary."""
        xp = backend.xp
        va, inner = self._channel_view(a)
        vb, _ = self._channel_view(b)
        if inner > 1:
            return xp.einsum("ocs,ocs->c", va, vb)
        return xp.einsum("oc,oc->c", va.reshape(va.shape[0], -1), vb.reshape(vb.shape[0], -1))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, momentum=self.momentum, **self._affine_config(),
                   **weight_args_config(self, "moving_mean", "moving_variance", regularizers_too=False))
        if self.sync:   # only when set: configs (and checkpoints) of plain BatchNormalization are unchanged
            cfg["sync"] = True
        return cfg


@registry.register("LayerNormalization")
class LayerNormalization(_Normalization):
    """Normalize each sample over its feature axes: ``gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    The statistics are per sample (over ``axis``), so the layer behaves the same in training
    and inference and has no moving statistics.

    Args:
        axis: an axis or a tuple of axes of ``(batch, ...)`` to normalize over (not the batch
            axis 0); default -1, the last axis.
        epsilon: added to the variance, > 0.
        center: learn an offset ``beta`` (else 0).
        scale: learn a factor ``gamma`` (else 1).
        beta_initializer / gamma_initializer / beta_regularizer / gamma_regularizer: as in Dense.
    Input shape: ``(batch, ...)``. Output shape: the same.
    Params: ``gamma``, ``beta`` of the normalized axes' shape (e.g. ``(features,)``).
    Example:
        >>> LayerNormalization()   # on (batch, time, features): per time step over the features
    """

    def __init__(self, axis=-1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, **kwargs):
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, **kwargs)
        axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
        if not axes:
            raise ValueError("LayerNormalization: axis must name at least one axis, got an empty tuple.")
        self.axis = tuple(_check_axis("LayerNormalization", a) for a in axes)

    def build(self, inshape):
        axes = sorted({_resolve_axis(self, a, inshape) for a in self.axis})
        if len(axes) != len(self.axis):
            raise ValueError(f"Layer {self.describe()}: axis={self.axis} names the same axis twice for input "
                             f"{fmt_shape(inshape)}.")
        ndim = len(inshape) + 1
        others = [i for i in range(ndim) if i not in axes]
        # Work on a (rows, features) view: the normalized axes last, flattened. When they already
        # are the trailing axes (the usual case) that is a free reshape; otherwise a transpose copy.
        self._perm = tuple(others + axes)
        self._inverse = tuple(self._perm.index(i) for i in range(ndim))
        self._trailing = self._perm == tuple(range(ndim))
        shape = tuple(inshape[i - 1] for i in axes)
        self._features = math.prod(shape)
        self._add_affine(shape)
        self.outshape = tuple(inshape)

    def _rows(self, a):
        """``a`` as ``(rows, features)``: every normalized value of one row shares its statistics."""
        if not self._trailing:
            a = a.transpose(self._perm)
        return a.reshape(-1, self._features)

    def _unrows(self, a2, shape):
        """Inverse of :meth:`_rows` for an input of ``shape``."""
        if self._trailing:
            return a2.reshape(shape)
        return a2.reshape(tuple(shape[i] for i in self._perm)).transpose(self._inverse)

    def forward(self, x, training=False):
        self.check_input(x)
        xp = backend.xp
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        self._shape = x.shape
        x2 = self._rows(x)   # (rows, F)
        rows, feats = x2.shape
        dt = self.dtype
        keep = grad_enabled()
        # inv = 1 / sqrt(sum(xc^2) / F + eps) = sqrt(F) / sqrt(sum(xc^2) + F * eps)
        root_f, f_eps = dt.type(math.sqrt(feats)), dt.type(feats * self.epsilon)
        to_mean = self._mean_vector(feats)
        gamma = None if self.gamma is None else self.gamma.value.reshape(-1)
        beta = None if self.beta is None else self.beta.value.reshape(-1)
        y = xp.empty(x2.shape, dtype=dt)
        # xhat is kept for backward; under no_grad it is formed in the output itself.
        xhat_all = self._buffer("_xhat_buf", x2.shape, dt) if keep else y
        inv_all = self._buffer("_inv_buf", (rows, 1), dt) if keep else xp.empty((rows, 1), dtype=dt)
        # One block of rows at a time, so the passes over it run in cache (see _BLOCK_VALUES).
        step = _block_rows(feats)
        for s in range(0, rows, step):
            b = slice(s, s + step)
            xs, xhat, inv = x2[b], xhat_all[b], inv_all[b]
            mean = xs @ to_mean   # (r, F) @ (F,) -> (r,): a GEMV, one pass
            xp.subtract(xs, mean.reshape(-1, 1), out=xhat)   # centered once: no E[x^2] - mean^2
            ss = _row_dots(xhat)   # (r,) sum of squares of the centered row
            ss += f_eps
            xp.sqrt(ss, out=ss)
            xp.divide(root_f, ss.reshape(-1, 1), out=inv)   # (r, 1)
            xhat *= inv
            ys = y[b]
            if gamma is not None:
                xp.multiply(xhat, gamma, out=ys)
                if beta is not None:
                    ys += beta
            elif beta is not None:
                xp.add(xhat, beta, out=ys)
            elif ys is not xhat:
                ys[...] = xhat
        self._xhat, self._inv = (xhat_all, inv_all) if keep else (None, None)
        return self._unrows(y, x.shape)

    def backward(self, grad):
        if getattr(self, "_xhat", None) is None:
            raise _no_cache_error(self)
        xp = backend.xp
        xhat_all, inv_all = self._xhat, self._inv
        g2 = self._rows(grad)   # (rows, F)
        if g2.dtype != self.dtype:
            g2 = g2.astype(self.dtype)
        rows, feats = g2.shape
        dt = self.dtype
        # dx = inv * (gh - mean(gh) - xhat * mean(gh * xhat)), means per row, gh = g * gamma.
        # With p = g * xhat: mean(gh * xhat) = p @ (gamma / F) and mean(gh) = g @ (gamma / F) (GEMVs),
        # dgamma = sum of p over rows and dbeta = sum of g over rows (GEMVs), all block by block
        # while the block is in cache: no whole-array pass.
        gamma = None if self.gamma is None else self.gamma.value.reshape(-1)
        need_dx = not self.skip_input_grad
        dx = xp.empty(g2.shape, dtype=dt) if need_dx else None
        gvec = self._mean_vector(feats) if gamma is None else gamma * dt.type(1.0 / feats)   # (F,)
        step = _block_rows(feats)
        p_buf = self._buffer("_p_buf", (min(step, rows), feats), dt)
        dgamma = xp.zeros(feats, dtype=dt) if self.gamma is not None else None
        dbeta = xp.zeros(feats, dtype=dt) if self.beta is not None else None
        for s in range(0, rows, step):
            b = slice(s, s + step)
            gs, xhat = g2[b], xhat_all[b]
            ones = self._ones(len(gs))
            if dbeta is not None:
                dbeta += ones @ gs   # (r,) @ (r, F) -> (F,)
            if dgamma is None and not need_dx:
                continue
            p = xp.multiply(gs, xhat, out=p_buf[:len(gs)])   # (r, F)
            if dgamma is not None:
                dgamma += ones @ p   # (r,) @ (r, F) -> (F,)
            if not need_dx:
                continue
            c = p @ gvec   # (r, F) @ (F,) -> (r,): mean of gh * xhat per row
            m = gs @ gvec   # (r,): mean of gh per row
            d = dx[b]
            xp.multiply(xhat, c.reshape(-1, 1), out=d)
            d += m.reshape(-1, 1)
            if gamma is None:
                xp.subtract(gs, d, out=d)
            else:
                xp.subtract(xp.multiply(gs, gamma, out=p), d, out=d)   # gh - ..., p reused for gh
            d *= inv_all[b]
        self._set_grad(self.beta, dbeta)
        self._set_grad(self.gamma, dgamma)
        return None if dx is None else self._unrows(dx, self._shape)

    def _mean_vector(self, size: int):
        """A cached ``(size,)`` vector of ``1 / size``: ``rows @ it`` is the mean of each row (a GEMV)."""
        vec = self.__dict__.get("_mean_vec")
        if vec is None or vec.shape != (size,) or vec.dtype != self.dtype or not isinstance(vec, backend.xp.ndarray):
            vec = self._mean_vec = backend.xp.full(size, 1.0 / size, dtype=self.dtype)
        return vec

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=list(self.axis) if len(self.axis) > 1 else self.axis[0], **self._affine_config())
        return cfg


@registry.register("GroupNormalization")
class GroupNormalization(_Normalization):
    """Normalize each sample per group of channels: ``gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    The channels of ``axis`` are split into ``groups`` consecutive groups; mean and biased variance
    are taken per sample and group, over the group's channels and every other non-batch axis
    (Wu & He, 2018). ``groups=1`` is LayerNormalization over all of ``(C, H, W)`` with a
    per-channel affine; ``groups=-1`` (one group per channel) is InstanceNormalization. The same
    in training and inference, with no moving statistics, so it works for any batch size.

    Args:
        groups: number of groups, a divisor of the channel count, or -1 for one per channel.
        axis: the channel axis of ``(batch, ...)``: 1 (default) for channels-first maps
            ``(batch, C, H, W)``; -1 for the last axis.
        epsilon: added to the variance, > 0.
        center / scale: learn a per-channel offset ``beta`` / factor ``gamma``.
        beta_initializer / gamma_initializer / beta_regularizer / gamma_regularizer: as in
            BatchNormalization.
    Input shape: ``(batch, ...)`` with the channel axis of known size. Output shape: the same.
    Params: ``gamma (C,)``, ``beta (C,)``.
    Example:
        >>> Model([Conv2D(64, 3, inshape=(3, 32, 32)), GroupNormalization(32), Activation('relu')])
    """

    def __init__(self, groups: int = 32, axis: int = 1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, **kwargs):
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, **kwargs)
        groups = check_int("GroupNormalization", "groups", groups, minimum=-1,
                           what="a positive integer (a divisor of the channel count) or -1 (one per channel)")
        if groups == 0:
            raise ValueError("GroupNormalization: groups must be a positive integer (a divisor of the channel "
                             "count) or -1 (one per channel), got 0.")
        self.groups = groups
        self.axis = _check_axis("GroupNormalization", axis)

    def build(self, inshape):
        a = _resolve_axis(self, self.axis, inshape)
        channels = inshape[a - 1]
        groups = channels if self.groups == -1 else self.groups
        if channels % groups:
            divisors = [d for d in range(1, channels + 1) if channels % d == 0 and d <= groups]
            raise ValueError(f"Layer {self.describe()}: groups={groups} does not divide the {channels} channels of "
                             f"axis {self.axis} of input {fmt_shape(inshape)}. Use a divisor of {channels} (the "
                             f"nearest below is {divisors[-1]}) or groups=-1 for one group per channel.")
        self._groups = groups
        self._channel_axis = a
        # gamma/beta broadcast over (batch, C, ...) with the channel axis moved to 1
        self._bshape = (1, channels) + (1,) * (len(inshape) - 1)
        self._add_affine((channels,))
        self.outshape = tuple(inshape)

    def forward(self, x, training=False):
        self.check_input(x)
        xp = backend.xp
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        a = self._channel_axis
        xt = x if a == 1 else xp.moveaxis(x, a, 1)   # (batch, C, ...)
        n = xt.shape[0]
        xg = xt.reshape(n, self._groups, -1)   # (batch, G, C/G * rest): a group's values are contiguous
        xc = xg - xg.mean(axis=2, keepdims=True)   # centered once: no E[x^2] - mean^2 cancellation
        var = xp.einsum("ngs,ngs->ng", xc, xc) * self.dtype.type(1.0 / xg.shape[2])   # (batch, G)
        inv = (1.0 / xp.sqrt(var + self.dtype.type(self.epsilon)))[:, :, None]   # (batch, G, 1)
        xhat = xc * inv   # (batch, G, S)
        y = xhat.reshape(xt.shape)
        if self.gamma is not None:
            y = y * self.gamma.value.reshape(self._bshape)
        if self.beta is not None:
            y = y + self.beta.value.reshape(self._bshape)
        if grad_enabled():
            self._xhat, self._inv = xhat, inv
        else:
            self._xhat = self._inv = None
        return y if a == 1 else xp.moveaxis(y, 1, a)

    def backward(self, grad):
        if getattr(self, "_xhat", None) is None:
            raise _no_cache_error(self)
        xp = backend.xp
        if grad.dtype != self.dtype:
            grad = grad.astype(self.dtype)
        a = self._channel_axis
        gt = grad if a == 1 else xp.moveaxis(grad, a, 1)   # (batch, C, ...)
        xhat, inv = self._xhat, self._inv
        n, c = gt.shape[:2]
        g3 = gt.reshape(n, c, -1)   # (batch, C, rest)
        if self.beta is not None:
            self._set_grad(self.beta, g3.sum(axis=(0, 2)))
        if self.gamma is not None:
            self._set_grad(self.gamma, xp.einsum("ncs,ncs->c", g3, xhat.reshape(n, c, -1)))
        if self.skip_input_grad:
            return None
        gh = gt if self.gamma is None else gt * self.gamma.value.reshape(self._bshape)
        gg = gh.reshape(xhat.shape)   # (batch, G, S)
        # per group: dx = inv * (gh - mean(gh) - xhat * mean(gh * xhat))
        s = self.dtype.type(1.0 / xhat.shape[2])
        mean_g = gg.sum(axis=2, keepdims=True) * s
        mean_gx = xp.einsum("ngs,ngs->ng", gg, xhat)[:, :, None] * s
        dx = (gg - mean_g - xhat * mean_gx) * inv
        dx = dx.reshape(gt.shape)
        return dx if a == 1 else xp.moveaxis(dx, 1, a)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(groups=self.groups, axis=self.axis, **self._affine_config())
        return cfg


@registry.register("LocalResponseNormalization")
class LocalResponseNormalization(Layer):
    """Local response normalization across channels, TensorFlow's ``tf.nn.lrn`` (AlexNet, 2012).

    For each channel ``c``, ``sqr_sum[c] = sum(x[c - r .. c + r] ** 2)`` over the
    ``2 * depth_radius + 1`` neighbouring channels that exist (the window is cut at the first
    and last channel), and ``y = x / (bias + alpha * sqr_sum) ** beta``.

    ``alpha`` multiplies the *sum*, as in TensorFlow; PyTorch's ``LocalResponseNorm(size, alpha)``
    multiplies the *mean* over ``size`` channels (zero-padded), so it equals this layer with
    ``depth_radius = (size - 1) // 2`` (``size`` odd) and ``alpha = alpha_torch / size``. The
    TensorFlow CIFAR-10 tutorial's ``lrn(depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75)``
    is ``LocalResponseNormalization(4, 1.0, 0.001 / 9, 0.75)``.

    Args:
        depth_radius: half-width ``r`` of the channel window, >= 0.
        bias: added to the scaled sum, > 0 (so the base of the power is positive).
        alpha: scale of the sum of squares, >= 0.
        beta: exponent, >= 0.
        axis: the channel axis of ``(batch, ...)``: 1 (default, channels-first); TensorFlow's
            channels-last layout is ``axis=-1``.
    Input shape: ``(batch, ...)``. Output shape: the same. No params.
    Example:
        >>> Model([Conv2D(64, 5, padding='same', activation='relu', inshape=(3, 32, 32)),
        ...        MaxPool2D(3, strides=2, padding='same'),
        ...        LocalResponseNormalization(4, bias=1.0, alpha=0.001 / 9, beta=0.75)])
    """

    def __init__(self, depth_radius: int = 5, bias: float = 1.0, alpha: float = 1.0, beta: float = 0.5,
                 axis: int = 1, **kwargs):
        super().__init__(**kwargs)
        who = "LocalResponseNormalization"
        self.depth_radius = check_int(who, "depth_radius", depth_radius, minimum=0)
        self.bias = check_number(who, "bias", bias, minimum=0.0, low_open=True)
        self.alpha = check_number(who, "alpha", alpha, minimum=0.0)
        self.beta = check_number(who, "beta", beta, minimum=0.0)
        self.axis = _check_axis(who, axis)

    def build(self, inshape):
        self._channel_axis = _resolve_axis(self, self.axis, inshape)
        self.outshape = tuple(inshape)

    def _window_sum(self, v):
        """``out[c] = sum(v[c - r .. c + r])`` along the channel axis, the window cut at the ends.

        2r shifted slice adds (exact; any strides, so the CHWN memory of a conv output is read
        as it is), not a cumulative sum, whose differences would cancel in float32.
        """
        a, channels = self._channel_axis, v.shape[self._channel_axis]
        lead = (slice(None),) * a
        out = v.copy()
        for d in range(1, min(self.depth_radius, channels - 1) + 1):
            out[lead + (slice(d, None),)] += v[lead + (slice(0, channels - d),)]   # out[c] += v[c - d]
            out[lead + (slice(0, channels - d),)] += v[lead + (slice(d, None),)]   # out[c] += v[c + d]
        return out

    def _neg_power(self, s):
        """``s ** -beta``; the tutorials' beta = 0.5 and 0.75 through square roots (5x faster than pow)."""
        xp = backend.xp
        if self.beta == 0.5:
            return 1.0 / xp.sqrt(s)
        if self.beta == 0.75:
            r = xp.sqrt(s)
            return 1.0 / (r * xp.sqrt(r))
        return xp.power(s, -self.beta)

    def forward(self, x, training=False):
        self.check_input(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        s = self._window_sum(x * x)
        s *= self.dtype.type(self.alpha)
        s += self.dtype.type(self.bias)   # bias + alpha * sqr_sum, > 0
        p = self._neg_power(s)
        if grad_enabled():
            self._x, self._s, self._p = x, s, p
        else:
            self._x = self._s = self._p = None
        return x * p

    def backward(self, grad):
        if getattr(self, "_x", None) is None:
            raise _no_cache_error(self)
        if self.skip_input_grad:
            return None
        if grad.dtype != self.dtype:
            grad = grad.astype(self.dtype)
        x, s, p = self._x, self._s, self._p
        # y_j = x_j * s_j^-beta with s_j = bias + alpha * sum_{|i-j|<=r} x_i^2, so
        # dx_i = g_i * s_i^-beta - 2 alpha beta x_i * sum_{|j-i|<=r} g_j x_j s_j^(-beta-1)
        # (the window is symmetric: the same window sum carries the gradient back).
        t = grad * x * p / s
        dx = grad * p
        dx -= self.dtype.type(2.0 * self.alpha * self.beta) * x * self._window_sum(t)
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta, axis=self.axis)
        return cfg
