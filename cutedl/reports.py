"""Fit reports: PNG charts drawn from a :class:`~cutedl.history.History`.

``fit_report(history, 'runs/report.png')`` draws one panel for the loss, one per metric and one
for the learning rate when it changed, marks the best check, the early-stop point and the
restored weights, and writes a summary box beside the panels. ``compare_report`` overlays the
curves of several runs (optimizers, early-stopping settings) in one PNG.

Both are called again and again during training (a listener redraws after each validation), so
they never touch ``matplotlib.pyplot``: each call builds its own ``Figure`` on an Agg canvas
(headless, no global figure registry to leak into, no display needed), renders it to memory and
replaces the file atomically, so a reader never sees half a PNG. matplotlib is imported inside
the drawing functions, so importing this module (or cutedl) does not load it.
"""
from __future__ import annotations

import io
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from cutedl._io import atomic_write
from cutedl._validate import check_number, is_number
from cutedl.backend import np
from cutedl.metrics import direction

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["fit_report", "compare_report"]

# Columns that are bookkeeping, not metrics: they never get a panel of their own.
_RESERVED = ("step", "epoch", "loss", "val_loss", "lr", "time")

# Sizes in inches. Fixed margins (instead of constrained/tight layout) keep a redraw fast and
# make the pixel size of the PNG predictable: width = figsize[0] * dpi, height = figsize[1] * dpi.
_PANEL_W = 5.0
_PANEL_H = 3.0
_SUMMARY_W = 3.6
_SUMMARY_LINE = 8 * 1.25 / 72  # height of one 8 pt summary line, inches
_SUMMARY_GAP = 0.35   # between the panels and the summary box
_TOP = 0.75       # suptitle + the epoch axis of the first row
_BOTTOM = 0.55    # x label of the last row
_LEFT = 0.75
_GAP_W = 0.85     # between panel columns (y tick labels)
_GAP_H = 1.05     # between panel rows (x label below + epoch axis and title above)

_TRAIN_COLOR = "tab:blue"
_VAL_COLOR = "tab:orange"
_LR_COLOR = "tab:green"
_BEST_COLOR = "gold"
_STOP_COLOR = "tab:red"
_RESTORED_COLOR = "tab:purple"
_MARKERS_UP_TO = 40   # draw point markers on series this short, so one lonely check is visible



# ---------------------------------------------------------------------------- public API
def fit_report(history, path, title: str | None = None,
               panels: Sequence[tuple[str, Callable]] | None = None, dpi: int = 100, *,
               figsize: tuple[float, float] | None = None, log_loss="auto") -> str:
    """Write a PNG report of a fit and return its path.

    Panels, in order: ``loss`` and ``val_loss`` over steps (the top axis shows epochs); one
    panel per metric ``m`` found as ``m`` or ``val_m`` in ``history.history``; ``lr`` on a log
    scale when it took more than one value; then one panel per custom ``panels`` entry. The best
    check (``history.best``) is starred on its monitored metric's panel, the stop point
    (``history.stopped_step``) and the restored weights (``history.restored``) are vertical
    lines on every curve panel. A summary box on the right lists steps, epochs, wall time, the
    stop reason, the best value of every validation metric, every value at the last check and,
    when weights were restored, every value at the restored check (the weights the model now
    holds). Missing values (NaN) are skipped. A history with no rows gives a report that says
    "no data yet".

    Args:
        history: a :class:`~cutedl.history.History`.
        path: where to write the PNG; missing parent directories are created. The file is
            replaced atomically.
        title: figure title (default ``'Fit report'``).
        panels: extra panels, a list of ``(title, draw)``; ``draw(ax)`` gets a Matplotlib
            ``Axes`` to draw into (for example predictions against targets).
        dpi: resolution in dots per inch.
        figsize: ``(width, height)`` in inches; by default 5 x 3 inches per panel in two columns
            plus a summary column 3.6 inches wide.
        log_loss: log scale for the loss panels (``loss`` and ``<output>_loss``): 'auto' (default)
            when their positive values span more than two decades, True or False to force it
            (True falls back to linear when a value is <= 0).

    Returns:
        ``path`` as a string.

    Raises:
        TypeError: ``history``, ``path`` or ``panels`` of the wrong type.
        ValueError: ``dpi`` or ``figsize`` not positive, ``log_loss`` not 'auto', True or False.
        OSError: the file cannot be written; the message names the path.

    Example:
        >>> fit_report(history, 'runs/mnist/report.png', title='MLP on MNIST')
        'runs/mnist/report.png'
    """
    _check_history(history, "fit_report")
    path = _check_path(path, "fit_report")
    panels = _check_panels(panels)
    fig = _fit_figure(history, title=title, panels=panels, dpi=dpi, figsize=figsize, log_loss=log_loss)
    _write_png(fig, path, dpi, "fit_report")
    return path


def compare_report(histories: Mapping, path, keys: Sequence[str] = ("val_loss", "val_accuracy"),
                   title: str | None = None, dpi: int = 100, *, annotate_stops: bool = True,
                   figsize: tuple[float, float] | None = None) -> str:
    """Overlay several runs in one PNG, one panel per key, and return its path.

    Each label keeps its color, line style and marker shape on every panel, so curves that lie on
    top of each other stay apart (and readable in grey). A label given several runs (the seeds
    of :func:`cutedl.experiments.repeat`) is drawn as the mean curve over its runs with a shaded
    band: the 95 % confidence interval of the mean (Student's t) at each step where at least two
    runs have a value. Keys that no run recorded are skipped (when none is left, the report says
    which keys the runs do have). With ``annotate_stops`` a single run's stop point is marked
    with an ``x`` and its restored weights with a diamond. The x axis counts steps; the epochs
    are labelled along the top edge.

    Args:
        histories: mapping ``label -> History``, for example ``{'sgd': h1, 'adam': h2}``, or
            ``label -> runs``: a list of Histories, or the :class:`~cutedl.experiments.Runs` of
            ``repeat`` (its finished runs are drawn).
        path: where to write the PNG (parent directories are created, atomic replace).
        keys: history columns to compare, one panel each (a single string is one key).
        title: figure title (default ``'Comparison'``).
        dpi: resolution in dots per inch.
        annotate_stops: mark where each run stopped and which weights it restored.
        figsize: ``(width, height)`` in inches (default: as :func:`fit_report`).

    Returns:
        ``path`` as a string.

    Raises:
        TypeError: ``histories`` not a mapping of Histories, or ``keys`` not strings.
        ValueError: no runs, or no keys.
        OSError: the file cannot be written; the message names the path.
    """
    if not isinstance(histories, Mapping):
        raise TypeError(f"compare_report expected a dict label -> History, got "
                        f"{type(histories).__name__}. Pass e.g. {{'sgd': h1, 'adam': h2}}.")
    if not histories:
        raise ValueError("compare_report got no runs: pass at least one label -> History.")
    _run_lists(histories)
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)
    if not keys:
        raise ValueError("compare_report got no keys: pass e.g. keys=('val_loss', 'val_accuracy').")
    for k in keys:
        if not isinstance(k, str):
            raise TypeError(f"compare_report keys must be strings, got {k!r} "
                            f"({type(k).__name__}).")
    path = _check_path(path, "compare_report")
    fig = _compare_figure(histories, keys, title=title, dpi=dpi, figsize=figsize,
                          annotate_stops=annotate_stops)
    _write_png(fig, path, dpi, "compare_report")
    return path


