"""Metrics, by name through one registry: ``metrics.get('accuracy')``.

A metric is called like a loss, ``metric(y_true, y_pred) -> float``, and returns its value on
one batch: the mean over the samples (and time steps for sequence outputs). Every sample weighs
the same, so averaging batch values weighted by batch size gives the value on the whole data set.

``metric.name`` is the key the value is logged under (``'accuracy'``, ``'val_accuracy'`` for
validation). ``get('acc')`` logs as ``'acc'``: a metric fetched by name keeps the name it was
asked by, as in Keras. ``metric.direction`` is ``'max'`` when higher is better, ``'min'``
otherwise; :func:`direction` answers the same for any log key (``direction('val_loss') == 'min'``).

'accuracy' picks its kind from the shapes, as Keras' compile does:

* y_pred of shape ``(batch,)`` or ``(..., 1)``: binary accuracy (threshold 0.5);
* y_true of the same shape as y_pred, last axis > 1: categorical accuracy (argmax vs argmax);
* y_true with one axis fewer than y_pred (or a trailing axis of 1): sparse categorical accuracy.
"""
from __future__ import annotations

from cutedl import backend
from cutedl._registry import Registry, normalize_name
from cutedl._validate import check_int, check_number
from cutedl.backend import as_array, floatx
from cutedl.losses import registry as _loss_registry
from cutedl.losses import check_mask, sparse_labels


class Metric:
    """Base class. Subclasses implement ``_values(y_true, y_pred) -> array`` of per-position values.

    Args:
        name: the log key; defaults to the registry name.
    Attributes:
        direction: 'max' (higher is better) or 'min'.
    """

    registry_name = "metric"
    direction = "max"

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{type(self).__name__}: name must be a non-empty string, got {name!r}.")
        self.name = name if name is not None else self.registry_name

    def __call__(self, y_true, y_pred, mask=None) -> float:
        """The metric on one batch, as a Python float (mean over samples and time steps).

        Args:
            y_true: targets ``(batch, ...)``.
            y_pred: predictions ``(batch, ...)``.
            mask: optional bool ``(batch, T)`` array, True = real step (a model's
                ``output_mask``): only the real steps count. With no real step at all the
                value is 0.0 (it then weighs nothing: see :func:`mask_weight`).
        """
        who = type(self).__name__
        y_true, y_pred = _arrays(who, y_true, y_pred)
        if mask is not None:
            mask = check_mask(who, mask, y_pred)
            if y_true.shape[:mask.ndim] != mask.shape:
                raise ValueError(f"{who}: the targets must have one entry per time step like the output mask "
                                 f"{mask.shape}, got y_true of shape {y_true.shape} for y_pred of shape "
                                 f"{y_pred.shape}. Pad the targets like the inputs, to (batch, T, ...).")
            if not mask.all():
                if not mask.any():
                    return 0.0
                y_true, y_pred = y_true[mask], y_pred[mask]
        return backend.item(backend.xp.mean(self._values(y_true, y_pred)))

    def _values(self, y_true, y_pred):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {} if self.name == self.registry_name else {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


registry = Registry("metric", Metric)


def get(identifier, **kwargs) -> Metric:
    """A metric from a name (case-insensitive, aliases included), an instance, a class or a config dict.

    A metric fetched by name is named (logged) as asked: ``get('acc').name == 'acc'``.
    """
    if isinstance(identifier, str) and "name" not in kwargs:
        cls = registry.lookup(identifier)
        return cls(name=normalize_name(identifier), **kwargs)
    return registry.get(identifier, **kwargs)


def mask_weight(mask, batch: int) -> int:
    """How much a batch weighs in a mean over batches: its real steps with a mask, else its samples."""
    return batch if mask is None else int(backend.xp.count_nonzero(mask))


# Words that mark a custom log key as lower-is-better when direction() is asked to guess.
_LOWER_IS_BETTER_WORDS = ("loss", "error", "mae", "mse", "mape", "msle", "crossentropy", "hinge", "perplexity")


def direction(key: str, guess: bool = False) -> str:
    """'min' or 'max': whether a log key improves downwards or upwards.

    The one place cutedl answers "is lower better?": ``'loss'``, loss names and error metrics
    ('mae', 'mse') are 'min'; accuracies are 'max'. A ``'val_'`` prefix is ignored.

    Args:
        key: a log key such as ``'val_loss'`` or ``'accuracy'``.
        guess: for a key that names no registered metric or loss (a custom column), judge by its
            name instead of raising: 'min' when it mentions loss, error, mae, mse, mape, msle,
            crossentropy, hinge or perplexity, else 'max'. Reports use it; anything that acts on
            the answer (early stopping) should not guess.

    Raises:
        ValueError: for a key that names no metric or loss (unless ``guess``), listing the known keys.
    """
    if not isinstance(key, str):
        raise TypeError(f"direction: a log key must be a string like 'val_loss', got {key!r}.")
    name = key[len("val_"):] if key.startswith("val_") else key
    if normalize_name(name) == "loss":
        return "min"
    try:
        return registry.lookup(name).direction
    except ValueError:
        pass
    try:
        _loss_registry.lookup(name)
        return "min"
    except ValueError:
        pass
    if guess:
        low = name.lower()
        return "min" if any(w in low for w in _LOWER_IS_BETTER_WORDS) else "max"
    known = ["loss"] + registry.all_names() + _loss_registry.all_names()
    raise ValueError(f"Unknown log key {key!r}: cannot tell whether higher or lower is better. Known keys "
                     f"(each also with a 'val_' prefix): {', '.join(known)}. For a custom metric pass "
                     f"mode='min' or mode='max' explicitly.")


# --- validation --------------------------------------------------------------------------------


def _arrays(who: str, y_true, y_pred):
    y_true = as_array(y_true, who, "y_true")
    y_pred = as_array(y_pred, who, "y_pred")
    for what, a in (("y_true", y_true), ("y_pred", y_pred)):
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{who} expects numeric arrays, got {what} with dtype {a.dtype}. "
                            f"Convert it to a numeric NumPy array.")
        if a.ndim == 0:
            raise ValueError(f"{who} expected {what} of shape (batch, ...), got a scalar. "
                             f"Pass one value per sample.")
    if y_pred.shape[0] == 0 or y_pred.size == 0:
        raise ValueError(f"{who} got an empty batch (y_pred shape {y_pred.shape}). Pass at least one sample.")
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(f"{who}: batch sizes differ: y_true has {y_true.shape[0]} samples (shape "
                         f"{y_true.shape}), y_pred has {y_pred.shape[0]} (shape {y_pred.shape}). "
                         f"Pass targets and predictions of the same batch.")
    return y_true, y_pred


