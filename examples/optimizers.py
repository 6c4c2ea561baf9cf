"""Seven optimizers on the MNIST MLP, from the same initial weights and the same batch order.

SGD, Momentum, Adagrad, RMSProp, Adadelta, Adam and AdamW each train the MLP 784-400-100-10
(ReLU) for ``--epochs`` epochs. The model is built once; every run starts from a copy of those
initial weights and shuffles the batches with the same seed, so the optimizer is the only
difference. val_loss and val_accuracy are overlaid in ``reports/optimizers.png``
(:func:`cutedl.reports.compare_report`) and a table is printed.

    python examples/optimizers.py                            # 20,000 training images, 10 epochs
    python examples/optimizers.py --optimizers sgd adam --epochs 20
    python examples/optimizers.py --set-lr sgd=0.2 --set-lr adam=0.0005

The default learning rates are ones that work for this model, not each optimizer's library
default (Adadelta's Keras default of 0.001 barely moves; 1.0 is the original paper's).
"""
from __future__ import annotations

import argparse
import time

import cutedl
from cutedl import Dataset, Model, Session, datasets, layers, losses, optimizers, reports

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


def format_table(rows: list) -> str:
    header = f"{'optimizer':<10} {'lr':>8} {'best val_accuracy':>17} {'(epoch)':>7} {'final val_loss':>15} " \
             f"{'seconds':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['optimizer']:<10} {r['lr']:>8g} {r['best_val_accuracy']:>17.4f} {r['best_epoch']:>7d} "
                     f"{r['final_val_loss']:>15.4f} {r['seconds']:>8.1f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None,
                   help="one learning rate for every optimizer (default: each optimizer's own, see OPTIMIZERS)")
    p.add_argument("--set-lr", action="append", metavar="NAME=LR", help="learning rate of one optimizer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=20000, help="training images to use (0: all 55,000)")
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS),
                   metavar="NAME", help=f"which to compare (default all: {' '.join(OPTIMIZERS)})")
    p.add_argument("--report", default="reports/optimizers.png")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)
    set_lr = _parse_set_lr(args.set_lr)
    names = list(dict.fromkeys(args.optimizers))  # a name given twice runs once

    cutedl.set_seed(args.seed)
    (x_train, y_train), (x_val, y_val), _ = datasets.mnist.load_vectors(limit=args.limit or None)
    model = build_model()
    initial = model.get_weights()
    val_ds = Dataset(x_val, y_val, batch_size=1000, shuffle=False)

    histories, rows = {}, []
    for name in names:
        cls, default_lr = OPTIMIZERS[name]
        lr = set_lr.get(name, args.lr if args.lr is not None else default_lr)
        model.set_weights(initial)
        # A Dataset with its own seed: every optimizer sees the same batches in the same order.
        train_ds = Dataset(x_train, y_train, batch_size=args.batch_size, seed=args.seed)
        sess = Session(model, loss=losses.CategoricalCrossentropy(), optimizer=cls(lr), metrics=["accuracy"])
        t0 = time.perf_counter()
        history = sess.fit(train_ds, epochs=args.epochs, val_data=val_ds, verbose=args.verbose)
        seconds = time.perf_counter() - t0
        label = f"{cls.__name__} lr={lr:g}"
        histories[label] = history
        acc = history["val_accuracy"]
        best = max(range(len(acc)), key=lambda i: acc[i])
        rows.append({"optimizer": cls.__name__, "lr": lr, "best_val_accuracy": acc[best],
                     "best_epoch": int(history["epoch"][best]), "final_val_loss": history["val_loss"][-1],
                     "seconds": seconds, "history": history})
        if args.verbose:
            print(f"{label}: val_accuracy {acc[-1]:.4f}  {seconds:.1f}s")

    reports.compare_report(histories, args.report, keys=("val_loss", "val_accuracy"),
                           title=f"Optimizers on the MNIST MLP 784-400-100-10 ({len(x_train)} training images, "
                                 f"same initial weights and batches)")
    print(format_table(rows))
    print(f"report {args.report}")
    return {"rows": rows, "histories": histories, "report": args.report}


if __name__ == "__main__":
    main()
