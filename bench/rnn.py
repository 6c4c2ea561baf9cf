"""Benchmark: seconds per 100 training steps of LSTM and GRU (128 units) on MNIST rows.

The model reads each image as 28 steps of 28 pixels (batch 128): ``LSTM(128)`` or ``GRU(128)``
-> ``Dense(10, softmax)``, cross-entropy, Adam. cutedl and, when torch is installed, PyTorch CPU
(``nn.LSTM`` / ``nn.GRU``, same threads) each run in their own subprocess (so peak RSS is per
framework); the script prints the ratio measured in this run.

    python bench/rnn.py                    # 3 timed rounds of 100 steps each (after a warm-up round)
    python bench/rnn.py --rounds 5 --threads 2 --cells lstm
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

BATCH, STEPS, UNITS = 128, 100, 128


def _load():
    from cutedl import datasets

    (x, y), _ = datasets.mnist.load_data()
    x = datasets.normalize(x)  # (60000, 28, 28) float32: 28 steps of 28 features
    return x, y.astype("int64")


def _batches(n, rounds, seed=0):
    """Index arrays of ``rounds * STEPS`` random batches (same for both frameworks)."""
    import numpy as np

    rs = np.random.default_rng(seed)
    return [rs.choice(n, BATCH, replace=False) for _ in range(rounds * STEPS)]


def run_cutedl(cell: str, rounds: int) -> list:
    import cutedl
    from cutedl import Model, Session, datasets, layers, optimizers

    cutedl.set_seed(0)
    x, y = _load()
    y1 = datasets.one_hot(y, 10)
    rnn = {"lstm": layers.LSTM, "gru": layers.GRU}[cell]
    model = Model([rnn(UNITS, inshape=(28, 28)), layers.Dense(10, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(1e-3))
    batches = _batches(len(x), rounds + 1)
    times = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        for idx in batches[r * STEPS:(r + 1) * STEPS]:
            sess.train_on_batch(x[idx], y1[idx])
        times.append(time.perf_counter() - t0)
    return times[1:]


def run_torch(cell: str, rounds: int, threads: int) -> list:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    x, y = _load()
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](28, UNITS, batch_first=True)
            self.out = torch.nn.Linear(UNITS, 10)

        def forward(self, xb):
            seq, _ = self.rnn(xb)
            return self.out(seq[:, -1])

    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    batches = [torch.from_numpy(b) for b in _batches(len(x), rounds + 1)]
    times = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        for idx in batches[r * STEPS:(r + 1) * STEPS]:
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times[1:]


def child(framework: str, cell: str, rounds: int, threads: int) -> None:
    times = run_cutedl(cell, rounds) if framework == "cutedl" else run_torch(cell, rounds, threads)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"framework": framework, "cell": cell, "times": times, "peak_rss_mb": rss_mb}))


def measure(framework: str, cell: str, rounds: int, threads: int) -> dict | None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, __file__, "--child", framework, "--cells", cell, "--rounds",
                           str(rounds), "--threads", str(threads)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"{framework} {cell}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of 100 steps (after one warm-up round)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--cells", nargs="+", choices=["lstm", "gru"], default=["lstm", "gru"])
    p.add_argument("--child", choices=["cutedl", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.cells[0], args.rounds, args.threads)
        return {}
    try:
        import torch  # noqa: F401
        frameworks = ["cutedl", "torch"]
    except ImportError:
        frameworks = ["cutedl"]
        print("torch is not installed (pip install torch==2.13.0): timing cutedl only")
    results = {}
    for cell in args.cells:
        for fw in frameworks:
            r = measure(fw, cell, args.rounds, args.threads)
            if r:
                r["median_s"] = statistics.median(r["times"])
                results[(fw, cell)] = r
                print(f"{fw:7s} {cell.upper():4s} {r['median_s']:.3f} s/100 steps "
                      f"(rounds: {', '.join(f'{t:.3f}' for t in r['times'])})  "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB  threads {args.threads}")
        if ("cutedl", cell) in results and ("torch", cell) in results:
            c, t = results[("cutedl", cell)], results[("torch", cell)]
            print(f"{cell.upper()} ratio cutedl/torch: {c['median_s'] / t['median_s']:.2f}x time, "
                  f"{c['peak_rss_mb'] / t['peak_rss_mb']:.2f}x RSS")
    return results


if __name__ == "__main__":
    main()
