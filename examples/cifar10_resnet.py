"""ResNet-20 on CIFAR-10 (He et al., 2016, section 4.2), built with the functional API.

Network (channels first, input 3x32x32; every convolution 3x3 'same' without bias, He-normal,
followed by BatchNormalization):

    conv 16, BN, ReLU
    stage 1: 3 basic blocks of 16 filters on 32x32
    stage 2: 3 basic blocks of 32 filters on 16x16 (the first block strided)
    stage 3: 3 basic blocks of 64 filters on 8x8   (the first block strided)
    global average pooling -> dense 10 softmax

    basic block:  x -> conv, BN, ReLU -> conv, BN -> (+ shortcut) -> ReLU
    shortcut:     x itself; where the block changes the width or strides, a strided 1x1
                  convolution + BN ("projection", the paper's option B), joined by layers.Add.

``--depth 6n+2`` gives ResNet-32 (n=5), -44, -56, -110. About 0.27 M params for ResNet-20.

Training as usual for this family: SGD with Nesterov momentum 0.9, lr 0.1 decayed along a cosine
(``cutedl.schedules.CosineDecay``, per step, to 0 at the last step), batch 128, L2 5e-5 on every
kernel (the gradient term 1e-4 * w: the paper's weight decay 1e-4), random crop with 4 pixels of
zero padding + horizontal flip. Validation: the last 5,000 training images (the paper's 45k/5k
split); the test set (10,000) is scored once at the end.

Expected result (from the literature, not measured here): the paper reports 8.75 % test error
(91.25 %) for ResNet-20 after 64k steps (~180 epochs of 45k images); cosine-schedule
re-implementations report 91-92.5 %. Time per epoch on a CPU: see the README.

The data is the official ``cifar-10-python.tar.gz``, found like ``examples/cifar10_cnn.py`` finds it
(``--data PATH``, ``$CUTEDL_DATA_DIR/cifar10/``, the cache, or a download).

    python examples/cifar10_resnet.py                               # full run (days on a CPU)
    python examples/cifar10_resnet.py --epochs 1 --limit 2000       # a smoke run
    python examples/cifar10_resnet.py --time-steps 20               # time 20 steps, extrapolate an epoch
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import cutedl
from cutedl import Dataset, Model, Session, augment, layers, listeners, losses, optimizers, regularizers, schedules
from cutedl.datasets import cifar10

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# Per-channel mean and std of the CIFAR-10 training images in [0, 1] units (the usual constants).
MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32).reshape(1, 3, 1, 1)


def build_model(depth: int = 20, width: int = 16, l2: float = 5e-5, classes: int = 10) -> Model:
    """ResNet-``depth`` (``depth = 6n + 2``) for 3x32x32 images, as a functional Model."""
    if (depth - 2) % 6:
        raise ValueError(f"cifar10_resnet: depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}.")
    blocks = (depth - 2) // 6
    reg = regularizers.L2(l2) if l2 else None

    def conv(x, filters, kernel=3, strides=1):
        return layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                             kernel_initializer="he_normal", kernel_regularizer=reg)(x)

    def bn(x):
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)   # PyTorch's defaults, as the paper's code

    inputs = layers.Input((3, 32, 32))
    x = layers.Activation("relu")(bn(conv(inputs, width)))
    for stage in range(3):
        filters = width * 2 ** stage
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            h = layers.Activation("relu")(bn(conv(x, filters, 3, strides)))
            h = bn(conv(h, filters))
            shortcut = x if strides == 1 and x.shape[0] == filters else bn(conv(x, filters, 1, strides))
            x = layers.Activation("relu")(layers.Add()([h, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax", kernel_regularizer=reg)(x)
    return Model(inputs=inputs, outputs=outputs, name=f"resnet{depth}")


def load(path=None, val_size: int = 5000, limit: int | None = None):
    """Standardized float32 images and int labels: ``(train, val, test)`` pairs.

    The last ``val_size`` training images (a fifth at most, for small archives) are held out.
    ``limit`` keeps the first ``limit`` training images, ``max(limit // 4, 100)`` validation and
    ``max(limit, 1000)`` test images.
    """
    (x_train, y_train), (x_test, y_test) = cifar10.load_data(path)
    val_size = min(val_size, max(len(x_train) // 5, 1))
    x_val, y_val = x_train[-val_size:], y_train[-val_size:]
    x_train, y_train = x_train[:-val_size], y_train[:-val_size]
    if limit:
        n_val, n_test = max(limit // 4, 100), max(limit, 1000)
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_val, y_val, x_test, y_test = x_val[:n_val], y_val[:n_val], x_test[:n_test], y_test[:n_test]

    def prep(x):
        return (x.astype(np.float32) / 255.0 - MEAN) / STD

    return ((prep(x_train), y_train.astype(np.int64)), (prep(x_val), y_val.astype(np.int64)),
            (prep(x_test), y_test.astype(np.int64)))


def time_steps(model, batch_size: int, steps: int, seed: int = 0) -> dict:
    """Seconds per training step (mean of ``steps`` after one warm-up step) on random batches."""
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((batch_size * (steps + 1), 3, 32, 32)).astype(np.float32)
    y = rs.integers(0, 10, len(x))
    sess = Session(model, loss=losses.SparseCategoricalCrossentropy(), optimizer=optimizers.SGD(0.01, momentum=0.9))
    sess.fit(Dataset(x[:batch_size], y[:batch_size], batch_size=batch_size), epochs=1, verbose=0)   # warm-up
    t0 = time.perf_counter()
    sess.fit(Dataset(x[batch_size:], y[batch_size:], batch_size=batch_size), epochs=1, verbose=0)
    per_step = (time.perf_counter() - t0) / steps
    return {"seconds_per_step": per_step, "seconds_per_epoch_45k": per_step * -(-45000 // batch_size),
            "seconds_per_epoch_50k": per_step * -(-50000 // batch_size)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=180)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak lr of the cosine schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth", type=int, default=20, help="6n + 2: 20, 32, 44, 56, 110")
    p.add_argument("--width", type=int, default=16, help="filters of the first stage (doubled twice)")
    p.add_argument("--l2", type=float, default=5e-5, help="L2 factor on every kernel (0: none)")
    p.add_argument("--no-augment", action="store_true", help="train without random crop + flip")
    p.add_argument("--data", default=None, help="cifar-10-python.tar.gz, its folder, or an extracted folder")
    p.add_argument("--limit", type=int, default=None, help="use only this many training samples")
    p.add_argument("--time-steps", type=int, default=0,
                   help="only time this many training steps on random data and extrapolate an epoch")
    p.add_argument("--report", default="reports/cifar10_resnet.png")
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)
    cutedl.set_seed(args.seed)
    model = build_model(args.depth, args.width, args.l2)
    if args.time_steps:
        timing = time_steps(model, args.batch_size, args.time_steps, args.seed)
        print(f"{model.name}: {timing['seconds_per_step']:.3f} s per step of {args.batch_size}; an epoch of 45,000 "
              f"images ~{timing['seconds_per_epoch_45k'] / 60:.1f} min, of 50,000 ~"
              f"{timing['seconds_per_epoch_50k'] / 60:.1f} min (extrapolated from {args.time_steps} steps)")
        return {"timing": timing, "params": model.count_params()}
    try:
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = load(args.data, limit=args.limit)
    except OSError as err:   # DownloadError and FileNotFoundError are OSErrors
        raise SystemExit(f"cifar10_resnet: CIFAR-10 is not available ({err}). Get {URL} (170 MB) and put it in "
                         f"{cutedl.datasets.cache.user_cache_dir() / 'cifar10'}/, or in $CUTEDL_DATA_DIR/cifar10/, "
                         f"or pass --data PATH.") from None
    if args.verbose:
        print(model.summary())
    augment_ = not args.no_augment
    transform = augment.Compose([augment.RandomCrop(4), augment.RandomFlip("horizontal")]) if augment_ else None
    train = Dataset(x_train, y_train, batch_size=args.batch_size, transform=transform)
    lr = schedules.CosineDecay(args.lr, decay_steps=max(1, args.epochs * len(train)))
    sess = Session(model, loss=losses.SparseCategoricalCrossentropy(),
                   optimizer=optimizers.SGD(lr, momentum=0.9, nesterov=True), metrics=["accuracy"])
    title = (f"CIFAR-10 ResNet-{args.depth}{' + augmentation' if augment_ else ''}, SGD {args.lr:g} cosine, "
             f"batch {args.batch_size}")
    t0 = time.perf_counter()
    history = sess.fit(train, epochs=args.epochs, val_data=Dataset(x_val, y_val, batch_size=500, shuffle=False),
                       listeners=[listeners.FitReport(args.report, title=title)], verbose=args.verbose)
    seconds = time.perf_counter() - t0
    test = sess.evaluate(Dataset(x_test, y_test, batch_size=500, shuffle=False))
    print(f"test accuracy {test['accuracy']:.4f}  test loss {test['loss']:.4f}  "
          f"train/val/test {len(x_train)}/{len(x_val)}/{len(x_test)}  params {model.count_params()}  "
          f"epochs {history.stopped_epoch}  time {seconds:.1f}s ({seconds / max(history.stopped_epoch or 1, 1):.1f}s "
          f"per epoch)  report {args.report}")
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "history": history, "seconds": seconds,
            "params": model.count_params(), "report": args.report}


if __name__ == "__main__":
    main()
