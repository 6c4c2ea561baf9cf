"""Fit noisy functions with recurrent networks: a sine and a sum of sines, with LSTM and GRU.

A series ``f(t) + noise`` is cut into windows of ``--steps`` consecutive samples; the network
reads a window and predicts the next *clean* value of ``f``, so it must learn to average the
noise away. Training uses the first 75 % of the series, early stopping watches the next 10 %,
and the last 15 % (never seen) is the test range. ``reports/rnn_function_fit.png`` shows, per
function, the truth, the noisy samples and both predictions over the test range, and the
validation curves.

    python examples/rnn_function_fit.py
    python examples/rnn_function_fit.py --cells gru --noise 0.3 --epochs 40
"""
from __future__ import annotations

import argparse
import io
import time

import numpy as np

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, optimizers
from cutedl._io import atomic_write

FUNCTIONS = {
    "sine": lambda t: np.sin(t),
    "sum of sines": lambda t: np.sin(t) + 0.5 * np.sin(3.1 * t + 1.0) + 0.3 * np.sin(0.45 * t),
}
CELLS = {"lstm": layers.LSTM, "gru": layers.GRU}


def make_windows(func, n_points: int, steps: int, noise: float, rs, dt: float = 0.1):
    """Windows ``(n, steps, 1)`` of the noisy series and targets ``(n, 1)``: the next clean value."""
    t = np.arange(n_points) * dt
    clean = func(t)
    noisy = clean + rs.normal(0.0, noise, n_points)
    idx = np.arange(n_points - steps)[:, None] + np.arange(steps)  # (n, steps) sample indices
    x = noisy[idx][..., None].astype(np.float32)
    y = clean[idx[:, -1] + 1][:, None].astype(np.float32)
    return t[steps:], x, y, noisy[steps:]


def build_model(cell: str, units: int, steps: int) -> Model:
    return Model([CELLS[cell](units, inshape=(steps, 1)), layers.Dense(1)], name=f"fit_{cell}").assemble()


def draw(results, path, title):
    """Prediction vs truth over the test range (left) and validation loss (right), one row per function."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2 * len(results)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(results), 2, squeeze=False, gridspec_kw={"width_ratios": [2.2, 1]})
    for row, (name, r) in enumerate(results.items()):
        ax, lax = axes[row]
        t = r["t_test"]
        ax.plot(t, r["noisy_test"], ".", color="0.65", ms=3, label=f"noisy input (noise std {r['noise']})")
        ax.plot(t, r["truth_test"], "-", color="black", lw=2, label="truth")
        for cell, pred in r["pred"].items():
            ax.plot(t, pred, "-", lw=1.4, label=f"{cell.upper()} (test MSE {r['mse'][cell]:.4f})")
        ax.set_title(f"{name}: next value on the unseen test range")
        ax.set_xlabel("t")
        ax.legend(loc="upper right", fontsize=8)
        for cell, h in r["history"].items():
            lax.plot(h["step"], h["val_loss"], label=f"{cell.upper()} val MSE")
        lax.set_yscale("log")
        lax.set_title(f"{name}: validation loss")
        lax.set_xlabel("step")
        lax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cells", nargs="+", choices=sorted(CELLS), default=["lstm", "gru"])
    p.add_argument("--units", type=int, default=32)
    p.add_argument("--steps", type=int, default=30, help="window length (time steps per sequence)")
    p.add_argument("--points", type=int, default=3000, help="samples of each series (t step 0.1)")
    p.add_argument("--noise", type=float, default=0.2, help="standard deviation of the added noise")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--limit", type=int, default=None, help="use only this many training windows")
    p.add_argument("--report", default="reports/rnn_function_fit.png")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)

    rs = np.random.default_rng(args.seed)
    results, rows = {}, []
    for name, func in FUNCTIONS.items():
        t, x, y, noisy = make_windows(func, args.points, args.steps, args.noise, rs)
        n_train, n_val = int(0.75 * len(x)), int(0.10 * len(x))
        tr = slice(0, args.limit if args.limit else n_train)
        va, te = slice(n_train, n_train + n_val), slice(n_train + n_val, len(x))
        r = {"t_test": t[te], "noisy_test": noisy[te], "truth_test": y[te, 0], "noise": args.noise,
             "pred": {}, "mse": {}, "history": {}}
        for cell in args.cells:
            cutedl.set_seed(args.seed)
            model = build_model(cell, args.units, args.steps)
            sess = Session(model, "mse", optimizers.Adam(args.lr))
            t0 = time.perf_counter()
            history = sess.fit(Dataset(x[tr], y[tr], batch_size=args.batch_size), epochs=args.epochs,
                               val_data=(x[va], y[va]),
                               listeners=[listeners.EarlyStopping("val_loss", patience=args.patience)],
                               verbose=args.verbose)
            seconds = time.perf_counter() - t0
            pred = model.predict(x[te])[:, 0]
            mse = float(np.mean((pred - y[te, 0]) ** 2))
            r["pred"][cell], r["mse"][cell], r["history"][cell] = pred, mse, history
            noise_mse = float(np.mean((x[te, -1, 0] - y[te, 0]) ** 2))
            rows.append({"function": name, "cell": cell, "test_mse": mse, "last_input_mse": noise_mse,
                         "epochs": history.stopped_epoch, "seconds": seconds})
            print(f"{name:13s} {cell.upper():4s} test MSE {mse:.5f} (last noisy input as the guess: {noise_mse:.5f})  "
                  f"epochs {history.stopped_epoch}  time {seconds:.1f}s")
        results[name] = r
    draw(results, args.report, f"Noisy functions fitted by recurrent networks ({args.units} units, "
                               f"windows of {args.steps} steps)")
    print(f"report {args.report}")
    return {"rows": rows, "report": args.report}


if __name__ == "__main__":
    main()
