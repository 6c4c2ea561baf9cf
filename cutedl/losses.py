"""Loss functions, by name through one registry: ``losses.get('categorical_crossentropy')``.

A loss is called like Keras, ``loss(y_true, y_pred) -> float``, and returns the mean loss over
the batch; it caches what ``backward() -> dL/dy_pred`` needs, so the training loop calls the two
in that order::

    >>> loss = losses.get('cce')
    >>> value = loss(y_batch, model.forward(x_batch))
    >>> model.backward(loss.backward())

Reduction (as Keras' default 'sum_over_batch_size'): a per-sample loss is computed, then averaged
over the batch (and over time steps for sequence outputs). For the regression losses and binary
crossentropy the per-sample loss is the mean over the non-batch axes, so the result is the mean
over all elements; for categorical crossentropy it is the sum over the class axis (the last).

Fused crossentropies: ``output_activation`` names the activation a crossentropy undoes
('softmax' or 'sigmoid'). When the model's last layer ends in that activation, the Session can
skip it and use ``loss.with_logits()`` instead, which works on the logits with log-sum-exp and
softplus forms: finite values and gradients for any finite logits, and the softmax gradient is
the textbook ``(softmax(z) - y) / batch`` rather than a division by probabilities.

Masks (as Keras): ``loss(y_true, y_pred, mask=m)`` with a bool ``(batch, T)`` mask (True = real
step; the Session passes ``model.output_mask``) averages over the real steps only, and the
padded steps get a zero gradient. Targets at padded steps are never read (a padding label such
as -1 is fine). With no real step at all the loss is 0 with a zero gradient. Without a mask,
nothing changes: the unmasked path is the same code as before.

Probabilities (``from_logits=False``) are clipped to ``[1e-7, 1 - 1e-7]`` like Keras, so a
confident wrong prediction costs about 16.1 instead of infinity. The gradient is that of the
clipped function: zero through an entry that was clipped.

dtypes: ``y_true`` may be bool, integer or float; it is cast to ``y_pred``'s dtype (integer
predictions are cast to ``backend.floatx()``). The gradient has the dtype of the (cast)
``y_pred``: float32 in, float32 out.
"""
from __future__ import annotations

import math

from cutedl import backend
from cutedl._registry import Registry
from cutedl._validate import check_bool, check_number
from cutedl.backend import as_array, floatx

# Keras' backend epsilon: probabilities are clipped to [EPSILON, 1 - EPSILON].
EPSILON = 1e-7


