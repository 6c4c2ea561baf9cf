"""The CIFAR-10 model of a TensorFlow tutorial (69.7 % test accuracy), rebuilt faithfully, bugs included.

The tutorial's network, channels first, input 3x32x32 in [0, 1]:

    conv 5x5 3->64 'same', ReLU, + bias      weights truncated normal stddev 5e-2, L2 0.005
    max-pool 3x3 stride 2 'same'              -> 64x16x16
    LRN(depth_radius=4, bias=1.0, alpha=0.001/9, beta=0.75)
    conv 5x5 64->64 'same', ReLU, + bias     same init, L2 0.005
    max-pool 2x2 'same'                        -> 64x8x8
    (an LRN whose output the tutorial never uses: left out, it changes nothing)
    flatten -> dense 8*8*64->256 ReLU (L2 0.004) -> dense 256->10 ReLU (L2 0.004) -> softmax

    loss = softmax crossentropy *on logits* applied to the softmax output (a double softmax)
           + the L2 terms;  Adam 1e-4, batch 64, train/validation/test 49,000/1,000/10,000.

How the oddities are rebuilt:

- "bias added after the ReLU": the convolutions have ``use_bias=False, activation='relu'`` and are
  followed by :class:`ChannelBias`, a small layer of this script that adds a learned bias per
  channel (``relu(conv(x)) + b``).
- The double softmax: the model ends in :class:`PlainSoftmax`, a softmax written as a plain layer,
  and the loss is ``SparseCategoricalCrossentropy(from_logits=True)``, so the loss applies a
  second softmax to the probabilities. (With ``Activation('softmax')`` a Session would refuse
  ``from_logits=True``, naming the double softmax, which is exactly the bug to reproduce.) The
  ReLU on the logits is the second Dense's ``activation='relu'``.
- L2: TensorFlow's ``wd * tf.nn.l2_loss(w)`` is ``wd * sum(w**2) / 2``, so the tutorial's 0.005 and
  0.004 are ``regularizers.L2(0.0025)`` and ``L2(0.002)`` here (cutedl's L2 is ``l2 * sum(w**2)``).
- Initial values the tutorial description leaves open are TensorFlow's CIFAR-10 tutorial ones:
  conv biases 0.0 (first) and 0.1 (second), dense weights truncated normal stddev 0.04 and
  biases 0.1. Inputs are pixels / 255.

``--fixed`` removes both bugs: the last Dense is linear (no ReLU on the logits) and the softmax is
applied once (a softmax output with the crossentropy on probabilities, which the Session computes
from the logits). Everything else is the same.

    python examples/cifar10_tf_tutorial.py                   # the tutorial as published
    python examples/cifar10_tf_tutorial.py --fixed           # without the two bugs
    python examples/cifar10_tf_tutorial.py --epochs 1 --limit 2000 --verbose 0   # a smoke run
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import cutedl
from cutedl import (Dataset, Model, Session, activations, initializers, layers, listeners, losses, optimizers,
                    regularizers)
from cutedl.datasets import cifar10

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class ChannelBias(layers.Layer):
    """``x + b[c]``: a learned bias per channel of ``(batch, C, H, W)`` (added after the ReLU, as the tutorial).

    Not registered with ``cutedl.layers.register`` (the registry is global and this is an example's
    layer); a Model holding it is saved and loaded with ``custom_objects={'ChannelBias': ChannelBias}``.
    """

    def __init__(self, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, inshape):
        self.bias = self.add_param("bias", (inshape[0],), self.bias_initializer)
        self.outshape = tuple(inshape)

    def forward(self, x, training=False):
        self.check_input(x)
        return x + self.bias.value.reshape(1, -1, 1, 1)

    def backward(self, grad):
        self.bias.grad = grad.sum(axis=(0, 2, 3)).astype(self.bias.dtype)   # (C,)
        return grad

    def get_config(self):
        cfg = super().get_config()
        cfg["bias_initializer"] = initializers.registry.serialize(self.bias_initializer)
        return cfg


class PlainSoftmax(layers.Layer):
    """softmax over the last axis as a plain layer: the Session sees no softmax *activation*, so it
    neither fuses it into the loss nor refuses ``from_logits=True`` after it (the double softmax)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._softmax = activations.get("softmax")

    def forward(self, x, training=False):
        self.check_input(x)
        self._x, self._y = x, self._softmax.forward(x)
        return self._y

    def backward(self, grad):
        return self._softmax.backward(self._x, self._y, grad)