# ---------------------------------------------------------------------------- layout
def _layout(history) -> list[str]:
    """The curve panels of a fit report, in order: ``'loss'``, metric names, then ``'lr'``.

    A metric ``m`` gets a panel when ``m`` or ``val_m`` is a column (columns holding no number
    at all are ignored); ``lr`` gets one when it took more than one finite value. Custom panels
    come after these and are not listed.
    """
    cols = history.history
    keys = ["loss"]
    for k, col in cols.items():
        base = k[4:] if k.startswith("val_") else k
        if k in _RESERVED or base in _RESERVED or base in keys or not base:
            continue
        if _has_numbers(col):
            keys.append(base)
    if "lr" in cols:
        lr = _column(cols["lr"])
        if len(np.unique(lr[np.isfinite(lr)])) > 1:
            keys.append("lr")
    return keys


def _figsize(n_panels: int) -> tuple[float, float]:
    """Default figure size in inches for ``n_panels`` panels plus the summary column."""
    ncols, nrows = _grid(n_panels)
    width = _LEFT + ncols * _PANEL_W + (ncols - 1) * _GAP_W + _SUMMARY_GAP + _SUMMARY_W
    height = _TOP + nrows * _PANEL_H + (nrows - 1) * _GAP_H + _BOTTOM
    return (width, height)


def _grid(n_panels: int) -> tuple[int, int]:
    ncols = 1 if n_panels <= 1 else 2
    return ncols, max(1, math.ceil(n_panels / ncols))


