"""Benchmark: the Embedding gradient (summing the rows of repeated ids) three ways, and PyTorch's.

For each case it times the scatter-add that ``Embedding.backward`` must do: ``np.add.at``, a
sort + ``np.add.reduceat``, and the layer's own ``backward`` (one ``np.bincount`` over (id, column)
pairs), and PyTorch's ``nn.Embedding`` backward (dense gradient) with the same threads; the
frameworks run alternately in their own subprocesses (see bench/_common.py). The table gives min
and median ms per call; the ratio row compares the layer's backward with PyTorch's.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/embedding.py --threads 2
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

# (label, vocabulary, batch, steps, embedding dim)
CASES = [("char LM", 100, 64, 64, 32), ("IMDB", 20000, 32, 200, 64), ("large", 20000, 128, 500, 128)]


def _windows(fn, args) -> dict:
    return _common.timed_windows(fn, 1, args.steps, args.windows)


def run_cutedl(args) -> dict:
    import numpy as np

    from cutedl import layers

    out = {}
    for label, vocab, batch, steps, dim in CASES:
        rs = np.random.default_rng(0)
        ids = rs.integers(0, vocab, (batch, steps))
        grad = rs.standard_normal((batch, steps, dim)).astype(np.float32)
        flat_ids, flat_grad = ids.reshape(-1), grad.reshape(-1, dim)
        buf = np.zeros((vocab, dim), np.float32)

        def add_at():
            buf.fill(0)
            np.add.at(buf, flat_ids, flat_grad)

        def sort_reduce():
            order = np.argsort(flat_ids, kind="stable")
            s = flat_ids[order]
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
            buf.fill(0)
            buf[s[starts]] = np.add.reduceat(flat_grad[order], starts, axis=0)

        emb = layers.Embedding(vocab, dim, inshape=(steps,))
        emb._build((steps,))
        emb.forward(ids, training=True)
        emb.backward(grad)
        add_at()
        if not np.allclose(emb.embeddings.grad, buf, atol=1e-3):
            raise RuntimeError(f"{label}: Embedding.backward disagrees with np.add.at")
        out[f"{label}: Embedding.backward"] = _windows(lambda: emb.backward(grad), args)
        out[f"{label}: np.add.at"] = _windows(add_at, args)
        out[f"{label}: sort+reduceat"] = _windows(sort_reduce, args)
    return out


def run_torch(args) -> dict:
    import torch

    out = {}
    for label, vocab, batch, steps, dim in CASES:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (batch, steps), generator=g)
        grad = torch.randn(batch, steps, dim, generator=g)
        emb = torch.nn.Embedding(vocab, dim)

        def step():
            emb.weight.grad = None
            emb(ids).backward(grad)

        out[f"{label}: Embedding.backward"] = _windows(step, args)
    return out


def run_child(framework: str, args) -> dict:
    return run_torch(args) if framework == "torch" else run_cutedl(args)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_common.HelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="calls per timed window")
    p.add_argument("--windows", type=int, default=5, help="timed windows per subprocess run")
    _common.add_args(p, rounds=2)
    args = p.parse_args(argv)
    if min(args.steps, args.windows) < 1:
        p.error("--steps and --windows must be >= 1")
    argv = list(sys.argv[1:] if argv is None else argv)
    return _common.main_loop(__file__, argv, run_child, args, unit="ms/call", scale=1e3 / args.steps)


if __name__ == "__main__":
    main()
