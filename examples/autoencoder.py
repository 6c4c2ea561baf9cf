"""A denoising autoencoder on MNIST (784-256-64-256-784) trained through a custom training step.

``DenoisingSession`` overrides :meth:`cutedl.Session.train_step`: every batch of clean images
gets fresh Gaussian noise (std ``--noise``, clipped to [0, 1]) on its way into the model, while
the targets stay clean; then the Session's own halves, ``compute_grads`` and ``apply_grads``,
run as in the default step. Everything else is plain ``Session.fit``: EarlyStopping restores
the best weights and a FitReport draws the loss curves plus a panel of images (rows: clean
input, noisy input, reconstruction) of the validation set. The validation images are noised once,
with a fixed seed, so ``val_loss`` measures denoising of the same corrupted images at every check.

The loss is binary crossentropy on the sigmoid outputs (the Session computes it from the
logits, stably); ``mse`` is logged as a metric. Prints the final validation loss and the loss
on the noised test set.

    python examples/autoencoder.py                            # 55,000 images, up to 15 epochs
    python examples/autoencoder.py --epochs 1 --limit 256     # a smoke run
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import time

import numpy as np

import cutedl
from cutedl import Dataset, Model, Session, backend, datasets, layers, listeners, optimizers, rng, threads


def _load_images():
    """examples/ is not a package: load the shared helpers of examples/_images.py by path."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_images.py")
    spec = importlib.util.spec_from_file_location("cutedl_examples_images", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


images = _load_images()


def add_noise(x, std: float, gen):
    """``clip(x + N(0, std), 0, 1)`` with the noise drawn from NumPy generator ``gen`` (device arrays)."""
    noisy = x + backend.normal(gen, x.shape, dtype=x.dtype, scale=std)
    return backend.xp.clip(noisy, 0.0, 1.0, out=noisy)


class DenoisingSession(Session):
    """A Session whose step trains on noisy inputs against clean targets.

    Args:
        noise: std of the Gaussian noise added to every training batch.
        *args, **kwargs: as :class:`cutedl.Session`.
    """

    def __init__(self, *args, noise: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.noise = float(noise)

    def train_step(self, batch) -> dict:
        x, y = batch  # device arrays: y is the clean image
        # The noise comes from cutedl's global generator: a training checkpoint saves its state,
        # so a fit resumed by BackupAndRestore draws the same noise. A generator kept on the
        # session itself would not be saved.
        noisy = add_noise(x, self.noise, rng.global_rng())
        loss, logs = self.compute_grads(noisy, y)
        if math.isfinite(loss):  # compute_grads leaves the grads unset for a non-finite loss
            self.apply_grads()
        return logs


def build_model() -> Model:
    """784-256-64-256-784: ReLU encoder and decoder, sigmoid output (pixel intensities)."""
    return Model([layers.Dense(256, inshape=784, activation="relu"), layers.Dense(64, activation="relu"),
                  layers.Dense(256, activation="relu"), layers.Dense(784, activation="sigmoid")]).assemble()


def image_panel(model, clean, noisy, ncols: int = 10):
    """A FitReport panel: for each ``ncols`` images, a row of clean inputs, one of noisy inputs
    and one of the model's reconstructions of the noisy ones (drawn with the current weights)."""
    def draw(ax):
        recon = model.predict(noisy)
        rows = []
        for i in range(0, len(clean), ncols):
            rows += [clean[i:i + ncols], noisy[i:i + ncols], recon[i:i + ncols]]
        images.draw_images(ax, np.concatenate(rows), ncols=ncols, row_labels=["input", "noisy", "output"] * (
            len(rows) // 3))
    return draw


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=15, help="most epochs to train (EarlyStopping may stop sooner)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="global seed (weights, data order, noise)")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads (None: leave the library's default)")
    p.add_argument("--noise", type=float, default=0.5, help="std of the Gaussian input noise")
    p.add_argument("--patience", type=int, default=3, help="EarlyStopping patience on val_loss")
    p.add_argument("--limit", type=int, default=None, help="use only this many training images")
    p.add_argument("--out", "--report", dest="out", default="reports/autoencoder.png", help="report PNG")
    p.add_argument("--verbose", type=int, default=1, help="1: progress and model summaries, 0: silent")
    args = p.parse_args(argv)

    if args.threads is not None:
        threads.set_num_threads(args.threads)
    cutedl.set_seed(args.seed)
    (x_train, _), (x_val, _), (x_test, _) = datasets.mnist.load_vectors(limit=args.limit)
    fixed = np.random.default_rng(args.seed + 1)  # the one draw of validation and test noise
    noisy_val = add_noise(backend.to_device(x_val), args.noise, fixed)
    noisy_test = add_noise(backend.to_device(x_test), args.noise, fixed)

    model = build_model()
    if args.verbose:
        print(model.summary())
    sess = DenoisingSession(model, loss="binary_crossentropy", optimizer=optimizers.Adam(args.lr),
                            metrics=["mse"], noise=args.noise)
    shown = 20  # two blocks of 10: the panel's 5:3 shape fits 6 rows of 10
    panel = ("validation: input / noisy / output",
             image_panel(model, x_val[:shown], backend.to_host(noisy_val[:shown])))
    t0 = time.perf_counter()
    history = sess.fit(Dataset(x_train, x_train, batch_size=args.batch_size), epochs=args.epochs,
                       val_data=Dataset(noisy_val, x_val, batch_size=1000, shuffle=False),
                       listeners=[listeners.EarlyStopping("val_loss", patience=args.patience,
                                                          restore_best_weights=True),
                                  listeners.FitReport(args.out, panels=[panel],
                                                      title=f"MNIST denoising autoencoder 784-256-64-256-784, "
                                                            f"noise std {args.noise}")],
                       verbose=args.verbose)
    seconds = time.perf_counter() - t0
    val = sess.evaluate(Dataset(noisy_val, x_val, batch_size=1000, shuffle=False))
    test = sess.evaluate(Dataset(noisy_test, x_test, batch_size=1000, shuffle=False))
    epochs = history.stopped_epoch
    print(f"final val_loss {val['loss']:.4f} (val mse {val['mse']:.4f})  test loss {test['loss']:.4f} "
          f"(test mse {test['mse']:.4f})  epochs {epochs}  stop: {history.stop_reason}  "
          f"time {seconds:.1f}s ({seconds / max(epochs, 1):.1f}s/epoch)  report {args.out}")
    return {"val_loss": val["loss"], "val_mse": val["mse"], "test_loss": test["loss"], "test_mse": test["mse"],
            "history": history, "seconds": seconds, "report": args.out}


if __name__ == "__main__":
    main()