def _new_figure(n_panels: int, dpi, figsize, summary: str = ""):
    """A Figure on its own Agg canvas with a grid of ``n_panels`` axes and room for a summary.

    The default height grows so that a long ``summary`` (8 pt monospace lines) fits beside the panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_number("Reports", "dpi", dpi, minimum=0, low_open=True, what="a positive number (e.g. dpi=100)")
    if figsize is None:
        width, height = _figsize(n_panels)
        figsize = (width, max(height, _TOP + _SUMMARY_LINE * (summary.count("\n") + 1) + 0.4))
    else:
        try:
            w, h = (float(v) for v in figsize)
        except (TypeError, ValueError):
            raise ValueError(f"Reports expected figsize=(width, height) in inches, "
                             f"got {figsize!r}.") from None
        if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
            raise ValueError(f"Reports need a positive figsize, got {figsize!r}.")
        figsize = (w, h)
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    width, height = figsize
    ncols, nrows = _grid(n_panels)
    # Margins are fixed in inches so text keeps its size whatever the number of panels; clamp
    # the fractions so a small user figsize still gives a valid (if cramped) grid.
    right = 1.0 - (_SUMMARY_W + _SUMMARY_GAP) / width
    left = _LEFT / width
    if right - left < 0.2:
        left, right = 0.08, 0.6
    top = 1.0 - _TOP / height
    bottom = _BOTTOM / height
    if top - bottom < 0.2:
        bottom, top = 0.08, 0.85
    panel_w = (right - left) * width / (ncols + (ncols - 1) * _GAP_W / _PANEL_W)
    panel_h = (top - bottom) * height / (nrows + (nrows - 1) * _GAP_H / _PANEL_H)
    gs = fig.add_gridspec(nrows, ncols, left=left, right=right, top=top, bottom=bottom,
                          wspace=_GAP_W / panel_w, hspace=_GAP_H / panel_h)
    axes = [fig.add_subplot(gs[i // ncols, i % ncols]) for i in range(n_panels)]
    return fig, axes, right


# ---------------------------------------------------------------------------- fit report
def _fit_figure(history, title=None, panels=(), dpi=100, figsize=None, log_loss="auto") -> Figure:
    """Build (without writing) the fit-report figure; its ``axes`` are the panels in order."""
    from matplotlib.ticker import LogFormatter

    log_loss = _check_log_loss(log_loss)
    keys = _layout(history)
    summary = _fit_summary(history)
    fig, axes, right = _new_figure(len(keys) + len(panels), dpi, figsize, summary)
    fig.suptitle(title if title is not None else "Fit report", fontsize=13)

    cols = history.history
    steps = _steps(history)
    monitor_panel = _panel_of(history.best.get("monitor")) if isinstance(history.best, dict) \
        else None
    stop = _stop_info(history)
    restored = _restored_info(history)

    for i, (key, ax) in enumerate(zip(keys, axes)):
        if key == "lr":
            drawn = _plot_series(ax, steps, cols.get("lr"), "lr", _LR_COLOR)
            if drawn and np.all(_finite(cols["lr"]) > 0):
                ax.set_yscale("log")
                # Plain '1e-02' labels: the default mathtext ones cost a parse per tick.
                ax.yaxis.set_major_formatter(LogFormatter())
                ax.yaxis.set_minor_formatter(LogFormatter(minor_thresholds=(2, 0.5)))
        else:
            drawn = _plot_series(ax, steps, cols.get(key), key, _TRAIN_COLOR)
            drawn += _plot_series(ax, steps, cols.get("val_" + key), "val_" + key, _VAL_COLOR)
            if _is_loss_key(key) and _wants_log(log_loss, cols.get(key), cols.get("val_" + key)):
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(LogFormatter())
                ax.yaxis.set_minor_formatter(LogFormatter(minor_thresholds=(2, 0.5)))
        # Room above the axes for the epoch labels.
        ax.set_title(key, pad=14)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if not drawn:
            _note(ax, "no data yet")
        # Stop/restore lines go on every curve panel, labelled once (first panel's legend).
        if stop is not None:
            ax.axvline(stop["step"], color=_STOP_COLOR, linestyle="--", linewidth=1.2,
                       label=stop["label"] if i == 0 else None)
        if restored is not None:
            ax.axvline(restored["step"], color=_RESTORED_COLOR, linestyle="-.", linewidth=1.2,
                       label=restored["label"] if i == 0 else None)
        if key == monitor_panel and key != "lr":
            _mark_best(ax, history)
            if restored is not None:
                _mark_restored_value(ax, history, restored["step"])
        _epoch_axis(ax, history)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")

    for (ptitle, draw), ax in zip(panels, axes[len(keys):]):
        ax.set_title(ptitle)
        draw(ax)

    fig.text(right + _SUMMARY_GAP / fig.get_figwidth(), 1.0 - _TOP / fig.get_figheight(),
             summary, ha="left", va="top", family="monospace", fontsize=8,
             bbox=dict(boxstyle="round", facecolor="whitesmoke", edgecolor="0.7"))
    return fig


def _plot_series(ax, steps, col, label, color) -> int:
    """Plot the finite points of one column over steps; return how many were drawn."""
    if col is None:
        return 0
    y = _column(col)
    keep = np.isfinite(y) & np.isfinite(steps)
    n = int(keep.sum())
    if n:
        ax.plot(steps[keep], y[keep], color=color, label=label, linewidth=1.5,
                marker="o" if n <= _MARKERS_UP_TO else None, markersize=3)
    return n


def _mark_best(ax, history) -> None:
    best = history.best
    value, step = _num(best.get("value")), _num(best.get("step"))
    if value is None or step is None:
        return
    epoch = best.get("epoch")
    where = f"step {_fmt_int(step)}" + (f" (epoch {epoch})" if epoch is not None else "")
    ax.plot([step], [value], linestyle="none", marker="*", markersize=14, color=_BEST_COLOR,
            markeredgecolor="black", zorder=5,
            label=f"best {best.get('monitor')} = {value:.4g} @ {where}")


def _mark_restored_value(ax, history, step) -> None:
    """Ring the monitored value at the restored step, when that step is a recorded check."""
    monitor = history.best.get("monitor")
    if monitor not in history.history:
        return
    y = _column(history.history[monitor])
    at = np.flatnonzero((_steps(history) == step) & np.isfinite(y))
    if at.size:
        ax.plot([step], [y[at[-1]]], linestyle="none", marker="D", markersize=9,
                markerfacecolor="none", markeredgecolor=_RESTORED_COLOR, markeredgewidth=1.8,
                zorder=6)


def _epoch_axis(ax, history) -> None:
    """Label epochs along the top edge: a tick where each epoch's checks end.

    Plain texts in a blended transform (x in data, y in axes units) cost a fraction of a
    ``secondary_xaxis``, which matters when the report is redrawn after every validation.
    """
    from matplotlib.transforms import blended_transform_factory

    ticks, labels = _epoch_ticks(history)
    if not ticks:
        return
    top = blended_transform_factory(ax.transData, ax.transAxes)
    ax.plot(ticks, [1.0] * len(ticks), transform=top, linestyle="none", marker="|",
            markersize=5, color="0.3", clip_on=False)
    for x, label in zip(ticks, labels):
        ax.text(x, 1.015, label, transform=top, ha="center", va="bottom", fontsize=7,
                color="0.3", clip_on=False)
    ax.text(0.0, 1.015, "epoch ", transform=ax.transAxes, ha="right", va="bottom",
            fontsize=7, color="0.3")


def _epoch_ticks(history) -> tuple[list, list]:
    cols = history.history
    if "epoch" not in cols or not len(history):
        return [], []
    epochs = _column(cols["epoch"])
    steps = _steps(history)
    spe = _num(history.params.get("steps_per_epoch")) if isinstance(history.params, dict) \
        else None
    last = {}
    for e, s in zip(epochs, steps):
        if math.isfinite(e) and math.isfinite(s):
            last[int(e)] = s
    if not last:
        return [], []
    # With steps_per_epoch known the boundary is exact; otherwise the last check of the epoch.
    ticks = {e: (e * spe if spe else s) for e, s in last.items()}
    order = sorted(ticks)
    every = max(1, math.ceil(len(order) / 10))   # at most ~10 labels, or they overlap
    order = [e for j, e in enumerate(order) if j % every == 0 or e == order[-1]]
    return [ticks[e] for e in order], [str(e) for e in order]


def _fit_summary(history) -> str:
    """The text of the summary box."""
    cols = history.history
    lines = []
    if not len(history):
        lines.append("no data yet")
    steps = _finite(cols.get("step", []))
    done = max([*steps.tolist(), *([history.stopped_step] if _num(history.stopped_step)
                                   is not None else [])], default=None)
    epochs = history.stopped_epoch
    if _num(epochs) is None:
        ep = _finite(cols.get("epoch", []))
        epochs = int(ep.max()) if ep.size else None
    lines.append(f"steps      {_fmt_int(done) if done is not None else '-'}")
    lines.append(f"epochs     {epochs if epochs is not None else '-'}")
    wall = _num(getattr(history, "wall_time", None))
    if not wall:
        t = _finite(cols.get("time", []))
        wall = float(t[-1]) if t.size else None
    lines.append(f"wall time  {_fmt_duration(wall) if wall is not None else '-'}")
    lines.append(f"stop       {history.stop_reason or '-'}")
    stop = _stop_info(history)
    if stop is not None:
        lines.append(f"  {stop['label']}")
    restored = _restored_info(history)
    if restored is not None:
        # Shorter than the legend label: the box is narrow.
        epoch = restored["epoch"]
        lines.append(f"  restored weights @ step {_fmt_int(restored['step'])}"
                     + (f" (epoch {epoch})" if epoch is not None else ""))
    best = history.best if isinstance(history.best, dict) else None
    if best and _num(best.get("value")) is not None:
        lines.append("")
        lines.append(f"best {best.get('monitor')} ({best.get('mode', '?')})")
        ep = best.get("epoch")
        lines.append(f"  {_num(best['value']):.5g} @ step {_fmt_int(best.get('step'))}"
                     + (f", epoch {ep}" if ep is not None else ""))

    val_keys = [k for k in cols if k.startswith("val_")
                and k[4:] not in ("step", "epoch", "lr", "time")]
    if val_keys:
        lines.append("")
        lines.append("best validation")
        width = max(len(k) for k in val_keys)
        steps_all = _steps(history)
        for k in val_keys:
            y = _column(cols[k])
            ok = np.flatnonzero(np.isfinite(y))
            if not ok.size:
                lines.append(f"  {k:<{width}}  -")
                continue
            mode = _direction(k)
            j = ok[np.argmin(y[ok])] if mode == "min" else ok[np.argmax(y[ok])]
            lines.append(f"  {k:<{width}}  {y[j]:.5g} ({mode}) @ {_fmt_int(steps_all[j])}")

    # The last check's numbers, and the restored check's: the weights the model holds after a
    # restore are those of the restored check, not of the last one.
    last = {k: _finite(col) for k, col in cols.items() if k not in ("step", "epoch", "time")}
    last = {k: v[-1] for k, v in last.items() if v.size}
    if last:
        lines.append("")
        lines.append("last check")
        lines += _value_lines(last)
    at = _restored_row(history)
    if at is not None:
        epoch = restored["epoch"] if restored is not None else None
        lines.append("")
        lines.append(f"restored (epoch {epoch})" if epoch is not None
                     else f"restored (step {_fmt_int(restored['step'])})")
        lines += _value_lines(at)
    return "\n".join(lines)


def _value_lines(values: dict) -> list:
    width = max(len(k) for k in values)
    return [f"  {k:<{width}}  {v:.5g}" for k, v in values.items()]


def _restored_row(history) -> dict | None:
    """``{column: value}`` of the recorded check whose weights were restored, or None."""
    restored = _restored_info(history)
    if restored is None or not len(history):
        return None
    at = np.flatnonzero(_steps(history) == restored["step"])
    if not at.size:
        return None
    i = int(at[-1])
    row = {}
    for k, col in history.history.items():
        if k in ("step", "epoch", "time"):
            continue
        v = _num(col[i]) if i < len(col) else None
        if v is not None:
            row[k] = v
    return row or None


def _is_loss_key(key: str) -> bool:
    return key == "loss" or key.endswith("_loss")


def _check_log_loss(log_loss):
    if log_loss == "auto" and isinstance(log_loss, str):
        return log_loss
    if isinstance(log_loss, bool) or type(log_loss).__name__ == "bool_":
        return bool(log_loss)
    raise ValueError(f"Reports: log_loss must be 'auto', True or False, got {log_loss!r}.")


def _wants_log(log_loss, *cols) -> bool:
    """Log scale for a loss panel: forced, or ('auto') when its values span more than two decades."""
    if log_loss is False:
        return False
    values = np.concatenate([_finite(c) for c in cols if c is not None] or [np.zeros(0)])
    if not values.size or values.min() <= 0:
        return False  # a log axis cannot show zero or negative losses
    return log_loss is True or values.max() / values.min() > 100.0


# ---------------------------------------------------------------------------- compare report
_STYLES = ("-", "--", "-.", ":")
_RUN_MARKERS = ("o", "s", "^", "v", "P", "*", "h", "<", ">", "p")


def _run_lists(histories) -> dict:
    """``{label: [History, ...]}`` from ``label -> History``, a list of Histories or Runs."""
    out = {}
    for label, runs in histories.items():
        if hasattr(runs, "histories"):  # experiments.Runs
            runs = runs.histories
        if isinstance(runs, (list, tuple)):
            runs = [r.history if hasattr(r, "seed") and hasattr(r, "error") else r  # experiments.Run
                    for r in runs]
            runs = [r for r in runs if r is not None]
            if not runs:
                raise ValueError(f"compare_report: run {label!r} has no finished run to draw.")
        else:
            runs = [runs]
        for h in runs:
            _check_history(h, f"compare_report (run {label!r})")
        out[label] = runs
    return out


def _mean_band(runs, key):
    """``(x, mean, half_width, n)`` over the runs' finite values of ``key`` at each step; the
    half-width of the 95 % t interval of the mean, NaN where fewer than two runs have a value."""
    from cutedl.experiments import t_quantile

    by_x: dict = {}
    for h in runs:
        if key not in h.history:
            continue
        y, x = _column(h.history[key]), _steps(h)
        for xi, yi in zip(x, y):
            if math.isfinite(xi) and math.isfinite(yi):
                by_x.setdefault(float(xi), []).append(float(yi))
    xs = sorted(by_x)
    mean = np.array([np.mean(by_x[x]) for x in xs])
    n = np.array([len(by_x[x]) for x in xs])
    half = np.array([t_quantile(0.975, k - 1) * np.std(by_x[x], ddof=1) / math.sqrt(k) if k > 1 else math.nan
                     for x, k in zip(xs, n)])
    return np.array(xs, dtype=np.float64), mean, half, n


def _plot_run(ax, x, y, label, color, k) -> int:
    """One label's curve: its color, line style and marker (about a dozen markers per curve)."""
    keep = np.isfinite(x) & np.isfinite(y)
    n = int(keep.sum())
    if n:
        ax.plot(x[keep], y[keep], color=color, label=label, linewidth=1.5, linestyle=_STYLES[k % len(_STYLES)],
                marker=_RUN_MARKERS[k % len(_RUN_MARKERS)], markersize=4, markevery=max(1, math.ceil(n / 12)))
    return n


