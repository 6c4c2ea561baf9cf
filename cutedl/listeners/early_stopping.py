"""Stopping rules: :class:`EarlyStopping` (with its offline :meth:`~EarlyStopping.replay`) and
:class:`TerminateOnNaN`.

EarlyStopping counts *checks* without improvement of a monitored log key (the improvement rule
is :class:`~cutedl.listeners.monitor.Monitor`'s), stops the fit after ``patience`` of them and
restores the best check's weights whatever ends training. ``replay`` walks a recorded History
through the very same bookkeeping, to see where a setting would have stopped without retraining;
with the run's :class:`~cutedl.listeners.recorder.ValidationRecord` it also scores the weights the
setting would have kept, and :func:`replay_grid` does so for a grid of settings (drawn by
:func:`cutedl.reports.replay_report`: epochs saved against accuracy lost).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from cutedl import metrics as metrics_mod
from cutedl._validate import check_int, check_number
from cutedl.listeners.base import Listener, check_fields, restore_fields
from cutedl.listeners.monitor import Monitor
from cutedl.listeners.recorder import ValidationRecord

__all__ = ["EarlyStopping", "Replay", "ReplayTable", "replay_grid", "TerminateOnNaN"]


_STATE = {"wait": "int", "best": "number?", "best_step": "int?", "best_epoch": "int?", "best_weights": "arrays?",
          "stopped_step": "int?", "stopped_epoch": "int?"}


class EarlyStopping(Listener):
    """Stop training when a monitored value has stopped improving.

    ``patience`` counts *checks*, the moments ``fit`` validates: epochs with ``val_epochs=1``,
    every ``val_steps`` steps when ``val_steps > 0``. Training stops after ``patience`` checks in
    a row without an improvement larger than ``min_delta``.

    Args:
        monitor: a log key, e.g. 'val_loss', 'val_accuracy', 'loss'.
        patience: checks without improvement before stopping.
        min_delta: minimum change that counts as an improvement.
        mode: 'min', 'max', or 'auto' (the metric's own direction: loss/mae/mse down, accuracy up).
        restore_best_weights: restore the best check's weights when training ends, whatever ends it.
        start_from_epoch: ignore checks in the first ``start_from_epoch`` epochs (warm-up).
        baseline: a value the monitor must beat; training stops if it does not within ``patience``.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True, start_from_epoch: int = 0,
                 baseline: float | None = None):
        self._monitor = Monitor("EarlyStopping", monitor, mode, min_delta)
        self.monitor, self.mode, self.min_delta = monitor, mode, self._monitor.min_delta
        self.patience = check_int("EarlyStopping", "patience", patience, minimum=0, what="a non-negative integer")
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_int("EarlyStopping", "start_from_epoch", start_from_epoch, minimum=0,
                                          what="a non-negative integer")
        self.baseline = check_number("EarlyStopping", "baseline", baseline, allow_none=True)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.best = None
        self.best_step = None
        self.best_epoch = None
        self.best_weights = None
        self.stopped_step = None
        self.stopped_epoch = None

    def resolved_mode(self) -> str:
        """'min' or 'max': ``mode`` with 'auto' answered by the monitored key's direction."""
        return self._monitor.resolve(self.session)

    def on_fit_start(self, logs=None):
        self._reset()
        self._monitor.bind(self.session)

    def _observe(self, value, step: int, epoch) -> str:
        """One check's bookkeeping, shared by live training and :meth:`replay`.

        Returns 'ignored' (warm-up), 'improved', 'wait' or 'stop'.
        """
        if epoch is not None and epoch <= self.start_from_epoch:
            return "ignored"
        if self._monitor.improved(value, self.best if self.best is not None else self.baseline):
            self.best, self.best_step, self.best_epoch = float(value), int(step), int(epoch)
            self.wait = 0
            return "improved"
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped_step, self.stopped_epoch = int(step), int(epoch)
            return "stop"
        return "wait"

    def on_val_end(self, step, logs=None):
        what = self._observe(logs.get(self.monitor, math.nan), step, logs.get("epoch"))
        if what == "improved":
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            self.session.history.best = {"monitor": self.monitor, "mode": self._monitor.op_mode, "value": self.best,
                                         "step": self.best_step, "epoch": self.best_epoch}
        elif what == "stop":
            self.session.stop_fit("early_stopping")

    def on_fit_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.session.history.restored = {"step": self.best_step, "epoch": self.best_epoch}

    def get_state(self) -> dict:
        return {"wait": self.wait, "best": self.best, "best_step": self.best_step, "best_epoch": self.best_epoch,
                "best_weights": self.best_weights, "stopped_step": self.stopped_step,
                "stopped_epoch": self.stopped_epoch}

    def set_state(self, state: dict) -> None:
        restore_fields(self, state, _STATE)

    def check_state(self, state: dict) -> None:
        check_fields(self, state, _STATE)

    @classmethod
    def replay(cls, history, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
               mode: str = "auto", start_from_epoch: int = 0, baseline: float | None = None, *,
               snapshots=None, score=None, model=None, batch_size: int | None = 256) -> "Replay":
        """Where ``EarlyStopping(monitor, patience, ...)`` would have stopped on a recorded History.

        Walks the History's rows (one per check) through the very bookkeeping the live listener
        uses, without retraining: a check improves when it beats the best so far by more than
        ``min_delta`` (the first finite check always does, unless ``baseline`` must be beaten
        first); a NaN never improves; after ``patience`` checks in a row without an improvement
        training stops at that check; the best check's weights are the ones restored. Checks in
        the first ``start_from_epoch`` epochs are ignored.

        The answer is exact when the run was recorded without early stopping and with the same
        validation schedule: early stopping changes nothing before it stops.

        With ``snapshots`` (a :class:`~cutedl.listeners.recorder.ValidationRecord` of the same
        run, recorded with weight snapshots), the weights the setting ends with (the restored
        check's, or the stop check's when nothing was restored) are scored: loaded (float16) into
        a copy of ``model`` and evaluated on ``score`` (``(x, y)``: loss and accuracy with the
        run's loss; or a function ``score(model) -> dict``). Without ``score``, the record's own
        validation values of that check are given (optimistic: the stop was chosen on them).

        Args:
            history: a :class:`cutedl.History` (from ``fit`` or ``History.load``) with ``step``,
                ``epoch`` and ``monitor`` columns.
            monitor, patience, min_delta, mode, start_from_epoch, baseline: as the constructor.
            snapshots: a ValidationRecord of the run (keyword only).
            score: ``(x_test, y_test)`` or a function of the model (needs ``model``).
            model: a model of the recorded architecture (left untouched).
            batch_size: prediction batch size when scoring.

        Returns:
            a :class:`Replay`: ``stopped``, ``stop_index/epoch/step`` (the last row when it never
            stops), ``restored_index/epoch/step`` (None when no check improved) and ``best``;
            with ``snapshots``, ``scored_step`` (whose weights) and ``score`` (a dict).

        Raises:
            TypeError: ``history`` is not a History.
            ValueError: unknown ``monitor``, an empty history, or a bad setting; a record without
                the scored check (or without snapshots when ``score`` is given).

        Example:
            >>> r = EarlyStopping.replay(history, 'val_loss', patience=3)
            >>> r.stop_epoch, r.restored_epoch
            (9, 6)
            >>> EarlyStopping.replay(history, patience=3, snapshots=record, score=(x_test, y_test),
            ...                      model=model).score
            {'loss': 0.071, 'accuracy': 0.978}
        """
        cols = getattr(history, "history", None)
        if not isinstance(cols, dict):
            raise TypeError(f"EarlyStopping.replay expected a cutedl History (from fit or History.load), "
                            f"got {type(history).__name__}.")
        es = cls(monitor, patience=patience, min_delta=min_delta, mode=mode, restore_best_weights=False,
                 start_from_epoch=start_from_epoch, baseline=baseline)
        if monitor not in cols:
            raise ValueError(f"EarlyStopping.replay: monitor {monitor!r} is not in the history; recorded keys: "
                             f"{', '.join(cols)}.")
        for key in ("step", "epoch"):
            if key not in cols:
                raise ValueError(f"EarlyStopping.replay: the history has no {key!r} column; pass a History "
                                 f"recorded by fit.")
        if not cols[monitor]:
            raise ValueError("EarlyStopping.replay: the history has no rows; there is nothing to replay.")
        es._monitor.op_mode = es._monitor.resolve()
        steps, epochs = cols["step"], cols["epoch"]
        best_index, stop_index = None, None
        for i, value in enumerate(cols[monitor]):
            what = es._observe(value, steps[i], epochs[i])
            if what == "improved":
                best_index = i
            elif what == "stop":
                stop_index = i
                break
        stopped = stop_index is not None
        if not stopped:
            stop_index = len(cols[monitor]) - 1
        replay = Replay(stopped=stopped, stop_index=stop_index, stop_epoch=int(epochs[stop_index]),
                        stop_step=int(steps[stop_index]), restored_index=best_index,
                        restored_epoch=None if best_index is None else int(epochs[best_index]),
                        restored_step=None if best_index is None else int(steps[best_index]), best=es.best)
        if snapshots is None:
            if score is not None or model is not None:
                raise ValueError("EarlyStopping.replay: score and model need snapshots=<the run's ValidationRecord> "
                                 "(listeners.ValidationRecorder(path, snapshot_weights=True)).")
            return replay
        step = replay.final_step
        value = _score_checks(snapshots, [step], score, model, batch_size)[step]
        return replay._replace(scored_step=step, score=value)

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, min_delta={self.min_delta}, "
                f"mode={self.mode!r})")


