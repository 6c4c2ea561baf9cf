"""Benchmark: seconds per epoch and peak RSS of the MNIST MLP (784-400-100-10, batch 128, Adam).

Runs cutedl and, when torch is installed, PyTorch CPU with the same number of threads, each in
its own subprocess (so peak RSS is per framework), and prints the ratio measured in this run.

    python bench/mlp.py                 # 3 timed epochs each (after one warm-up epoch)
    python bench/mlp.py --epochs 5 --threads 2
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


def _load():
    from cutedl import datasets

    (x, y), _ = datasets.mnist.load_data()
    x = datasets.normalize(x.reshape(len(x), -1))
    return x, y.astype("int64")


def run_cutedl(epochs: int) -> list:
    import cutedl
    from cutedl import Dataset, Model, Session, datasets, layers, listeners, optimizers

    cutedl.set_seed(0)
    x, y = _load()
    y1 = datasets.one_hot(y, 10)
    model = Model([layers.Dense(400, inshape=784, activation="relu"), layers.Dense(100, activation="relu"),
                   layers.Dense(10, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(1e-3))
    times = []
    t = {}
    timer = listeners.LambdaListener(on_epoch_start=lambda e, logs: t.__setitem__("t", time.perf_counter()),
                                     on_epoch_end=lambda e, logs: times.append(time.perf_counter() - t["t"]))
    sess.fit(Dataset(x, y1, batch_size=128), epochs=epochs + 1, listeners=[timer], verbose=0)
    return times[1:]


def run_torch(epochs: int, threads: int) -> list:
    import numpy as np
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    x, y = _load()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = torch.nn.Sequential(torch.nn.Linear(784, 400), torch.nn.ReLU(), torch.nn.Linear(400, 100),
                                torch.nn.ReLU(), torch.nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    times = []
    n = len(x)
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        perm = torch.from_numpy(np.random.permutation(n))
        for i in range(0, n, 128):
            idx = perm[i:i + 128]
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times[1:]


def child(framework: str, epochs: int, threads: int) -> None:
    times = run_cutedl(epochs) if framework == "cutedl" else run_torch(epochs, threads)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"framework": framework, "times": times, "peak_rss_mb": rss_mb}))


def measure(framework: str, epochs: int, threads: int) -> dict | None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, __file__, "--child", framework, "--epochs", str(epochs),
                           "--threads", str(threads)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"{framework}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--child", choices=["cutedl", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.epochs, args.threads)
        return {}
    try:
        import torch  # noqa: F401
        frameworks = ["cutedl", "torch"]
    except ImportError:
        frameworks = ["cutedl"]
        print("torch is not installed (pip install torch==2.13.0): timing cutedl only")
    results = {}
    for fw in frameworks:
        r = measure(fw, args.epochs, args.threads)
        if r:
            r["median_s"] = statistics.median(r["times"])
            results[fw] = r
            print(f"{fw:7s} {r['median_s']:.3f} s/epoch (epochs: {', '.join(f'{t:.3f}' for t in r['times'])})  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB  threads {args.threads}")
    if "cutedl" in results and "torch" in results:
        print(f"ratio cutedl/torch: {results['cutedl']['median_s'] / results['torch']['median_s']:.2f}x time, "
              f"{results['cutedl']['peak_rss_mb'] / results['torch']['peak_rss_mb']:.2f}x RSS")
    return results


if __name__ == "__main__":
    main()
