"""Benchmark: seconds per 100 training steps and peak RSS of the MNIST CNN (batch 64, Adam).

The network of examples/mnist_cnn.py: Conv2D 32 5x5 same + ReLU -> MaxPool 2 -> Conv2D 64 5x5
same + ReLU -> MaxPool 2 -> Flatten -> Dense 1024 ReLU -> Dropout 0.5 -> Dense 10 (softmax
cross-entropy). cutedl and PyTorch CPU (eager, same thread count) run alternately in their own
subprocesses (see bench/_common.py); the table gives min and median s/100 steps and their ratios.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/cnn.py --threads 2
    python bench/cnn.py --rounds 5 --steps 50 --baseline /work/base    # also an older tree
    python bench/cnn.py --profile            # cutedl only: per-layer times and cProfile's top entries
    python bench/cnn.py --predict            # peak RSS of predicting the 10,000 test images
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

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


def _cutedl_session():
    import cutedl
    from cutedl import Session, optimizers

    cutedl.set_seed(0)
    model = _example().build_model()
    return model, Session(model, "categorical_crossentropy", optimizers.Adam(1e-3))


def _batches(x, y, total: int):
    """``total`` batches of a fixed random order (the same for both frameworks)."""
    import numpy as np

    perm = np.random.default_rng(0).permutation(len(x))
    return [perm[i * BATCH:(i + 1) * BATCH] for i in range(total)]


def run_cutedl(args) -> dict:
    from cutedl import datasets

    total = args.warmup + args.steps * args.windows
    x, y = _data(total * BATCH)
    y1 = datasets.one_hot(y, 10)
    _, sess = _cutedl_session()
    batches = iter(_batches(x, y, total))

    def step():
        idx = next(batches)
        sess.train_on_batch(x[idx], y1[idx])

    return {"cnn train": _common.timed_windows(step, args.warmup, args.steps, args.windows)}


def run_torch(args) -> dict:
    import torch
    from torch import nn

    torch.manual_seed(0)
    total = args.warmup + args.steps * args.windows
    x, y = _data(total * BATCH)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()
    batches = iter([torch.from_numpy(b) for b in _batches(x, y, total)])

    def step():
        idx = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x[idx]), y[idx])
        loss.backward()
        opt.step()

    return {"cnn train": _common.timed_windows(step, args.warmup, args.steps, args.windows)}


def run_child(framework: str, args) -> dict:
    return run_torch(args) if framework == "torch" else run_cutedl(args)


# ---------------------------------------------------------------------------- --profile
def profile(args) -> None:
    """Per-layer forward/backward milliseconds of one training step, then cProfile's top entries."""
    import cProfile
    import pstats

    from cutedl import datasets

    n = args.warmup + 2 * args.steps
    x, y = _data(n * BATCH)
    y1 = datasets.one_hot(y, 10)
    model, sess = _cutedl_session()
    batches = iter(_batches(x, y, n))
    spent: dict = {}

    def timed(layer, kind, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            spent[(layer.name, kind)] = spent.get((layer.name, kind), 0.0) + time.perf_counter() - t
            return out
        return wrapper

    for layer in model.layers:   # instance attributes shadow the class methods
        layer.forward = timed(layer, "forward", layer.forward)
        layer.backward = timed(layer, "backward", layer.backward)

    def step():
        idx = next(batches)
        sess.train_on_batch(x[idx], y1[idx])

    for _ in range(args.warmup):
        step()
    spent.clear()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    total = (time.perf_counter() - t0) / args.steps * 1e3
    ms = {k: v / args.steps * 1e3 for k, v in spent.items()}
    print(f"one training step (batch {BATCH}, threads {args.threads}, mean of {args.steps} steps): {total:.2f} ms")
    print(f"{'layer':24s} {'forward ms':>11s} {'backward ms':>12s} {'share':>7s}")
    for layer in model.layers:
        f, b = ms.get((layer.name, "forward"), 0.0), ms.get((layer.name, "backward"), 0.0)
        print(f"{layer.name:24s} {f:11.2f} {b:12.2f} {(f + b) / total:7.1%}")
    rest = total - sum(ms.values())
    print(f"{'loss, optimizer, other':24s} {rest:24.2f} {rest / total:7.1%}")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.steps):
        step()
    prof.disable()
    print(f"\ncProfile, {args.steps} steps, top {args.top} by own time:")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(args.top)


# ---------------------------------------------------------------------------- --predict
def predict_rss(args) -> None:
    """Peak RSS of Model.predict on the 10,000 MNIST test images (cutedl, untrained weights)."""
    from cutedl import datasets

    _, (xt, _) = datasets.mnist.load_data()
    xt = datasets.normalize(xt).reshape(-1, 1, 28, 28)
    model, _ = _cutedl_session()
    before = _common.peak_rss_mb()
    t = time.perf_counter()
    out = model.predict(xt, batch_size=args.predict_batch)
    print(f"predict 10,000 images, batch_size={args.predict_batch}: {time.perf_counter() - t:.2f} s, "
          f"peak RSS {_common.peak_rss_mb():.0f} MB (before predict {before:.0f} MB), output {out.shape}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_common.HelpFormatter)
    p.add_argument("--steps", type=int, default=50, help="training steps per timed window")
    p.add_argument("--windows", type=int, default=1, help="timed windows per subprocess run")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first, in every run")
    p.add_argument("--profile", action="store_true", help="cutedl only: per-layer times and cProfile top entries")
    p.add_argument("--top", type=int, default=25, help="cProfile entries printed with --profile")
    p.add_argument("--predict", action="store_true", help="cutedl only: peak RSS of predicting the test set")
    p.add_argument("--predict-batch", type=int, default=None, help="batch_size of --predict (default: Model's)")
    _common.add_args(p)
    args = p.parse_args(argv)
    if min(args.steps, args.windows, args.warmup) < 1:
        p.error("--steps, --windows and --warmup must be >= 1")
    if args.profile or args.predict:
        import threadpoolctl   # directly, so that --baseline trees without cutedl.threads work too

        threadpoolctl.threadpool_limits(limits=args.threads)
        profile(args) if args.profile else predict_rss(args)
        return {}
    argv = [a for a in (sys.argv[1:] if argv is None else argv)]
    return _common.main_loop(__file__, argv, run_child, args, unit="s/100 steps", scale=100 / args.steps)


if __name__ == "__main__":
    main()
