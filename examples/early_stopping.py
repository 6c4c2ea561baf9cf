"""What would early stopping have done? One long run per seed, many EarlyStopping settings replayed.

The MNIST MLP (784-400-100-10, ReLU, Adam) trains for ``--epochs`` epochs with *no* early
stopping; every check (one per epoch) records val_loss/val_accuracy in the History and a copy
of the weights. Then, for every ``patience`` x ``min_delta`` setting,
``cutedl.listeners.EarlyStopping.replay`` walks the recorded History through the live listener's
own bookkeeping and says where it would have stopped and which check's weights it would have
restored. Those weights are evaluated on the test set, so one run answers "how much training does
each setting save, and what does it cost in test accuracy?".

One seed says little: the seed-to-seed spread of this MLP is larger than most differences between
settings. So the run is repeated for ``--seeds N`` seeds (default 5) with
:func:`cutedl.experiments.repeat` (``--processes`` in parallel), and
:func:`cutedl.experiments.compare` gives each setting's test accuracy as "mean +- CI over N
seeds" (95 %, Student's t) and its paired difference from training to the end without early
stopping (bootstrap over seeds).

Writes ``reports/early_stopping.png`` (the first seed's monitored curve with every setting's stop
and restored points, one lane per setting, and the table over all seeds) and prints the tables.

    python examples/early_stopping.py                        # 20,000 training images, 30 epochs, 5 seeds
    python examples/early_stopping.py --limit 0 --epochs 40  # all 55,000 training images
    python examples/early_stopping.py --patience 1 3 --min-delta 0 0.01 --monitor val_accuracy --seeds 10

The copies of the weights cost about 1.4 MB per check for this model (40 MB for 30 epochs) in
each worker process.
"""
from __future__ import annotations

import argparse
import functools
import io
import math
import time

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import cutedl
from cutedl import Dataset, Model, Session, datasets, experiments, layers, listeners, losses, optimizers
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
def draw_report(history, rows: list, monitor: str, path, title: str, dpi: int = 100, table_rows=None,
                seeds: int = 1) -> str:
    """Write the comparison PNG: one run's curve with stop/restore marks, one lane per setting, and a
    table (``table_rows``, the summary over seeds; by default this run's ``rows``)."""
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
    if table_rows is None:
        header = ["setting", "stop epoch", "restored epoch", f"{monitor} of kept weights", "test accuracy",
                  "test loss", "epochs saved"]
        cells = [[row["setting"], _stop_text(row), _fmt(row["restored_epoch"]), _fmt(row["monitor_value"], ".4f"),
                  _fmt(row["test_accuracy"], ".4f"), _fmt(row["test_loss"], ".4f"), _fmt(row["epochs_saved"])]
                 for row in rows]
        widths = [0.25, 0.12, 0.12, 0.16, 0.12, 0.11, 0.12]
    else:
        header = ["setting", "stop epoch", "restored epoch", f"test accuracy ({seeds} seeds)", "vs no stopping",
                  "test loss", "epochs saved"]
        cells = [[row["setting"], _fmt(row["stop_epoch"], ".1f"), _fmt(row["restored_epoch"], ".1f"),
                  row["test_accuracy_text"], row["difference_text"], _fmt(row["test_loss"], ".4f"),
                  _fmt(row["epochs_saved"], ".1f")] for row in table_rows]
        widths = [0.22, 0.08, 0.1, 0.17, 0.23, 0.09, 0.1]
    table = ax_table.table(cellText=cells, colLabels=header, loc="upper center", cellLoc="center",
                           colWidths=widths)
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


# ---------------------------------------------------------------------------- main
_DATA: dict = {}


def load_data(limit):
    """MNIST vectors, loaded once per process (each worker of ``repeat`` loads its own)."""
    if limit not in _DATA:
        _DATA[limit] = datasets.mnist.load_vectors(limit=limit or None)
    return _DATA[limit]


def record_and_replay(seed, epochs, batch_size, lr, limit, monitor, mode, patiences, min_deltas, verbose):
    """One seed (``experiments.repeat``'s build): the long run, every setting replayed and scored.

    Returns ``(history, {'rows': [...], 'seconds': s})``: one row per setting with where it stops,
    which check it restores and the test accuracy of the weights it ends with.
    """
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_data(limit)
    model = build_model()  # repeat seeded cutedl with ``seed``
    sess = Session(model, loss=losses.CategoricalCrossentropy(), optimizer=optimizers.Adam(lr), metrics=["accuracy"])
    recorder = WeightRecorder()
    t0 = time.perf_counter()
    history = sess.fit(Dataset(x_train, y_train, batch_size=batch_size, seed=seed), epochs=epochs,
                       val_data=Dataset(x_val, y_val, batch_size=1000, shuffle=False), val_epochs=1,
                       listeners=[recorder], verbose=verbose)
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
    values = history[monitor]
    final = test_at(last)
    # The reference: no early stopping, the final weights.
    no_stop = listeners.Replay(stopped=False, stop_index=last, stop_epoch=last_epoch,
                               stop_step=int(history["step"][last]),
                               restored_index=None, restored_epoch=None, restored_step=None, best=None)
    rows = [{"setting": f"none (all {last_epoch} epochs)", "replay": no_stop._asdict(), "stop_epoch": last_epoch,
             "restored_epoch": None, "monitor_value": values[last], "test_accuracy": final["accuracy"],
             "test_loss": final["loss"], "epochs_saved": 0}]
    for patience in patiences:
        for min_delta in min_deltas:
            r = listeners.EarlyStopping.replay(history, monitor, patience, min_delta, mode)
            # What the model would hold at the end: the restored weights, else the last ones.
            used = r.restored_index if r.restored_index is not None else r.stop_index
            test = test_at(used)
            rows.append({"setting": f"patience={patience} min_delta={min_delta:g}", "replay": r._asdict(),
                         "stop_epoch": r.stop_epoch, "restored_epoch": r.restored_epoch,
                         "monitor_value": values[used], "test_accuracy": test["accuracy"],
                         "test_loss": test["loss"], "epochs_saved": last_epoch - r.stop_epoch})
    return history, {"rows": rows, "seconds": seconds}