class Replay(NamedTuple):
    """What :meth:`EarlyStopping.replay` found: where a setting stops and what it restores.

    Indices are History rows (one row per check). When the setting never stops, the ``stop_*``
    fields describe the last row, as ``history.stopped_epoch`` does for a completed fit.
    ``restored_*`` are None when no check counted as an improvement (all NaN, or nothing beat
    ``baseline``): EarlyStopping then restores nothing.
    """

    stopped: bool
    stop_index: int
    stop_epoch: int
    stop_step: int
    restored_index: int | None
    restored_epoch: int | None
    restored_step: int | None
    best: float | None
    scored_step: int | None = None
    score: dict | None = None

    @property
    def final_step(self) -> int:
        """The step whose weights the setting ends with: the restored check's, else the stop check's."""
        return self.stop_step if self.restored_step is None else self.restored_step


def _score_checks(record, steps, score, model, batch_size) -> dict:
    """``{step: {metric: value}}`` for the weights of the recorded checks at ``steps``."""
    if not isinstance(record, ValidationRecord):
        raise TypeError(f"EarlyStopping.replay: snapshots must be a ValidationRecord (ValidationRecord.load(path) "
                        f"of a listeners.ValidationRecorder file), got {type(record).__name__}.")
    index = {s: record.index_of(step=s) for s in sorted(set(steps))}
    if score is None:
        if model is not None:
            raise ValueError("EarlyStopping.replay: model is only used with score=(x, y) or score=function.")
        losses = record.mean_losses()
        accuracies = record.accuracies() if record.classes is not None else None
        return {s: {"loss": float(losses[k]), **({} if accuracies is None else {"accuracy": float(accuracies[k])})}
                for s, k in index.items()}
    if model is None:
        raise ValueError("EarlyStopping.replay: score needs model=<a model of the recorded architecture>, into a "
                         "copy of which the weight snapshots are loaded.")
    scored = record.scores(list(index.values()), score, model, batch_size)
    return {s: scored[k] for s, k in index.items()}