def _compare_figure(histories, keys, title=None, dpi=100, figsize=None,
                    annotate_stops=True) -> Figure:
    from matplotlib.lines import Line2D

    runs_of = _run_lists(histories)
    present = [k for k in keys if any(k in h.history for runs in runs_of.values() for h in runs)]
    summary = _compare_summary(runs_of, present)
    fig, axes, right = _new_figure(max(1, len(present)), dpi, figsize, summary)
    fig.suptitle(title if title is not None else "Comparison", fontsize=13)
    colors = [f"C{i % 10}" for i in range(len(runs_of))]

    if not present:
        available = sorted({k for runs in runs_of.values() for h in runs for k in h.history})
        ax = axes[0]
        ax.set_title(", ".join(keys))
        _note(ax, f"no run recorded {', '.join(map(repr, keys))}\navailable: "
                  + (", ".join(available) if available else "nothing yet"))
    longest = max((h for runs in runs_of.values() for h in runs), key=len)
    for key, ax in zip(present, axes):
        drawn, marked = 0, set()
        for k, (color, (label, runs)) in enumerate(zip(colors, runs_of.items())):
            if len(runs) == 1:
                h = runs[0]
                drawn += _plot_run(ax, _steps(h), _column(h.history.get(key, [])), str(label), color, k)
                if annotate_stops and key in h.history:
                    marked |= _mark_run_stops(ax, h, key, color)
                continue
            x, mean, half, n = _mean_band(runs, key)
            drawn += _plot_run(ax, x, mean, f"{label} (mean of {len(runs)})", color, k)
            band = np.isfinite(half)
            if band.any():
                ax.fill_between(x, mean - np.where(band, half, 0), mean + np.where(band, half, 0), where=band,
                                color=color, alpha=0.18, linewidth=0)
        ax.set_title(key, pad=14)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        _epoch_axis(ax, longest)
        if not drawn:
            _note(ax, "no data yet")
        handles, labels = ax.get_legend_handles_labels()
        # Proxy artists explain the marker shapes once, in black.
        if "stopped" in marked:
            handles.append(Line2D([], [], linestyle="none", marker="x", color="black"))
            labels.append("stopped")
        if "restored" in marked:
            handles.append(Line2D([], [], linestyle="none", marker="D", markerfacecolor="none",
                                  color="black"))
            labels.append("restored weights")
        if handles:
            ax.legend(handles, labels, fontsize=8, loc="best")

    fig.text(right + _SUMMARY_GAP / fig.get_figwidth(), 1.0 - _TOP / fig.get_figheight(),
             summary, ha="left", va="top", family="monospace",
             fontsize=8, bbox=dict(boxstyle="round", facecolor="whitesmoke", edgecolor="0.7"))
    return fig