def _same_shape(who: str, y_true, y_pred):
    """y_true reshaped to y_pred's shape; a trailing axis of 1 may differ."""
    if y_true.shape == y_pred.shape:
        return y_true
    if ((y_pred.shape[-1:] == (1,) and y_true.shape == y_pred.shape[:-1])
            or (y_true.shape[-1:] == (1,) and y_true.shape[:-1] == y_pred.shape)):
        return y_true.reshape(y_pred.shape)
    raise ValueError(f"{who} expected y_true of shape {y_pred.shape} (the shape of y_pred), got "
                     f"{y_true.shape}. Make the targets match the model's output shape.")


def _need_classes(who: str, y_pred):
    if y_pred.ndim < 2:
        raise ValueError(f"{who} expected y_pred of shape (batch, classes) or (batch, ..., classes), got "
                         f"{y_pred.shape}. For a single probability per sample use binary_accuracy.")


def _binary(who, y_true, y_pred, threshold):
    y_true = _same_shape(who, y_true, y_pred)
    # as Keras: the thresholded prediction must equal the target (targets are 0/1 or bool)
    return y_true == (y_pred > threshold)


def _categorical(who, y_true, y_pred):
    _need_classes(who, y_pred)
    if y_true.shape != y_pred.shape:
        fix = ("these look like integer labels: use sparse_categorical_accuracy"
               if y_true.shape in (y_pred.shape[:-1], y_pred.shape[:-1] + (1,))
               else "one-hot encode the targets with one column per class")
        raise ValueError(f"{who} expected one-hot y_true of shape {y_pred.shape} (like y_pred), got "
                         f"{y_true.shape}: {fix}.")
    return y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)


def _sparse(who, y_true, y_pred):
    _need_classes(who, y_pred)
    labels = sparse_labels(who, y_true, y_pred)
    return labels == y_pred.reshape(-1, y_pred.shape[-1]).argmax(axis=1)


# --- accuracies --------------------------------------------------------------------------------


