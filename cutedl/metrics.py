"""Metrics, by name through one registry: ``metrics.get('accuracy')``.

A metric is called like a loss, ``metric(y_true, y_pred) -> float``, and returns its value on
one batch: the mean over the samples (and time steps for sequence outputs). Every sample weighs
the same, so averaging batch values weighted by batch size gives the value on the whole data set.

Stateful metrics (``stateful = True``: precision, recall, f1, auc, confusion_matrix) are not
such means: they accumulate counts with ``update(y_true, y_pred)`` over the batches of a pass
and ``result()`` computes the value from the totals (see :class:`StatefulMetric`).

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

import copy

from cutedl import backend
from cutedl._registry import Registry, normalize_name
from cutedl._validate import check_bool, check_choice, check_int, check_number
from cutedl.backend import as_array, floatx, np
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
    #: False: a mean of per-batch values. :class:`StatefulMetric` subclasses accumulate instead.
    stateful = False

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
            real = int(backend.item(mask.sum()))  # one counted crossing (not .all() and .any(): two syncs)
            if real != mask.size:
                if not real:
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
    return batch if mask is None else int(backend.item(backend.xp.count_nonzero(mask)))


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


# --- stateful metrics: accumulated over batches ------------------------------------------------


class StatefulMetric(Metric):
    """Base of metrics that are not a mean of per-sample values (precision, AUC...): they
    accumulate counts over every batch of a pass and compute the value from the totals.

    Protocol (what the training loop and checkpoints use):

    - ``stateful = True``;
    - :meth:`reset` empties the state; :meth:`update` ``(y_true, y_pred, mask=None)`` adds a batch;
    - :meth:`result` the value of everything added since the reset, as a Python float;
    - :meth:`get_state` / :meth:`set_state` a dict of host arrays (checkpoints);
    - :meth:`merge_state` adds another accumulator's :meth:`get_state` (data-parallel ranks sum
      their states: every state here is a table of counts).

    The counts live on the device (``backend.xp``), so :meth:`update` copies nothing back to the
    host; :meth:`result` brings back one scalar. Calling the metric, ``metric(y_true, y_pred)``,
    gives the value on that one batch and leaves the accumulated state alone.
    """

    stateful = True
    #: the count tables, kept as attributes ``_<key>`` and saved by get_state() under ``<key>``
    _state_keys: tuple = ()

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self.reset()

    def __call__(self, y_true, y_pred, mask=None) -> float:
        """The metric on this one batch (a fresh accumulator: the state of ``self`` is untouched)."""
        one = copy.copy(self)
        one.reset()  # rebinds the counts: self keeps its own
        one.update(y_true, y_pred, mask=mask)
        return one.result()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, y_true, y_pred, mask=None) -> None:
        raise NotImplementedError

    def result(self) -> float:
        raise NotImplementedError

    # --- state: count tables, named by _state_keys, kept as attributes '_<key>' ---

    def get_state(self) -> dict:
        """``{key: host int64 array}`` copies of the counts (shape (0, ...) before any update)."""
        return {k: backend.to_host(getattr(self, "_" + k)).astype(np.int64) for k in self._state_keys}

    def _checked_state(self, state, what: str) -> dict:
        """``state`` (a get_state() dict) as host int64 tables, validated against this metric."""
        who = f"{type(self).__name__}.{what}"
        if not isinstance(state, dict) or set(state) != set(self._state_keys):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{who} expects the dict returned by get_state(), with keys {list(self._state_keys)}, "
                             f"got {got}.")
        out = {}
        for k in self._state_keys:
            a = backend.to_host(state[k]) if backend.is_array(state[k]) else as_array(state[k], who, repr(k))
            counts = a.dtype.kind in "iu" or (a.dtype.kind == "f" and bool(np.all(a == np.floor(a))))
            if not counts or not self._fits(a.shape) or bool(np.any(a < 0)):
                raise ValueError(f"{who}: {k!r} must be a table of counts (integers >= 0) of shape "
                                 f"{self._shape_text()}, got dtype {a.dtype} and shape {a.shape}.")
            out[k] = a.astype(np.int64)
        rows = {out[k].shape[0] for k in self._state_keys}
        if len(rows) != 1:
            raise ValueError(f"{who}: the tables count different numbers of classes: "
                             f"{ {k: out[k].shape for k in self._state_keys} }.")
        fixed = getattr(self, "num_classes", None)
        n = rows.pop()
        if fixed is not None and n not in (0, fixed):
            raise ValueError(f"{who}: the state counts {n} classes but the metric was created with "
                             f"num_classes={fixed}.")
        return out

    def _fits(self, shape) -> bool:
        """Whether a state table may have ``shape``."""
        raise NotImplementedError

    def _shape_text(self) -> str:
        raise NotImplementedError

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned (copies it)."""
        checked = self._checked_state(state, "set_state")
        if next(iter(checked.values())).shape[0] == 0:  # saved before any batch
            self.reset()
            return
        for k, a in checked.items():
            setattr(self, "_" + k, backend.asarray(a))

    def merge_state(self, other: dict) -> None:
        """Add another accumulator's :meth:`get_state` to this one (sums of counts)."""
        checked = self._checked_state(other, "merge_state")
        theirs = next(iter(checked.values())).shape[0]
        mine = getattr(self, "_" + self._state_keys[0]).shape[0]
        if theirs == 0:
            return
        if mine and theirs != mine:
            raise ValueError(f"{type(self).__name__}.merge_state: the other state counts {theirs} classes, this "
                             f"one {mine}. Merge states of the same metric on the same outputs.")
        for k, a in checked.items():
            setattr(self, "_" + k, backend.asarray(a) + getattr(self, "_" + k) if mine else backend.asarray(a))


