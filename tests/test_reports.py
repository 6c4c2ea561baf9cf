"""Tests for cutedl.reports: PNG fit reports and run comparisons, all headless."""
import math
import os
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.axes import Axes

from cutedl import reports
from cutedl.history import History
from cutedl.reports import compare_report, fit_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_history(rows=20, steps_per_check=10, checks_per_epoch=4, val_every=1, lr_drop_at=None,
                 stopped=True):
    """A hand-built History: loss falls, accuracy rises, validation every ``val_every`` rows."""
    h = History()
    for i in range(rows):
        step = (i + 1) * steps_per_check
        row = {"step": step, "epoch": i // checks_per_epoch + 1, "loss": 1.0 / (i + 1),
               "accuracy": 1.0 - 1.0 / (i + 2), "lr": 0.1, "time": 0.5 * (i + 1)}
        if lr_drop_at is not None and i >= lr_drop_at:
            row["lr"] = 0.01
        if i % val_every == 0:
            # Validation loss bottoms out at row 8, then rises (overfitting).
            row["val_loss"] = 0.5 + 0.01 * (i - 8) ** 2
            row["val_accuracy"] = 0.9 - 0.002 * (i - 8) ** 2
        h.append(row)
    if stopped:
        h.best = {"monitor": "val_loss", "mode": "min", "value": 0.5, "step": 90, "epoch": 3}
        h.stopped_step = rows * steps_per_check
        h.stopped_epoch = (rows - 1) // checks_per_epoch + 1
        h.stop_reason = "early_stopping"
        h.restored = {"step": 90, "epoch": 3}
        h.wall_time = 12.5
    return h


def read_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    return mpimg.imread(path)


def assert_size(img, figsize, dpi):
    """The image is figsize * dpi pixels (within the one pixel Agg may round away)."""
    w, h = figsize
    rows, cols = img.shape[:2]
    assert abs(rows - h * dpi) <= 1 and abs(cols - w * dpi) <= 1, (img.shape, figsize, dpi)


def summary_text(fig):
    texts = [t.get_text() for t in fig.texts if "steps" in t.get_text()]
    assert len(texts) == 1
    return texts[0]


# ---------------------------------------------------------------------------- fit_report
def test_fit_report_writes_a_decodable_png_of_the_expected_size(tmp_path):
    h = make_history(lr_drop_at=10)
    out = fit_report(h, tmp_path / "report.png", title="demo", dpi=60)
    assert out == str(tmp_path / "report.png")
    img = read_png(out)
    n_panels = 3  # loss, accuracy, lr
    assert_size(img, reports._figsize(n_panels), 60)
    assert img.std() > 0


def test_default_figsize_grows_with_panels():
    # 5 x 3 inch panels in at most two columns, plus a 3.6 inch summary column.
    w1, h1 = reports._figsize(1)
    w2, h2 = reports._figsize(2)
    w4, h4 = reports._figsize(4)
    assert w2 - w1 > 5.0 and h2 == h1
    assert w4 == w2 and h4 - h2 > 3.0
    assert reports._figsize(3) == (w4, h4)


def test_explicit_figsize_and_dpi_set_the_pixel_size(tmp_path):
    img = read_png(fit_report(make_history(), tmp_path / "r.png", dpi=50, figsize=(6, 4)))
    assert img.shape[:2] == (200, 300)


def test_layout_lists_loss_then_metrics_then_varying_lr():
    h = History()
    h.append({"step": 1, "epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1,
              "val_accuracy": 0.4, "val_f1": 0.3, "lr": 0.1, "time": 1.0})
    h.append({"step": 2, "epoch": 1, "loss": 0.9, "mae": 0.2, "lr": 0.05, "time": 2.0})
    assert reports._layout(h) == ["loss", "accuracy", "f1", "mae", "lr"]