class Loss:
    """Base class. Subclasses implement ``_targets`` (validation), ``_forward`` and ``_backward``.

    Attributes:
        registry_name: the canonical registry name (set by the registry decorator).
        from_logits: whether ``y_pred`` holds logits rather than probabilities.
        output_activation: the activation this loss can fuse with (None for regression losses).
    """

    registry_name = "loss"
    from_logits = False
    output_activation: str | None = None
    _cache = None

    def __call__(self, y_true, y_pred, mask=None) -> float:
        """Mean loss over the batch; caches what :meth:`backward` needs.

        Args:
            y_true: targets, ``(batch, ...)``; the accepted shapes depend on the loss.
            y_pred: predictions (or logits), ``(batch, ...)``.
            mask: optional bool ``(batch, T)`` array, True = real step (a model's
                ``output_mask``). The loss is then the mean over the real steps only, and
                :meth:`backward` gives the padded steps a zero gradient (as Keras).
        Returns:
            The loss as a Python float.
        """
        y_pred = self._prediction(y_pred)
        if mask is not None:
            return self._masked_call(y_true, y_pred, mask)
        y_true = self._targets(self._check_targets(y_true, y_pred), y_pred)
        value, self._cache = self._forward(y_true, y_pred)
        self._scatter = None
        return backend.item(value)

    def backward(self):
        """dL/dy_pred of the mean loss from the last call: same shape and dtype as ``y_pred``."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before the loss: "
                               f"call loss(y_true, y_pred) first.")
        if self._scatter is None:
            return self._backward(self._cache)
        return self._scatter_back()

    _scatter = None

    def _masked_call(self, y_true, y_pred, mask) -> float:
        """The loss over the real steps only: computed on ``y_pred[mask]`` (real steps, any order).

        Every loss averages its per-step values uniformly, so the loss of the selected steps is
        exactly the masked mean; the gradient is scattered back, zeros at the padded steps.
        """
        who = type(self).__name__
        mask = check_mask(who, mask, y_pred, self.output_activation == "softmax")
        y_true = self._check_targets(y_true, y_pred)
        if y_true.shape[:mask.ndim] != mask.shape:
            raise ValueError(f"{who}: the targets must have one entry per time step like the output mask "
                             f"{mask.shape}, got y_true of shape {y_true.shape} for y_pred of shape "
                             f"{y_pred.shape}. Pad the targets like the inputs, to (batch, T, ...).")
        count = int(backend.item(mask.sum()))  # a counted crossing: y_pred[mask] has a data-dependent size
        if count == mask.size:  # nothing padded: the plain path, no copies
            y_true = self._targets(y_true, y_pred)
            value, self._cache = self._forward(y_true, y_pred)
            self._scatter = None
            return backend.item(value)
        sub_pred = y_pred[mask]  # (real steps, ...)
        self._scatter = (mask, y_pred.shape, y_pred.dtype, count)
        if count == 0:
            # no real step at all: as Keras (divide-no-nan), the loss is 0 and so is the gradient
            self._cache = ()
            return 0.0
        sub_true = self._targets(y_true[mask], sub_pred)
        value, self._cache = self._forward(sub_true, sub_pred)
        return backend.item(value)

    def _scatter_back(self):
        mask, shape, dtype, count = self._scatter
        g = backend.xp.zeros(shape, dtype=dtype)
        if count:
            g[mask] = self._backward(self._cache)
        return g

    def with_logits(self) -> "Loss":
        """A new instance of this loss that takes logits (``from_logits=True``), options kept."""
        if self.output_activation is None:
            raise TypeError(f"{type(self).__name__} has no from_logits form: only losses of probabilities "
                            f"(the crossentropies, focal crossentropy, KL divergence) can fuse with an activation.")
        cfg = self.get_config()
        cfg["from_logits"] = True
        return type(self)(**cfg)

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # --- validation shared by every loss -------------------------------------------------

    def _prediction(self, y_pred):
        y_pred = as_array(y_pred, type(self).__name__, "y_pred")
        kind = y_pred.dtype.kind
        if kind != "f":
            if kind not in "biu":
                raise TypeError(f"{type(self).__name__} expects numeric arrays, got y_pred with dtype "
                                f"{y_pred.dtype}. Convert the predictions to a float NumPy array.")
            y_pred = y_pred.astype(floatx())
        if y_pred.ndim == 0:
            raise ValueError(f"{type(self).__name__} expected y_pred of shape (batch, ...), got a scalar. "
                             f"Pass a batch of predictions, e.g. y_pred.reshape(1, -1).")
        if y_pred.size == 0:
            raise ValueError(f"{type(self).__name__} got an empty batch (y_pred shape {y_pred.shape}). "
                             f"Pass at least one sample.")
        return y_pred

    def _check_targets(self, y_true, y_pred):
        y_true = as_array(y_true, type(self).__name__, "y_true")
        if y_true.dtype.kind not in "biuf":
            raise TypeError(f"{type(self).__name__} expects numeric arrays, got y_true with dtype "
                            f"{y_true.dtype}. Convert the targets to a numeric NumPy array "
                            f"(e.g. np.asarray(y, dtype='float32')).")
        if y_true.ndim == 0:
            raise ValueError(f"{type(self).__name__} expected y_true of shape (batch, ...) matching y_pred "
                             f"{y_pred.shape}, got a scalar. Pass one target per sample.")
        if y_true.shape[0] != y_pred.shape[0]:
            raise ValueError(f"{type(self).__name__}: batch sizes differ: y_true has {y_true.shape[0]} "
                             f"samples (shape {y_true.shape}), y_pred has {y_pred.shape[0]} "
                             f"(shape {y_pred.shape}). Pass targets and predictions of the same batch.")
        return y_true

    def _same_shape(self, y_true, y_pred):
        """y_true cast to y_pred's dtype and shape; a trailing axis of 1 may differ (as Keras)."""
        if y_true.shape != y_pred.shape:
            if ((y_pred.shape[-1:] == (1,) and y_true.shape == y_pred.shape[:-1])
                    or (y_true.shape[-1:] == (1,) and y_true.shape[:-1] == y_pred.shape)):
                y_true = y_true.reshape(y_pred.shape)
            else:
                raise ValueError(f"{type(self).__name__} expected y_true of shape {y_pred.shape} "
                                 f"(the shape of y_pred), got {y_true.shape}. Make the targets match the "
                                 f"model's output shape (check the last layer's units).")
        return y_true.astype(y_pred.dtype, copy=False)

    # --- per-loss hooks --------------------------------------------------------------------

    def _targets(self, y_true, y_pred):
        return self._same_shape(y_true, y_pred)

    def _forward(self, y_true, y_pred):
        """Returns ``(value, cache)``."""
        raise NotImplementedError

    def _backward(self, cache):
        raise NotImplementedError