def _selected(who: str, y_true, y_pred, mask):
    """The arrays, with only the real steps when a mask is given."""
    y_true, y_pred = _arrays(who, y_true, y_pred)
    if mask is not None:
        mask = check_mask(who, mask, y_pred)
        if y_true.shape[:mask.ndim] != mask.shape:
            raise ValueError(f"{who}: the targets must have one entry per time step like the output mask "
                             f"{mask.shape}, got y_true of shape {y_true.shape} for y_pred of shape "
                             f"{y_pred.shape}. Pad the targets like the inputs, to (batch, T, ...).")
        if backend.item(mask.sum()) != mask.size:  # one counted crossing; the selection has a data-dependent size
            y_true, y_pred = y_true[mask], y_pred[mask]
    return y_true, y_pred


def _is_binary(y_pred) -> bool:
    """One score per sample (``(batch,)`` or ``(..., 1)``): a binary problem."""
    return y_pred.ndim == 1 or y_pred.shape[-1] == 1


def _binary_targets(who: str, y_true, y_pred):
    """0/1 targets shaped like ``y_pred``, as a flat intp array (ValueError naming a bad value)."""
    xp = backend.xp
    t = _same_shape(who, y_true, y_pred).reshape(-1)
    if t.dtype.kind != "b":
        bad = (t != 0) & (t != 1)

        def not_binary():
            raise ValueError(f"{who} expects binary targets 0 or 1 for one output per sample, got "
                             f"{backend.to_host(t[bad.argmax()]).item()!r}. For several classes give the model one "
                             f"output per class (softmax) with one-hot or integer labels.")
        backend.check(bad.any(), not_binary)
    return t.astype(xp.intp)


def _class_targets(who: str, y_true, y_pred):
    """Class indices ``(n,)`` from one-hot/probability rows (argmax) or integer labels."""
    _need_classes(who, y_pred)
    if y_true.shape == y_pred.shape:
        return y_true.reshape(-1, y_pred.shape[-1]).argmax(axis=1)
    return sparse_labels(who, y_true, y_pred)


def _pairs(who: str, y_true, y_pred, threshold: float):
    """``(true, predicted, classes)``: flat class indices of each sample (and step).

    One output per sample: binary, predicted 1 when ``y_pred > threshold``, 2 classes. Several:
    the argmax of ``y_pred`` against the argmax of one-hot/probability targets or integer labels.
    """
    xp = backend.xp
    if _is_binary(y_pred):
        return _binary_targets(who, y_true, y_pred), (y_pred.reshape(-1) > threshold).astype(xp.intp), 2
    classes = y_pred.shape[-1]
    return _class_targets(who, y_true, y_pred), y_pred.reshape(-1, classes).argmax(axis=1), classes


