"""A small MNIST GAN (MLP generator and discriminator) trained by ``Session.fit`` with a custom step.

The Session trains the generator G (z(64) -> 256 leaky ReLU -> 784 tanh) with its Adam; the
discriminator D (784 -> 256 leaky ReLU -> 1 logit) and D's own Adam are registered with
``session.track(...)``, so a BackupAndRestore checkpoint saves and resumes all four. One
``train_step`` function (``Session(..., train_step=gan_step)``) does per batch:

1. D step: fake = G(z); D sees real images (label 1) and fakes (label 0) in one batch of 2n;
   binary crossentropy on the logits; ``session.apply_grads(D's params, D's optimizer)``.
2. G step, non-saturating loss -log D(G(z)): the same fakes through the updated D with label 1;
   ``D.backward(..., input_grad=True)`` gives dL/dfake, ``G.backward`` takes it from there and
   ``session.apply_grads()`` updates G (D's grads from this pass are never applied).

The data is a Dataset of ``(z, image)`` pairs: images scaled to [-1, 1] as the labels, and a
transform (:class:`Latent`) that draws fresh N(0, 1) latent vectors for every batch in place of
the stored placeholders (its generator is part of the dataset, so checkpoints save it too).
The step logs ``d_loss``, ``g_loss``, and D's accuracy on the real (``d_acc_real``) and fake
(``d_acc_fake``) halves. At each check, :class:`SampleGrid` draws G(z) for 64 fixed z and
redraws the report PNG: the loss and accuracy curves and the sample grids of the last checks.

    python examples/gan.py                               # 55,000 images, 10 epochs
    python examples/gan.py --epochs 1 --limit 256        # a smoke run
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np

import cutedl
from cutedl import Dataset, Model, Session, backend, datasets, layers, listeners, losses, optimizers, rng, threads
from cutedl.listeners.base import check_fields, restore_fields


def _load_images():
    """examples/ is not a package: load the shared helpers of examples/_images.py by path."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_images.py")
    spec = importlib.util.spec_from_file_location("cutedl_examples_images", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


images = _load_images()

LATENT = 64


class Latent:
    """Dataset transform: a batch of fresh N(0, 1) latent vectors in place of the input batch.

    The generator is an attribute, so training checkpoints find and save it with the dataset's.
    """

    def __init__(self, seed=None):
        self.rng = rng.make_rng(seed)

    def __call__(self, x):
        return self.rng.standard_normal(x.shape, dtype=np.float32)  # (batch, LATENT)

    def __repr__(self) -> str:
        return "Latent()"


def build_generator(hidden: int = 256) -> Model:
    """z (LATENT) -> hidden, leaky ReLU -> 784, tanh (pixels in [-1, 1])."""
    return Model([layers.Dense(hidden, inshape=LATENT, activation="leaky_relu"),
                  layers.Dense(784, activation="tanh")], name="generator").assemble()


def build_discriminator(hidden: int = 256) -> Model:
    """784 -> hidden, leaky ReLU -> 1 logit (no sigmoid: the losses take logits)."""
    return Model([layers.Dense(hidden, inshape=784, activation="leaky_relu"), layers.Dense(1)],
                 name="discriminator").assemble()


def gan_step(session, batch) -> dict:
    """One D update then one G update on ``batch = (z, real)``; returns the logs (host floats)."""
    z, real = batch                                     # (n, LATENT), (n, 784) device arrays
    g, d = session.model, session.tracked["discriminator"]
    xp, n = backend.xp, len(real)
    bce = losses.BinaryCrossentropy(from_logits=True)

    # D step: real -> 1, fake -> 0, one batch of 2n. G's forward cache is kept for the G step.
    fake = g.forward(z, training=True)                  # (n, LATENT) -> (n, 784)
    both = xp.concatenate([real, fake])                 # (2n, 784)
    labels = xp.concatenate([xp.ones((n, 1), dtype=real.dtype), xp.zeros((n, 1), dtype=real.dtype)])
    logits = d.forward(both, training=True)             # (2n, 784) -> (2n, 1)
    d_loss = bce(labels, logits)                        # mean over real and fake
    d.backward(bce.backward())
    session.apply_grads(d.trainable_params, session.tracked["d_optimizer"])
    acc_real = backend.item(xp.mean(logits[:n] > 0))
    acc_fake = backend.item(xp.mean(logits[n:] < 0))

    # G step (non-saturating): maximise log D(G(z)), i.e. label the fakes 1 for the updated D.
    fake_logits = d.forward(fake, training=True)        # (n, 784) -> (n, 1)
    g_loss = bce(xp.ones((n, 1), dtype=real.dtype), fake_logits)
    grad_fake = d.backward(bce.backward(), input_grad=True)  # dL/dfake (n, 784); D's grads are not applied
    g.backward(grad_fake)
    session.apply_grads()                               # G's params with the session's optimizer
    # Each batch weighs its n samples in the means of a check (the default).
    return {"d_loss": d_loss, "g_loss": g_loss, "d_acc_real": acc_real, "d_acc_fake": acc_fake}


def build_session(lr: float = 1e-3, beta_1: float = 0.5, hidden: int = 256) -> Session:
    """The GAN's Session: G as the model, D and its optimizer tracked, :func:`gan_step` as the step.

    The GAN step computes its own losses, so the Session has none; ``log_keys`` names what the
    step returns, so listeners (CSVLogger, EarlyStopping on 'g_loss') see those keys from the start.
    """
    g, d = build_generator(hidden), build_discriminator(hidden)
    g_opt, d_opt = optimizers.Adam(lr, beta_1=beta_1), optimizers.Adam(lr, beta_1=beta_1)
    return Session(g, optimizer=g_opt, train_step=gan_step,
                   log_keys=["d_loss", "g_loss", "d_acc_real", "d_acc_fake"]).track(discriminator=d, d_optimizer=d_opt)


def gan_data(x, batch_size: int, seed=None) -> Dataset:
    """``(z, image)`` pairs: MNIST images ``x`` in [0, 1] scaled to [-1, 1], z drawn per batch."""
    placeholders = np.zeros((len(x), LATENT), dtype=np.float32)
    return Dataset(placeholders, x * 2.0 - 1.0, batch_size=batch_size, transform=Latent(seed))


_GRID_STATE = {"checks": "list", "samples": "arrays?"}


class SampleGrid(listeners.Listener):
    """At each check, generate from fixed latent vectors and redraw the GAN's report PNG.

    The PNG has the d_loss / g_loss and D-accuracy curves of the History and one grid of samples
    per check for the last ``keep`` checks (the same z every time, so the grids show one set of
    samples evolving). The grids are listener state: a resumed fit redraws them too.

    Args:
        path: PNG to (re)write.
        z: ``(k, LATENT)`` fixed latent vectors (64 gives an 8 x 8 grid).
        keep: grids shown, the latest checks.
        title: figure title.
    """

    def __init__(self, path, z, keep: int = 4, title: str = "MNIST GAN"):
        self.path, self.z, self.keep, self.title = path, np.asarray(z, dtype=np.float32), int(keep), title
        self.checks: list = []   # (epoch, step) of each grid kept
        self.samples: list = []  # (k, 784) host arrays in [0, 1]

    def on_fit_start(self, logs=None):
        self.checks, self.samples = [], []

    def on_val_end(self, step, logs=None):
        out = self.model.predict(self.z)                # (k, 784) in [-1, 1]
        self.checks.append((self.session.epoch, step))
        self.samples.append((out + 1.0) / 2.0)
        self.checks, self.samples = self.checks[-self.keep:], self.samples[-self.keep:]
        self.draw()

    def get_state(self) -> dict:
        return {"checks": [list(c) for c in self.checks], "samples": list(self.samples)}

    def check_state(self, state: dict) -> None:
        check_fields(self, state, _GRID_STATE)

    def set_state(self, state: dict) -> None:
        restore_fields(self, state, _GRID_STATE)
        self.checks = [tuple(c) for c in self.checks]

    def draw(self) -> None:
        cols = self.session.history.history
        fig = images.new_figure((3.2 * self.keep, 6.4))
        gs = fig.add_gridspec(2, 2 * self.keep, height_ratios=[1.0, 1.25], left=0.05, right=0.98, top=0.9,
                              bottom=0.02, hspace=0.3, wspace=0.6)
        fig.suptitle(self.title, fontsize=12)
        half = self.keep
        for ax, keys in ((fig.add_subplot(gs[0, :half]), ("d_loss", "g_loss")),
                         (fig.add_subplot(gs[0, half:]), ("d_acc_real", "d_acc_fake"))):
            for k in keys:
                if k in cols:
                    ax.plot(cols["step"], cols[k], marker="o" if len(cols[k]) <= 40 else None, markersize=3, label=k)
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        for i, ((epoch, step), s) in enumerate(zip(self.checks, self.samples)):
            images.draw_images(fig.add_subplot(gs[1, 2 * i:2 * i + 2]), s, title=f"epoch {epoch} (step {step})")
        images.save_png(fig, self.path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="epochs to train")
    p.add_argument("--batch-size", type=int, default=64, help="real images per step (D also sees as many fakes)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of both Adams (beta_1 0.5)")
    p.add_argument("--seed", type=int, default=0, help="global seed (weights, data order, noise)")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads (None: leave the library's default)")
    p.add_argument("--hidden", type=int, default=256, help="hidden units of G and D")
    p.add_argument("--val-steps", type=int, default=0, help="draw samples every this many steps (0: every epoch)")
    p.add_argument("--keep", type=int, default=4, help="sample grids shown in the report (the last checks)")
    p.add_argument("--limit", type=int, default=None, help="use only this many training images")
    p.add_argument("--out", "--report", dest="out", default="reports/gan.png", help="report PNG")
    p.add_argument("--verbose", type=int, default=1, help="1: progress and model summaries, 0: silent")
    args = p.parse_args(argv)

    if args.threads is not None:
        threads.set_num_threads(args.threads)
    cutedl.set_seed(args.seed)
    (x_train, _), _, _ = datasets.mnist.load_vectors(limit=args.limit)
    sess = build_session(args.lr, hidden=args.hidden)
    if args.verbose:
        print(sess.model.summary())
        print(sess.tracked["discriminator"].summary())
    z = np.random.default_rng(args.seed + 1).standard_normal((64, LATENT)).astype(np.float32)
    grid = SampleGrid(args.out, z, keep=args.keep,
                      title=f"MNIST GAN: G {LATENT}-{args.hidden}-784, D 784-{args.hidden}-1, Adam {args.lr:g}")
    t0 = time.perf_counter()
    history = sess.fit(gan_data(x_train, args.batch_size), epochs=args.epochs, val_steps=args.val_steps,
                       listeners=[grid], verbose=args.verbose)
    seconds = time.perf_counter() - t0
    last = history.last()
    print(f"d_loss {last['d_loss']:.4f}  g_loss {last['g_loss']:.4f}  D accuracy real {last['d_acc_real']:.3f} "
          f"fake {last['d_acc_fake']:.3f}  epochs {history.stopped_epoch}  steps {history.stopped_step}  "
          f"time {seconds:.1f}s ({seconds / max(history.stopped_epoch, 1):.1f}s/epoch)  report {args.out}")
    return {"history": history, "seconds": seconds, "report": args.out, "samples": grid.samples[-1],
            **{k: last[k] for k in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake")}}


if __name__ == "__main__":
    main()
