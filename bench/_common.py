"""The harness every benchmark shares: child processes, thread settings, alternating rounds, ratios.

A benchmark script defines ``run_child(framework, args) -> {case: {"times": [...], "cpu_times": [...]}}``
(seconds per window, one window = a fixed amount of work) and calls :func:`main_loop`. The
harness then

- runs each framework in its own subprocess (so peak RSS is per framework), with
  ``OMP/OPENBLAS/MKL_NUM_THREADS`` set to ``--threads``;
- alternates the frameworks ``--rounds`` times (cutedl, torch, cutedl, torch, ...), so slow
  phases of a shared machine hit both, and pools the windows of every round;
- prints, per case, the min and the median window of each framework and the ratios of both.

Frameworks: ``cutedl`` (the tree this script sits in, or whatever ``import cutedl`` finds),
``torch`` (PyTorch CPU, when installed) and, with ``--baseline PATH``, ``base``: cutedl imported
from another source tree (e.g. an older checkout) through ``PYTHONPATH``.

OpenBLAS: an environment may pin ``OPENBLAS_CORETYPE`` (and ``OPENBLAS_L2_SIZE``) for another CPU;
the children run with both unset (OpenBLAS picks the CPU's own kernels) unless
``--openblas-coretype NAME`` pins one.
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

FRAMEWORKS = ("cutedl", "torch", "base")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows each flag's default and keeps the docstring's line breaks."""


def add_args(p: argparse.ArgumentParser, rounds: int = 5) -> None:
    """The flags every benchmark takes."""
    p.add_argument("--threads", type=int, default=1,
                   help="threads of both frameworks (OMP/OPENBLAS/MKL_NUM_THREADS and torch.set_num_threads)")
    p.add_argument("--rounds", type=int, default=rounds,
                   help="alternating subprocess runs per framework; the windows of all rounds are pooled")
    p.add_argument("--only", choices=FRAMEWORKS, nargs="+", help="time these frameworks only")
    p.add_argument("--baseline", metavar="PATH", default=None,
                   help="also time cutedl imported from this source tree ('base'), e.g. an older checkout")
    p.add_argument("--openblas-coretype", metavar="NAME", default=None,
                   help="pin OPENBLAS_CORETYPE in the children (default: unset, OpenBLAS picks the CPU's kernels)")
    p.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)


def child_env(threads: int, framework: str, baseline: str | None = None, coretype: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    if framework == "base":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.abspath(baseline), env.get("PYTHONPATH")) if p)
    return env


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def frameworks(args) -> list:
    chosen = list(args.only) if args.only else ["cutedl", "torch"] + (["base"] if args.baseline else [])
    if "base" in chosen and not args.baseline:
        raise SystemExit("--only base needs --baseline PATH")
    if "torch" in chosen and not torch_available():
        chosen.remove("torch")
        print("torch is not installed (python3 -m pip install torch==2.13.0): timing cutedl only")
    return chosen


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stamp() -> tuple:
    return time.perf_counter(), time.process_time()


def timed_windows(step, warmup: int, steps: int, windows: int) -> dict:
    """Run ``step()`` ``warmup`` times, then ``windows`` windows of ``steps`` calls: wall and CPU
    seconds of each window."""
    for _ in range(warmup):
        step()
    times, cpu = [], []
    for _ in range(windows):
        w0, c0 = stamp()
        for _ in range(steps):
            step()
        w1, c1 = stamp()
        times.append(w1 - w0)
        cpu.append(c1 - c0)
    return {"times": times, "cpu_times": cpu}


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_child(script: str, framework: str, argv: list, env: dict) -> dict | None:
    cmd = [sys.executable, os.path.abspath(script)] + list(argv) + ["--child", framework]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"{framework}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(run_child, framework: str, args) -> None:
    """In a child: run the framework's cases and print them as one JSON line."""
    if framework == "torch":
        set_torch_threads(args.threads)
    result = run_child(framework, args)
    print(json.dumps({"cases": result, "peak_rss_mb": peak_rss_mb()}))


def main_loop(script: str, argv: list, run_child, args, unit: str = "s", scale: float = 1.0) -> dict:
    """Alternate the children ``args.rounds`` times and print the table.

    ``argv``: the script's own arguments to pass on to the children (without ``--child``).
    ``scale``: factor from seconds per window to the printed unit (e.g. 100 / steps).
    Returns ``{framework: {case: {"times": [...], "cpu_times": [...]}, "peak_rss_mb": ...}}``.
    """
    if args.child:
        child_main(run_child, args.child, args)
        return {}
    if args.threads < 1 or args.rounds < 1:
        raise SystemExit("--threads and --rounds must be >= 1")
    fws = frameworks(args)
    pooled: dict = {fw: {"peak_rss_mb": 0.0} for fw in fws}
    for _ in range(args.rounds):
        for fw in fws:
            env = child_env(args.threads, fw, args.baseline, args.openblas_coretype)
            res = _run_child(script, fw, argv, env)
            if res is None:
                continue
            pooled[fw]["peak_rss_mb"] = max(pooled[fw]["peak_rss_mb"], res["peak_rss_mb"])
            for case, r in res["cases"].items():
                into = pooled[fw].setdefault(case, {"times": [], "cpu_times": []})
                into["times"] += r["times"]
                into["cpu_times"] += r["cpu_times"]
    print_table(pooled, args, unit, scale)
    return pooled


def print_table(pooled: dict, args, unit: str, scale: float) -> None:
    coretype = args.openblas_coretype or "unset (auto)"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads {args.threads}, rounds {args.rounds} (alternating), OPENBLAS_CORETYPE {coretype}, "
          f"load average {load:.2f}; {unit} per window, min / median")
    fws = list(pooled)
    cases = [c for c in pooled[fws[0]] if c != "peak_rss_mb"] if fws else []
    for case in cases:
        stats = {}
        for fw in fws:
            r = pooled[fw].get(case)
            if r and r["times"]:
                t = [v * scale for v in r["times"]]
                c = [v * scale for v in r["cpu_times"]]
                stats[fw] = (min(t), statistics.median(t), statistics.median(c), len(t))
        row = f"{case:28s}"
        for fw, (mn, med, cpu, n) in stats.items():
            row += f"  {fw} {mn:7.3f} / {med:7.3f} (cpu {cpu:.3f}, n={n})"
        print(row)
        for num, den in (("cutedl", "torch"), ("base", "torch"), ("cutedl", "base")):
            if num in stats and den in stats:
                print(f"{'':28s}  {num}/{den}: {stats[num][0] / stats[den][0]:.2f}x min, "
                      f"{stats[num][1] / stats[den][1]:.2f}x median, {stats[num][2] / stats[den][2]:.2f}x cpu")
    print("peak RSS MB: " + ", ".join(f"{fw} {pooled[fw]['peak_rss_mb']:.0f}" for fw in fws))