class _ConfusionCounts(StatefulMetric):
    """Accumulates a ``(classes, classes)`` confusion matrix, rows = true class, columns = predicted."""

    _state_keys = ("matrix",)
    num_classes = None
    threshold = 0.5

    def reset(self) -> None:
        n = self.num_classes or 0  # 0: classes taken from the first batch
        self._matrix = backend.xp.zeros((n, n), dtype=backend.xp.int64)

    def _fits(self, shape) -> bool:
        return len(shape) == 2 and shape[0] == shape[1]

    def _shape_text(self) -> str:
        return "(classes, classes)"

    def update(self, y_true, y_pred, mask=None) -> None:
        """Add a batch: ``y_pred (batch, ..., classes)`` or ``(batch,)``/``(batch, ..., 1)`` (binary)."""
        who = type(self).__name__
        xp = backend.xp
        y_true, y_pred = _selected(who, y_true, y_pred, mask)
        if y_pred.size == 0:
            return
        true, pred, classes = _pairs(who, y_true, y_pred, self.threshold)
        self._check_batch(classes)
        counts = xp.bincount(true * classes + pred, minlength=classes * classes).reshape(classes, classes)
        if self._matrix.shape[0] == 0:
            self._matrix = counts.astype(xp.int64)
        elif self._matrix.shape[0] != classes:
            raise ValueError(f"{who}: this batch has {classes} classes but the earlier batches had "
                             f"{self._matrix.shape[0]}. Call reset() before metrics of other outputs.")
        else:
            self._matrix += counts

    def _check_batch(self, classes: int) -> None:
        pass

    def _per_class(self):
        """(tp, fp, fn) per class as float64 device arrays."""
        m = self._matrix.astype(backend.xp.float64)
        tp = backend.xp.diagonal(m)
        return tp, m.sum(axis=0) - tp, m.sum(axis=1) - tp


def _ratio(num, den):
    """num / den with 0 where den == 0 (Keras' divide_no_nan)."""
    xp = backend.xp
    return xp.where(den > 0, num / xp.where(den > 0, den, 1.0), 0.0)


class _ClassificationScore(_ConfusionCounts):
    """Precision, recall and F1: binary (the positive class 1) or the macro mean over classes."""

    def __init__(self, threshold: float = 0.5, average: str | None = None, name: str | None = None):
        who = type(self).__name__
        self.threshold = check_number(who, "threshold", threshold)
        self.average = None if average is None else check_choice(who, "average", average, ("binary", "macro"))
        super().__init__(name)

    def _check_batch(self, classes: int) -> None:
        if self.average == "binary" and classes != 2:
            raise ValueError(f"{type(self).__name__}(average='binary') got y_pred with {classes} classes; binary "
                             f"needs one output per sample (or two classes). Use average='macro' for several classes.")

    def _scores(self, tp, fp, fn):
        raise NotImplementedError

    def result(self) -> float:
        if self._matrix.shape[0] == 0:
            return 0.0
        tp, fp, fn = self._per_class()
        scores = self._scores(tp, fp, fn)  # (classes,)
        # two classes score class 1 (the positive one) unless macro is asked; more are macro-averaged
        macro = self.average == "macro" or (self.average is None and self._matrix.shape[0] > 2)
        return backend.item(scores.mean() if macro else scores[1])

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold, "average": self.average}


_SCORE_DOC = """

    Accumulated over every batch since :meth:`reset` (a ratio of summed counts, not a mean of
    per-batch values). Classes are decided as by ``accuracy``:

    * one output per sample (``(batch,)`` or ``(batch, ..., 1)``): binary, predicted positive when
      ``y_pred > threshold``; targets 0/1.
    * several outputs ``(batch, ..., classes)``: the predicted class is the argmax; targets are
      one-hot (or probability) rows, argmax taken, or integer labels.

    With two classes (one output, or two softmax outputs) the score is class 1's, the positive
    class. With more it is the macro average: the mean over classes of each class's score
    (one-vs-rest), every class counting the same, including classes never seen (score 0).

    A count ratio with a zero denominator is 0 (Keras' divide_no_nan). For multi-label targets
    (several 1s per row, sigmoid outputs) these class-exclusive definitions do not apply.

    Args:
        threshold: probability above which a binary prediction is positive (default 0.5; 0.0
            for logits).
        average: None (as above), 'binary' (class 1's score; refuses more than 2 classes) or
            'macro' (the mean over classes, also for two: classes 0 and 1).
        name: the log key.
    """


