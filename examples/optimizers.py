"""Seven optimizers on the MNIST MLP, over several seeds, paired by seed.

SGD, Momentum, Adagrad, RMSProp, Adadelta, Adam and AdamW each train the MLP 784-400-100-10
(ReLU) for ``--epochs`` epochs, once per seed (``--seeds N``, default 5) with
:func:`cutedl.experiments.repeat` (``--processes`` runs in parallel). For a given seed every
optimizer starts from the same initial weights and sees the same batches in the same order, so
the optimizer is the only difference and :func:`cutedl.experiments.compare` pairs runs by seed.
The table gives the final val_accuracy and val_loss as "mean +- CI over N seeds" (95 %, Student's
t), and the paired difference of each optimizer from Adam; ``reports/optimizers.png`` draws mean
curves with bands (:func:`cutedl.reports.compare_report`).

    python examples/optimizers.py                            # 20,000 training images, 10 epochs, 5 seeds
    python examples/optimizers.py --optimizers sgd adam --epochs 20 --seeds 10
    python examples/optimizers.py --set-lr sgd=0.2 --set-lr adam=0.0005

The default learning rates are ones that work for this model, not each optimizer's library
default (Adadelta's Keras default of 0.001 barely moves; 1.0 is the original paper's).
"""
from __future__ import annotations

import argparse
import functools
import time

from cutedl import Dataset, Model, Session, datasets, experiments, layers, losses, optimizers, reports

# name -> (class, default lr for this model)
OPTIMIZERS = {
    "sgd": (optimizers.SGD, 0.1),
    "momentum": (optimizers.Momentum, 0.05),
    "adagrad": (optimizers.Adagrad, 0.05),
    "rmsprop": (optimizers.RMSProp, 0.001),
    "adadelta": (optimizers.Adadelta, 1.0),
    "adam": (optimizers.Adam, 0.001),
    "adamw": (optimizers.AdamW, 0.001),
}


def build_model() -> Model:
    return Model([
        layers.Dense(400, inshape=784, activation="relu"),
        layers.Dense(100, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ]).assemble()


def _parse_set_lr(items) -> dict:
    """``['sgd=0.2', 'adam=5e-4']`` -> ``{'sgd': 0.2, 'adam': 0.0005}``, with helpful errors."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in OPTIMIZERS:
            raise ValueError(f"--set-lr expects NAME=LR with NAME one of {', '.join(OPTIMIZERS)}, got {item!r}.")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--set-lr {item!r}: {value!r} is not a number.") from None
    return out


_DATA: dict = {}


def load_data(limit):
    """MNIST vectors, loaded once per process (each worker of ``repeat`` loads its own)."""
    if limit not in _DATA:
        _DATA[limit] = datasets.mnist.load_vectors(limit=limit or None)
    return _DATA[limit]


def build_run(seed, name, lr, epochs, batch_size, limit, verbose):
    """``experiments.repeat``'s build: the seed fixes the initial weights and the batch order."""
    (x_train, y_train), (x_val, y_val), _ = load_data(limit)
    model = build_model()  # repeat seeded cutedl with ``seed``: same weights for every optimizer
    cls = OPTIMIZERS[name][0]
    sess = Session(model, loss=losses.CategoricalCrossentropy(), optimizer=cls(lr), metrics=["accuracy"])
    return sess, dict(data=Dataset(x_train, y_train, batch_size=batch_size, seed=seed), epochs=epochs,
                      val_data=Dataset(x_val, y_val, batch_size=1000, shuffle=False), verbose=verbose)


def _ci(summary) -> str:
    return f"{summary.mean:.4f} +- {summary.half_width:.4f}" if summary.n > 1 else f"{summary.mean:.4f}"


def format_table(rows: list, seeds: int) -> str:
    header = f"{'optimizer':<10} {'lr':>8} {'final val_accuracy':>20} {'final val_loss':>18} {'seconds':>8}"
    lines = [f"mean +- CI (95 %) over {seeds} seeds", header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['optimizer']:<10} {r['lr']:>8g} {r['val_accuracy_text']:>20} {r['val_loss_text']:>18} "
                     f"{r['seconds']:>8.1f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None,
                   help="one learning rate for every optimizer (default: each optimizer's own, see OPTIMIZERS)")
    p.add_argument("--set-lr", action="append", metavar="NAME=LR", help="learning rate of one optimizer")
    p.add_argument("--seed", type=int, default=0, help="first seed; the runs use seed, seed + 1, ...")
    p.add_argument("--seeds", type=int, default=5, help="runs per optimizer")
    p.add_argument("--processes", type=int, default=2, help="runs in parallel (1: one after the other)")
    p.add_argument("--limit", type=int, default=20000, help="training images to use (0: all 55,000)")
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS),
                   metavar="NAME", help=f"which to compare (default all: {' '.join(OPTIMIZERS)})")
    p.add_argument("--report", default="reports/optimizers.png")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads per run (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    set_lr = _parse_set_lr(args.set_lr)
    names = list(dict.fromkeys(args.optimizers))  # a name given twice runs once
    seeds = range(args.seed, args.seed + args.seeds)

    runs, rows = {}, []
    for name in names:
        cls, default_lr = OPTIMIZERS[name]
        lr = set_lr.get(name, args.lr if args.lr is not None else default_lr)
        build = functools.partial(build_run, name=name, lr=lr, epochs=args.epochs, batch_size=args.batch_size,
                                  limit=args.limit, verbose=args.verbose)
        t0 = time.perf_counter()
        label = f"{cls.__name__} lr={lr:g}"
        runs[label] = experiments.repeat(build, seeds=seeds, processes=args.processes, threads=args.threads)
        for failed in runs[label].failures:
            print(f"{label}: seed {failed.seed} failed:\n{failed.error}")
        rows.append({"optimizer": cls.__name__, "lr": lr, "label": label, "seconds": time.perf_counter() - t0})
        if args.verbose:
            print(f"{label}: {runs[label]}")

    accuracy = experiments.compare(runs, metric="val_accuracy", at="last",
                                   baseline=next((r["label"] for r in rows if r["optimizer"] == "Adam"), None))
    loss = experiments.compare(runs, metric="val_loss", at="last")
    for r in rows:
        acc, vl = accuracy.settings[r["label"]], loss.settings[r["label"]]
        r.update(val_accuracy=acc.mean, val_accuracy_ci=(acc.low, acc.high), final_val_loss=vl.mean,
                 val_loss_ci=(vl.low, vl.high), val_accuracy_text=_ci(acc), val_loss_text=_ci(vl), runs=acc.n)
    limit = args.limit or 55000
    reports.compare_report(runs, args.report, keys=("val_loss", "val_accuracy"),
                           title=f"Optimizers on the MNIST MLP 784-400-100-10 ({limit} training images, "
                                 f"{args.seeds} seeds: mean and 95 % band; same initial weights and batches per seed)")
    print(format_table(rows, args.seeds))
    print()
    print(accuracy)
    print(f"report {args.report}")
    return {"rows": rows, "histories": runs, "comparison": accuracy, "report": args.report}


if __name__ == "__main__":
    main()
