"""What would early stopping have done? One long run, many EarlyStopping settings replayed offline.

The MNIST MLP (784-400-100-10, ReLU, Adam) trains for ``--epochs`` epochs with *no* early
stopping; every check (one per epoch) records val_loss/val_accuracy in the History and a copy
of the weights. Then, for every ``patience`` x ``min_delta`` setting,
``cutedl.listeners.EarlyStopping.replay`` walks the recorded History through the live listener's
own bookkeeping and says where it would have stopped and which check's weights it would have restored. Those
weights are evaluated on the test set, so one run answers "how much training does each setting
save, and what does it cost in test accuracy?".

Writes ``reports/early_stopping.png`` (the monitored curve with every setting's stop and
restored points, one lane per setting, and the comparison table) and prints the table.

    python examples/early_stopping.py                        # 20,000 training images, 30 epochs
    python examples/early_stopping.py --limit 0 --epochs 40  # all 55,000 training images
    python examples/early_stopping.py --patience 1 3 --min-delta 0 0.01 --monitor val_accuracy

The copies of the weights cost about 1.4 MB per check for this model (40 MB for 30 epochs).
"""
from __future__ import annotations

import argparse
import io
import math
import time

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import cutedl
from cutedl import Dataset, Model, Session, datasets, layers, listeners, losses, optimizers
from cutedl._io import atomic_write


# ---------------------------------------------------------------------------- recording
class WeightRecorder(listeners.Listener):
    """Keep a copy of the model's weights at every check: ``weights[i]`` belongs to History row i.

    The Session appends the row before it fires ``on_val_end``, the same moment EarlyStopping
    copies its best weights, so the two see identical weights.
    """

    def __init__(self):
        self.weights: list = []

    def on_fit_start(self, logs=None):
        self.weights = []

    def on_val_end(self, step, logs=None):
        self.weights.append(self.model.get_weights())


