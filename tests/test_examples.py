"""Smoke tests for every script in examples/, and the early-stopping replay against the live listener.

The examples are scripts, not a package: each is loaded from its path with importlib and its
``main(argv)`` called with tiny settings.
"""
import importlib.util
import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

import cutedl
from cutedl import Dataset, History, Model, Session, layers, listeners, optimizers

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# One entry per script in examples/: tiny argv (the test adds the report path) and a check of
# what its main() returned. A new script without an entry fails test_every_example_has_a_smoke_test.
def _check_mnist_mlp(result):
    assert 0.0 <= result["test_accuracy"] <= 1.0 and math.isfinite(result["test_loss"])
    assert len(result["history"]) == 1


def _check_linear_regression(result):
    assert math.isfinite(result["w"]) and math.isfinite(result["b"])
    assert len(result["history"]) == 2


def _check_early_stopping(result):
    history, rows = result["history"], result["rows"]
    assert len(result["weights"]) == len(history) == 3
    assert [r["setting"] for r in rows] == ["none (all 3 epochs)", "patience=0 min_delta=0",
                                            "patience=0 min_delta=0.01", "patience=2 min_delta=0",
                                            "patience=2 min_delta=0.01"]
    for row in rows:
        assert row["epochs_saved"] == 3 - row["stop_epoch"]
        assert 0.0 <= row["test_accuracy"] <= 1.0 and math.isfinite(row["test_loss"])


def _check_optimizers(result):
    assert [(r["optimizer"], r["lr"]) for r in result["rows"]] == [
        ("SGD", 0.2), ("Momentum", 0.05), ("Adagrad", 0.05), ("RMSProp", 0.001), ("Adadelta", 1.0),
        ("Adam", 0.001), ("AdamW", 0.001)]
    assert len(result["histories"]) == 7
    for r in result["rows"]:
        assert 0.0 <= r["best_val_accuracy"] <= 1.0 and math.isfinite(r["final_val_loss"])


SMOKE = {
    "mnist_mlp": (["--epochs", "1", "--limit", "300", "--verbose", "0"], _check_mnist_mlp),
    "linear_regression": (["--epochs", "2", "--samples", "200"], _check_linear_regression),
    "early_stopping": (["--epochs", "3", "--limit", "300", "--patience", "0", "2", "--min-delta", "0", "0.01",
                        "--verbose", "0"], _check_early_stopping),
    "optimizers": (["--epochs", "1", "--limit", "300", "--set-lr", "sgd=0.2"], _check_optimizers),
}

# ---- convolution examples (issue 3) ----
def _check_mnist_cnn(result):
    assert set(result["runs"]) == {"plain", "batchnorm"}
    for run in result["runs"].values():
        assert 0.0 <= run["test_accuracy"] <= 1.0 and math.isfinite(run["test_loss"])
        assert len(run["history"]) == 1
    assert result["test_accuracy"] == result["runs"]["plain"]["test_accuracy"]


CONV_SMOKE: dict = {
    "mnist_cnn": (["--epochs", "1", "--limit", "200", "--batchnorm", "--verbose", "0"], _check_mnist_cnn),
}
SMOKE.update(CONV_SMOKE)
# ---- end of convolution examples ----


# ---- CIFAR-10 example (issue 3) ----
import os as _os  # noqa: E402
import shutil as _shutil  # noqa: E402
import tempfile as _tempfile  # noqa: E402

from _cifar10_archive import make_data as _cifar_data, write_archive as _write_cifar  # noqa: E402

# A tiny archive in the real format (200 training, 30 test images), written once for this module.
_CIFAR_ARCHIVE = Path(_tempfile.gettempdir()) / f"cutedl-cifar10-smoke-{_os.getpid()}" / "cifar-10-python.tar.gz"


@pytest.fixture(autouse=True, scope="module")
def _cifar_archive():
    _CIFAR_ARCHIVE.parent.mkdir(exist_ok=True)
    _write_cifar(_CIFAR_ARCHIVE, _cifar_data(n_train_per_batch=40, n_test=30))
    yield
    _shutil.rmtree(_CIFAR_ARCHIVE.parent, ignore_errors=True)