def _mark_run_stops(ax, h, key, color) -> set:
    """Mark where a run stopped (x) and which check it restored (hollow diamond) on its curve.

    Returns the set of marks drawn, among ``{'stopped', 'restored'}``.
    """
    marked = set()
    y = _column(h.history[key])
    steps = _steps(h)
    ok = np.isfinite(y) & np.isfinite(steps)
    if not ok.any():
        return marked
    stop_step = _num(h.stopped_step)
    if stop_step is not None and h.stop_reason != "completed":
        # The curve has no value at the stop step itself when it fell between checks: mark
        # the last recorded value at or before it.
        at = np.flatnonzero(ok & (steps <= stop_step))
        if at.size:
            ax.plot([stop_step], [y[at[-1]]], linestyle="none", marker="x", markersize=9,
                    markeredgewidth=2, color=color, zorder=5)
            marked.add("stopped")
    restored = h.restored if isinstance(h.restored, dict) else None
    rstep = _num(restored.get("step")) if restored else None
    if rstep is not None:
        at = np.flatnonzero(ok & (steps == rstep))
        if at.size:
            ax.plot([rstep], [y[at[-1]]], linestyle="none", marker="D", markersize=8,
                    markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.8,
                    zorder=6)
            marked.add("restored")
    return marked


def _compare_summary(runs_of, keys) -> str:
    lines = []
    for label, runs in runs_of.items():
        if len(runs) > 1:
            lines += _runs_summary(label, runs, keys)
            continue
        h = runs[0]
        steps = _finite(h.history.get("step", []))
        lines.append(f"{label}")
        lines.append(f"  steps {_fmt_int(steps.max()) if steps.size else '-'}, "
                     f"stop {h.stop_reason or '-'}")
        if isinstance(h.restored, dict) and h.restored.get("epoch") is not None:
            lines.append(f"  restored epoch {h.restored['epoch']}")
        for k in keys:
            y = _finite(h.history.get(k, []))
            if y.size:
                mode = _direction(k)
                best = y.min() if mode == "min" else y.max()
                lines.append(f"  best {k} {best:.5g}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _runs_summary(label, runs, keys) -> list:
    """Summary lines of a label drawn from several runs: mean +- 95 % interval over the runs."""
    from cutedl.experiments import t_quantile

    def spread(values):
        v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
        if v.size < 2:
            return f"{v.mean():.4g}" if v.size else "-"
        return f"{v.mean():.4g} +- {t_quantile(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size):.2g}"

    lines = [f"{label} ({len(runs)} runs, mean +- 95 % CI)"]
    stops = [_num(h.stopped_epoch) for h in runs]
    if any(s is not None for s in stops):
        lines.append(f"  stop epoch {spread(stops)}")
    for k in keys:
        best = []
        for h in runs:
            y = _finite(h.history.get(k, []))
            if y.size:
                best.append(float(y.min() if _direction(k) == "min" else y.max()))
        if best:
            lines.append(f"  best {k} {spread(best)}")
    lines.append("")
    return lines


# ---------------------------------------------------------------------------- helpers
_HISTORY_ATTRS = ("stop_reason", "stopped_step", "stopped_epoch", "best", "restored", "params",
                  "wall_time")


def _check_history(history, who) -> None:
    missing = [a for a in _HISTORY_ATTRS if not hasattr(history, a)]
    if not isinstance(getattr(history, "history", None), dict) or missing:
        raise TypeError(f"{who} expected a cutedl History (a .history dict of lists and "
                        f"{', '.join(_HISTORY_ATTRS)}), got {type(history).__name__}. Pass the "
                        f"History returned by fit(), or History.load(path).")


def _check_path(path, who) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{who} expected a file path (str or os.PathLike), got "
                        f"{type(path).__name__}.")
    return os.fspath(path)


