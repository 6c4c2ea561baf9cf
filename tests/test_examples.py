"""Smoke tests for every script in examples/ (EarlyStopping.replay is tested in test_replay.py).

The examples are scripts, not a package: each is loaded from its path with importlib and its
``main(argv)`` called with tiny settings.
"""
import importlib.util
import math
from pathlib import Path

import matplotlib.image as mpimg
import pytest

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


def _check_resume(result):
    assert result["same_weights"] and result["same_history"] and result["max_diff"] == 0.0
    assert result["resumed_at"] == {"epoch": 1, "batches_done": 3, "epoch_done": False, "samples": 300}
    assert len(result["history"]) == result["csv_rows"] == 2


SMOKE = {
    "mnist_mlp": (["--epochs", "1", "--limit", "300", "--verbose", "0"], _check_mnist_mlp),
    "linear_regression": (["--epochs", "2", "--samples", "200"], _check_linear_regression),
    "early_stopping": (["--epochs", "3", "--limit", "300", "--patience", "0", "2", "--min-delta", "0", "0.01",
                        "--verbose", "0"], _check_early_stopping),
    "optimizers": (["--epochs", "1", "--limit", "300", "--set-lr", "sgd=0.2"], _check_optimizers),
    "resume": (["--epochs", "2", "--limit", "300", "--kill-at", "5", "--every", "3", "--val-steps", "0"],
               _check_resume),
}

# ---- convolution examples (issue 3) ----
CONV_SMOKE: dict = {}
SMOKE.update(CONV_SMOKE)
# ---- end of convolution examples ----


# ---- CIFAR-10 example (issue 3) ----
CIFAR_SMOKE: dict = {}
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