def _check_cifar10_cnn(result):
    assert 0.0 <= result["test_accuracy"] <= 1.0 and math.isfinite(result["test_loss"])
    assert len(result["history"]) == 1 and result["batch_norm"] and result["augment"]


CIFAR_SMOKE: dict = {
    "cifar10_cnn": (["--epochs", "1", "--data", str(_CIFAR_ARCHIVE), "--augment", "--width", "4",
                     "--verbose", "0"], _check_cifar10_cnn),
}
SMOKE.update(CIFAR_SMOKE)
# ---- end of CIFAR-10 example ----


# ---- recurrent examples (issue 4) ----
RECURRENT_SMOKE: dict = {}
SMOKE.update(RECURRENT_SMOKE)
# ---- end of recurrent examples ----


# ---- text examples (issue 4) ----
TEXT_SMOKE: dict = {}
SMOKE.update(TEXT_SMOKE)
# ---- end of text examples ----


def load_example(name: str):
    """Import examples/<name>.py as a fresh module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"cutedl_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def early_stopping():
    return load_example("early_stopping")


# ---------------------------------------------------------------------------- smoke tests
def test_every_example_has_a_smoke_test():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert scripts == set(SMOKE), "add an entry to SMOKE for every script in examples/"


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_example_runs(name, tmp_path, capsys):
    argv, check = SMOKE[name]
    png = tmp_path / "reports" / f"{name}.png"
    result = load_example(name).main(argv + ["--report", str(png)])
    assert isinstance(result, dict)
    check(result)
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[1] >= 400 and img.shape[0] >= 300, img.shape
    # Not a blank canvas: something was drawn.
    assert img[..., :3].std() > 0.01
    assert capsys.readouterr().out.strip(), f"{name} printed nothing"


def test_optimizers_rejects_bad_set_lr():
    with pytest.raises(ValueError, match="NAME=LR with NAME one of sgd"):
        load_example("optimizers").main(["--set-lr", "lion=0.1"])


# ---------------------------------------------------------------------------- replay
def hand_history(values, key="val_loss"):
    h = History()
    for i, v in enumerate(values):
        h.append({"step": 10 * (i + 1), "epoch": i + 1, key: v})
    return h


# Expected answers worked out by hand from EarlyStopping's documented rules.
VALUES = [1.0, 0.9, 0.95, 0.89, 0.92, 0.93]


@pytest.mark.parametrize("patience, min_delta, stop_epoch, restored_epoch", [
    (0, 0.0, 3, 2),      # 0.95 is no improvement on 0.9: stop at once
    (1, 0.0, 3, 2),
    (2, 0.0, 6, 4),      # 0.89 improves (wait reset), then 0.92, 0.93: two misses
    (2, 0.02, 4, 2),     # 0.89 is not below 0.9 - 0.02: second miss in a row
    (3, 0.0, 6, 4),      # never stops: the last check, as for a completed fit
])
def test_replay_by_hand(early_stopping, patience, min_delta, stop_epoch, restored_epoch):
    r = early_stopping.replay(hand_history(VALUES), "val_loss", patience, min_delta, "min")
    assert (r.stop_epoch, r.restored_epoch) == (stop_epoch, restored_epoch)
    assert r.stopped == (patience < 3)
    assert r.stop_step == 10 * stop_epoch and r.restored_index == restored_epoch - 1


def test_replay_max_mode_nan_baseline_warmup(early_stopping):
    replay = early_stopping.replay
    acc = hand_history([0.5, 0.6, math.nan, 0.6, 0.7], key="val_accuracy")
    # 'auto' reads accuracy as higher-is-better; NaN and a tie are misses.
    r = replay(acc, "val_accuracy", patience=2)
    assert (r.stop_epoch, r.restored_epoch, r.best) == (4, 2, 0.6)
    # Nothing beats the baseline 0.65 until epoch 5: four misses first.
    r = replay(acc, "val_accuracy", patience=5, baseline=0.65)
    assert (r.stopped, r.restored_epoch) == (False, 5)
    r = replay(acc, "val_accuracy", patience=4, baseline=0.65)
    assert (r.stopped, r.stop_epoch, r.restored_epoch) == (True, 4, None)
    # Warm-up: epochs 1-2 are ignored, so epoch 3's NaN is the first miss... and epoch 4 the best.
    r = replay(acc, "val_accuracy", patience=1, start_from_epoch=2)
    assert (r.stop_epoch, r.restored_epoch) == (3, None)
    r = replay(acc, "val_accuracy", patience=1, start_from_epoch=3)
    assert (r.stopped, r.restored_epoch) == (False, 5)


def test_replay_errors(early_stopping):
    h = hand_history(VALUES)
    with pytest.raises(ValueError, match="monitor 'val_acc' is not in the history"):
        early_stopping.replay(h, "val_acc")
    with pytest.raises(ValueError, match="patience must be a non-negative integer"):
        early_stopping.replay(h, "val_loss", patience=-1)
    with pytest.raises(ValueError, match="mode must be"):
        early_stopping.replay(h, "val_loss", mode="down")
    with pytest.raises(TypeError, match="expected a cutedl History"):
        early_stopping.replay({"val_loss": [1.0]}, "val_loss")


def _noisy_fit(seed, listener_list, val_steps=0):
    """A tiny fit on random labels: validation loss soon rises, so early stopping has work to do."""
    rs = np.random.default_rng(7)
    x = rs.standard_normal((160, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rs.integers(0, 3, 160)]
    cutedl.set_seed(seed)
    model = Model([layers.Dense(16, inshape=8, activation="relu"),
                   layers.Dense(3, activation="softmax")]).assemble()
    sess = Session(model, loss="categorical_crossentropy", optimizer=optimizers.Adam(0.01),
                   metrics=["accuracy"])
    history = sess.fit(Dataset(x[:120], y[:120], batch_size=32), epochs=25, val_data=(x[120:], y[120:]),
                       val_steps=val_steps, listeners=listener_list, verbose=0)
    return model, history


@pytest.mark.parametrize("monitor, patience, min_delta, kwargs, must_stop", [
    ("val_loss", 0, 0.0, {}, True),
    ("val_loss", 2, 0.0, {"val_steps": 3}, True),       # checks every 3 steps, mid-epoch stops
    ("val_loss", 3, 0.0, {"val_steps": 3, "start_from_epoch": 2}, True),
    ("val_loss", 2, 0.0, {}, True),
    ("val_loss", 3, 0.01, {}, True),
    ("val_loss", 1, 0.0, {"start_from_epoch": 4}, True),
    ("val_loss", 2, 0.0, {"baseline": 0.5}, True),
    ("val_accuracy", 2, 0.0, {}, None),
    ("val_accuracy", 1, 0.02, {"mode": "max"}, None),
    ("loss", 2, 0.0, {}, None),
    ("val_loss", 100, 0.0, {}, False),
])
def test_replay_matches_live_early_stopping(early_stopping, monitor, patience, min_delta, kwargs, must_stop):
    kwargs = dict(kwargs)
    val_steps = kwargs.pop("val_steps", 0)
    live_es = listeners.EarlyStopping(monitor, patience=patience, min_delta=min_delta, **kwargs)
    live_model, live = _noisy_fit(3, [live_es], val_steps)
    recorder = early_stopping.WeightRecorder()
    _, full = _noisy_fit(3, [recorder], val_steps)
    assert full.stop_reason == "completed" and len(recorder.weights) == len(full)
    assert len(full) == (25 if not val_steps else math.ceil(25 * 4 / val_steps))

    r = early_stopping.replay(full, monitor, patience, min_delta, **kwargs)
    if must_stop is not None:
        assert (live.stop_reason == "early_stopping") == must_stop
    assert r.stopped == (live.stop_reason == "early_stopping")
    assert (r.stop_epoch, r.stop_step) == (live.stopped_epoch, live.stopped_step)
    if live.restored is None:
        assert r.restored_index is None
    else:
        assert (r.restored_epoch, r.restored_step) == (live.restored["epoch"], live.restored["step"])
        # The recorded weights of the restored check are the very weights live restored.
        for got, want in zip(live_model.get_weights(), recorder.weights[r.restored_index]):
            np.testing.assert_array_equal(got, want)
    # The recorded run is the live run up to the stop, check for check.
    n = len(live)
    np.testing.assert_array_equal(np.asarray(full[monitor][:n]), np.asarray(live[monitor]))