registry = Registry("loss", Loss)


def get(identifier, **kwargs) -> Loss:
    """A loss from a name (case-insensitive, aliases included), an instance, a class or a config dict."""
    return registry.get(identifier, **kwargs)


def serialize(loss: Loss):
    """A name when the loss has default options, else a config dict."""
    cfg = loss.get_config()
    default = type(loss)().get_config()
    return loss.registry_name if cfg == default else registry.serialize(loss)


def check_mask(who: str, mask, y_pred, class_axis: bool = False):
    """Validate a step mask for ``y_pred``: a bool array equal to ``y_pred``'s leading axes.

    Args:
        who: the component named in errors.
        mask: bool ``(batch, T)`` (True = real step).
        y_pred: the predictions ``(batch, T, ...)``.
        class_axis: whether the last axis of ``y_pred`` holds classes (it cannot be masked).
    Returns:
        the mask as a bool array.
    """
    mask = as_array(mask, who, "mask")
    if mask.dtype.kind != "b":
        raise TypeError(f"{who}: the mask must be a bool array (True = real step), got dtype {mask.dtype}. "
                        f"Pass e.g. lengths[:, None] > np.arange(T).")
    need = mask.ndim + (1 if class_axis else 0)
    if mask.ndim == 0 or y_pred.ndim < need or y_pred.shape[:mask.ndim] != mask.shape:
        raise ValueError(f"{who}: the mask of shape {mask.shape} does not match y_pred of shape {y_pred.shape}: "
                         f"it must equal y_pred's leading (batch, T) axes"
                         f"{' (before the class axis)' if class_axis else ''}. Masks apply to per-step "
                         f"outputs such as return_sequences=True followed by TimeDistributed/Dense.")
    return mask


def _check_label_smoothing(who: str, label_smoothing) -> float:
    return check_number(who, "label_smoothing", label_smoothing, minimum=0, maximum=1)


# --- regression ------------------------------------------------------------------------------


@registry.register("mse", "mean_squared_error")
class MeanSquaredError(Loss):
    """mean((y_pred - y_true)**2) over every element."""

    def _forward(self, y_true, y_pred):
        d = y_pred - y_true
        return backend.xp.mean(d * d), d

    def _backward(self, d):
        return d * (2.0 / d.size)


@registry.register("mae", "mean_absolute_error")
class MeanAbsoluteError(Loss):
    """mean(|y_pred - y_true|) over every element. Its gradient at y_pred == y_true is 0."""

    def _forward(self, y_true, y_pred):
        xp = backend.xp
        d = y_pred - y_true
        return xp.mean(xp.abs(d)), d

    def _backward(self, d):
        return backend.xp.sign(d) * (1.0 / d.size)


