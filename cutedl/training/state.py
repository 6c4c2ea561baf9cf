"""TrainingState: where a fit stands, as public, serialisable data.

Everything the training loop needs to continue a run exactly lives here, not in private
attributes of the Session: the global step, the epoch and the batches done in it, whether the
epoch (its check and ``on_epoch_end`` included) is over, the running sums of the check in
progress, the data order of the current epoch and the clock. Listeners read it
(``session.state``), :mod:`cutedl.training.checkpoint` saves it with :meth:`TrainingState.to_dict`
and puts it back with :meth:`TrainingState.load_dict`.

A *boundary* is a point where training can stop and resume exactly: after a step, its
``on_batch_end`` and its check (if one was due), or after an epoch's check and ``on_epoch_end``.
``at_boundary`` is True only there; a checkpoint can only be taken there.
"""
from __future__ import annotations

import math
import time

from cutedl._validate import is_int, is_number

__all__ = ["TrainingState", "Accumulator"]


class Accumulator:
    """Weighted running means of batch logs since the last check.

    A batch weighs its number of samples, or its number of real (unmasked) time steps for a
    masked sequence output. ``means()`` of an accumulator that saw only weight-0 batches logs 0.
    """

    def __init__(self, sums: dict | None = None, count: float = 0):
        self.sums: dict = dict(sums or {})
        self.count = count

    def add(self, logs: dict, weight) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * weight
        self.count += weight

    def means(self) -> dict:
        if not self.count:
            return dict.fromkeys(self.sums, 0.0)
        return {k: v / self.count for k, v in self.sums.items()}

    def __bool__(self) -> bool:
        return bool(self.sums)

    def to_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count}


class TrainingState:
    """Where a fit stands. Public attributes:

    Attributes:
        step: optimisation steps done since the session's first fit.
        epoch: the current (1-based) epoch; the last finished one at an epoch boundary.
        batches_done: batches of ``epoch`` done.
        epoch_done: True once ``epoch``'s check and ``on_epoch_end`` ran.
        samples: samples in the training data (a resume checks it is the same data).
        check_origin: epoch from which ``val_epochs`` counts (the fit's ``initial_epoch``).
        accumulator: :class:`Accumulator` of the training logs since the last check.
        epoch_data: generator states of the training data at the start of ``epoch`` (a resumed
            epoch redraws the same order from them).
        warned_nan: a non-finite loss was already reported.
        at_boundary: True at a boundary (see module docstring).
        in_check: True while a check runs.
    """

    def __init__(self, samples: int = 0, initial_epoch: int = 0, batches_per_epoch: int = 0, step: int = 0):
        self.step = int(step)
        self.epoch = int(initial_epoch)
        self.batches_done = int(batches_per_epoch)
        self.epoch_done = True
        self.samples = int(samples)
        self.check_origin = int(initial_epoch)
        self.accumulator = Accumulator()
        self.epoch_data: dict = {}
        self.warned_nan = False
        self.at_boundary = True
        self.in_check = False
        self._clock_offset = 0.0
        self._clock_start = time.perf_counter()

    # ------------------------------------------------------------------ the clock
    def elapsed(self) -> float:
        """Seconds trained: this fit's wall time plus that of the runs it continues."""
        return self._clock_offset + time.perf_counter() - self._clock_start

    def set_elapsed(self, seconds: float) -> None:
        """Restart the clock at ``seconds`` (a continued History's or a checkpoint's time)."""
        self._clock_offset = float(seconds)
        self._clock_start = time.perf_counter()

    # ------------------------------------------------------------------ moves of the loop
    def start_epoch(self, epoch: int, data_state: dict) -> None:
        self.epoch, self.batches_done, self.epoch_done = int(epoch), 0, False
        self.epoch_data = data_state

    def boundary(self, batches_done: int, epoch_done: bool) -> None:
        self.batches_done, self.epoch_done = int(batches_done), bool(epoch_done)
        self.at_boundary = True

    def position(self) -> dict:
        """``{'epoch', 'batches_done', 'epoch_done', 'samples'}``: the boundary the fit is at."""
        return {"epoch": self.epoch, "batches_done": self.batches_done, "epoch_done": self.epoch_done,
                "samples": self.samples}

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """The state as plain data (the layout of a training checkpoint's position entries)."""
        return {"position": self.position(), "accumulator": self.accumulator.to_dict(),
                "session": {"step": self.step, "warned_nan": self.warned_nan, "check_origin": self.check_origin,
                            "elapsed": self.elapsed()}}

    @staticmethod
    def check_dict(d: dict, where: str) -> None:
        """Raise ValueError (naming ``where``) unless ``d`` is a well-formed :meth:`to_dict` result."""
        def need(cond, what):
            if not cond:
                raise ValueError(f"{where}: the training state is corrupt ({what}).")
        need(isinstance(d, dict), "not a dict")
        pos, acc, ses = d.get("position"), d.get("accumulator"), d.get("session")
        need(isinstance(pos, dict) and isinstance(acc, dict) and isinstance(ses, dict),
             "position, accumulator and session must be dicts")
        for k in ("epoch", "batches_done", "samples"):
            need(is_int(pos.get(k)) and pos.get(k) >= 0, f"position.{k}={pos.get(k)!r} must be an integer >= 0")
        need(isinstance(pos.get("epoch_done"), bool), f"position.epoch_done={pos.get('epoch_done')!r}")
        need(isinstance(acc.get("sums"), dict) and all(isinstance(k, str) and is_number(v)
                                                       for k, v in acc["sums"].items()), "accumulator.sums")
        need(is_number(acc.get("count")) and acc["count"] >= 0, f"accumulator.count={acc.get('count')!r}")
        for k in ("step", "check_origin"):
            need(is_int(ses.get(k)) and ses.get(k) >= 0, f"session.{k}={ses.get(k)!r} must be an integer >= 0")
        need(isinstance(ses.get("warned_nan"), bool), f"session.warned_nan={ses.get('warned_nan')!r}")
        need(is_number(ses.get("elapsed")) and math.isfinite(ses["elapsed"]) and ses["elapsed"] >= 0,
             f"session.elapsed={ses.get('elapsed')!r}")

    def load_dict(self, d: dict, where: str = "training state") -> None:
        """Take over a :meth:`to_dict` result (validated first: all or nothing)."""
        self.check_dict(d, where)
        pos, acc, ses = d["position"], d["accumulator"], d["session"]
        self.epoch, self.batches_done = int(pos["epoch"]), int(pos["batches_done"])
        self.epoch_done, self.samples = bool(pos["epoch_done"]), int(pos["samples"])
        self.accumulator = Accumulator({k: float(v) for k, v in acc["sums"].items()}, acc["count"])
        self.step, self.warned_nan = int(ses["step"]), bool(ses["warned_nan"])
        self.check_origin = int(ses["check_origin"])
        self.set_elapsed(float(ses["elapsed"]))
        self.at_boundary = True

    def __repr__(self) -> str:
        return (f"TrainingState(step={self.step}, epoch={self.epoch}, batches_done={self.batches_done}, "
                f"epoch_done={self.epoch_done})")