def _check_panels(panels) -> list:
    if panels is None:
        return []
    if isinstance(panels, (str, bytes)) or not isinstance(panels, Sequence):
        raise TypeError(f"fit_report panels must be a list of (title, draw) pairs, got "
                        f"{type(panels).__name__}.")
    out = []
    for p in panels:
        if not (isinstance(p, tuple | list) and len(p) == 2 and isinstance(p[0], str)
                and callable(p[1])):
            raise TypeError(f"fit_report panels entries must be (title: str, draw: callable) "
                            f"where draw(ax) draws into a Matplotlib Axes, got {p!r}.")
        out.append((p[0], p[1]))
    return out


def _write_png(fig, path, dpi, who) -> None:
    buf = io.BytesIO()
    # Light compression: several times faster to encode, and the file is rewritten often.
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    data = buf.getvalue()
    # Drop the artists now rather than waiting for the cycle collector: a listener redraws
    # every validation, and figures are large.
    fig.clear()
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as err:
        msg = (f"{who} could not write {path!r}: {err.strerror or err}. Check that the "
               f"directory is writable and the path is not an existing directory.")
        if err.errno is None:
            raise OSError(msg) from err
        # OSError(errno, ...) picks the matching subclass (PermissionError, ...).
        raise OSError(err.errno, msg) from err


def _direction(key: str) -> str:
    """'min' when lower is better for ``key``, else 'max' (custom columns judged by their name)."""
    return direction(key, guess=True)


def _panel_of(monitor) -> str | None:
    """The panel that shows a monitored column: 'val_loss' -> 'loss', 'val_acc' -> 'acc'."""
    if not isinstance(monitor, str):
        return None
    return monitor[4:] if monitor.startswith("val_") else monitor


def _stop_info(history) -> dict | None:
    """Where and why the fit stopped early, or None (no stop recorded, or ran to the end)."""
    step = _num(history.stopped_step)
    if step is None or history.stop_reason == "completed":
        return None
    epoch = history.stopped_epoch
    if epoch is None:
        epoch = _epoch_at(history, step)
    reason = history.stop_reason
    what = "early stop" if reason in (None, "early_stopping") else f"stopped ({reason})"
    where = f"step {_fmt_int(step)}" + (f" (epoch {epoch})" if epoch is not None else "")
    return {"step": step, "label": f"{what} @ {where}"}


def _restored_info(history) -> dict | None:
    r = history.restored if isinstance(history.restored, dict) else None
    step = _num(r.get("step")) if r else None
    if step is None:
        return None
    epoch = r.get("epoch")
    if epoch is None:
        epoch = _epoch_at(history, step)
    label = (f"restored best weights from epoch {epoch} (step {_fmt_int(step)})"
             if epoch is not None else f"restored best weights from step {_fmt_int(step)}")
    return {"step": step, "epoch": epoch, "label": label}


def _epoch_at(history, step):
    """The epoch of the last check at or before ``step``, or None."""
    if "epoch" not in history.history:
        return None
    epochs = _column(history.history["epoch"])
    at = np.flatnonzero((_steps(history) <= step) & np.isfinite(epochs))
    return int(epochs[at[-1]]) if at.size else None


def _steps(history) -> np.ndarray:
    """The x values: the ``step`` column, or 1, 2, 3... when a history has none."""
    if "step" in history.history:
        return _column(history.history["step"])
    return np.arange(1, len(next(iter(history.history.values()), [])) + 1, dtype=np.float64)


def _column(col) -> np.ndarray:
    """A column as float64 with anything that is not a real number (None, strings) as NaN."""
    return np.array([float(v) if isinstance(v, numbers.Real) else math.nan for v in col],
                    dtype=np.float64)


def _finite(col) -> np.ndarray:
    y = _column(col)
    return y[np.isfinite(y)]


def _has_numbers(col) -> bool:
    """True for a column of numbers (NaN counts: a metric not measured yet still has a panel)."""
    return not col or any(isinstance(v, numbers.Real) for v in col)


def _num(v) -> float | None:
    """``v`` as a finite float, or None."""
    if not is_number(v):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _note(ax, text) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.45",
            fontsize=11)


def _fmt_int(v) -> str:
    v = _num(v)
    if v is None:
        return "-"
    return str(int(v)) if v == int(v) else f"{v:g}"


def _fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {s:02d} s"


# ---------------------------------------------------------------------------- validation records, replays, dynamics
_DYNAMICS_TITLES = {"grad_norm": "gradient norm", "update_ratio": "update/weight ratio",
                    "dead_relu": "dead ReLU share", "act_std": "activation std"}


def dynamics_panel(dynamics, quantity: str = "update_ratio", title: str | None = None) -> tuple:
    """A fit-report panel ``(title, draw)`` of one :class:`~cutedl.listeners.Dynamics` figure per layer.

    Pass it to :func:`fit_report` (or ``FitReport(..., panels=[...])``): ``draw`` reads the
    listener's records each time it is called, so a report redrawn during training shows the
    checks so far. Ratios, norms and spreads are drawn on a log scale; the update/weight panel
    marks the healthy 1e-3 and the "lr likely too high" threshold. The listener's
    :meth:`~cutedl.listeners.Dynamics.diagnoses` about the quantity are written in the panel.

    Args:
        dynamics: a :class:`~cutedl.listeners.Dynamics` listener.
        quantity: 'update_ratio' (default), 'grad_norm', 'dead_relu' or 'act_std'.
        title: the panel title (default: the quantity's name).

    Example:
        >>> dyn = listeners.Dynamics()
        >>> history = sess.fit(..., listeners=[dyn])
        >>> fit_report(history, 'report.png', panels=[dynamics_panel(dyn), dynamics_panel(dyn, 'dead_relu')])
    """
    if not callable(getattr(dynamics, "series", None)) or not callable(getattr(dynamics, "diagnoses", None)):
        raise TypeError(f"dynamics_panel expected a cutedl listeners.Dynamics, got {type(dynamics).__name__}.")
    dynamics.series(quantity)  # an unknown quantity fails now, not at the first draw

    def draw(ax):
        steps, values = dynamics.series(quantity)
        drawn = 0
        for name, v in values.items():
            keep = np.isfinite(v) & np.isfinite(steps)
            if keep.any():
                ax.plot(steps[keep], v[keep], label=name, linewidth=1.3,
                        marker="o" if keep.sum() <= _MARKERS_UP_TO else None, markersize=3)
                drawn += 1
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if not drawn:
            _note(ax, "no data yet")
            return
        finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
        if quantity == "dead_relu":
            ax.set_ylim(-0.02, 1.02)
        elif finite.size and np.all(finite > 0):
            ax.set_yscale("log")
        if quantity == "update_ratio":
            ax.axhline(1e-3, color="0.5", linestyle=":", linewidth=1, label="healthy ~1e-3")
            ax.axhline(type(dynamics).HIGH_UPDATE, color=_STOP_COLOR, linestyle=":", linewidth=1,
                       label="lr likely too high")
        ax.legend(fontsize=7, loc="best")
        found = dynamics.diagnoses(quantity)
        if found:
            more = f"\n(+{len(found) - 3} more)" if len(found) > 3 else ""
            ax.text(0.02, 0.02, "\n".join(found[:3]) + more, transform=ax.transAxes, ha="left", va="bottom",
                    fontsize=7, color=_STOP_COLOR, bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))

    return (title if title is not None else f"{_DYNAMICS_TITLES.get(quantity, quantity)} per layer", draw)