@registry.register("huber")
class Huber(Loss):
    """Quadratic for small errors, linear for large ones; mean over every element.

    ``0.5 * e**2`` where ``|e| <= delta``, else ``delta * (|e| - 0.5 * delta)``, with
    ``e = y_pred - y_true``.

    Args:
        delta: where the loss turns from quadratic to linear (> 0). ``float('inf')`` is allowed
            and means quadratic everywhere, as in Keras: ``0.5 * e**2``, i.e. half the
            :class:`MeanSquaredError` (and half its gradient).
    """

    def __init__(self, delta: float = 1.0):
        self.delta = check_number("Huber", "delta", delta, minimum=0, low_open=True, finite=False,
                                  what="a number > 0 (inf: quadratic everywhere)")

    def _forward(self, y_true, y_pred):
        xp = backend.xp
        d = y_pred - y_true
        if self.delta == math.inf:
            # no linear part: the split below would compute inf * 0 = NaN
            return 0.5 * xp.mean(d * d), d
        a = xp.abs(d)
        # split |e| into its quadratic part (up to delta) and the linear rest: no branches
        quad = xp.minimum(a, self.delta)
        lin = a - quad
        return xp.mean(0.5 * quad * quad + self.delta * lin), d

    def _backward(self, d):
        if self.delta == math.inf:
            return d * (1.0 / d.size)
        return backend.xp.clip(d, -self.delta, self.delta) * (1.0 / d.size)

    def get_config(self) -> dict:
        return {"delta": self.delta}


# --- crossentropies --------------------------------------------------------------------------


@registry.register("binary_crossentropy", "bce")
class BinaryCrossentropy(Loss):
    """-(y log p + (1 - y) log(1 - p)), mean over every element (per sample: over the last axis).

    Args:
        from_logits: ``y_pred`` holds logits z (p = sigmoid(z)) instead of probabilities.
        label_smoothing: targets become ``y * (1 - label_smoothing) + 0.5 * label_smoothing``.
    Shapes:
        y_pred ``(batch, ...)``; y_true the same shape (a trailing axis of 1 may be missing on
        either side), values in [0, 1].
    """

    output_activation = "sigmoid"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0):
        self.from_logits = check_bool("BinaryCrossentropy", "from_logits", from_logits)
        self.label_smoothing = _check_label_smoothing("BinaryCrossentropy", label_smoothing)

    def _targets(self, y_true, y_pred):
        t = self._same_shape(y_true, y_pred)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return t

    def _forward(self, t, y_pred):
        xp = backend.xp
        if self.from_logits:
            z = y_pred
            # softplus form: log(1 + e^z) - z t = max(z, 0) - z t + log1p(e^-|z|); exp never overflows
            e = xp.exp(-xp.abs(z))
            value = xp.mean(xp.maximum(z, 0) - z * t + xp.log1p(e))
            return value, (z, t, e)
        pc = xp.clip(y_pred, EPSILON, 1.0 - EPSILON)
        value = -xp.mean(t * xp.log(pc) + (1 - t) * xp.log1p(-pc))
        return value, (y_pred, t, pc)

    def _backward(self, cache):
        if self.from_logits:
            z, t, e = cache
            # sigmoid(z) from e = exp(-|z|): 1/(1+e) for z >= 0, e/(1+e) for z < 0
            r = 1 / (1 + e)
            sig = backend.xp.where(z >= 0, r, e * r)
            return (sig - t) * (1.0 / z.size)
        p, t, pc = cache
        unclipped = pc == p  # bool: keeps the float dtype when multiplied
        return unclipped * (pc - t) / (pc * (1 - pc)) * (1.0 / p.size)

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


def _classes_of(loss: Loss, y_pred) -> int:
    if y_pred.ndim < 2:
        raise ValueError(f"{type(loss).__name__} expected y_pred of shape (batch, classes) or "
                         f"(batch, ..., classes), got {y_pred.shape}. Give the last layer one unit per class "
                         f"(for a single probability use BinaryCrossentropy).")
    return y_pred.shape[-1]


def _batch_shape(shape) -> str:
    """``(batch, 10)`` for ``(2, 10)``: the batch size of one call (a 2-sample probe, the last
    short batch) says nothing about the data, so messages about targets leave it out."""
    return "(" + ", ".join(["batch"] + [str(d) for d in shape[1:]]) + ("," if len(shape) == 1 else "") + ")"


