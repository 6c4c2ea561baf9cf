"""The MNIST CNN (examples/mnist_cnn.py) trained data-parallel over MPI ranks.

Every rank runs this script on the same data; each trains on its slice of every global batch
and the gradients are averaged (see :mod:`cutedl.distributed`). Rank 0 alone prints and writes
the fit report (default ``reports/distributed_mnist.png``); at the end every rank reports the
samples it trained on and rank 0 prints the throughput.

    mpiexec -n 2 python examples/distributed_mnist.py                      # 2 ranks on this machine
    mpiexec -n 2 python examples/distributed_mnist.py --epochs 1 --limit 512   # a smoke run
    python examples/distributed_mnist.py --limit 512                        # 1 process works too

Set ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` so that ranks x threads = cores.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time

import cutedl
from cutedl import Dataset, Session, distributed, listeners, losses, optimizers


def _mnist_cnn():
    """examples/mnist_cnn.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("mnist_cnn", os.path.join(os.path.dirname(__file__), "mnist_cnn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128, help="global batch, split over the ranks")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="use only this many training samples")
    p.add_argument("--report", default="reports/distributed_mnist.png")
    p.add_argument("--verbose", type=int, default=1)
    args = p.parse_args(argv)

    strategy = distributed.DataParallel()
    cnn = _mnist_cnn()
    cutedl.set_seed(args.seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = cnn.load(args.limit)
    model = cnn.build_model()
    sess = Session(model, loss=losses.CategoricalCrossentropy(), optimizer=optimizers.Adam(args.lr),
                   metrics=["accuracy"], strategy=strategy)
    t0 = time.perf_counter()
    history = sess.fit(Dataset(x_train, y_train, batch_size=args.batch_size, seed=args.seed), epochs=args.epochs,
                       val_data=Dataset(x_val, y_val, batch_size=500, shuffle=False),
                       listeners=[listeners.EarlyStopping("val_loss", patience=args.patience, restore_best_weights=True),
                                  listeners.FitReport(args.report, title=f"MNIST CNN on {strategy.size} rank(s)")],
                       verbose=args.verbose)
    seconds = time.perf_counter() - t0
    test = sess.evaluate(Dataset(x_test, y_test, batch_size=500, shuffle=False))
    counts = strategy.comm.allgather(strategy.local_samples)
    samples = sum(counts)
    if strategy.is_main():
        print(f"ranks {strategy.size}  samples per rank {counts}  total {samples}")
        print(f"test accuracy {test['accuracy']:.4f}  test loss {test['loss']:.4f}  epochs {history.stopped_epoch}  "
              f"{samples / seconds:.0f} samples/s ({samples / seconds / strategy.size:.0f} per rank)  "
              f"allreduce {1e3 * strategy.allreduce_seconds / max(strategy.allreduce_calls, 1):.2f} ms/step  "
              f"time {seconds:.1f}s  report {args.report}")
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "history": history, "seconds": seconds,
            "samples_per_rank": counts, "samples_per_s": samples / seconds, "report": args.report}


if __name__ == "__main__":
    main()