@registry.register("precision")
class Precision(_ClassificationScore):
    __doc__ = "Precision ``tp / (tp + fp)``: the share of predicted positives that are right." + _SCORE_DOC

    def _scores(self, tp, fp, fn):
        return _ratio(tp, tp + fp)


@registry.register("recall")
class Recall(_ClassificationScore):
    __doc__ = "Recall ``tp / (tp + fn)``: the share of real positives found." + _SCORE_DOC

    def _scores(self, tp, fp, fn):
        return _ratio(tp, tp + fn)


@registry.register("f1", "f1_score")
class F1Score(_ClassificationScore):
    __doc__ = ("F1 score ``2 tp / (2 tp + fp + fn)``, the harmonic mean of precision and recall "
               "(macro: the mean of the per-class F1, as Keras' F1Score(average='macro'))." + _SCORE_DOC)

    def _scores(self, tp, fp, fn):
        return _ratio(2 * tp, 2 * tp + fp + fn)


@registry.register("confusion_matrix")
class ConfusionMatrix(_ConfusionCounts):
    """The confusion matrix over every batch since :meth:`reset`; logs the accuracy it implies.

    ``matrix()[i, j]`` counts samples (and time steps) of true class i predicted as class j.
    Classes are decided as by :class:`Precision`: one output per sample is binary (2 classes,
    predicted 1 when ``y_pred > threshold``); several outputs take the argmax, against one-hot
    (argmax) or integer targets.

    Args:
        num_classes: the number of classes (2 for one output per sample); None takes it from the
            first batch.
        threshold: for binary outputs (default 0.5).
        name: the log key.
    Returns:
        :meth:`result` is the accuracy ``trace / total`` (0 before any sample), so the logged
        value improves upwards; :meth:`matrix` is the ``(classes, classes)`` host int64 array.

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> for x, y in batches: cm.update(y, model.predict(x))
        >>> cm.matrix()
    """

    def __init__(self, num_classes: int | None = None, threshold: float = 0.5, name: str | None = None):
        who = "ConfusionMatrix"
        self.num_classes = check_int(who, "num_classes", num_classes, minimum=2, allow_none=True)
        self.threshold = check_number(who, "threshold", threshold)
        super().__init__(name)

    def _check_batch(self, classes: int) -> None:
        if self.num_classes is not None and classes != self.num_classes:
            raise ValueError(f"ConfusionMatrix(num_classes={self.num_classes}) got y_pred with {classes} classes "
                             f"({'one output per sample: binary' if classes == 2 else 'its last axis'}). Pass the "
                             f"number of classes the model outputs, or None to take it from the data.")

    def result(self) -> float:
        total = self._matrix.sum()
        if self._matrix.shape[0] == 0:
            return 0.0
        return backend.item(backend.xp.trace(self._matrix) / backend.xp.maximum(total, 1))

    def matrix(self) -> np.ndarray:
        """The accumulated ``(classes, classes)`` counts as a host int64 array (rows: true class)."""
        return backend.to_host(self._matrix).astype(np.int64)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "threshold": self.threshold}