def _mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def summarize(runs, comparison, reference: str) -> list:
    """One row per setting over the seeds: mean stop/restored epoch, test accuracy mean +- CI, the
    paired difference from ``reference`` (training to the end) and the epochs saved."""
    ok = runs.ok
    out = []
    for k, first in enumerate(ok[0].extra["rows"]):
        per_seed = [r.extra["rows"][k] for r in ok]
        s = comparison.settings[first["setting"]]
        row = {"setting": first["setting"], "seeds": s.n,
               "stop_epoch": _mean([p["stop_epoch"] for p in per_seed]),
               "restored_epoch": _mean([p["restored_epoch"] for p in per_seed]),
               "test_accuracy": s.mean, "test_accuracy_ci": (s.low, s.high),
               "test_accuracy_text": f"{s.mean:.4f} +- {s.half_width:.4f}" if s.n > 1 else f"{s.mean:.4f}",
               "test_loss": _mean([p["test_loss"] for p in per_seed]),
               "epochs_saved": _mean([p["epochs_saved"] for p in per_seed]),
               "difference": None, "difference_text": "-"}
        if first["setting"] != reference:
            d = comparison.difference(first["setting"], reference)
            row["difference"] = (d.mean, d.low, d.high)
            row["difference_text"] = f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
        out.append(row)
    return out


def format_summary(rows: list, seeds: int) -> str:
    """The settings over all seeds as aligned text."""
    header = (f"{'setting':<28} {'stop':>5} {'restored':>8} {'test accuracy':>17} {'vs no stopping (95 % CI)':>27} "
              f"{'saved':>6}")
    lines = [f"mean +- CI (95 %) over {seeds} seeds", header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['setting']:<28} {_fmt(row['stop_epoch'], '.1f'):>5} {_fmt(row['restored_epoch'], '.1f'):>8} "
                     f"{row['test_accuracy_text']:>17} {row['difference_text']:>27} {_fmt(row['epochs_saved'], '.1f'):>6}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=30, help="length of the recorded run")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--seed", type=int, default=0, help="first seed; the runs use seed, seed + 1, ...")
    p.add_argument("--seeds", type=int, default=5, help="recorded runs (one per seed)")
    p.add_argument("--processes", type=int, default=2, help="runs in parallel (1: one after the other)")
    p.add_argument("--limit", type=int, default=20000, help="training images to use (0: all 55,000)")
    p.add_argument("--monitor", default="val_loss", choices=("val_loss", "val_accuracy", "loss", "accuracy"),
                   help="the value EarlyStopping watches")
    p.add_argument("--mode", default="auto", choices=("auto", "min", "max"))
    p.add_argument("--patience", type=int, nargs="+", default=[0, 2, 5, 10])
    p.add_argument("--min-delta", type=float, nargs="+", default=[0.0, 0.005])
    p.add_argument("--report", default="reports/early_stopping.png")
    p.add_argument("--verbose", type=int, default=0, help="progress bars (with --processes 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads per run (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)

    build = functools.partial(record_and_replay, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              limit=args.limit, monitor=args.monitor, mode=args.mode, patiences=args.patience,
                              min_deltas=args.min_delta, verbose=args.verbose)
    runs = experiments.repeat(build, seeds=range(args.seed, args.seed + args.seeds), processes=args.processes,
                              threads=args.threads)
    for failed in runs.failures:
        print(f"seed {failed.seed} failed:\n{failed.error}")
    if not runs.ok:
        raise RuntimeError(f"every run failed: {runs}")
    first = runs.ok[0]
    labels = [row["setting"] for row in first.extra["rows"]]
    per_setting = {label: {r.seed: r.extra["rows"][k]["test_accuracy"] for r in runs.ok}
                   for k, label in enumerate(labels)}
    comparison = experiments.compare(per_setting, metric="test_accuracy", baseline=labels[0])
    rows = summarize(runs, comparison, labels[0])

    shown = [dict(row, replay=listeners.Replay(**row["replay"])) for row in first.extra["rows"]]
    n_train = len(load_data(args.limit)[0][0])
    title = (f"EarlyStopping({args.monitor}) replayed, MNIST MLP, Adam lr={args.lr:g}, {n_train} images: "
             f"curve of seed {first.seed}, table over {len(runs.ok)} seeds")
    draw_report(first.history, shown, args.monitor, args.report, title, table_rows=rows, seeds=len(runs.ok))
    print(format_summary(rows, len(runs.ok)))
    print()
    print(comparison)
    seconds = sum(r.extra["seconds"] for r in runs.ok)
    print(f"{len(runs.ok)} recorded runs of {args.epochs} epochs ({seconds:.1f} s of training); report {args.report}")
    return {"history": first.history, "rows": rows, "runs": runs, "comparison": comparison, "seconds": seconds,
            "report": args.report}


if __name__ == "__main__":
    main()