# ---------------------------------------------------------------------------- data and model
def build_model() -> Model:
    return Model([
        layers.Dense(400, inshape=784, activation="relu"),
        layers.Dense(100, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ]).assemble()


# ---------------------------------------------------------------------------- the figure
def draw_report(history, rows: list, monitor: str, path, title: str, dpi: int = 100) -> str:
    """Write the comparison PNG: curve with stop/restore marks, one lane per setting, a table."""
    cols = history.history
    epochs = np.asarray(cols["epoch"], dtype=np.float64)
    values = np.asarray(cols[monitor], dtype=np.float64)
    n_settings = len(rows)
    height = 6.0 + 0.5 * n_settings
    fig = Figure(figsize=(12.0, height), dpi=dpi)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(3, 1, height_ratios=[3.2, 0.35 * n_settings + 0.8, 0.27 * n_settings + 0.3],
                          left=0.2, right=0.97, top=1.0 - 0.8 / height, bottom=0.1 / height,
                          hspace=0.35)
    ax_curve = fig.add_subplot(gs[0])
    ax_lanes = fig.add_subplot(gs[1], sharex=ax_curve)
    ax_table = fig.add_subplot(gs[2])
    fig.suptitle(title, fontsize=13)
    cmap = colormaps["tab10" if n_settings <= 10 else "tab20"]
    colors = [cmap(i % cmap.N) for i in range(n_settings)]

    # --- the monitored curve, every setting's stop (x) and restored weights (diamond) on it
    ax_curve.plot(epochs, values, color="black", marker="o", markersize=3, linewidth=1.5, label=monitor)
    base = monitor[4:] if monitor.startswith("val_") else None
    if base and base in cols:
        train = np.asarray(cols[base], dtype=np.float64)
        ax_curve.plot(epochs, train, color="0.6", linestyle="--", linewidth=1.0, label=f"{base} (training)")
        # Scale the y axis to the monitored curve: the first epochs' training loss would
        # otherwise squash the part of the curve where the settings differ.
        both = np.concatenate([values, train])
        both, vals = both[np.isfinite(both)], values[np.isfinite(values)]
        if vals.size:
            low, high = min(both.min(), vals.min()), vals.max()
            pad = 0.08 * (high - low) if high > low else 0.05 * abs(high) + 1e-3
            ax_curve.set_ylim(low - pad, high + pad)
    for row, color in zip(rows, colors):
        r = row["replay"]
        if r.stopped:
            ax_curve.plot([r.stop_epoch], [values[r.stop_index]], linestyle="none", marker="x", markersize=10,
                          markeredgewidth=2, color=color, zorder=4)
        if r.restored_index is not None:
            ax_curve.plot([r.restored_epoch], [values[r.restored_index]], linestyle="none", marker="D",
                          markersize=9, markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.8,
                          zorder=5)
    ax_curve.plot([], [], linestyle="none", marker="x", color="0.3", label="stop")
    ax_curve.plot([], [], linestyle="none", marker="D", markerfacecolor="none", color="0.3",
                  label="restored weights")
    ax_curve.set_ylabel(monitor)
    ax_curve.set_title(f"{monitor} of one run without early stopping (markers: each setting, colors as below)",
                       fontsize=10)
    ax_curve.grid(True, alpha=0.3)
    ax_curve.legend(fontsize=8, loc="best")

    # --- one lane per setting: trained epochs (solid), saved epochs (dotted), stop, restored
    last_epoch = float(epochs[-1])
    for k, (row, color) in enumerate(zip(rows, colors)):
        r = row["replay"]
        y = n_settings - 1 - k
        ax_lanes.plot([epochs[0], r.stop_epoch], [y, y], color=color, linewidth=4, solid_capstyle="butt")
        if r.stop_epoch < last_epoch:
            ax_lanes.plot([r.stop_epoch, last_epoch], [y, y], color=color, linewidth=1, linestyle=":")
        if r.stopped:
            ax_lanes.plot([r.stop_epoch], [y], marker="x", markersize=10, markeredgewidth=2, color="black")
        if r.restored_index is not None:
            ax_lanes.plot([r.restored_epoch], [y], marker="D", markersize=8, markerfacecolor="white",
                          markeredgecolor="black", markeredgewidth=1.5)
    ax_lanes.set_yticks(range(n_settings), [row["setting"] for row in reversed(rows)], fontsize=8)
    ax_lanes.set_ylim(-0.7, n_settings - 0.3)
    ax_lanes.set_xlabel("epoch")
    ax_lanes.set_title("epochs trained (solid) and saved (dotted); x = stop, diamond = restored weights",
                       fontsize=10)
    ax_lanes.grid(True, axis="x", alpha=0.3)

    # --- the table
    ax_table.axis("off")
    header = ["setting", "stop epoch", "restored epoch", f"{monitor} of kept weights", "test accuracy",
              "test loss", "epochs saved"]
    cells = [[row["setting"], _stop_text(row), _fmt(row["restored_epoch"]),
              _fmt(row["monitor_value"], ".4f"), _fmt(row["test_accuracy"], ".4f"), _fmt(row["test_loss"], ".4f"),
              _fmt(row["epochs_saved"])] for row in rows]
    table = ax_table.table(cellText=cells, colLabels=header, loc="upper center", cellLoc="center",
                           colWidths=[0.25, 0.12, 0.12, 0.16, 0.12, 0.11, 0.12])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.25)
    for k, color in enumerate(colors):
        table[k + 1, 0].set_facecolor((*color[:3], 0.35))
    for j in range(len(header)):
        table[0, j].set_facecolor("whitesmoke")

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    # Never a half-written PNG, even if the script is interrupted while saving.
    atomic_write(path, lambda f: f.write(data))
    return str(path)


def _stop_text(row: dict) -> str:
    """'9', or '30 (end)' when the setting never stopped within the recorded run."""
    return str(row["stop_epoch"]) if row["replay"].stopped else f"{row['stop_epoch']} (end)"