def test_layout_leaves_out_a_constant_lr_and_bookkeeping_columns():
    h = make_history()  # lr stays 0.1
    assert reports._layout(h) == ["loss", "accuracy"]
    h = History()
    h.append({"step": 1, "epoch": 1, "loss": 1.0, "lr": 0.1})
    h.append({"step": 2, "epoch": 1, "loss": 0.9})  # lr NaN here: still one distinct value
    assert reports._layout(h) == ["loss"]


def test_number_of_axes_is_panels_plus_custom_panels():
    h = make_history(lr_drop_at=5)
    panels = [("a", lambda ax: ax.plot([0, 1], [1, 0])), ("b", lambda ax: None)]
    fig = reports._fit_figure(h, panels=panels)
    # loss + accuracy + lr + 2 custom panels; the epoch labels and the summary add no axes.
    assert len(fig.axes) == 1 + 1 + 1 + 2
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "lr", "a", "b"]
    assert fig.axes[2].get_yscale() == "log"


def test_custom_panel_gets_an_axes(tmp_path):
    calls = []

    def draw(ax):
        calls.append((ax, ax.get_title()))
        ax.scatter([1.0, 2.0, 3.0], [1.1, 1.9, 3.2])

    path = fit_report(make_history(), tmp_path / "r.png", panels=[("pred vs truth", draw)],
                      dpi=40)
    assert len(calls) == 1 and isinstance(calls[0][0], Axes)
    assert calls[0][1] == "pred vs truth"
    assert_size(read_png(path), reports._figsize(3), 40)


def test_empty_history_draws_a_no_data_note(tmp_path):
    h = History()
    img = read_png(fit_report(h, tmp_path / "empty.png", dpi=40))
    assert_size(img, reports._figsize(1), 40)
    assert img.std() > 0
    fig = reports._fit_figure(h)
    assert len(fig.axes) == 1
    assert any(t.get_text() == "no data yet" for t in fig.axes[0].texts)
    assert "no data yet" in summary_text(fig)


def test_one_row_history_draws_markers(tmp_path):
    h = History()
    h.append({"step": 10, "epoch": 1, "loss": 0.5, "val_loss": 0.6, "accuracy": 0.7,
              "val_accuracy": 0.6, "lr": 0.1, "time": 1.0})
    assert read_png(fit_report(h, tmp_path / "one.png", dpi=40)).std() > 0
    fig = reports._fit_figure(h)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert lines["loss"].get_marker() == "o"
    np.testing.assert_array_equal(lines["val_loss"].get_xdata(), [10.0])
    np.testing.assert_array_equal(lines["val_loss"].get_ydata(), [0.6])


def test_nan_gaps_are_skipped_not_drawn(tmp_path):
    h = make_history(rows=30, val_every=3)
    fit_report(h, tmp_path / "gaps.png", dpi=40)
    fig = reports._fit_figure(h)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    expected_x = [(i + 1) * 10.0 for i in range(30) if i % 3 == 0]
    expected_y = [0.5 + 0.01 * (i - 8) ** 2 for i in range(30) if i % 3 == 0]
    np.testing.assert_allclose(lines["val_loss"].get_xdata(), expected_x)
    np.testing.assert_allclose(lines["val_loss"].get_ydata(), expected_y)
    assert len(lines["loss"].get_xdata()) == 30


def test_best_stop_and_restored_are_marked():
    h = make_history(rows=20, checks_per_epoch=4)
    fig = reports._fit_figure(h)
    loss_ax = fig.axes[0]
    labels = [ln.get_label() for ln in loss_ax.get_lines()]
    assert "early stop @ step 200 (epoch 5)" in labels
    assert "restored best weights from epoch 3 (step 90)" in labels
    best = [ln for ln in loss_ax.get_lines() if ln.get_label().startswith("best val_loss")]
    assert len(best) == 1 and best[0].get_marker() == "*"
    assert list(best[0].get_xdata()) == [90] and list(best[0].get_ydata()) == [0.5]
    # The stop and restore lines appear on every curve panel, labelled only once.
    acc_x = sorted(ln.get_xdata()[0] for ln in fig.axes[1].get_lines()
                   if ln.get_linestyle() in ("--", "-."))
    assert acc_x == [90, 200]
    # The legend of the loss panel lists the annotations.
    legend = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert "early stop @ step 200 (epoch 5)" in legend