def one_hot_targets_message(who: str, true_shape, pred_shape) -> str:
    """The error for targets that do not match a one-hot loss's ``y_pred`` (integer labels or a
    wrong class count), with the label array's trailing shape against the output's."""
    classes = pred_shape[-1]
    if true_shape in (pred_shape[:-1], pred_shape[:-1] + (1,)):
        return (f"{who} expects one-hot targets shaped like the outputs, got labels of shape "
                f"{_batch_shape(true_shape)} but outputs {_batch_shape(pred_shape)}: these look like integer "
                f"class labels. Either use SparseCategoricalCrossentropy ('sparse_categorical_crossentropy') "
                f"with the labels as they are, or one-hot encode them: y = cutedl.datasets.one_hot(y, {classes}).")
    return (f"{who} expected y_true of shape {_batch_shape(pred_shape)} (the shape of y_pred), got "
            f"{_batch_shape(true_shape)}. Make the last layer output one unit per class and one-hot encode "
            f"the targets with that many classes: y = cutedl.datasets.one_hot(y, {classes}).")


def _one_hot_targets(loss: Loss, y_true, y_pred, label_smoothing: float = 0.0):
    """One-hot (or distribution) targets shaped like ``y_pred``, cast to its dtype and smoothed."""
    classes = _classes_of(loss, y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(one_hot_targets_message(type(loss).__name__, y_true.shape, y_pred.shape))
    t = y_true.astype(y_pred.dtype, copy=False)
    if label_smoothing:
        t = t * (1.0 - label_smoothing) + label_smoothing / classes
    return t


def _softmax(z, temperature: float = 1.0):
    """softmax(z / temperature) over the last axis, and its normaliser pieces for log-softmax.

    Returns ``(p, shifted, s)`` with ``shifted = (z - max z) / temperature`` and
    ``s = sum(exp(shifted))``: ``log p = shifted - log s`` (exp of values <= 0 never overflows).
    """
    xp = backend.xp
    shifted = z - z.max(axis=-1, keepdims=True)
    if temperature != 1.0:
        shifted = shifted / temperature
    e = xp.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    return e / s, shifted, s


@registry.register("categorical_crossentropy", "cce")
class CategoricalCrossentropy(Loss):
    """-sum(y * log p) over the class axis (the last), mean over the batch (and time steps).

    Args:
        from_logits: ``y_pred`` holds logits z (p = softmax(z)) instead of probabilities.
        label_smoothing: targets become ``y * (1 - label_smoothing) + label_smoothing / classes``.
    Shapes:
        y_pred ``(batch, classes)`` or ``(batch, T, classes)``; y_true the same shape, one-hot (or
        any distribution). For integer labels use SparseCategoricalCrossentropy.

    Probabilities are first normalised to sum to 1 along the class axis (as Keras), then clipped.
    """

    output_activation = "softmax"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0):
        self.from_logits = check_bool("CategoricalCrossentropy", "from_logits", from_logits)
        self.label_smoothing = _check_label_smoothing("CategoricalCrossentropy", label_smoothing)

    def _targets(self, y_true, y_pred):
        return _one_hot_targets(self, y_true, y_pred, self.label_smoothing)

    def _forward(self, t, y_pred):
        xp = backend.xp
        n = y_pred.size // y_pred.shape[-1]  # samples x time steps
        if self.from_logits:
            # log softmax(z) = (z - max) - log(sum(exp(z - max))): exp of values <= 0 never overflows
            shifted = y_pred - y_pred.max(axis=-1, keepdims=True)
            e = xp.exp(shifted)
            s = e.sum(axis=-1, keepdims=True)
            tsum = t.sum(axis=-1, keepdims=True)  # 1 for one-hot targets
            value = (xp.sum(tsum * xp.log(s)) - xp.sum(t * shifted)) / n
            return value, (e, s, t, tsum, n)
        s = xp.maximum(y_pred.sum(axis=-1, keepdims=True), xp.finfo(y_pred.dtype).tiny)
        pn = y_pred / s
        pc = xp.clip(pn, EPSILON, 1.0 - EPSILON)
        value = -xp.sum(t * xp.log(pc)) / n
        return value, (s, pn, pc, t, n)

    def _backward(self, cache):
        if self.from_logits:
            e, s, t, tsum, n = cache
            # d/dz of sum(t) log(sum e^z) - t.z: softmax(z) * sum(t) - t, i.e. softmax - y for one-hot y
            return (e / s * tsum - t) / n
        s, pn, pc, t, n = cache
        # L = -sum_i t_i log clip(p_i / S): dL/dp_j = (sum_i m_i t_i - m_j t_j / pn_j) / S, m = unclipped
        mt = (pc == pn) * t
        return (mt.sum(axis=-1, keepdims=True) - mt / pc) / (s * n)

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