def build_model(fixed: bool = False) -> Model:
    """The network above; ``fixed=True``: linear logits and a single softmax."""
    conv_init = initializers.TruncatedNormal(stddev=5e-2)
    dense_init = initializers.TruncatedNormal(stddev=0.04)
    conv_l2, dense_l2 = regularizers.L2(0.005 / 2), regularizers.L2(0.004 / 2)   # TF's l2_loss halves
    stack = [
        layers.Conv2D(64, 5, padding="same", activation="relu", use_bias=False, kernel_initializer=conv_init,
                      kernel_regularizer=conv_l2, inshape=(3, 32, 32)),
        ChannelBias(initializers.Constant(0.0)),
        layers.MaxPool2D(3, strides=2, padding="same"),
        layers.LocalResponseNormalization(depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75),
        layers.Conv2D(64, 5, padding="same", activation="relu", use_bias=False, kernel_initializer=conv_init,
                      kernel_regularizer=conv_l2),
        ChannelBias(initializers.Constant(0.1)),
        layers.MaxPool2D(2, padding="same"),
        layers.Flatten(),
        layers.Dense(256, activation="relu", kernel_initializer=dense_init, bias_initializer=initializers.Constant(0.1),
                     kernel_regularizer=dense_l2),
    ]
    if fixed:
        stack.append(layers.Dense(10, activation="softmax", kernel_initializer=dense_init,
                                  bias_initializer=initializers.Constant(0.1), kernel_regularizer=dense_l2))
    else:
        stack += [layers.Dense(10, activation="relu", kernel_initializer=dense_init,
                               bias_initializer=initializers.Constant(0.1), kernel_regularizer=dense_l2),
                  PlainSoftmax()]
    return Model(stack).assemble()


def load(path=None, val_size: int = 1000, limit: int | None = None):
    """Pixels / 255 as float32 and int labels, ``(train, val, test)``: the last ``val_size`` training
    images are the validation set (49k/1k/10k; at most a fifth of a small archive). ``limit`` keeps
    the first ``limit`` training images and ``max(limit, 1000)`` test images."""
    (x_train, y_train), (x_test, y_test) = cifar10.load_data(path)
    val_size = min(val_size, max(len(x_train) // 5, 1))
    x_val, y_val = x_train[-val_size:], y_train[-val_size:]
    x_train, y_train = x_train[:-val_size], y_train[:-val_size]
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:max(limit, 1000)], y_test[:max(limit, 1000)]

    def prep(x):
        return x.astype(np.float32) / 255.0

    return ((prep(x_train), y_train.astype(np.int64)), (prep(x_val), y_val.astype(np.int64)),
            (prep(x_test), y_test.astype(np.int64)))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fixed", action="store_true", help="no ReLU on the logits, a single softmax")
    p.add_argument("--data", default=None, help="cifar-10-python.tar.gz, its folder, or an extracted folder")
    p.add_argument("--limit", type=int, default=None, help="use only this many training samples")
    p.add_argument("--report", default="reports/cifar10_tf_tutorial.png")
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
        raise SystemExit(f"cifar10_tf_tutorial: CIFAR-10 is not available ({err}). Get {URL} (170 MB) and put it "
                         f"in {cutedl.datasets.cache.user_cache_dir() / 'cifar10'}/, or in "
                         f"$CUTEDL_DATA_DIR/cifar10/, or pass --data PATH.") from None
    model = build_model(args.fixed)
    if args.verbose:
        print(model.summary())
    # the tutorial: crossentropy on logits of the softmax output; fixed: on the probabilities
    loss = losses.SparseCategoricalCrossentropy(from_logits=not args.fixed)
    sess = Session(model, loss=loss, optimizer=optimizers.Adam(args.lr), metrics=["accuracy"])
    variant = "fixed (linear logits, one softmax)" if args.fixed else "as published (ReLU logits, double softmax)"
    t0 = time.perf_counter()
    history = sess.fit(Dataset(x_train, y_train, batch_size=args.batch_size), epochs=args.epochs,
                       val_data=Dataset(x_val, y_val, batch_size=500, shuffle=False),
                       listeners=[listeners.FitReport(args.report, title=f"CIFAR-10 TF tutorial model, {variant}")],
                       verbose=args.verbose)
    seconds = time.perf_counter() - t0
    test = sess.evaluate(Dataset(x_test, y_test, batch_size=500, shuffle=False))
    print(f"{variant}: test accuracy {test['accuracy']:.4f}  test loss {test['loss']:.4f}  "
          f"train/val/test {len(x_train)}/{len(x_val)}/{len(x_test)}  epochs {history.stopped_epoch}  "
          f"time {seconds:.1f}s  report {args.report}")
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "history": history, "seconds": seconds,
            "fixed": args.fixed, "report": args.report}


if __name__ == "__main__":
    main()