class ReplayTable:
    """Early-stopping settings replayed and scored (see :func:`replay_grid`).

    Attributes:
        rows: one dict per setting: ``patience``, ``min_delta``, ``stopped``, ``stop_epoch``,
            ``stop_step``, ``restored_epoch``, ``restored_step``, ``checks_saved``,
            ``epochs_saved``, ``steps_saved`` (against running every recorded check), and for each
            scored metric ``m``: ``m`` (the score of the weights kept) and ``m_lost`` (how much
            worse than the reference, >= 0 when worse, in the metric's units).
        reference: the setting that never stops and restores the best check (``patience`` =
            every check): ``{'restored_step', 'restored_epoch', <metric>: value}``.
        metrics: the scored metric names. monitor: the replayed monitor.
        scored_on: 'score data' or 'validation' (the record's own values: optimistic).
    """

    def __init__(self, rows, reference, metrics, monitor, scored_on):
        self.rows, self.reference, self.metrics = list(rows), dict(reference), list(metrics)
        self.monitor, self.scored_on = monitor, scored_on

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def frontier(self, metric: str | None = None) -> list:
        """The rows no other row beats on both steps saved and ``metric`` lost (most steps saved first)."""
        metric = metric or self.metrics[0]
        ranked = sorted(self.rows, key=lambda r: (-r["steps_saved"], r[f"{metric}_lost"]))
        out, best = [], math.inf
        for r in ranked:
            if r[f"{metric}_lost"] < best:
                out.append(r)
                best = r[f"{metric}_lost"]
        return out

    def __str__(self) -> str:
        head = ["patience", "min_delta", "stop_epoch", "restored_epoch", "epochs_saved"]
        for m in self.metrics:
            head += [m, f"{m}_lost"]
        lines = ["  ".join(f"{h:>14}" for h in head)]
        for r in self.rows:
            cells = [r[h] for h in head]
            lines.append("  ".join(f"{c:>14.4g}" if isinstance(c, float) else f"{str(c):>14}" for c in cells))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ReplayTable(settings={len(self)}, metrics={self.metrics}, monitor={self.monitor!r})"