def confusion_report(record, path, title: str | None = None, dpi: int = 100, *, restored: int | None = None,
                     figsize: tuple[float, float] | None = None) -> str:
    """Write a PNG of a validation record's classes and return its path.

    Panels: the confusion matrix (rows: true class, normalised per row, counts written for up
    to 12 classes) at the restored check and at the last check side by side; the accuracy of
    each class over the checks; and how many samples changed their prediction at each check.
    The summary box gives both accuracies, the bootstrap interval of the best check and the
    most unstable samples.

    Args:
        record: a :class:`~cutedl.listeners.ValidationRecord` of a classifier, or the path of one.
        path: where to write the PNG (parent directories are created, atomic replace).
        title: figure title (default ``'Validation record'``).
        dpi: resolution in dots per inch.
        restored: the check index to show as restored (default: the record's restored check, or
            its best validation-loss check when the fit restored nothing).
        figsize: ``(width, height)`` in inches.

    Returns:
        ``path`` as a string.

    Raises:
        TypeError: ``record`` is not a ValidationRecord or a path.
        ValueError: a record without classes (regression) or without checks.
        OSError: the file cannot be written.

    Example:
        >>> confusion_report(ValidationRecord.load('runs/rec.npz'), 'runs/confusion.png')
        'runs/confusion.png'
    """
    record = _as_record(record, "confusion_report")
    path = _check_path(path, "confusion_report")
    if record.classes is None:
        raise ValueError("confusion_report needs a record of classes; this one holds scores (regression).")
    if not len(record):
        raise ValueError("confusion_report: the record has no checks yet.")
    if restored is None:
        restored = record.restored_index
        what = "restored"
        if restored is None:
            restored, what = int(np.argmin(record.mean_losses())), "best loss"
    else:
        restored, what = int(restored) % len(record), "chosen"
    acc = record.accuracies()
    per_class = record.class_accuracies()
    flips = record.flips()
    summary = _record_summary(record, restored, what, acc, flips)
    fig, axes, right = _new_figure(4, dpi, figsize, summary)
    fig.suptitle(title if title is not None else "Validation record", fontsize=13)
    last = len(record) - 1
    for ax, k, label in ((axes[0], restored, what), (axes[1], last, "last")):
        _draw_confusion(ax, record.confusion(k))
        ax.set_title(f"{label}: epoch {record.epochs[k]}, step {record.steps[k]} (acc {100 * acc[k]:.2f} %)",
                     fontsize=9)
    steps = record.steps.astype(np.float64)
    ax = axes[2]
    marker = "o" if len(record) <= _MARKERS_UP_TO else None
    for c in range(record.classes):
        keep = np.isfinite(per_class[:, c])
        if keep.any():
            ax.plot(steps[keep], per_class[keep, c], linewidth=1, marker=marker, markersize=2,
                    label=str(c) if record.classes <= 12 else None)
    ax.plot(steps, acc, color="black", linewidth=2, label="all")
    ax.axvline(steps[restored], color=_RESTORED_COLOR, linestyle="-.", linewidth=1.2, label=what)
    ax.set_title("accuracy per class", fontsize=10)
    ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax = axes[3]
    if len(record) > 1:
        ax.bar(steps[1:], flips.per_check, width=0.8 * float(np.min(np.diff(steps))) if len(steps) > 1 else 1.0,
               color=_VAL_COLOR)
    else:
        _note(ax, "one check: nothing flips yet")
    ax.set_title("samples whose prediction changed", fontsize=10)
    ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)
    fig.text(right + _SUMMARY_GAP / fig.get_figwidth(), 1.0 - _TOP / fig.get_figheight(), summary, ha="left",
             va="top", family="monospace", fontsize=8,
             bbox=dict(boxstyle="round", facecolor="whitesmoke", edgecolor="0.7"))
    _write_png(fig, path, dpi, "confusion_report")
    return path