@registry.register("auc")
class AUC(StatefulMetric):
    """Area under the ROC curve, accumulated over batches: binary, or macro one-vs-rest.

    The state is two histograms of scores per class (Keras' approach, constant memory): positives
    and negatives counted in ``num_thresholds - 1`` equal bins of [0, 1], bin k holding scores in
    ``(k / (num_thresholds - 1), (k + 1) / (num_thresholds - 1)]`` (0 in the first). The result is
    the trapezoidal area under the ROC curve through the thresholds between bins, which is exactly
    ``P(s+ > s-) + P(s+ == s-) / 2`` of the binned scores: the exact ROC AUC whenever no positive
    shares a bin with a negative, and within one bin's width of it otherwise. Summing histograms
    (more batches, other ranks) gives the histogram of all the data, so the accumulated value
    equals the value on the concatenated batches.

    Shapes:
        binary: ``y_pred (batch,)`` or ``(batch, ..., 1)`` scores in [0, 1], targets 0/1.
        multi-class: ``y_pred (batch, ..., classes)`` probabilities, targets one-hot (argmax) or
        integer labels; each class's AUC ranks the samples by that class's score (class against
        the rest), and the result is their mean over the classes that have both positives and
        negatives.

    Args:
        num_thresholds: > 1 (default 200, as Keras): the bins are ``1 / (num_thresholds - 1)`` wide.
        from_logits: scores are logits: sigmoid (binary) or softmax (classes) is applied first.
        name: the log key.

    The AUC of data without both a positive and a negative is undefined; it is reported as 0.0
    (as Keras).
    """

    _state_keys = ("positives", "negatives")

    def __init__(self, num_thresholds: int = 200, from_logits: bool = False, name: str | None = None):
        self.num_thresholds = check_int("AUC", "num_thresholds", num_thresholds, minimum=2)
        self.from_logits = check_bool("AUC", "from_logits", from_logits)
        super().__init__(name)

    def reset(self) -> None:
        # (classes, bins), 0 rows until the first batch tells binary (1 row) from classes
        self._positives = backend.xp.zeros((0, self.num_thresholds - 1), dtype=backend.xp.int64)
        self._negatives = backend.xp.zeros((0, self.num_thresholds - 1), dtype=backend.xp.int64)

    def _fits(self, shape) -> bool:
        return len(shape) == 2 and shape[1] == self.num_thresholds - 1

    def _shape_text(self) -> str:
        return f"(classes, num_thresholds - 1 = {self.num_thresholds - 1})"

    def update(self, y_true, y_pred, mask=None) -> None:
        """Add a batch to the histograms."""
        xp = backend.xp
        y_true, y_pred = _selected("AUC", y_true, y_pred, mask)
        if y_pred.size == 0:
            return
        scores = y_pred.astype(xp.float64)
        if _is_binary(y_pred):
            positive = _binary_targets("AUC", y_true, y_pred).astype(bool)[:, None]  # (n, 1)
            scores = scores.reshape(-1, 1)
            if self.from_logits:
                scores = 0.5 * (xp.tanh(0.5 * scores) + 1.0)  # sigmoid without overflow
        else:
            labels = _class_targets("AUC", y_true, y_pred)
            scores = scores.reshape(-1, y_pred.shape[-1])  # (n, classes)
            if self.from_logits:
                e = xp.exp(scores - scores.max(axis=1, keepdims=True))
                scores = e / e.sum(axis=1, keepdims=True)
            positive = labels[:, None] == xp.arange(scores.shape[1])  # (n, classes) one-vs-rest
        if not self.from_logits:
            lo, hi = scores.min(), scores.max()

            def out_of_range():
                bad = lo if not backend.item(lo) >= 0.0 else hi
                raise ValueError(f"AUC expects scores (probabilities) in [0, 1], got {backend.to_host(bad).item()!r}. "
                                 f"For logits pass AUC(from_logits=True), or end the model in sigmoid/softmax.")
            backend.check(~((lo >= 0.0) & (hi <= 1.0)), out_of_range)  # NaN fails both
        bins = self.num_thresholds - 1
        idx = xp.clip(xp.ceil(scores * bins).astype(xp.intp), 1, bins) - 1  # (n, classes) bin of each score
        k = scores.shape[1]
        flat = (idx + xp.arange(k) * bins).reshape(-1)  # class c's bins at c * bins ...
        is_pos = positive.reshape(-1)
        pos = xp.bincount(flat[is_pos], minlength=k * bins).reshape(k, bins)
        neg = xp.bincount(flat[~is_pos], minlength=k * bins).reshape(k, bins)
        if self._positives.shape[0] == 0:
            self._positives, self._negatives = pos.astype(xp.int64), neg.astype(xp.int64)
        elif self._positives.shape[0] != k:
            raise ValueError(f"AUC: this batch has {k} score columns but the earlier batches had "
                             f"{self._positives.shape[0]}. Call reset() before metrics of other outputs.")
        else:
            self._positives += pos
            self._negatives += neg

    def result(self) -> float:
        xp = backend.xp
        if self._positives.shape[0] == 0:
            return 0.0
        pos = self._positives.astype(xp.float64)
        neg = self._negatives.astype(xp.float64)
        below = xp.cumsum(neg, axis=1) - neg  # negatives in lower bins
        n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
        wins = (pos * (below + 0.5 * neg)).sum(axis=1)  # pairs ranked right, ties count half
        defined = (n_pos > 0) & (n_neg > 0)
        per_class = _ratio(wins, n_pos * n_neg)
        count = defined.sum()
        return backend.item(xp.where(count > 0, (per_class * defined).sum() / xp.maximum(count, 1), 0.0))

    def get_config(self) -> dict:
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "from_logits": self.from_logits}
