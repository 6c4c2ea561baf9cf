"""The main job: an MLP (784-400-100-10, ReLU) trained on MNIST with Adam and early stopping.

Writes a PNG fit report (default ``reports/mnist_mlp.png``) and prints the test accuracy.

    python examples/mnist_mlp.py                 # full run, ~98% test accuracy
    python examples/mnist_mlp.py --epochs 1 --limit 2000   # a smoke run
    mpiexec -n 4 python examples/mnist_mlp.py --distributed   # data-parallel over 4 ranks
"""
from __future__ import annotations

import argparse
import time


import cutedl
from cutedl import Dataset, Model, Session, datasets, distributed, layers, listeners, losses, optimizers


def build_model(dropout: float = 0.0) -> Model:
    """784-400-100-10 with ReLU; ``dropout`` > 0 adds Dropout after each hidden layer."""
    hidden = [layers.Dense(400, inshape=784, activation="relu"), layers.Dense(100, activation="relu")]
    stack = []
    for layer in hidden:
        stack.append(layer)
        if dropout:
            stack.append(layers.Dropout(dropout))
    return Model(stack + [layers.Dense(10, activation="softmax")]).assemble()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--dropout", type=float, default=0.2, help="dropout after each hidden layer (0: none)")
    p.add_argument("--limit", type=int, default=None, help="use only this many training samples")
    p.add_argument("--report", default="reports/mnist_mlp.png")
    p.add_argument("--save", default=None, help="save the trained model to this .npz file")
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    p.add_argument("--distributed", action="store_true", help="train data-parallel over the mpiexec ranks")
    args = p.parse_args(argv)
    strategy = distributed.DataParallel() if args.distributed else None
    main_rank = strategy is None or strategy.is_main()   # only rank 0 prints and saves
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)

    cutedl.set_seed(args.seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = datasets.mnist.load_vectors(limit=args.limit)
    model = build_model(args.dropout)
    if args.verbose and main_rank:
        print(model.summary())
    sess = Session(model, loss=losses.CategoricalCrossentropy(), optimizer=optimizers.Adam(args.lr),
                   metrics=["accuracy"], strategy=strategy)
    t0 = time.perf_counter()
    history = sess.fit(Dataset(x_train, y_train, batch_size=args.batch_size), epochs=args.epochs,
                       val_data=Dataset(x_val, y_val, batch_size=1000, shuffle=False), val_epochs=1,
                       listeners=[listeners.EarlyStopping("val_loss", patience=args.patience),
                                  listeners.FitReport(args.report, title="MNIST MLP 784-400-100-10, Adam")],
                       verbose=args.verbose)
    seconds = time.perf_counter() - t0
    test = sess.evaluate(Dataset(x_test, y_test, batch_size=1000, shuffle=False))
    if args.save and main_rank:
        model.save(args.save)
    if main_rank:
        print(f"test accuracy {test['accuracy']:.4f}  test loss {test['loss']:.4f}  "
              f"epochs {history.stopped_epoch}  stop: {history.stop_reason}  "
              f"best epoch {history.best['epoch']}  time {seconds:.1f}s  report {args.report}")
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "history": history,
            "seconds": seconds, "report": args.report}


if __name__ == "__main__":
    main()
