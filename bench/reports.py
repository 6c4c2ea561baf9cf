"""How long a fit report takes to draw: ``python3 bench/reports.py [--rows 300] [--repeats 5]``.

FitReport redraws its PNG during training and paces itself so that drawing costs at most about
10 % of training time; this prints the cost of one redraw for a History of ``--rows`` checks.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cutedl import History
from cutedl.reports import compare_report, fit_report


def history(rows: int) -> History:
    """A History of ``rows`` checks: loss falls, accuracy rises, the lr drops half-way."""
    h = History()
    for i in range(rows):
        f = 1.0 / (1 + i)
        h.append({"step": 10 * (i + 1), "epoch": i // 4 + 1, "loss": 1.0 + f, "accuracy": 1 - f,
                  "val_loss": 1.1 + f, "val_accuracy": 0.9 - f, "lr": 1e-3 if i < rows // 2 else 1e-4,
                  "time": 0.5 * i})
    return h


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rows", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="BLAS threads (default: leave as is)")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)
    h = history(args.rows)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, draw in [("fit_report", lambda path: fit_report(h, path)),
                           ("compare_report (2 runs)", lambda path: compare_report({"a": h, "b": h}, path))]:
            draw(Path(tmp) / "warm.png")
            times = []
            for i in range(args.repeats):
                start = time.perf_counter()
                draw(Path(tmp) / f"r{i}.png")
                times.append(time.perf_counter() - start)
            out[name] = statistics.median(times)
            print(f"{name}: {out[name]:.3f} s per PNG ({args.rows} checks, median of {args.repeats})")
    return out


if __name__ == "__main__":
    main()