@registry.register("accuracy", "acc")
class Accuracy(Metric):
    """Fraction of correct predictions; binary, categorical or sparse chosen from the shapes.

    Shapes:
        binary: y_pred ``(batch,)`` or ``(batch, ..., 1)``, y_true the same (threshold 0.5).
        categorical: y_pred ``(batch, ..., classes)``, y_true one-hot of the same shape.
        sparse: y_pred ``(batch, ..., classes)``, integer y_true ``(batch, ...)`` or ``(batch, ..., 1)``.
    """

    def _values(self, y_true, y_pred):
        who = "Accuracy"
        if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
            return _binary(who, y_true, y_pred, 0.5)
        if y_true.shape == y_pred.shape:
            return _categorical(who, y_true, y_pred)
        if y_true.shape in (y_pred.shape[:-1], y_pred.shape[:-1] + (1,)):
            return _sparse(who, y_true, y_pred)
        raise ValueError(f"Accuracy cannot match y_true of shape {y_true.shape} with y_pred of shape "
                         f"{y_pred.shape}: expected one-hot targets of shape {y_pred.shape} or integer labels "
                         f"of shape {y_pred.shape[:-1]}. Check the targets and the last layer's units.")


@registry.register("binary_accuracy")
class BinaryAccuracy(Metric):
    """Fraction of entries where ``y_pred > threshold`` equals ``y_true`` (0/1 or bool).

    Args:
        threshold: probability above which a prediction counts as 1 (use 0.0 for logits).
    """

    def __init__(self, threshold: float = 0.5, name: str | None = None):
        super().__init__(name)
        self.threshold = check_number("BinaryAccuracy", "threshold", threshold)

    def _values(self, y_true, y_pred):
        return _binary("BinaryAccuracy", y_true, y_pred, self.threshold)

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


@registry.register("categorical_accuracy")
class CategoricalAccuracy(Metric):
    """Fraction of samples whose argmax matches the argmax of the one-hot target."""

    def _values(self, y_true, y_pred):
        return _categorical("CategoricalAccuracy", y_true, y_pred)


@registry.register("sparse_categorical_accuracy")
class SparseCategoricalAccuracy(Metric):
    """Fraction of samples whose argmax equals the integer label."""

    def _values(self, y_true, y_pred):
        return _sparse("SparseCategoricalAccuracy", y_true, y_pred)


@registry.register("top_k_accuracy", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy")
class TopKAccuracy(Metric):
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties count in the sample's favour (as TensorFlow's in_top_k): the sample is correct when
    fewer than ``k`` classes score strictly higher than the true class.

    Args:
        k: how many top classes count.
    Shapes:
        y_pred ``(batch, ..., classes)``; y_true integer labels ``(batch, ...)`` or one-hot like y_pred.
    """

    def __init__(self, k: int = 5, name: str | None = None):
        super().__init__(name)
        self.k = check_int("TopKAccuracy", "k", k, minimum=1, what="a positive integer")

    def _values(self, y_true, y_pred):
        who = "TopKAccuracy"
        _need_classes(who, y_pred)
        p2 = y_pred.reshape(-1, y_pred.shape[-1])  # (batch * T, classes)
        if y_true.shape == y_pred.shape:
            labels = y_true.reshape(p2.shape).argmax(axis=1)
        else:
            labels = sparse_labels(who, y_true, y_pred)
        true_score = p2[backend.xp.arange(p2.shape[0]), labels]
        # a rank, not a sort: O(classes) per sample
        return (p2 > true_score[:, None]).sum(axis=1) < self.k

    def get_config(self) -> dict:
        return {**super().get_config(), "k": self.k}


# --- regression errors -------------------------------------------------------------------------


def _float_pair(who, y_true, y_pred):
    y_true = _same_shape(who, y_true, y_pred)
    dtype = y_pred.dtype if y_pred.dtype.kind == "f" else floatx()
    return y_true.astype(dtype, copy=False), y_pred.astype(dtype, copy=False)


@registry.register("mae", "mean_absolute_error")
class MeanAbsoluteError(Metric):
    """mean(|y_pred - y_true|) over every element."""

    direction = "min"

    def _values(self, y_true, y_pred):
        t, p = _float_pair("MeanAbsoluteError", y_true, y_pred)
        return backend.xp.abs(p - t)


@registry.register("mse", "mean_squared_error")
class MeanSquaredError(Metric):
    """mean((y_pred - y_true)**2) over every element."""

    direction = "min"

    def _values(self, y_true, y_pred):
        t, p = _float_pair("MeanSquaredError", y_true, y_pred)
        d = p - t
        return d * d
