"""A small CNN with BatchNormalization on CIFAR-10, optionally with random crop + flip augmentation.

Network (channels first, input 3x32x32), each convolution 3x3 'same' without bias, followed by
BatchNormalization and ReLU:

    conv 32, conv 32, max-pool 2  ->  conv 64, conv 64, max-pool 2  ->  conv 128, max-pool 2
    -> flatten -> dropout -> dense 10 softmax

Adam, early stopping on the validation loss (the last 5,000 training images), a PNG fit report
(default ``reports/cifar10_cnn.png``) and the test accuracy printed at the end.

The data is the official ``cifar-10-python.tar.gz`` (170 MB): downloaded once into
``~/.cache/cutedl/cifar10/`` when there is network, otherwise put it there yourself, or in
``$CUTEDL_DATA_DIR/cifar10/``, or pass ``--data PATH`` (the archive, its folder, or an
extracted ``cifar-10-batches-py`` folder).

    python examples/cifar10_cnn.py --augment           # full run
    python examples/cifar10_cnn.py --epochs 1 --limit 2000 --verbose 0   # a smoke run
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import cutedl
from cutedl import Dataset, Model, Session, augment, datasets, layers, listeners, losses, optimizers
from cutedl.datasets import cifar10

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def build_model(batch_norm: bool = True, dropout: float = 0.3, width: int = 32) -> Model:
    """The network above; ``batch_norm=False`` gives the same stack with biases instead of BN."""
    stack = []

    def conv(filters, **kwargs):
        stack.append(layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                                   kernel_initializer="he_normal", **kwargs))
        if batch_norm:
            stack.append(layers.BatchNormalization())
        stack.append(layers.Activation("relu"))

    conv(width, inshape=(3, 32, 32))
    conv(width)
    stack.append(layers.MaxPool2D(2))
    conv(2 * width)
    conv(2 * width)
    stack.append(layers.MaxPool2D(2))
    conv(4 * width)
    stack.append(layers.MaxPool2D(2))
    stack.append(layers.Flatten())
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(10, activation="softmax"))
    return Model(stack).assemble()


def channel_stats(x: np.ndarray):
    """Exact per-channel mean and std of uint8 images ``(n, 3, H, W)``, in [0, 1] units, shape (1, 3, 1, 1).

    Computed from a 256-bin histogram per channel, so no float copy of the images is made
    (``x.std()`` would make a float64 one: 1.1 GB for CIFAR-10's training set).
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean, std = np.empty((1, x.shape[1], 1, 1)), np.empty((1, x.shape[1], 1, 1))
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].reshape(-1), minlength=256)   # (256,) pixels per level
        m = counts @ levels / counts.sum()
        mean[0, c, 0, 0] = m
        std[0, c, 0, 0] = max(np.sqrt(counts @ (levels - m) ** 2 / counts.sum()), 1e-3)
    return mean, std


def load(path=None, val_size: int = 5000, limit: int | None = None):
    """CIFAR-10 as float32 images standardized per channel and one-hot labels, with a validation split.

    The last ``val_size`` training images (fewer on a small archive) are held out. ``limit`` keeps
    the first ``limit`` training images, ``max(limit // 4, 100)`` validation and ``max(limit, 1000)``
    test images. Statistics come from the training images only.
    """
    (x_train, y_train), (x_test, y_test) = cifar10.load_data(path)
    val_size = min(val_size, max(len(x_train) // 5, 1))
    x_val, y_val = x_train[-val_size:], y_train[-val_size:]
    x_train, y_train = x_train[:-val_size], y_train[:-val_size]
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
        n_val, n_test = max(limit // 4, 100), max(limit, 1000)
        x_val, y_val, x_test, y_test = x_val[:n_val], y_val[:n_val], x_test[:n_test], y_test[:n_test]
    mean, std = channel_stats(x_train)
    prep = lambda x: datasets.normalize(x, mean=mean, std=std)  # noqa: E731
    return ((prep(x_train), datasets.one_hot(y_train, 10)), (prep(x_val), datasets.one_hot(y_val, 10)),
            (prep(x_test), datasets.one_hot(y_test, 10)))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--augment", action="store_true", help="random crop (padding 4) + horizontal flip while training")
    p.add_argument("--no-batch-norm", action="store_true", help="the same network without BatchNormalization")
    p.add_argument("--width", type=int, default=32, help="filters of the first convolutions (doubled twice)")
    p.add_argument("--dropout", type=float, default=0.3, help="dropout before the last layer (0: none)")
    p.add_argument("--data", default=None, help="cifar-10-python.tar.gz, its folder, or an extracted folder")
    p.add_argument("--limit", type=int, default=None, help="use only this many training samples")
    p.add_argument("--report", default="reports/cifar10_cnn.png")
    p.add_argument("--save", default=None, help="save the trained model to this .npz file")
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)

    cutedl.set_seed(args.seed)
    try:
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = load(args.data, limit=args.limit)
    except OSError as err:   # DownloadError and FileNotFoundError are OSErrors
        raise SystemExit(
            f"cifar10_cnn: CIFAR-10 is not available ({err}).\n"
            f"Get the Python version of the dataset, {URL} (170 MB, md5 "
            f"c58f30108f718f92721af3b95e74349a), and put the file unchanged in "
            f"{cutedl.datasets.cache.user_cache_dir() / 'cifar10'}/, or in $CUTEDL_DATA_DIR/cifar10/, "
            f"or pass --data PATH.") from None
    batch_norm = not args.no_batch_norm
    model = build_model(batch_norm, args.dropout, args.width)
    if args.verbose:
        print(model.summary())
    transform = augment.Compose([augment.RandomCrop(4), augment.RandomFlip("horizontal")]) if args.augment else None
    sess = Session(model, loss=losses.CategoricalCrossentropy(), optimizer=optimizers.Adam(args.lr),
                   metrics=["accuracy"])
    title = (f"CIFAR-10 CNN{' + BatchNorm' if batch_norm else ''}{' + augmentation' if args.augment else ''}, "
             f"Adam {args.lr:g}")
    t0 = time.perf_counter()
    history = sess.fit(Dataset(x_train, y_train, batch_size=args.batch_size, transform=transform),
                       epochs=args.epochs, val_data=Dataset(x_val, y_val, batch_size=500, shuffle=False),
                       listeners=[listeners.EarlyStopping("val_loss", patience=args.patience),
                                  listeners.FitReport(args.report, title=title)],
                       verbose=args.verbose)
    seconds = time.perf_counter() - t0
    test = sess.evaluate(Dataset(x_test, y_test, batch_size=500, shuffle=False))
    if args.save:
        model.save(args.save)
    print(f"test accuracy {test['accuracy']:.4f}  test loss {test['loss']:.4f}  "
          f"train/val/test {len(x_train)}/{len(x_val)}/{len(x_test)}  batch_norm {batch_norm}  "
          f"augment {args.augment}  epochs {history.stopped_epoch}  stop: {history.stop_reason}  "
          f"best epoch {history.best['epoch']}  time {seconds:.1f}s  report {args.report}")
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "history": history,
            "seconds": seconds, "report": args.report, "batch_norm": batch_norm, "augment": args.augment}


if __name__ == "__main__":
    main()