def test_stop_epoch_is_looked_up_when_not_recorded():
    h = make_history(rows=20, checks_per_epoch=4)
    h.stopped_epoch = None
    h.restored = {"step": 130, "epoch": None}
    h.stop_reason = "nan"
    fig = reports._fit_figure(h)
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    # step 200 is row 20 -> epoch 5; step 130 is row 13 -> epoch 4.
    assert "stopped (nan) @ step 200 (epoch 5)" in labels
    assert "restored best weights from epoch 4 (step 130)" in labels


def test_absent_annotations_are_fine(tmp_path):
    h = make_history(stopped=False)
    assert h.best is None and h.stopped_step is None and h.restored is None
    assert read_png(fit_report(h, tmp_path / "r.png", dpi=40)).std() > 0
    fig = reports._fit_figure(h)
    styles = [ln.get_linestyle() for ax in fig.axes for ln in ax.get_lines()]
    assert "--" not in styles and "-." not in styles


def test_completed_fit_draws_no_stop_line():
    h = make_history()
    h.stop_reason = "completed"
    fig = reports._fit_figure(h)
    assert not any(ln.get_label().startswith(("early stop", "stopped"))
                   for ln in fig.axes[0].get_lines())


def test_summary_lists_best_final_steps_epochs_time_and_reason():
    h = make_history(rows=20, checks_per_epoch=4)
    text = summary_text(reports._fit_figure(h))
    val_loss = np.array(h["val_loss"], dtype=float)
    val_acc = np.array(h["val_accuracy"], dtype=float)
    # Independent reference: min of the loss, max of the accuracy, and where they happen.
    i_loss, i_acc = int(np.nanargmin(val_loss)), int(np.nanargmax(val_acc))
    assert f"{val_loss[i_loss]:.5g} (min) @ {h['step'][i_loss]}" in text
    assert f"{val_acc[i_acc]:.5g} (max) @ {h['step'][i_acc]}" in text
    assert f"{h['loss'][-1]:.5g}" in text
    assert "200" in text and "epochs     5" in text
    assert "12.5 s" in text
    assert "early_stopping" in text


def test_summary_wall_time_falls_back_to_last_time_entry():
    h = make_history(rows=10)
    h.wall_time = 0.0
    h.append({"step": 110, "epoch": 3, "loss": 0.05, "time": math.nan})
    text = summary_text(reports._fit_figure(h))
    assert "wall time  5.0 s" in text  # the last finite 'time' is 0.5 * 10


def test_direction_of_common_keys():
    assert reports._direction("val_loss") == "min"
    assert reports._direction("mae") == "min"
    assert reports._direction("val_mse") == "min"
    assert reports._direction("val_accuracy") == "max"


def test_parent_directories_are_created_and_no_temp_files_remain(tmp_path):
    target = tmp_path / "a" / "b" / "report.png"
    h = make_history()
    fit_report(h, target, dpi=40)
    fit_report(h, target, dpi=40)  # the second write replaces the first
    assert os.listdir(target.parent) == ["report.png"]
    assert read_png(target).std() > 0


