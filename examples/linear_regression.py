"""Linear regression with cutedl: fit y = 3x - 2 + noise with one Dense unit and SGD.

The report has the usual loss panels plus a predictions-vs-truth panel.

    python examples/linear_regression.py
"""
from __future__ import annotations

import argparse

import numpy as np

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, optimizers

TRUE_W, TRUE_B = 3.0, -2.0


def make_data(n: int, seed: int):
    rs = np.random.default_rng(seed)
    x = rs.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    y = (TRUE_W * x + TRUE_B + 0.3 * rs.standard_normal((n, 1))).astype(np.float32)
    return x, y


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--report", default="reports/linear_regression.png")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)

    cutedl.set_seed(args.seed)
    x, y = make_data(args.samples, args.seed)
    xv, yv = make_data(max(args.samples // 4, 10), args.seed + 1)
    model = Model([layers.Dense(1, inshape=1)]).assemble()
    sess = Session(model, loss="mse", optimizer=optimizers.SGD(args.lr), metrics=["mae"])

    def truth_panel(ax):
        order = np.argsort(xv[:, 0])
        ax.scatter(xv[:, 0], yv[:, 0], s=6, alpha=0.4, label="validation data")
        ax.plot(xv[order, 0], TRUE_W * xv[order, 0] + TRUE_B, "k--", label=f"truth y={TRUE_W:g}x{TRUE_B:+g}")
        ax.plot(xv[order, 0], model.predict(xv[order])[:, 0], "r-", label="model")
        ax.legend(fontsize=8)

    history = sess.fit(Dataset(x, y, batch_size=args.batch_size), epochs=args.epochs, val_data=(xv, yv),
                       listeners=[listeners.FitReport(args.report, title="Linear regression",
                                                      panels=[("predictions vs truth", truth_panel)])],
                       verbose=args.verbose)
    w, b = (float(v.ravel()[0]) for v in model.get_weights())
    print(f"learned y = {w:.3f} x {b:+.3f}   (truth y = {TRUE_W} x {TRUE_B:+})   "
          f"val_loss {history['val_loss'][-1]:.4f}   report {args.report}")
    return {"w": w, "b": b, "history": history}


if __name__ == "__main__":
    main()
