"""Per-sample validation records: :class:`ValidationRecorder` writes them, :class:`ValidationRecord` reads them.

At each check the recorder predicts the validation samples once more and keeps, per sample, the
loss (float16) and the prediction (the predicted class as int16, or the raw outputs as float16
for regression), plus, optionally, a float16 snapshot of every weight. From a record:

- :meth:`ValidationRecord.best_check_interval`: a bootstrap over validation samples of which
  check is best ("with this validation set, the best epoch is 6-11 at 95 %");
- :meth:`ValidationRecord.flips`: samples whose prediction changes between checks;
- :meth:`ValidationRecord.score`: a snapshot's weights scored on other data (what
  ``EarlyStopping.replay(..., snapshots=record, score=(x_test, y_test), model=model)`` uses);
- :func:`cutedl.reports.confusion_report`: confusion matrices and per-class accuracy curves.

Per-sample losses are computed here from the predictions (:func:`per_sample_losses`), in
float64 on the host, with the formulas of :mod:`cutedl.losses` (clipping and label smoothing
included) for the crossentropies, mse, mae and huber; any other loss is called once per sample.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from typing import NamedTuple

from cutedl import backend
from cutedl import losses as losses_mod
from cutedl import rng as rng_mod
from cutedl._io import atomic_write, load_json_npz
from cutedl._validate import check_bool, check_int, check_number
from cutedl.backend import np
from cutedl.data.dataset import Dataset
from cutedl.listeners.base import Listener, WarnOnce, check_fields

__all__ = ["ValidationRecorder", "ValidationRecord", "BestCheck", "Flips", "per_sample_losses"]

FORMAT = "cutedl.validation_record"
FORMAT_VERSION = 1
_DOC = "__record__"
_F16_MAX = float(np.finfo(np.float16).max)


# ---------------------------------------------------------------------------- per-sample values
def _like(y, p, who):
    """Targets ``y`` in the shape of predictions ``p`` (a trailing axis of 1 may differ)."""
    y = np.asarray(y)
    if y.shape != p.shape:
        if y.size != p.size or y.shape[:1] != p.shape[:1]:
            raise ValueError(f"{who}: targets of shape {y.shape} do not match predictions of shape {p.shape}.")
        y = y.reshape(p.shape)
    return y.astype(np.float64)


def _per_sample_mean(a, n):
    """Mean over every axis but the first: ``(n, ...)`` -> ``(n,)``."""
    return a.reshape(n, -1).mean(axis=1)


def per_sample_losses(loss, y_true, y_pred) -> np.ndarray:
    """The loss of every sample, ``(batch,)`` float64, whose mean is ``loss(y_true, y_pred)``.

    Args:
        loss: a loss name or :class:`~cutedl.losses.Loss`.
        y_true: targets ``(batch, ...)`` as the loss takes them.
        y_pred: the model's outputs ``(batch, ...)`` (probabilities, or logits for a loss with
            ``from_logits=True``), host arrays.

    The crossentropies, mse, mae and huber are computed in one vectorised pass with the formulas
    of :mod:`cutedl.losses` (probabilities clipped to ``[1e-7, 1 - 1e-7]``, label smoothing); any
    other loss is called on one sample at a time. Sequence outputs ``(batch, T, ...)`` give the
    mean over the steps (masks are not applied).
    """
    fn = losses_mod.get(loss)
    p = np.asarray(backend.to_host(y_pred) if not backend.is_host_array(y_pred) else y_pred, dtype=np.float64)
    y = backend.to_host(y_true) if not backend.is_host_array(y_true) else np.asarray(y_true)
    n = len(p)
    who = f"per_sample_losses ({type(fn).__name__})"
    eps = losses_mod.EPSILON
    if isinstance(fn, losses_mod.SparseCategoricalCrossentropy):
        c = p.shape[-1]
        labels = y.reshape(-1).astype(np.int64)
        p2 = p.reshape(-1, c)  # (batch * T, classes)
        if len(labels) != len(p2) or labels.min(initial=0) < 0 or labels.max(initial=0) >= c:
            raise ValueError(f"{who}: expected integer labels in [0, {c}) of shape {p.shape[:-1]}, got {y.shape}.")
        rows = np.arange(len(p2))
        if fn.from_logits:
            m = p2.max(axis=1)
            value = np.log(np.exp(p2 - m[:, None]).sum(axis=1)) + m - p2[rows, labels]
        else:
            s = np.maximum(p2.sum(axis=1), np.finfo(np.float64).tiny)
            value = -np.log(np.clip(p2[rows, labels] / s, eps, 1 - eps))
        return _per_sample_mean(value, n)
    if isinstance(fn, losses_mod.CategoricalCrossentropy):
        t = _like(y, p, who)
        if fn.label_smoothing:
            t = t * (1 - fn.label_smoothing) + fn.label_smoothing / p.shape[-1]
        if fn.from_logits:
            shifted = p - p.max(axis=-1, keepdims=True)
            value = t.sum(axis=-1) * np.log(np.exp(shifted).sum(axis=-1)) - (t * shifted).sum(axis=-1)
        else:
            pn = p / np.maximum(p.sum(axis=-1, keepdims=True), np.finfo(np.float64).tiny)
            value = -(t * np.log(np.clip(pn, eps, 1 - eps))).sum(axis=-1)
        return _per_sample_mean(value, n)
    if isinstance(fn, losses_mod.BinaryCrossentropy):
        t = _like(y, p, who)
        if fn.label_smoothing:
            t = t * (1 - fn.label_smoothing) + 0.5 * fn.label_smoothing
        if fn.from_logits:
            value = np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
        else:
            pc = np.clip(p, eps, 1 - eps)
            value = -(t * np.log(pc) + (1 - t) * np.log1p(-pc))
        return _per_sample_mean(value, n)
    if isinstance(fn, (losses_mod.MeanSquaredError, losses_mod.MeanAbsoluteError, losses_mod.Huber)):
        d = np.abs(p - _like(y, p, who))
        if isinstance(fn, losses_mod.MeanSquaredError):
            value = d * d
        elif isinstance(fn, losses_mod.MeanAbsoluteError):
            value = d
        else:
            quad = np.minimum(d, fn.delta)
            value = 0.5 * quad * quad + fn.delta * (d - quad)
        return _per_sample_mean(value, n)
    fresh = _fresh_loss(fn)
    return np.array([float(fresh(y[i:i + 1], p[i:i + 1].astype(backend.floatx()))) for i in range(n)])


def _fresh_loss(fn):
    """A copy of a loss (its backward cache is its own), or the loss itself when it cannot be copied."""
    try:
        return losses_mod.get(losses_mod.registry.serialize(fn))
    except (TypeError, ValueError, KeyError):
        return fn


def _loss_config(fn):
    """The loss as a registry config, or None for a loss the registry cannot rebuild."""
    try:
        cfg = losses_mod.registry.serialize(fn)
        losses_mod.get(cfg)
        return cfg
    except (TypeError, ValueError, KeyError):
        return None


def _class_task(fn, outshape_last):
    """``(classes, threshold)``: how a loss turns outputs into classes, or ``(None, None)`` (scores)."""
    if isinstance(fn, (losses_mod.CategoricalCrossentropy, losses_mod.SparseCategoricalCrossentropy)):
        return int(outshape_last), None
    if isinstance(fn, losses_mod.BinaryCrossentropy) and outshape_last in (None, 1):
        return 2, 0.0 if fn.from_logits else 0.5
    return None, None


def _binary_outputs(p):
    """A one-unit output ``(batch,)`` or ``(batch, ..., 1)`` without its unit axis."""
    return p[..., 0] if p.ndim > 1 and p.shape[-1] == 1 else p


def _predicted(p, classes, threshold):
    """Predicted classes (int16) from outputs, or the outputs as float16 scores."""
    if classes is None:
        return _f16(p)
    if threshold is None:
        return p.argmax(axis=-1).astype(np.int16)
    return (_binary_outputs(p) > threshold).astype(np.int16)


def _true_classes(fn, y, p, classes, threshold):
    """The targets as int16 classes (or float16 scores), in the shape of :func:`_predicted`."""
    y = np.asarray(y)
    if classes is None:
        return _f16(y.astype(np.float64).reshape(p.shape))
    if isinstance(fn, losses_mod.SparseCategoricalCrossentropy):
        return y.reshape(p.shape[:-1]).astype(np.int16)
    if threshold is None:
        return y.reshape(p.shape).argmax(axis=-1).astype(np.int16)
    return (y.reshape(_binary_outputs(p).shape) > 0.5).astype(np.int16)


def _f16(values):
    return np.clip(values, -_F16_MAX, _F16_MAX).astype(np.float16)


# ---------------------------------------------------------------------------- the record
class BestCheck(NamedTuple):
    """Where the best check lies, with a bootstrap interval (see :meth:`ValidationRecord.best_check_interval`).

    ``share[k]`` is the fraction of bootstrap resamples in which check ``k`` was best; the
    interval ``[low, high]`` holds the central ``confidence`` of that distribution.
    """

    metric: str
    confidence: float
    best_index: int
    best_epoch: int
    best_step: int
    low_index: int
    high_index: int
    low_epoch: int
    high_epoch: int
    low_step: int
    high_step: int
    share: np.ndarray
    boots: int
    samples: int

    def __str__(self) -> str:
        if self.low_epoch == self.high_epoch and self.low_step != self.high_step:  # checks within one epoch
            where, point = f"check is at steps {self.low_step}-{self.high_step}", f"step {self.best_step}"
        elif self.low_epoch == self.high_epoch:
            where, point = f"epoch is {self.low_epoch}", f"epoch {self.best_epoch}"
        else:
            where, point = f"epoch is {self.low_epoch}-{self.high_epoch}", f"epoch {self.best_epoch}"
        return (f"with this validation set, the best {where} at {100 * self.confidence:g} % ({self.metric}; "
                f"point estimate: {point}; {self.boots} bootstrap resamples of {self.samples} samples)")


class Flips(NamedTuple):
    """Samples whose prediction changes between checks (see :meth:`ValidationRecord.flips`).

    Attributes:
        counts: ``(samples,)`` how many times each sample's prediction changed between consecutive checks.
        indices: the samples that changed at least once, most changes first.
        per_check: ``(checks - 1,)`` how many samples changed at each check against the one before.
        forgotten: ``(samples,)`` how many times each sample went from right to wrong.
    """

    counts: np.ndarray
    indices: np.ndarray
    per_check: np.ndarray
    forgotten: np.ndarray


class ValidationRecord:
    """Per-sample validation losses and predictions over the checks of a fit (and weight snapshots).

    Build one with :class:`ValidationRecorder` and read it back with :meth:`load`.

    Attributes:
        steps, epochs: ``(checks,)`` int64: the step and epoch of each recorded check.
        losses: ``(checks, samples)`` float16 per-sample losses.
        predictions: ``(checks, samples, ...)``: int16 predicted classes, or float16 outputs
            (``classes is None``: regression and multi-label outputs).
        targets: ``(samples, ...)``: int16 true classes, or float16 targets.
        classes: number of classes, or None.
        loss: the loss's registry config (None when the loss is not registered).
        logs: ``{key: [value per check]}``: the History's ``val_*`` values at the recorded checks.
        restored_step: the step whose weights the fit restored (EarlyStopping), or None.
        weight_names, weight_shapes: the snapshotted params.
        snapshots: ``(checks, params)`` float16 flat weight snapshots, or None.
    """

    def __init__(self, steps, epochs, losses, predictions, targets, classes=None, loss=None, logs=None,
                 restored_step=None, weight_names=None, weight_shapes=None, snapshots=None):
        self.steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        self.epochs = np.asarray(epochs, dtype=np.int64).reshape(-1)
        self.losses = np.asarray(losses, dtype=np.float16)
        self.predictions = np.asarray(predictions)
        self.targets = np.asarray(targets)
        self.classes = None if classes is None else int(classes)
        self.loss = loss
        self.logs = dict(logs or {})
        self.restored_step = None if restored_step is None else int(restored_step)
        self.weight_names = list(weight_names or [])
        self.weight_shapes = [tuple(int(d) for d in s) for s in (weight_shapes or [])]
        self.snapshots = None if snapshots is None else np.asarray(snapshots, dtype=np.float16)
        self.path = None  # the file it was loaded from or saved to
        c = len(self.steps)
        if len(self.epochs) != c or self.losses.shape[:1] != (c,) or self.predictions.shape[:1] != (c,):
            raise ValueError(f"ValidationRecord: {c} steps but epochs {self.epochs.shape}, losses "
                             f"{self.losses.shape} and predictions {self.predictions.shape}.")
        if c and (self.losses.shape[1:] != (len(self.targets),) or self.predictions.shape[1:2] != (len(self.targets),)):
            raise ValueError(f"ValidationRecord: losses {self.losses.shape} and predictions {self.predictions.shape} "
                             f"do not match {len(self.targets)} targets.")
        if self.snapshots is not None and len(self.snapshots) != c:
            raise ValueError(f"ValidationRecord: {len(self.snapshots)} weight snapshots for {c} checks.")

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.steps)

    @property
    def num_samples(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        kind = f"{self.classes} classes" if self.classes is not None else "scores"
        return (f"ValidationRecord(checks={len(self)}, samples={self.num_samples}, {kind}, "
                f"snapshots={self.snapshots is not None})")

    def index_of(self, step: int | None = None, epoch: int | None = None) -> int:
        """The check recorded at ``step`` (or the last one of ``epoch``); ValueError if there is none."""
        if (step is None) == (epoch is None):
            raise ValueError("ValidationRecord.index_of: pass step= or epoch=, one of them.")
        col, value, what = (self.steps, step, "step") if step is not None else (self.epochs, epoch, "epoch")
        at = np.flatnonzero(col == int(value))
        if not at.size:
            raise ValueError(f"ValidationRecord: no check recorded at {what} {value}; recorded {what}s: "
                             f"{col.tolist()[:20]}{' ...' if len(col) > 20 else ''}. Record every check "
                             f"(ValidationRecorder(every=1)).")
        return int(at[-1])

    @property
    def restored_index(self) -> int | None:
        """The check whose weights the fit restored, or None when it restored none (or it was not recorded)."""
        if self.restored_step is None or not np.any(self.steps == self.restored_step):
            return None
        return self.index_of(step=self.restored_step)

    def _need_classes(self, who):
        if self.classes is None:
            raise ValueError(f"ValidationRecord.{who}: this record holds scores (a regression or multi-label "
                             f"output), not classes.")

    def mean_losses(self) -> np.ndarray:
        """``(checks,)`` the mean validation loss of each check (float64)."""
        return self.losses.astype(np.float64).mean(axis=1) if len(self) else np.zeros(0)

    def correct(self) -> np.ndarray:
        """``(checks, samples)`` float64: the share of each sample's predictions that are right
        (0 or 1 per sample, a fraction of the steps for sequence outputs)."""
        self._need_classes("correct")
        hit = self.predictions == self.targets[None]
        return hit.reshape(len(self), self.num_samples, -1).mean(axis=2)

    def accuracies(self) -> np.ndarray:
        """``(checks,)`` validation accuracy of each check."""
        return self.correct().mean(axis=1)

    def confusion(self, check: int = -1) -> np.ndarray:
        """``(classes, classes)`` int64 counts at a check: row = true class, column = predicted."""
        self._need_classes("confusion")
        k = self.classes
        t = self.targets.reshape(-1).astype(np.int64)
        p = self.predictions[check].reshape(-1).astype(np.int64)
        return np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def class_accuracies(self) -> np.ndarray:
        """``(checks, classes)``: recall of each true class at each check (NaN for an absent class)."""
        self._need_classes("class_accuracies")
        t = self.targets.reshape(-1).astype(np.int64)
        counts = np.bincount(t, minlength=self.classes).astype(np.float64)
        hits = self.predictions.reshape(len(self), -1) == t[None]
        out = np.stack([np.bincount(t, weights=h, minlength=self.classes) for h in hits]) if len(self) else \
            np.zeros((0, self.classes))
        with np.errstate(invalid="ignore", divide="ignore"):
            return out / counts[None]

    def weights_at(self, check: int) -> list:
        """The float16 weight snapshot of a check, as a list of arrays in the order of ``model.params``."""
        if self.snapshots is None:
            raise ValueError("ValidationRecord: this record has no weight snapshots; record with "
                             "ValidationRecorder(path, snapshot_weights=True).")
        flat = self.snapshots[check]
        out, at = [], 0
        for shape in self.weight_shapes:
            size = math.prod(shape)
            out.append(flat[at:at + size].reshape(shape))
            at += size
        return out

    # ------------------------------------------------------------------ statistics
    def _metric(self, metric):
        name = metric[4:] if metric.startswith("val_") else metric
        if name == "loss":
            return self.losses.astype(np.float64), "min"
        if name in ("accuracy", "acc"):
            return self.correct(), "max"
        raise ValueError(f"ValidationRecord: metric must be 'val_loss' or 'val_accuracy', got {metric!r}.")

    def best_check_interval(self, metric: str = "val_loss", confidence: float = 0.95, boots: int = 1000,
                            seed: int = 0) -> BestCheck:
        """Which check is best, and how sure this validation set can be about it.

        Resamples the validation samples with replacement ``boots`` times; in each resample the
        check with the best mean ``metric`` wins. The interval holds the central ``confidence``
        of the winners (by check order). ``str(result)`` reads "with this validation set, the
        best epoch is 6-11 at 95 %".

        Args:
            metric: 'val_loss' (lower is better) or 'val_accuracy' (higher is better).
            confidence: in (0, 1).
            boots: bootstrap resamples (>= 10).
            seed: seed of the resampling (the answer is reproducible).

        Example:
            >>> print(record.best_check_interval('val_accuracy'))
            with this validation set, the best epoch is 6-11 at 95 % (val_accuracy; ...)
        """
        confidence = check_number("best_check_interval", "confidence", confidence, minimum=0, maximum=1,
                                  low_open=True, high_open=True)
        boots = check_int("best_check_interval", "boots", boots, minimum=10)
        if not len(self):
            raise ValueError("ValidationRecord.best_check_interval: the record has no checks.")
        values, mode = self._metric(metric)
        values = np.where(np.isfinite(values), values, np.inf if mode == "min" else -np.inf)
        n = self.num_samples
        gen = rng_mod.make_rng(seed)
        winners = np.empty(boots, dtype=np.int64)
        chunk = max(1, min(boots, (1 << 22) // max(n, 1)))
        for start in range(0, boots, chunk):
            b = min(chunk, boots - start)
            draws = gen.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
            counts = np.bincount(draws.reshape(-1), minlength=b * n).reshape(b, n).astype(np.float64)
            # counts (b, n) @ values.T (n, checks) -> (b, checks): each resample's sum per check
            with np.errstate(invalid="ignore"):
                stats = counts @ values.T
            stats = np.where(np.isnan(stats), np.inf if mode == "min" else -np.inf, stats)
            winners[start:start + b] = stats.argmin(axis=1) if mode == "min" else stats.argmax(axis=1)
        means = values.mean(axis=1)
        best = int(means.argmin() if mode == "min" else means.argmax())
        alpha = (1 - confidence) / 2
        low = int(np.quantile(winners, alpha, method="lower"))
        high = int(np.quantile(winners, 1 - alpha, method="higher"))
        share = np.bincount(winners, minlength=len(self)) / boots
        return BestCheck(metric, confidence, best, int(self.epochs[best]), int(self.steps[best]), low, high,
                         int(self.epochs[low]), int(self.epochs[high]), int(self.steps[low]), int(self.steps[high]),
                         share, boots, n)

    def flips(self) -> Flips:
        """Samples whose predicted class changes between consecutive checks (and right-to-wrong changes)."""
        self._need_classes("flips")
        c, n = len(self), self.num_samples
        if c < 2:
            zero = np.zeros(n, dtype=np.int64)
            return Flips(zero, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), zero.copy())
        p = self.predictions.reshape(c, n, -1)
        changed = np.any(p[1:] != p[:-1], axis=2)  # (checks - 1, samples)
        counts = changed.sum(axis=0).astype(np.int64)
        right = self.correct() >= 1.0
        forgotten = (right[:-1] & ~right[1:]).sum(axis=0).astype(np.int64)
        moved = np.flatnonzero(counts)
        order = moved[np.argsort(-counts[moved], kind="stable")]
        return Flips(counts, order, changed.sum(axis=1).astype(np.int64), forgotten)

    # ------------------------------------------------------------------ scoring snapshots
    def scores(self, checks, data, model, batch_size: int | None = 256) -> dict:
        """``{check: {'loss': ..., 'accuracy': ...}}``: each check's weight snapshot scored on ``data``.

        The float16 snapshot is loaded into a copy of ``model`` (same architecture; the model
        itself is left untouched), which predicts ``data``.

        Args:
            checks: check indices.
            data: ``(x, y)`` host arrays, or a function ``score(model) -> dict or number`` called
                with the copy holding the snapshot.
            model: a model of the recorded architecture.
            batch_size: prediction batch size.
        """
        checks = [int(k) % max(len(self), 1) for k in checks]
        copy = _scoring_copy(model, "ValidationRecord.scores")
        out = {}
        for k in checks:
            if k in out:
                continue
            weights = self.weights_at(k)
            try:
                copy.set_weights([w.astype(p.dtype) for w, p in zip(weights, copy.params)])
            except ValueError as err:
                raise ValueError(f"ValidationRecord.scores: the model does not match the snapshots ({err}).") from None
            out[k] = self.score_model(copy, data, batch_size)
        return out

    def score_model(self, model, data, batch_size: int | None = 256) -> dict:
        """Loss (and accuracy for classes) of ``model`` on ``data`` with the record's loss; or ``data(model)``."""
        if callable(data):
            result = data(model)
            return dict(result) if isinstance(result, dict) else {"score": float(result)}
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError(f"ValidationRecord.score: data must be (x, y) or a function score(model), got "
                            f"{type(data).__name__}.")
        x, y = data
        p = model.predict(x, batch_size=batch_size)
        out = {}
        if self.loss is not None:
            out["loss"] = float(per_sample_losses(self.loss, y, p).mean())
        if self.classes is not None:
            fn = losses_mod.get(self.loss)
            threshold = _class_task(fn, p.shape[-1] if p.ndim > 1 else None)[1]
            pred = _predicted(p, self.classes, threshold)
            true = _true_classes(fn, y, p, self.classes, threshold)
            out["accuracy"] = float((pred == true).reshape(len(p), -1).mean())
        return out

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write the record to one compressed ``.npz`` (atomic replace; no pickle)."""
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "steps": self.steps.tolist(),
               "epochs": self.epochs.tolist(), "classes": self.classes, "loss": self.loss,
               "logs": {k: [_json_float(v) for v in vals] for k, vals in self.logs.items()},
               "restored_step": self.restored_step, "weight_names": self.weight_names,
               "weight_shapes": [list(s) for s in self.weight_shapes], "snapshots": self.snapshots is not None}
        # Predictions seldom change from one check to the next: deflate finds the repeats (level 6).
        # float16 losses and weights barely deflate (~10 %): the fast level 1 for losses, weights
        # stored, so that a rewrite costs little more than a copy.
        members = [(_DOC, np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8), 6),
                   ("targets", self.targets, 6), ("losses", self.losses, 1), ("predictions", self.predictions, 6)]
        if self.snapshots is not None:
            members.append(("snapshots", self.snapshots, None))
        atomic_write(os.fspath(path), lambda f: _write_npz(f, members))

    @classmethod
    def load(cls, path, snapshots: bool = True) -> "ValidationRecord":
        """Read a record written by :class:`ValidationRecorder` (``snapshots=False`` skips the weights)."""
        path = os.fspath(path)
        doc, arrays = load_json_npz(
            path, _DOC, "ValidationRecord.load", "validation record",
            names=lambda d: ["targets", "losses", "predictions"]
            + (["snapshots"] if snapshots and isinstance(d, dict) and d.get("snapshots") else []))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"ValidationRecord.load: {path!r} is not a cutedl validation record.")
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"ValidationRecord.load: {path!r} has format version {doc.get('version')}, this "
                             f"cutedl reads version {FORMAT_VERSION}.")
        try:
            logs = {k: [math.nan if v is None else float(v) for v in vals] for k, vals in (doc.get("logs") or {}).items()}
            rec = cls(doc["steps"], doc["epochs"], arrays["losses"], arrays["predictions"], arrays["targets"],
                      doc.get("classes"), doc.get("loss"), logs, doc.get("restored_step"), doc.get("weight_names"),
                      doc.get("weight_shapes"), arrays.get("snapshots"))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"ValidationRecord.load: {path!r} is corrupt ({type(err).__name__}: {err}).") from None
        if rec.snapshots is not None and rec.snapshots.shape[1:] != (sum(math.prod(s) for s in rec.weight_shapes),):
            raise ValueError(f"ValidationRecord.load: {path!r} is corrupt (snapshots of shape {rec.snapshots.shape} "
                             f"for weights of shapes {rec.weight_shapes}).")
        rec.path = path
        return rec


def _json_float(v):
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _write_npz(f, members) -> None:
    """An ``.npz`` (zip of ``.npy`` members); ``members`` are ``(name, array, zlib level or None: stored)``."""
    with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
        for name, arr, level in members:
            zf.compression = zipfile.ZIP_STORED if level is None else zipfile.ZIP_DEFLATED
            zf.compresslevel = level
            with zf.open(name + ".npy", "w", force_zip64=True) as m:
                np.lib.format.write_array(m, np.ascontiguousarray(arr), allow_pickle=False)


def _scoring_copy(model, who):
    """A copy of ``model``'s architecture (building it leaves cutedl's global random stream as it was)."""
    from cutedl.model import Model

    if not isinstance(model, Model):
        raise TypeError(f"{who}: model must be a cutedl Model of the recorded architecture, got "
                        f"{type(model).__name__}.")
    gen = rng_mod.global_rng()
    state = gen.bit_generator.state
    try:
        copy = Model.from_config(model.get_config())
        copy.assemble(None if model.functional else model.inshape)
    except (TypeError, ValueError, RuntimeError, KeyError) as err:
        raise ValueError(f"{who}: cannot copy the model ({type(err).__name__}: {err}); pass score as a function "
                         f"score(model) instead.") from None
    finally:
        gen.bit_generator.state = state
    return copy


# ---------------------------------------------------------------------------- the listener
class ValidationRecorder(WarnOnce, Listener):
    """Record per-sample validation losses and predictions at each check, and weight snapshots.

    At every ``every``-th check, the validation data (the fit's ``val_data``, the first
    ``val_batches`` batches when that is set) is predicted once more and the per-sample loss and
    prediction are kept, with, when ``snapshot_weights``, a float16 copy of every param. The
    file ``path`` (one compressed ``.npz``, no pickle; read it with
    :meth:`ValidationRecord.load`) is rewritten atomically after each recorded check and at the
    end of the fit; ``self.record`` is the same record in memory.

    Cost, per recorded check of N validation samples and P params:

    - time: one more inference pass over the validation data (the check's own evaluation is not
      reused), plus the rewrite of the file;
    - memory: 4 N bytes (float16 loss + int16 class; 2 N x outputs for float16 scores) plus 2 P
      bytes with snapshots: 4 MB per 100 checks of 10k samples, + 47 MB for 100 snapshots of the
      MNIST MLP (235k params);
    - disk: predictions deflate to 50-125 KB per 100 checks of 10k samples (a prediction rarely
      changes from one check to the next; measured: 47 KB when 0.3-2 % of them change per check),
      losses to about 1.8 MB (float16 values barely compress); snapshots are stored as they are
      (2 P bytes each). The whole file is rewritten at every recorded check (about 0.3 s for 100
      checks of 10k samples without snapshots), so for many checks of a large model pass
      ``every=k`` or ``snapshot_weights=False``.

    Args:
        path: the record file (``.npz``).
        snapshot_weights: keep a float16 snapshot of the weights at each recorded check (needed
            to score replayed early-stopping settings, ``EarlyStopping.replay(snapshots=...)``).
        every: record every ``every``-th check.

    Works under BackupAndRestore (the record is cut back to the checkpoint's checks on resume)
    and does nothing on the data-parallel ranks other than 0. The model must have one output and
    ``val_data`` must be arrays, a Dataset or an indexable source (a generator gives other samples
    at each check).

    Example:
        >>> rec = listeners.ValidationRecorder('runs/val-record.npz')
        >>> sess.fit(train, epochs=20, val_data=(x_val, y_val), listeners=[rec, EarlyStopping(patience=3)])
        >>> print(ValidationRecord.load('runs/val-record.npz').best_check_interval())
    """

    def __init__(self, path, snapshot_weights: bool = True, every: int = 1):
        try:
            self.path = os.fspath(path)
        except TypeError:
            raise TypeError(f"ValidationRecorder: path must be a str or a path, got {path!r}.") from None
        self.snapshot_weights = check_bool("ValidationRecorder", "snapshot_weights", snapshot_weights)
        self.every = check_int("ValidationRecorder", "every", every, minimum=1, what="a positive integer")
        self.record = None
        self._reset()

    def _reset(self):
        self.seen = 0
        self._rows: dict = {"steps": [], "epochs": [], "losses": [], "predictions": [], "snapshots": []}
        self._logs: dict = {}
        self._targets = None
        self._restored_step = None

    @property
    def checks(self) -> int:
        """Checks recorded so far in this fit."""
        return len(self._rows["steps"])

    # ------------------------------------------------------------------ fit events
    def on_fit_start(self, logs=None):
        self._warned = False
        self._reset()
        self.record = None
        if not self.is_main:
            return
        sess = self.session
        if sess.val_data is None:
            raise ValueError("ValidationRecorder: the fit has no validation data; pass val_data (or "
                             "validation_split) to fit.")
        if self.model.num_outputs != 1:
            raise ValueError(f"ValidationRecorder records models with one output; this one has "
                             f"{self.model.num_outputs} ({', '.join(self.model.output_names)}).")
        if getattr(sess.val_data, "resumable", True) is False:
            raise ValueError("ValidationRecorder: val_data from a generator gives other samples at each check; "
                             "pass arrays, a Dataset or an indexable source (__len__ and __getitem__).")
        self._loss = sess.losses[0]
        last = self.model.outshape[-1] if self.model.outshape else None
        self._classes, self._threshold = _class_task(self._loss, last)

    def _val_batches(self):
        """The validation batches in a fixed order (the first ``val_batches`` of them when set)."""
        ds, limit = self.session.val_data, self.session.fit_params.get("val_batches", -1)
        if isinstance(ds, Dataset):
            n = ds.num_samples if limit < 0 else min(ds.num_samples, limit * ds.batch_size)
            x, y = ds.head(n)  # every sample in order, the shuffling generator untouched
            yield x, y
            return
        for b, (x, y) in enumerate(ds.batches(transform=False)):
            if 0 <= limit <= b:
                break
            yield x, y

    def on_val_end(self, step, logs=None):
        if not self.is_main:
            return
        self.seen += 1
        if (self.seen - 1) % self.every:
            return
        batch = self.session.fit_params.get("batch_size") or 256
        losses, preds, targets = [], [], []
        for x, y in self._val_batches():
            p = self.model.predict(x, batch_size=batch)
            y = backend.to_host(y) if not backend.is_host_array(y) else y
            losses.append(per_sample_losses(self._loss, y, p))
            preds.append(_predicted(p, self._classes, self._threshold))
            if self._targets is None:
                targets.append(_true_classes(self._loss, y, p, self._classes, self._threshold))
        if self._targets is None:
            self._targets = np.concatenate(targets)
        rows = self._rows
        rows["steps"].append(int(step))
        rows["epochs"].append(int((logs or {}).get("epoch", self.session.state.epoch)))
        rows["losses"].append(_f16(np.concatenate(losses)))
        rows["predictions"].append(np.concatenate(preds))
        if self.snapshot_weights:
            rows["snapshots"].append(np.concatenate(
                [backend.to_host(p.value).astype(np.float16).reshape(-1) for p in self.model.params]))
        for k, v in (logs or {}).items():
            if k.startswith("val_"):
                self._logs.setdefault(k, [math.nan] * (self.checks - 1)).append(
                    float(v) if isinstance(v, (int, float)) else math.nan)
        for vals in self._logs.values():
            vals.extend([math.nan] * (self.checks - len(vals)))
        self._save()

    def on_fit_end(self, logs=None):
        if not self.is_main or not self.checks:
            return
        self._restored_step = self._restored()
        self._save()

    def _restored(self):
        """The step whose weights the fit ends with after a restore (EarlyStopping), if any."""
        restored = getattr(self.session.history, "restored", None)
        if isinstance(restored, dict) and restored.get("step") is not None:
            return int(restored["step"])
        for lst in self.session.listeners:  # a listener after this one restores in its own on_fit_end
            if getattr(lst, "restore_best_weights", False) and getattr(lst, "best_step", None) is not None:
                return int(lst.best_step)
        return None

    def _build(self) -> ValidationRecord:
        r, params = self._rows, self.model.params
        targets = self._targets if self._targets is not None else np.zeros(0, dtype=np.int16)
        losses = np.stack(r["losses"]) if r["losses"] else np.zeros((0, len(targets)), dtype=np.float16)
        preds = np.stack(r["predictions"]) if r["predictions"] else np.zeros((0,) + targets.shape, dtype=np.int16)
        snaps = None
        if self.snapshot_weights:
            snaps = np.stack(r["snapshots"]) if r["snapshots"] else np.zeros((0, self.model.count_params()),
                                                                               dtype=np.float16)
        return ValidationRecord(r["steps"], r["epochs"], losses, preds, targets, self._classes, _loss_config(self._loss),
                                self._logs, self._restored_step, [p.name for p in params],
                                [tuple(p.shape) for p in params], snaps)

    def _save(self) -> None:
        self.record = self._build()
        try:
            self.record.save(self.path)
            self.record.path = self.path
        except OSError as err:
            self.warn_once("the validation record", self.path, err)

    # ------------------------------------------------------------------ resuming
    def get_state(self) -> dict:
        return {"checks": self.checks, "seen": self.seen}

    def check_state(self, state: dict) -> None:
        check_fields(self, state, {"checks": "int", "seen": "int"})

    def set_state(self, state: dict) -> None:
        """Cut the record back to the checks it had when the checkpoint was taken (read from its file)."""
        self.check_state(state)
        self.seen = int(state["seen"])
        n = int(state["checks"])
        if not self.is_main or n == 0:
            return
        try:
            rec = ValidationRecord.load(self.path, snapshots=self.snapshot_weights)
        except (OSError, ValueError) as err:
            raise ValueError(f"ValidationRecorder: cannot resume the record {self.path!r} ({err}); it held {n} "
                             f"checks at the checkpoint.") from None
        if len(rec) < n or (self.snapshot_weights and rec.snapshots is None):
            raise ValueError(f"ValidationRecorder: the record {self.path!r} holds {len(rec)} checks, the checkpoint "
                             f"expects {n}{' with weight snapshots' if self.snapshot_weights else ''}.")
        self._targets = rec.targets
        self._rows = {"steps": list(rec.steps[:n]), "epochs": list(rec.epochs[:n]), "losses": list(rec.losses[:n]),
                      "predictions": list(rec.predictions[:n]),
                      "snapshots": list(rec.snapshots[:n]) if self.snapshot_weights else []}
        self._logs = {k: list(v[:n]) for k, v in rec.logs.items()}
        self.record = self._build()

    def __repr__(self) -> str:
        return f"ValidationRecorder({self.path!r}, snapshot_weights={self.snapshot_weights}, every={self.every})"