def test_unwritable_path_raises_oserror_naming_the_path(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    bad = blocker / "report.png"
    with pytest.raises(OSError, match="not_a_dir"):
        fit_report(make_history(), bad)
    assert sorted(os.listdir(tmp_path)) == ["not_a_dir"]


def test_bad_arguments_raise_teaching_errors(tmp_path):
    with pytest.raises(TypeError, match="expected a cutedl History"):
        fit_report({"loss": [1.0]}, tmp_path / "r.png")
    with pytest.raises(TypeError, match=r"\(title: str, draw: callable\)"):
        fit_report(make_history(), tmp_path / "r.png", panels=[("t", "not callable")])
    with pytest.raises(TypeError, match="file path"):
        fit_report(make_history(), 123)
    with pytest.raises(ValueError, match=r"Reports: dpi must be a positive number \(e.g. dpi=100\), got 0"):
        fit_report(make_history(), tmp_path / "r.png", dpi=0)


def test_no_pyplot(tmp_path):
    """Reports draw headless without importing pyplot (drawing time is in bench/reports.py)."""
    pyplot_before = "matplotlib.pyplot" in sys.modules
    h = make_history(rows=300, lr_drop_at=150)
    out = fit_report(h, tmp_path / "r.png")
    assert read_png(out).std() > 0
    if not pyplot_before:
        assert "matplotlib.pyplot" not in sys.modules


# ---------------------------------------------------------------------------- compare_report
def test_compare_report_overlays_runs(tmp_path):
    runs = {"sgd": make_history(rows=20), "adam": make_history(rows=12, stopped=False)}
    out = compare_report(runs, tmp_path / "cmp" / "compare.png", dpi=50)
    img = read_png(out)
    assert_size(img, reports._figsize(2), 50)
    assert img.std() > 0
    fig = reports._compare_figure(runs, ("val_loss", "val_accuracy"))
    assert [ax.get_title() for ax in fig.axes] == ["val_loss", "val_accuracy"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    # Only sgd stopped early and restored weights, so only its marks (and their key) appear.
    assert legend == ["sgd", "adam", "stopped", "restored weights"]
    marks = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() in ("x", "D")]
    assert sorted((ln.get_marker(), ln.get_xdata()[0]) for ln in marks) == [("D", 90), ("x", 200)]


def test_compare_report_skips_keys_no_run_has():
    runs = {"a": make_history(), "b": make_history()}
    fig = reports._compare_figure(runs, ("val_loss", "val_f1", "val_accuracy"))
    assert [ax.get_title() for ax in fig.axes] == ["val_loss", "val_accuracy"]
    fig = reports._compare_figure(runs, ("val_f1",))
    assert len(fig.axes) == 1
    assert "available" in fig.axes[0].texts[0].get_text()


def test_compare_report_without_annotations(tmp_path):
    runs = {"a": make_history()}
    fig = reports._compare_figure(runs, ("val_loss",), annotate_stops=False)
    assert not [ln for ln in fig.axes[0].get_lines() if ln.get_marker() in ("x", "D")]
    assert read_png(compare_report(runs, tmp_path / "c.png", keys="val_loss",
                                   annotate_stops=False, dpi=40)).std() > 0


def test_compare_report_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no runs"):
        compare_report({}, tmp_path / "c.png")
    with pytest.raises(TypeError, match="dict label -> History"):
        compare_report([make_history()], tmp_path / "c.png")
    with pytest.raises(TypeError, match="run 'b'"):
        compare_report({"a": make_history(), "b": 3}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="no keys"):
        compare_report({"a": make_history()}, tmp_path / "c.png", keys=())


# ---------------------------------------------------------------------------- summary blocks, log scale, titles
def test_summary_labels_the_last_check_and_adds_the_restored_check():
    h = make_history(rows=20, checks_per_epoch=4)  # restored step 90 = row 9 (index 8), epoch 3
    text = summary_text(reports._fit_figure(h))
    assert "last check" in text and "\nfinal\n" not in text
    last_block = text.split("last check\n")[1].split("\n\n")[0]
    assert f"{h['val_loss'][-1]:.5g}" in last_block
    restored_block = text.split("restored (epoch 3)\n")[1]
    rows = dict(line.split() for line in restored_block.strip().splitlines())
    assert float(rows["val_loss"]) == pytest.approx(h["val_loss"][8]) == 0.5  # the best check
    assert float(rows["loss"]) == pytest.approx(h["loss"][8], rel=1e-4)
    h.restored = None
    assert "restored (" not in summary_text(reports._fit_figure(h))


def loss_history(start, end, rows=10):
    h = History()
    for i, v in enumerate(np.geomspace(start, end, rows)):
        h.append({"step": i + 1, "epoch": i + 1, "loss": float(v), "val_loss": float(v) * 1.1, "lr": 0.1})
    return h


def test_log_loss_auto_when_the_loss_spans_more_than_two_decades():
    assert reports._fit_figure(loss_history(2.0, 1e-3)).axes[0].get_yscale() == "log"
    assert reports._fit_figure(loss_history(2.0, 0.05)).axes[0].get_yscale() == "linear"
    assert reports._fit_figure(loss_history(2.0, 0.05), log_loss=True).axes[0].get_yscale() == "log"
    assert reports._fit_figure(loss_history(2.0, 1e-3), log_loss=False).axes[0].get_yscale() == "linear"
    h = loss_history(2.0, 1e-3)
    h.append({"step": 11, "epoch": 11, "loss": -0.5})  # a log axis cannot show it
    assert reports._fit_figure(h, log_loss=True).axes[0].get_yscale() == "linear"
    with pytest.raises(ValueError, match="log_loss must be 'auto', True or False"):
        fit_report(h, "r.png", log_loss="yes")


def test_fit_report_listener_titles_with_model_loss_and_optimizer(tmp_path):
    from cutedl import Model, Session, layers, listeners, optimizers

    model = Model([layers.Dense(2, inshape=(3,), activation="softmax")], name="tiny").assemble()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(0.01))
    report = listeners.FitReport(tmp_path / "r.png", budget=0, log_loss=False)
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    sess.fit(x, np.eye(2, dtype=np.float32)[[0, 1] * 4], epochs=1, listeners=[report], verbose=0)
    assert report.default_title() == "tiny: CategoricalCrossentropy, Adam(lr=0.01)"
    assert report.draws >= 1 and read_png(tmp_path / "r.png").std() > 0
    with pytest.raises(ValueError, match="log_loss"):
        listeners.FitReport(tmp_path / "r.png", log_loss="sometimes")