@registry.register("kl_divergence", "kld", "kullback_leibler_divergence")
class KLDivergence(Loss):
    """Kullback-Leibler divergence ``sum(y * log(y / p))`` over the class axis (the last), mean
    over the batch (and time steps), as Keras' KLDivergence.

    As Keras, both distributions are clipped to ``[1e-7, 1]`` first, so a zero target entry costs
    ``1e-7 * log(1e-7 / p)`` (tiny) instead of 0, and ``p`` is *not* renormalised. The gradient is
    that of the clipped function (zero through a clipped prediction).

    Args:
        from_logits: ``y_pred`` holds logits z and ``p = softmax(z / temperature)``, computed with
            log-softmax (finite for any finite logits). Keras' KLDivergence has no such option;
            ours also lets a model ending in softmax train on its logits (the Session fuses it).
        temperature: > 0, with ``from_logits=True`` only: the distillation temperature T. The loss
            is then multiplied by ``T**2`` (Hinton et al. 2015), so that its gradient keeps the
            same scale whatever T: ``T**2 * KL(y || softmax(z / T))``.
    Shapes:
        y_pred ``(batch, classes)`` or ``(batch, T, classes)``; y_true the same shape, a
        probability distribution along the last axis.

    Knowledge distillation: the targets are the teacher's soft predictions at temperature T,
    the student ends in a plain Dense (logits)::

        >>> T = 4.0
        >>> soft = teacher_logits / T
        >>> soft = np.exp(soft - soft.max(-1, keepdims=True))
        >>> soft /= soft.sum(-1, keepdims=True)                   # softmax(teacher_logits / T)
        >>> student = Model([..., layers.Dense(10)]).assemble()   # no activation: logits
        >>> Session(student, KLDivergence(from_logits=True, temperature=T), 'adam').fit(x, soft)

    (The usual recipe mixes this with the crossentropy on the true labels, ``alpha * KL +
    (1 - alpha) * CE``: a model with two outputs and ``loss_weights``, or a custom train step.)
    Without ``from_logits``, pass probabilities already softened (``softmax(z / T)``) and
    multiply by ``T**2`` yourself (e.g. in ``loss_weights``).
    """

    output_activation = "softmax"

    def __init__(self, from_logits: bool = False, temperature: float = 1.0):
        self.from_logits = check_bool("KLDivergence", "from_logits", from_logits)
        self.temperature = check_number("KLDivergence", "temperature", temperature, minimum=0, low_open=True)
        if self.temperature != 1.0 and not self.from_logits:
            raise ValueError(f"KLDivergence: temperature={temperature!r} needs from_logits=True (the "
                             f"temperature divides logits). Give the student a linear last layer and pass "
                             f"from_logits=True, or soften probabilities yourself and keep temperature=1.")

    def _targets(self, y_true, y_pred):
        return backend.xp.clip(_one_hot_targets(self, y_true, y_pred), EPSILON, 1.0)

    def _forward(self, t, y_pred):
        xp = backend.xp
        n = y_pred.size // y_pred.shape[-1]  # samples x time steps
        tlogt = xp.sum(t * xp.log(t))
        if self.from_logits:
            temp = self.temperature
            q, shifted, s = _softmax(y_pred, temp)
            tsum = t.sum(axis=-1, keepdims=True)
            # sum t log(t / q) with log q = shifted - log s
            value = (tlogt - xp.sum(t * shifted) + xp.sum(tsum * xp.log(s))) * (temp * temp / n)
            return value, (q, t, tsum, n)
        pc = xp.clip(y_pred, EPSILON, 1.0)
        value = (tlogt - xp.sum(t * xp.log(pc))) / n
        return value, (y_pred, pc, t, n)

    def _backward(self, cache):
        if self.from_logits:
            q, t, tsum, n = cache
            # d/dz of T^2 (sum(t) log sum e^(z/T) - t.z/T): T (softmax(z/T) sum(t) - t)
            return (q * tsum - t) * (self.temperature / n)
        p, pc, t, n = cache
        return (pc == p) * t / (pc * -n)  # -t / p where p was not clipped

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits, "temperature": self.temperature}


