"""Benchmark: seconds per epoch and peak RSS of the MNIST MLP (784-400-100-10, batch 128, Adam).

cutedl and PyTorch CPU (same threads) run alternately in their own subprocesses (see
bench/_common.py); the table gives min and median s/epoch and their ratios.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/mlp.py --threads 2
    python bench/mlp.py --rounds 5 --windows 2
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402


def _load():
    from cutedl import datasets

    (x, y), _ = datasets.mnist.load_data()
    x = datasets.normalize(x.reshape(len(x), -1))
    return x, y.astype("int64")


def run_cutedl(args) -> dict:
    import cutedl
    from cutedl import Dataset, Model, Session, datasets, layers, listeners, optimizers

    cutedl.set_seed(0)
    x, y = _load()
    y1 = datasets.one_hot(y, 10)
    model = Model([layers.Dense(400, inshape=784, activation="relu"), layers.Dense(100, activation="relu"),
                   layers.Dense(10, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(1e-3))
    stamps = []
    timer = listeners.LambdaListener(on_epoch_start=lambda e, logs: stamps.append(_common.stamp()),
                                     on_epoch_end=lambda e, logs: stamps.append(_common.stamp()))
    sess.fit(Dataset(x, y1, batch_size=128), epochs=args.windows + 1, listeners=[timer], verbose=0)
    spans = [(stamps[i], stamps[i + 1]) for i in range(2, len(stamps), 2)]   # the first epoch warms up
    return {"mlp epoch": {"times": [b[0] - a[0] for a, b in spans], "cpu_times": [b[1] - a[1] for a, b in spans]}}


def run_torch(args) -> dict:
    import numpy as np
    import torch

    torch.manual_seed(0)
    x, y = _load()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = torch.nn.Sequential(torch.nn.Linear(784, 400), torch.nn.ReLU(), torch.nn.Linear(400, 100),
                                torch.nn.ReLU(), torch.nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    n = len(x)

    def epoch():
        perm = torch.from_numpy(np.random.permutation(n))
        for i in range(0, n, 128):
            idx = perm[i:i + 128]
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x[idx]), y[idx])
            loss.backward()
            opt.step()

    return {"mlp epoch": _common.timed_windows(epoch, 1, 1, args.windows)}


def run_child(framework: str, args) -> dict:
    return run_torch(args) if framework == "torch" else run_cutedl(args)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_common.HelpFormatter)
    p.add_argument("--windows", type=int, default=1, help="timed epochs per subprocess run (after a warm-up epoch)")
    _common.add_args(p)
    args = p.parse_args(argv)
    if args.windows < 1:
        p.error("--windows must be >= 1")
    argv = list(sys.argv[1:] if argv is None else argv)
    return _common.main_loop(__file__, argv, run_child, args, unit="s/epoch")


if __name__ == "__main__":
    main()