# ---------------------------------------------------------------------------- several runs per label
def seed_runs(n, offset, rows=12):
    runs = []
    for s in range(n):
        h = make_history(rows=rows, stopped=False)
        h.history["val_loss"] = [v + offset + 0.01 * s if v == v else v for v in h["val_loss"]]
        runs.append(h)
    return runs


def test_compare_report_draws_mean_curves_with_bands_for_several_runs(tmp_path):
    runs = {"a": seed_runs(5, 0.0), "b": seed_runs(3, 0.1, rows=10), "single": make_history(rows=12)}
    fig = reports._compare_figure(runs, ("val_loss",))
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    mean_a = lines["a (mean of 5)"]
    np.testing.assert_allclose(mean_a.get_ydata(), np.array([h["val_loss"] for h in runs["a"]]).mean(axis=0))
    assert "b (mean of 3)" in lines and "single" in lines
    # one shaded band per multi-run label
    assert len(ax.collections) == 2
    # overlapping curves stay apart: different line styles and markers
    styles = {(ln.get_linestyle(), ln.get_marker()) for ln in (mean_a, lines["b (mean of 3)"], lines["single"])}
    assert len(styles) == 3
    # the epoch axis along the top edge
    assert any(t.get_text() == "epoch " for t in ax.texts)
    summary = [t.get_text() for t in fig.texts if "runs" in t.get_text()][0]
    assert "a (5 runs, mean +- 95 % CI)" in summary
    out = compare_report(runs, tmp_path / "bands.png", keys="val_loss", dpi=40)
    assert read_png(out).std() > 0


def test_compare_report_takes_runs_from_experiments_repeat():
    from cutedl.experiments import Run, Runs

    runs = Runs([Run(0, make_history()), Run(1, make_history()), Run(2, None, error="boom")])
    fig = reports._compare_figure({"x": runs}, ("val_loss",))
    assert [ln.get_label() for ln in fig.axes[0].get_lines()][0] == "x (mean of 2)"
    with pytest.raises(ValueError, match="no finished run"):
        reports._compare_figure({"x": Runs([Run(0, None, error="boom")])}, ("val_loss",))