@registry.register("categorical_focal_crossentropy", "focal_crossentropy", "categorical_focal")
class CategoricalFocalCrossentropy(Loss):
    """Focal loss (Lin et al. 2017) for one-hot targets, Keras 3's definition::

        p = y_pred / sum(y_pred)         (p = softmax(z) with from_logits), then clipped to [1e-7, 1 - 1e-7]
        loss = -sum(alpha * (1 - p)**gamma * y * log p)   over the class axis (the last)

    mean over the batch (and time steps). ``(1 - p)**gamma`` shrinks the loss of well-classified
    samples so training concentrates on the hard ones; ``gamma=0, alpha=1`` is the categorical
    crossentropy. The gradient is that of the clipped function.

    Args:
        alpha: weight of every class's term (>= 0; default 0.25).
        gamma: focusing parameter (>= 0; default 2.0).
        from_logits: ``y_pred`` holds logits z (p = softmax(z)) instead of probabilities.
        label_smoothing: targets become ``y * (1 - label_smoothing) + label_smoothing / classes``.
    Shapes:
        y_pred ``(batch, classes)`` or ``(batch, T, classes)``; y_true the same shape, one-hot.
        For integer labels one-hot encode them first (``cutedl.datasets.one_hot``).
    """

    output_activation = "softmax"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0):
        who = "CategoricalFocalCrossentropy"
        self.alpha = check_number(who, "alpha", alpha, minimum=0)
        self.gamma = check_number(who, "gamma", gamma, minimum=0)
        self.from_logits = check_bool(who, "from_logits", from_logits)
        self.label_smoothing = _check_label_smoothing(who, label_smoothing)

    def _targets(self, y_true, y_pred):
        return _one_hot_targets(self, y_true, y_pred, self.label_smoothing)

    def _forward(self, t, y_pred):
        xp = backend.xp
        n = y_pred.size // y_pred.shape[-1]  # samples x time steps
        if self.from_logits:
            p, _, _ = _softmax(y_pred)
            s = None
        else:
            s = xp.maximum(y_pred.sum(axis=-1, keepdims=True), xp.finfo(y_pred.dtype).tiny)
            p = y_pred / s
        pc = xp.clip(p, EPSILON, 1.0 - EPSILON)
        logp = xp.log(pc)
        one_minus = 1.0 - pc
        mod = one_minus ** self.gamma  # (1 - p)^gamma
        value = -self.alpha * xp.sum(mod * t * logp) / n
        return value, (p, s, pc, logp, one_minus, mod, t, n)

    def _backward(self, cache):
        xp = backend.xp
        p, s, pc, logp, one_minus, mod, t, n = cache
        # f = -alpha t (1 - p)^g log p:  df/dp = alpha t (g (1 - p)^(g - 1) log p - (1 - p)^g / p)
        # (1 - p)^(g - 1) = mod / (1 - p): 1 - p >= 1e-7 after the clip
        g = t * (pc == p) * (self.gamma * mod / one_minus * logp - mod / pc)  # t first: bool * float is float64
        g *= self.alpha / n
        # through the normalisation p = y / S (or p = softmax(z)): both give p * (g - sum(g p)) up to 1 / S
        proj = g - (g * p).sum(axis=-1, keepdims=True)
        return p * proj if self.from_logits else proj / s

    def get_config(self) -> dict:
        return {"alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


def sparse_labels(who: str, y_true, y_pred):
    """Validate integer class labels against ``y_pred`` ``(..., classes)``; returns them flat (intp).

    Accepted label shapes: ``y_pred.shape[:-1]`` or that with a trailing axis of 1. Float labels
    must hold integers. Raises ValueError naming ``who`` on a bad shape or label.
    """
    xp = backend.xp
    classes = y_pred.shape[-1]
    lead = y_pred.shape[:-1]
    if y_true.shape != lead and y_true.shape != lead + (1,):
        if y_true.shape == y_pred.shape:
            fix = ("these look one-hot: use CategoricalCrossentropy / categorical metrics, or pass "
                   "labels = y_true.argmax(axis=-1)")
        else:
            fix = "pass one integer label per sample (per time step for sequences)"
        raise ValueError(f"{who} expected integer labels of shape {lead} (or {lead + (1,)}) for y_pred of shape "
                         f"{y_pred.shape}, got {y_true.shape}: {fix}.")
    labels = y_true.reshape(-1)
    # Checked with backend.check: on a GPU the flags come back with the loss value, not on their own.
    if labels.dtype.kind == "f":
        # NaN != floor(NaN) too, so NaN labels are reported here
        fractional = labels != xp.floor(labels)

        def not_integer():
            raise ValueError(f"{who} expects integer class labels, got "
                             f"{backend.to_host(labels[fractional.argmax()]).item()!r}. "
                             f"Pass labels as integers in [0, {classes}) (e.g. y.astype('int64')).")
        backend.check(fractional.any(), not_integer)
    elif labels.dtype.kind == "b":
        labels = labels.astype(xp.intp)

    def out_of_range():
        bad = (labels < 0) | (labels >= classes)
        raise ValueError(f"{who}: label {backend.to_host(labels[bad.argmax()]).item()!r} is out of range for "
                         f"{classes} classes (expected integers in [0, {classes})). Check the labels, or give the "
                         f"last layer one unit per class.")
    backend.check((labels.min() < 0) | (labels.max() >= classes), out_of_range)
    return labels.astype(xp.intp, copy=False)


@registry.register("sparse_categorical_crossentropy")
class SparseCategoricalCrossentropy(Loss):
    """Categorical crossentropy with integer class labels: -log p[label], mean over the batch.

    Args:
        from_logits: ``y_pred`` holds logits z (p = softmax(z)) instead of probabilities.
    Shapes:
        y_pred ``(batch, classes)`` with labels ``(batch,)`` or ``(batch, 1)``; for sequences
        y_pred ``(batch, T, classes)`` with labels ``(batch, T)``, averaged over batch and T.
        Labels may be any integer dtype, or floats holding integers.
    """

    output_activation = "softmax"

    def __init__(self, from_logits: bool = False):
        self.from_logits = check_bool("SparseCategoricalCrossentropy", "from_logits", from_logits)

    def _targets(self, y_true, y_pred):
        _classes_of(self, y_pred)
        return sparse_labels("SparseCategoricalCrossentropy", y_true, y_pred)

    def _forward(self, labels, y_pred):
        xp = backend.xp
        classes = y_pred.shape[-1]
        p2 = y_pred.reshape(-1, classes)  # (batch * T, classes)
        n = p2.shape[0]
        rows = xp.arange(n)
        if self.from_logits:
            shifted = p2 - p2.max(axis=1, keepdims=True)
            e = xp.exp(shifted)
            s = e.sum(axis=1, keepdims=True)
            value = (xp.sum(xp.log(s)) - xp.sum(shifted[rows, labels])) / n
            return value, (y_pred.shape, e, s, rows, labels)
        s = xp.maximum(p2.sum(axis=1), xp.finfo(y_pred.dtype).tiny)  # (n,)
        pl = p2[rows, labels] / s
        pc = xp.clip(pl, EPSILON, 1.0 - EPSILON)
        value = -xp.sum(xp.log(pc)) / n
        return value, (y_pred.shape, p2.dtype, s, pl, pc, rows, labels)

    def _backward(self, cache):
        if self.from_logits:
            shape, e, s, rows, labels = cache
            g = e / s  # softmax, a new array: safe to edit in place
            g[rows, labels] -= 1
            g /= len(rows)
            return g.reshape(shape)
        shape, dtype, s, pl, pc, rows, labels = cache
        n = len(rows)
        m = pc == pl  # unclipped
        # L = -log clip(p_l / S): dL/dp_j = m / S - [j == l] m / (S p_l)   (pc == pl wherever m)
        g = backend.xp.empty((n, shape[-1]), dtype=dtype)
        g[...] = (m / (s * n))[:, None]
        g[rows, labels] -= m / (s * pc * n)
        return g.reshape(shape)

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits}