def replay_report(results, path, metric: str | None = None, title: str | None = None, dpi: int = 100, *,
                  figsize: tuple[float, float] | None = None) -> str:
    """Write a PNG of replayed early-stopping settings: epochs saved against ``metric`` lost.

    Left: one point per ``(patience, min_delta)`` setting, the epochs it saves (against running
    every recorded check) against how much ``metric`` it loses (against the reference that runs
    every check and restores the best); the frontier (no other setting saves more for less) is
    drawn as a line. Right: ``metric`` of the weights each setting keeps, over patience, one line
    per ``min_delta``, with the reference.

    Args:
        results: a :class:`~cutedl.listeners.ReplayTable` from :func:`~cutedl.listeners.replay_grid`.
        path: where to write the PNG (parent directories are created, atomic replace).
        metric: a scored metric (default: 'accuracy' when scored, else the first).
        title: figure title (default ``'Early-stopping replay'``).
        dpi: resolution in dots per inch.
        figsize: ``(width, height)`` in inches.

    Returns:
        ``path`` as a string.

    Example:
        >>> table = listeners.replay_grid(history, record, patiences=[1, 3, 10], score=(x_test, y_test), model=model)
        >>> replay_report(table, 'runs/replay.png')
        'runs/replay.png'
    """
    if not (hasattr(results, "rows") and hasattr(results, "metrics") and callable(getattr(results, "frontier", None))):
        raise TypeError(f"replay_report expected the ReplayTable of listeners.replay_grid, got "
                        f"{type(results).__name__}.")
    path = _check_path(path, "replay_report")
    if not results.rows:
        raise ValueError("replay_report: the table has no settings.")
    if metric is None:
        metric = "accuracy" if "accuracy" in results.metrics else results.metrics[0]
    if metric not in results.metrics:
        raise ValueError(f"replay_report: metric {metric!r} was not scored; scored: {', '.join(results.metrics)}.")
    pct = metric.endswith("accuracy")
    unit = 100.0 if pct else 1.0
    rows = results.rows
    by_epochs = len({r["stop_epoch"] for r in rows}) > 1 or all(r["steps_saved"] == 0 for r in rows)
    xkey = "epochs_saved" if by_epochs else "steps_saved"
    summary = _replay_summary(results, metric, xkey, unit, pct)
    fig, axes, right = _new_figure(2, dpi, figsize, summary)
    fig.suptitle(title if title is not None else "Early-stopping replay", fontsize=13)
    ax = axes[0]
    deltas = sorted({r["min_delta"] for r in rows})
    markers = "osD^v<>p*h"
    patiences = sorted({r["patience"] for r in rows})
    colors = {p: f"C{i % 10}" for i, p in enumerate(patiences)}
    for r in rows:
        ax.scatter(r[xkey], unit * r[f"{metric}_lost"], color=colors[r["patience"]],
                   marker=markers[deltas.index(r["min_delta"]) % len(markers)], s=30, zorder=3)
        ax.annotate(f"p={r['patience']}", (r[xkey], unit * r[f"{metric}_lost"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    front = sorted(results.frontier(metric), key=lambda r: r[xkey])
    ax.plot([r[xkey] for r in front], [unit * r[f"{metric}_lost"] for r in front], color="0.3",
            linewidth=1, drawstyle="steps-post", label="frontier", zorder=2)
    for d in deltas:
        ax.scatter([], [], color="0.4", marker=markers[deltas.index(d) % len(markers)], label=f"min_delta={d:g}")
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_xlabel(xkey.replace("_", " "))
    ax.set_ylabel(f"{metric} lost" + (" (points)" if pct else ""))
    ax.set_title(f"{xkey.replace('_', ' ')} vs {metric} lost", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax = axes[1]
    for i, d in enumerate(deltas):
        sel = sorted((r for r in rows if r["min_delta"] == d), key=lambda r: r["patience"])
        ax.plot([r["patience"] for r in sel], [unit * r[metric] for r in sel], marker=markers[i % len(markers)],
                linewidth=1.2, label=f"min_delta={d:g}")
    ax.axhline(unit * results.reference[metric], color=_RESTORED_COLOR, linestyle="-.", linewidth=1.2,
               label="reference (every check, best restored)")
    ax.set_xlabel("patience")
    ax.set_ylabel(metric + (" (%)" if pct else ""))
    ax.set_title(f"{metric} of the weights kept ({results.scored_on})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.text(right + _SUMMARY_GAP / fig.get_figwidth(), 1.0 - _TOP / fig.get_figheight(), summary, ha="left",
             va="top", family="monospace", fontsize=8,
             bbox=dict(boxstyle="round", facecolor="whitesmoke", edgecolor="0.7"))
    _write_png(fig, path, dpi, "replay_report")
    return path


def _as_record(record, who):
    if isinstance(record, (str, os.PathLike)):
        from cutedl.listeners.recorder import ValidationRecord

        return ValidationRecord.load(record)
    if not (hasattr(record, "confusion") and hasattr(record, "class_accuracies") and hasattr(record, "steps")):
        raise TypeError(f"{who} expected a cutedl ValidationRecord (or its path), got {type(record).__name__}.")
    return record


def _draw_confusion(ax, counts) -> None:
    """A row-normalised confusion matrix, with the counts written when there are few classes."""
    k = len(counts)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    if k <= 12:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")


def _record_summary(record, restored, what, acc, flips) -> str:
    lines = [f"checks        {len(record)}", f"samples       {record.num_samples}", f"classes       {record.classes}",
             f"acc {what:<9} {100 * acc[restored]:.2f} % (epoch {record.epochs[restored]})",
             f"acc last      {100 * acc[-1]:.2f} % (epoch {record.epochs[-1]})", ""]
    if len(record) > 1:
        for metric in ("val_loss", "val_accuracy"):
            b = record.best_check_interval(metric, boots=500)
            where = (f"epochs {b.low_epoch}-{b.high_epoch}" if b.low_epoch != b.high_epoch else f"epoch {b.low_epoch}")
            lines.append(f"best by {metric[4:]:<8} {where} (95 %)")
        lines.append("")
    lines.append(f"changed once+  {len(flips.indices)} samples")
    if len(flips.indices):
        top = ", ".join(f"#{i} ({flips.counts[i]}x)" for i in flips.indices[:4])
        lines += ["most unstable:", f"  {top}"]
    return "\n".join(lines)


def _replay_summary(results, metric, xkey, unit, pct) -> str:
    ref = results.reference
    fmt = (lambda v: f"{unit * v:.2f}{' %' if pct else ''}")  # noqa: E731
    lines = [f"monitor     {results.monitor}", f"scored on   {results.scored_on}", f"settings    {len(results.rows)}",
             f"reference   epoch {ref.get('restored_epoch')}: {metric} {fmt(ref[metric])}", "", "frontier:"]
    for r in sorted(results.frontier(metric), key=lambda r: -r[xkey]):
        lines.append(f"  p={r['patience']:<3} d={r['min_delta']:<6g} saves {r[xkey]:>4}, "
                     f"loses {unit * r[metric + '_lost']:.2f}")
    return "\n".join(lines)