def _fmt(v, spec: str = "d") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def format_table(rows: list, monitor: str) -> str:
    """The comparison as aligned text, one line per setting."""
    header = f"{'setting':<28} {'stop':>9} {'restored':>8} {monitor + ' kept':>14} {'test acc':>9} " \
             f"{'test loss':>9} {'saved':>6}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['setting']:<28} {_stop_text(row):>9} {_fmt(row['restored_epoch']):>8} "
                     f"{_fmt(row['monitor_value'], '.4f'):>14} {_fmt(row['test_accuracy'], '.4f'):>9} "
                     f"{_fmt(row['test_loss'], '.4f'):>9} {_fmt(row['epochs_saved']):>6}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=30, help="length of the recorded run")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=20000, help="training images to use (0: all 55,000)")
    p.add_argument("--monitor", default="val_loss", choices=("val_loss", "val_accuracy", "loss", "accuracy"),
                   help="the value EarlyStopping watches")
    p.add_argument("--mode", default="auto", choices=("auto", "min", "max"))
    p.add_argument("--patience", type=int, nargs="+", default=[0, 2, 5, 10])
    p.add_argument("--min-delta", type=float, nargs="+", default=[0.0, 0.005])
    p.add_argument("--report", default="reports/early_stopping.png")
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)

    cutedl.set_seed(args.seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = datasets.mnist.load_vectors(limit=args.limit or None)
    model = build_model()
    sess = Session(model, loss=losses.CategoricalCrossentropy(), optimizer=optimizers.Adam(args.lr),
                   metrics=["accuracy"])
    recorder = WeightRecorder()
    t0 = time.perf_counter()
    history = sess.fit(Dataset(x_train, y_train, batch_size=args.batch_size), epochs=args.epochs,
                       val_data=Dataset(x_val, y_val, batch_size=1000, shuffle=False), val_epochs=1,
                       listeners=[recorder], verbose=args.verbose)
    seconds = time.perf_counter() - t0

    test_ds = Dataset(x_test, y_test, batch_size=1000, shuffle=False)
    evaluated: dict = {}

    def test_at(index):
        # Many settings restore the same check: evaluate each check's weights once.
        if index not in evaluated:
            model.set_weights(recorder.weights[index])
            evaluated[index] = sess.evaluate(test_ds)
        return evaluated[index]

    last = len(history) - 1
    last_epoch = int(history["epoch"][last])
    values = history[args.monitor]
    final = test_at(last)
    # The reference: no early stopping, the final weights.
    no_stop = listeners.Replay(stopped=False, stop_index=last, stop_epoch=last_epoch,
                               stop_step=int(history["step"][last]),
                               restored_index=None, restored_epoch=None, restored_step=None, best=None)
    rows = [{"setting": f"none (all {last_epoch} epochs)", "replay": no_stop, "stop_epoch": last_epoch,
             "restored_epoch": None, "monitor_value": values[last], "test_accuracy": final["accuracy"],
             "test_loss": final["loss"], "epochs_saved": 0}]
    for patience in args.patience:
        for min_delta in args.min_delta:
            r = listeners.EarlyStopping.replay(history, args.monitor, patience, min_delta, args.mode)
            # What the model would hold at the end: the restored weights, else the last ones.
            used = r.restored_index if r.restored_index is not None else r.stop_index
            test = test_at(used)
            rows.append({"setting": f"patience={patience} min_delta={min_delta:g}", "replay": r,
                         "stop_epoch": r.stop_epoch, "restored_epoch": r.restored_epoch,
                         "monitor_value": values[used], "test_accuracy": test["accuracy"],
                         "test_loss": test["loss"], "epochs_saved": last_epoch - r.stop_epoch})

    title = (f"EarlyStopping({args.monitor}) replayed on one run: MNIST MLP 784-400-100-10, Adam "
             f"lr={args.lr:g}, {len(x_train)} training images")
    draw_report(history, rows, args.monitor, args.report, title)
    print(format_table(rows, args.monitor))
    print(f"recorded run: {last_epoch} epochs in {seconds:.1f}s; report {args.report}")
    return {"history": history, "rows": rows, "weights": recorder.weights, "seconds": seconds,
            "report": args.report}


if __name__ == "__main__":
    main()
