"""Benchmark: BatchNormalization / LayerNormalization forward + backward in training mode, float32.

Times one forward and one backward per step (ms, median of the timed steps) for a few shapes,
in cutedl and, when torch is installed, in PyTorch CPU with the same thread count; each framework
runs in its own subprocess. Prints the ratio measured in this run.

    python bench/normalization.py                 # 30 timed steps per shape
    python bench/normalization.py --steps 50 --threads 2 --rounds 3

On a busy machine single runs swing by 2x or more; ``--rounds N`` runs the two subprocesses N
times, alternating, and keeps each framework's fastest median per shape. The CPU-time column
(process time, all threads) leaves out the time a step spends preempted by other processes; a
step of a few ms is preempted often on a loaded machine, so with ``--threads 1`` the CPU ratio
is the steadier figure (with more threads it also counts BLAS threads spinning).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (layer, input shape incl. batch): conv maps (channel axis 1), dense features, a sequence
CASES = [("batch_norm", (64, 32, 28, 28)), ("batch_norm", (128, 64, 16, 16)), ("batch_norm", (256, 1024)),
         ("layer_norm", (64, 50, 512))]


def _time(step, steps: int) -> list:
    """[wall, cpu]: median ms per step of wall-clock time and of this process's CPU time."""
    for _ in range(3):
        step()
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return [statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3]


def run_cutedl(steps: int) -> dict:
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

        out[f"{kind} {shape}"] = _time(step, steps)
    return out


def run_torch(steps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
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

        out[f"{kind} {shape}"] = _time(step, steps)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=1, help="alternating runs of each framework; best median kept")
    p.add_argument("--child", choices=["cutedl", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        res = run_cutedl(args.steps) if args.child == "cutedl" else run_torch(args.steps, args.threads)
        print(json.dumps(res))
        return res
    try:
        import torch  # noqa: F401
        frameworks = ["cutedl", "torch"]
    except ImportError:
        frameworks = ["cutedl"]
        print("torch is not installed (pip install torch==2.13.0): timing cutedl only")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    results = {}
    for _ in range(max(1, args.rounds)):
        for fw in frameworks:
            proc = subprocess.run([sys.executable, __file__, "--child", fw, "--steps", str(args.steps),
                                   "--threads", str(args.threads)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{fw}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            best = results.setdefault(fw, run)
            for key, ms in run.items():
                best[key] = [min(a, b) for a, b in zip(best[key], ms)]
    print(f"forward + backward, training mode, float32, median ms per step, wall / cpu (best of "
          f"{max(1, args.rounds)} runs), {args.threads} threads")
    for key in results.get("cutedl", {}):
        (cw, cc) = results["cutedl"][key]
        row = f"{key:30s} cutedl {cw:6.2f} / {cc:6.2f}"
        if "torch" in results:
            tw, tc = results["torch"][key]
            row += f"   torch {tw:6.2f} / {tc:6.2f}   ratio {cw / tw:.2f}x / {cc / tc:.2f}x"
        print(row)
    return results


if __name__ == "__main__":
    main()