def replay_grid(history, record, patiences=(0, 1, 2, 3, 5, 10, 20), min_deltas=(0.0,), score=None, model=None,
                monitor: str = "val_loss", mode: str = "auto", start_from_epoch: int = 0,
                baseline: float | None = None, batch_size: int | None = 256) -> ReplayTable:
    """Replay a grid of EarlyStopping settings on a run and score the weights each would keep.

    Every ``(patience, min_delta)`` pair is replayed with :meth:`EarlyStopping.replay`; the
    weights it ends with are scored once per distinct check (see there: ``score=(x_test,
    y_test)`` with ``model``, or the record's own validation values without). Savings and
    losses are against the reference setting that runs every recorded check and restores the best.

    Args:
        history: the History of a run recorded without early stopping.
        record: the run's :class:`~cutedl.listeners.recorder.ValidationRecord` (with snapshots
            when ``score`` is given).
        patiences, min_deltas: the grid.
        score, model, batch_size: as :meth:`EarlyStopping.replay`.
        monitor, mode, start_from_epoch, baseline: as :class:`EarlyStopping`.

    Returns:
        a :class:`ReplayTable` (``rows``, ``reference``, ``frontier()``); draw it with
        :func:`cutedl.reports.replay_report`.

    Example:
        >>> table = replay_grid(history, ValidationRecord.load('runs/rec.npz'), patiences=[1, 3, 10],
        ...                     min_deltas=[0, 0.01], score=(x_test, y_test), model=model)
        >>> reports.replay_report(table, 'runs/replay.png')
    """
    patiences = [check_int("replay_grid", "patiences", p, minimum=0, what="non-negative integers")
                 for p in (patiences if isinstance(patiences, (list, tuple, range)) else [patiences])]
    min_deltas = [check_number("replay_grid", "min_deltas", d, minimum=0.0)
                  for d in (min_deltas if isinstance(min_deltas, (list, tuple)) else [min_deltas])]
    if not patiences or not min_deltas:
        raise ValueError("replay_grid: patiences and min_deltas need at least one value each.")
    replay = EarlyStopping.replay
    settings = [(p, d, replay(history, monitor, p, d, mode, start_from_epoch, baseline))
                for p in patiences for d in min_deltas]
    n = len(history.history[monitor])
    ref = replay(history, monitor, n, 0.0, mode, start_from_epoch, baseline)
    scores = _score_checks(record, [r.final_step for _, _, r in settings] + [ref.final_step], score, model,
                           batch_size)
    metrics = list(scores[ref.final_step])
    last_epoch, last_step = int(history.history["epoch"][-1]), int(history.history["step"][-1])
    reference = {"restored_step": ref.restored_step, "restored_epoch": ref.restored_epoch, **scores[ref.final_step]}
    rows = []
    for p, d, r in settings:
        row = {"patience": p, "min_delta": d, "stopped": r.stopped, "stop_epoch": r.stop_epoch,
               "stop_step": r.stop_step, "restored_epoch": r.restored_epoch, "restored_step": r.restored_step,
               "checks_saved": n - 1 - r.stop_index, "epochs_saved": last_epoch - r.stop_epoch,
               "steps_saved": last_step - r.stop_step}
        for m in metrics:
            value, ref_value = scores[r.final_step][m], reference[m]
            lower = metrics_mod.direction(m, guess=True) == "min"
            row[m] = value
            row[f"{m}_lost"] = (value - ref_value) if lower else (ref_value - value)
        rows.append(row)
    return ReplayTable(rows, reference, metrics, monitor, "validation" if score is None else "score data")


class TerminateOnNaN(Listener):
    """Stop as soon as the training loss is NaN or infinite (stop_reason 'nan').

    The Session never applies an update computed from a non-finite loss, so the model keeps the
    last finite weights.
    """

    def on_batch_end(self, step, logs=None):
        loss = logs.get("loss") if logs else None
        if loss is not None and not math.isfinite(loss):
            self.session.stop_fit("nan")
