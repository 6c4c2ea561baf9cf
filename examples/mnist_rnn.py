"""MNIST read row by row: each image is a sequence of 28 steps of 28 pixels, classified by an
LSTM and by a GRU (128 units each) followed by Dense(10, softmax).

Both train with Adam and early stopping on a validation split held out of the training images
(the last 5,000, as in examples/mnist_mlp.py); the test set is used once, at the end. Their
validation curves are overlaid in ``reports/mnist_rnn.png`` and the test accuracies printed.

    python examples/mnist_rnn.py                         # full run, >= 98% test accuracy for both
    python examples/mnist_rnn.py --cells gru --epochs 5
    python examples/mnist_rnn.py --epochs 1 --limit 1000  # a smoke run
"""
from __future__ import annotations

import argparse
import time

import cutedl
from cutedl import Dataset, Model, Session, datasets, layers, listeners, losses, optimizers, reports

CELLS = {"lstm": layers.LSTM, "gru": layers.GRU}


def build_model(cell: str, units: int = 128) -> Model:
    """``cell`` (lstm or gru) over 28 steps of 28 pixels, then Dense(10, softmax)."""
    return Model([CELLS[cell](units, inshape=(28, 28)), layers.Dense(10, activation="softmax")],
                 name=f"mnist_{cell}").assemble()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cells", nargs="+", choices=sorted(CELLS), default=["lstm", "gru"])
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="use only this many training samples")
    p.add_argument("--report", default="reports/mnist_rnn.png")
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = datasets.mnist.load_vectors(limit=args.limit)
    # (n, 784) -> (n, 28, 28): 28 time steps (rows) of 28 features (pixels)
    x_train, x_val, x_test = (a.reshape(len(a), 28, 28) for a in (x_train, x_val, x_test))
    histories, rows = {}, []
    for cell in args.cells:
        cutedl.set_seed(args.seed)
        model = build_model(cell, args.units)
        if args.verbose:
            print(model.summary())
        sess = Session(model, loss=losses.CategoricalCrossentropy(), optimizer=optimizers.Adam(args.lr),
                       metrics=["accuracy"])
        t0 = time.perf_counter()
        history = sess.fit(Dataset(x_train, y_train, batch_size=args.batch_size), epochs=args.epochs,
                           val_data=Dataset(x_val, y_val, batch_size=1000, shuffle=False),
                           listeners=[listeners.EarlyStopping("val_loss", patience=args.patience)],
                           verbose=args.verbose)
        seconds = time.perf_counter() - t0
        test = sess.evaluate(Dataset(x_test, y_test, batch_size=1000, shuffle=False))
        label = f"{cell.upper()}({args.units}): test acc {test['accuracy']:.4f}"
        histories[label] = history
        rows.append({"cell": cell, "test_accuracy": test["accuracy"], "test_loss": test["loss"],
                     "epochs": history.stopped_epoch, "best_epoch": history.best["epoch"],
                     "seconds": seconds, "params": model.count_params()})
        print(f"{cell.upper():4s} test accuracy {test['accuracy']:.4f}  test loss {test['loss']:.4f}  "
              f"epochs {history.stopped_epoch} (best {history.best['epoch']})  stop: {history.stop_reason}  "
              f"time {seconds:.0f}s ({seconds / max(history.stopped_epoch, 1):.1f}s/epoch)")
    reports.compare_report(histories, args.report, keys=("loss", "val_loss", "val_accuracy"),
                           title=f"MNIST row by row (28 steps x 28 pixels), {len(x_train)} training images")
    print(f"report {args.report}")
    return {"rows": rows, "histories": histories, "report": args.report}


if __name__ == "__main__":
    main()
