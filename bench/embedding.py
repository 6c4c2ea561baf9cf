"""Benchmark: the Embedding gradient (summing the rows of repeated ids) three ways, and PyTorch's.

For each case it times, in one process, the scatter-add that ``Embedding.backward`` must do:
``np.add.at``, a sort + ``np.add.reduceat``, and the layer's own ``backward`` (one ``np.bincount``
over (id, column) pairs). When torch is installed it also times ``nn.Embedding``'s backward
(dense gradient) in a subprocess with the same number of threads. It prints milliseconds per
call (median of ``--repeat``) and the ratio to the layer.

    python bench/embedding.py
    python bench/embedding.py --repeat 21 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (label, vocabulary, batch, steps, embedding dim)
CASES = [("char LM", 100, 64, 64, 32), ("IMDB", 20000, 32, 200, 64), ("large", 20000, 128, 500, 128)]


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def run_numpy(repeat: int) -> dict:
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
        out[label] = {"np.add.at": _median_ms(add_at, repeat), "sort+reduceat": _median_ms(sort_reduce, repeat),
                      "Embedding.backward": _median_ms(lambda: emb.backward(grad), repeat)}
    return out


def run_torch(repeat: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    out = {}
    for label, vocab, batch, steps, dim in CASES:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (batch, steps), generator=g)
        grad = torch.randn(batch, steps, dim, generator=g)
        emb = torch.nn.Embedding(vocab, dim)

        def step():
            emb.weight.grad = None
            emb(ids).backward(grad)

        out[label] = {"torch nn.Embedding backward": _median_ms(step, repeat)}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        result = run_numpy(args.repeat) if args.worker == "numpy" else run_torch(args.repeat, args.threads)
        print(json.dumps(result))
        return result

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    results = {}
    for worker in ("numpy", "torch"):
        if worker == "torch":
            try:
                import torch  # noqa: F401
            except ImportError:
                print("torch not installed: PyTorch timings skipped")
                continue
        proc = subprocess.run([sys.executable, __file__, "--worker", worker, "--repeat", str(args.repeat),
                               "--threads", str(args.threads)], env=env, capture_output=True, text=True, check=True)
        for label, timings in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            results.setdefault(label, {}).update(timings)
    for label, vocab, batch, steps, dim in CASES:
        row = results[label]
        ours = row["Embedding.backward"]
        print(f"{label}: vocabulary {vocab:,}, {batch}x{steps} ids, dim {dim}")
        for name, ms in row.items():
            print(f"  {name:<30} {ms:8.2f} ms   {ms / ours:5.2f}x the layer")
    return results


if __name__ == "__main__":
    main()
