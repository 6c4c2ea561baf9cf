"""Benchmark: seconds per 100 training steps of LSTM and GRU (128 units) on MNIST rows.

The model reads each image as 28 steps of 28 pixels (batch 128): ``LSTM(128)`` or ``GRU(128)``
-> ``Dense(10, softmax)``, cross-entropy, Adam. cutedl and PyTorch CPU (``nn.LSTM`` / ``nn.GRU``,
same threads) run alternately in their own subprocesses (see bench/_common.py); the table gives
min and median s/100 steps and their ratios.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/rnn.py --threads 2
    python bench/rnn.py --rounds 5 --cells lstm --baseline /work/base
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

BATCH, UNITS = 128, 128


def _load():
    from cutedl import datasets

    (x, y), _ = datasets.mnist.load_data()
    x = datasets.normalize(x)  # (60000, 28, 28) float32: 28 steps of 28 features
    return x, y.astype("int64")


def _batches(n, count, seed=0):
    """Index arrays of ``count`` random batches (the same for both frameworks)."""
    import numpy as np

    rs = np.random.default_rng(seed)
    return [rs.choice(n, BATCH, replace=False) for _ in range(count)]


def run_cutedl(cell: str, args) -> dict:
    import cutedl
    from cutedl import Model, Session, datasets, layers, optimizers

    cutedl.set_seed(0)
    x, y = _load()
    y1 = datasets.one_hot(y, 10)
    rnn = {"lstm": layers.LSTM, "gru": layers.GRU}[cell]
    model = Model([rnn(UNITS, inshape=(28, 28)), layers.Dense(10, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(1e-3))
    batches = iter(_batches(len(x), args.warmup + args.steps * args.windows))

    def step():
        idx = next(batches)
        sess.train_on_batch(x[idx], y1[idx])

    return _common.timed_windows(step, args.warmup, args.steps, args.windows)


def run_torch(cell: str, args) -> dict:
    import torch

    torch.manual_seed(0)
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
    batches = iter([torch.from_numpy(b) for b in _batches(len(x), args.warmup + args.steps * args.windows)])

    def step():
        idx = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x[idx]), y[idx])
        loss.backward()
        opt.step()

    return _common.timed_windows(step, args.warmup, args.steps, args.windows)


def run_child(framework: str, args) -> dict:
    run = run_torch if framework == "torch" else run_cutedl
    return {cell.upper(): run(cell, args) for cell in args.cells}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_common.HelpFormatter)
    p.add_argument("--steps", type=int, default=50, help="training steps per timed window")
    p.add_argument("--windows", type=int, default=1, help="timed windows per subprocess run")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first, in every run")
    p.add_argument("--cells", nargs="+", choices=["lstm", "gru"], default=["lstm", "gru"])
    _common.add_args(p)
    args = p.parse_args(argv)
    if min(args.steps, args.windows, args.warmup) < 1:
        p.error("--steps, --windows and --warmup must be >= 1")
    argv = list(sys.argv[1:] if argv is None else argv)
    return _common.main_loop(__file__, argv, run_child, args, unit="s/100 steps", scale=100 / args.steps)


if __name__ == "__main__":
    main()
