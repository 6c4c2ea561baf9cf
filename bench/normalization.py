"""Benchmark: BatchNormalization / LayerNormalization forward + backward in training mode, float32.

Times one forward and one backward per step for a few shapes, in cutedl and PyTorch CPU with the
same thread count, alternately in their own subprocesses (see bench/_common.py); the table gives
min and median ms per step over the windows and their ratios.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/normalization.py --threads 2
    python bench/normalization.py --steps 20 --windows 5 --rounds 3 --baseline /work/base

Steps of a few ms are often preempted on a loaded machine: the min is the steadier figure there,
and with ``--threads 1`` so is the CPU-time median.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

# (layer, input shape incl. batch): conv maps (channel axis 1), dense features, a sequence
CASES = [("batch_norm", (64, 32, 28, 28)), ("batch_norm", (128, 64, 16, 16)), ("batch_norm", (256, 1024)),
         ("layer_norm", (64, 50, 512))]


def _key(kind, shape) -> str:
    return f"{kind} {shape}"


def run_cutedl(args) -> dict:
    import numpy as np

    from cutedl.layers import BatchNormalization, LayerNormalization

    out = {}
    for kind, shape in CASES:
        rs = np.random.default_rng(0)
        x = rs.standard_normal(shape, dtype=np.float32)
        g = rs.standard_normal(shape, dtype=np.float32)
        layer = BatchNormalization() if kind == "batch_norm" else LayerNormalization()
        layer._build(shape[1:])

        def step():
            layer.forward(x, training=True)
            layer.backward(g)

        out[_key(kind, shape)] = _common.timed_windows(step, args.warmup, args.steps, args.windows)
    return out


def run_torch(args) -> dict:
    import torch

    out = {}
    for kind, shape in CASES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=gen, requires_grad=True)
        g = torch.randn(shape, generator=gen)
        if kind == "layer_norm":
            layer = torch.nn.LayerNorm(shape[-1], eps=1e-3)
        else:
            layer = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(shape[1], eps=1e-3,
                                                                                        momentum=0.01)
        layer.train()

        def step():
            x.grad = None
            layer(x).backward(g)

        out[_key(kind, shape)] = _common.timed_windows(step, args.warmup, args.steps, args.windows)
    return out


def run_child(framework: str, args) -> dict:
    return run_torch(args) if framework == "torch" else run_cutedl(args)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_common.HelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="forward+backward steps per timed window")
    p.add_argument("--windows", type=int, default=5, help="timed windows per subprocess run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first, per case")
    _common.add_args(p, rounds=3)
    args = p.parse_args(argv)
    if min(args.steps, args.windows, args.warmup) < 1:
        p.error("--steps, --windows and --warmup must be >= 1")
    argv = list(sys.argv[1:] if argv is None else argv)
    return _common.main_loop(__file__, argv, run_child, args, unit="ms/step", scale=1e3 / args.steps)


if __name__ == "__main__":
    main()
