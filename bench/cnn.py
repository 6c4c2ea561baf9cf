"""Benchmark: seconds per 100 training steps and peak RSS of the MNIST CNN (batch 64, Adam).

The network of examples/mnist_cnn.py: Conv2D 32 5x5 same + ReLU -> MaxPool 2 -> Conv2D 64 5x5
same + ReLU -> MaxPool 2 -> Flatten -> Dense 1024 ReLU -> Dropout 0.5 -> Dense 10 (softmax
cross-entropy). cutedl and, when torch is installed, PyTorch CPU (eager, same thread count) each
run in their own subprocess, so peak RSS is per framework, and the ratio printed is measured in
this one run (the machine may be noisy: compare ratios, not absolute times). CPU time is printed
too: with ``--threads 1`` on a busy machine it is the steadier measure.

    python bench/cnn.py                       # 3 x 100 timed steps each, after 20 warm-up steps
    python bench/cnn.py --steps 50 --repeats 5 --threads 2
    python bench/cnn.py --malloc-tuning       # both frameworks with glibc malloc tuned (see PERFORMANCE.md)
    python bench/cnn.py --openblas-coretype auto   # let OpenBLAS pick the CPU's kernels
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

BATCH = 64


def _data(n: int):
    """The first ``n`` MNIST training images as float32 (n, 1, 28, 28) in [0, 1], labels int64."""
    from cutedl import datasets

    (x, y), _ = datasets.mnist.load_data()
    x = datasets.normalize(x[:n]).reshape(-1, 1, 28, 28)
    return x, y[:n].astype("int64")


def _example():
    """examples/mnist_cnn.py as a module: the benchmark times exactly the example's network."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples", "mnist_cnn.py")
    spec = importlib.util.spec_from_file_location("mnist_cnn_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stamp() -> tuple:
    return time.perf_counter(), time.process_time()


def _windows(stamps: list, warmup: int, steps: int, repeats: int) -> dict:
    """Wall and CPU seconds per ``steps`` steps for each of ``repeats`` windows after ``warmup`` steps."""
    spans = [(stamps[warmup - 1 + r * steps], stamps[warmup - 1 + (r + 1) * steps]) for r in range(repeats)]
    return {"times": [b[0] - a[0] for a, b in spans], "cpu_times": [b[1] - a[1] for a, b in spans]}


def run_cutedl(warmup: int, steps: int, repeats: int) -> list:
    import cutedl
    from cutedl import Dataset, Session, datasets, listeners, optimizers

    cutedl.set_seed(0)
    total = warmup + steps * repeats
    x, y = _data(total * BATCH)
    model = _example().build_model()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(1e-3))
    stamps = []
    timer = listeners.LambdaListener(on_batch_end=lambda step, logs: stamps.append(_stamp()))
    sess.fit(Dataset(x, datasets.one_hot(y, 10), batch_size=BATCH), epochs=1, listeners=[timer], verbose=0)
    return _windows(stamps, warmup, steps, repeats)


def run_torch(warmup: int, steps: int, repeats: int, threads: int) -> list:
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    total = warmup + steps * repeats
    x, y = _data(total * BATCH)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    stamps = []
    for i in range(total):
        idx = perm[i * BATCH:(i + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        stamps.append(_stamp())
    return _windows(stamps, warmup, steps, repeats)


def child(framework: str, args) -> None:
    if framework == "cutedl":
        result = run_cutedl(args.warmup, args.steps, args.repeats)
    else:
        result = run_torch(args.warmup, args.steps, args.repeats, args.threads)
    result.update(framework=framework, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


def measure(framework: str, args) -> dict | None:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    if args.malloc_tuning:
        env.update(MALLOC_MMAP_THRESHOLD_="33554432", MALLOC_TRIM_THRESHOLD_="4000000000")
    if args.openblas_coretype == "auto":
        env.pop("OPENBLAS_CORETYPE", None)
    elif args.openblas_coretype:
        env["OPENBLAS_CORETYPE"] = args.openblas_coretype
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"{framework}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100, help="steps per timed window (times are per 100 steps)")
    p.add_argument("--repeats", type=int, default=3, help="timed windows; the median is reported")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--malloc-tuning", action="store_true",
                   help="run both with MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ set (PERFORMANCE.md)")
    p.add_argument("--openblas-coretype", default=None, metavar="NAME",
                   help="OPENBLAS_CORETYPE for the runs ('auto': unset it, so OpenBLAS picks the CPU's own "
                        "kernels; an environment that pins an older core, e.g. Haswell on an AVX-512 CPU, "
                        "slows NumPy's GEMMs, not PyTorch's)")
    p.add_argument("--only", choices=["cutedl", "torch"], help="time one framework only")
    p.add_argument("--child", choices=["cutedl", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.steps, args.repeats, args.warmup, args.threads) < 1:
        p.error("--steps, --repeats, --warmup and --threads must be >= 1")
    if args.child:
        child(args.child, args)
        return {}
    frameworks = [args.only] if args.only else ["cutedl", "torch"]
    if "torch" in frameworks:
        try:
            import torch  # noqa: F401
        except ImportError:
            frameworks.remove("torch")
            print("torch is not installed (pip install torch==2.13.0): timing cutedl only")
    coretype = os.environ.get("OPENBLAS_CORETYPE") if args.openblas_coretype is None else args.openblas_coretype
    print(f"OPENBLAS_CORETYPE: {coretype or 'auto'}")
    results = {}
    for fw in frameworks:
        r = measure(fw, args)
        if r:
            per100 = [t * 100 / args.steps for t in r["times"]]
            r["s_per_100_steps"] = statistics.median(per100)
            r["cpu_s_per_100_steps"] = statistics.median(t * 100 / args.steps for t in r["cpu_times"])
            results[fw] = r
            print(f"{fw:7s} {r['s_per_100_steps']:.2f} s/100 steps (windows: {', '.join(f'{t:.2f}' for t in per100)}; "
                  f"CPU {r['cpu_s_per_100_steps']:.2f} s)  peak RSS {r['peak_rss_mb']:.0f} MB  threads {args.threads}")
    if "cutedl" in results and "torch" in results:
        c, t = results["cutedl"], results["torch"]
        print(f"ratio cutedl/torch: {c['s_per_100_steps'] / t['s_per_100_steps']:.2f}x time, "
              f"{c['cpu_s_per_100_steps'] / t['cpu_s_per_100_steps']:.2f}x CPU time, "
              f"{c['peak_rss_mb'] / t['peak_rss_mb']:.2f}x RSS")
    return results


if __name__ == "__main__":
    main()
