"""Smoke tests for every script in examples/ (EarlyStopping.replay is tested in test_replay.py).

The examples are scripts, not a package: each is loaded from its path with importlib and its
``main(argv)`` called with tiny settings.
"""
import importlib.util
import math
import os
from pathlib import Path

import matplotlib.image as mpimg

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# One entry per script in examples/: tiny argv (the test adds the report path) and a check of
# what its main() returned. A new script without an entry fails test_every_example_has_a_smoke_test.
def _check_mnist_mlp(result):
    assert 0.0 <= result["test_accuracy"] <= 1.0 and math.isfinite(result["test_loss"])
    assert len(result["history"]) == 1


def _check_distributed_mnist(result):
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["samples_per_rank"] == [200]


def _check_linear_regression(result):
    assert math.isfinite(result["w"]) and math.isfinite(result["b"])
    assert len(result["history"]) == 2


def _check_early_stopping(result):
    history, rows, runs = result["history"], result["rows"], result["runs"]
    assert len(history) == 3 and runs.seeds == [0, 1] and not runs.failures
    assert [r["setting"] for r in rows] == ["none (all 3 epochs)", "patience=0 min_delta=0",
                                            "patience=0 min_delta=0.01", "patience=2 min_delta=0",
                                            "patience=2 min_delta=0.01"]
    for row in rows:
        assert row["seeds"] == 2 and row["epochs_saved"] == pytest.approx(3 - row["stop_epoch"])
        low, high = row["test_accuracy_ci"]
        assert 0.0 <= row["test_accuracy"] <= 1.0 and low <= row["test_accuracy"] <= high
        assert math.isfinite(row["test_loss"])


def _check_optimizers(result):
    assert [(r["optimizer"], r["lr"]) for r in result["rows"]] == [
        ("SGD", 0.2), ("Momentum", 0.05), ("Adagrad", 0.05), ("RMSProp", 0.001), ("Adadelta", 1.0),
        ("Adam", 0.001), ("AdamW", 0.001)]
    assert len(result["histories"]) == 7 and all(len(runs.histories) == 2 for runs in result["histories"].values())
    for r in result["rows"]:
        assert r["runs"] == 2 and 0.0 <= r["val_accuracy"] <= 1.0 and math.isfinite(r["final_val_loss"])
    assert result["comparison"].difference("SGD lr=0.2", "Adam lr=0.001").n == 2


def _check_resume(result):
    assert result["same_weights"] and result["same_history"] and result["max_diff"] == 0.0
    assert result["resumed_at"] == {"epoch": 1, "batches_done": 3, "epoch_done": False, "samples": 300}
    assert len(result["history"]) == result["csv_rows"] == 2


def _check_png_report(result):
    report = result.get("report") if isinstance(result, dict) else None
    assert report is None or os.path.getsize(report) > 1000


SMOKE = {
    # the custom-step examples have their own resume and picture tests in tests/test_examples_seams.py
    "autoencoder": (["--epochs", "1", "--limit", "256", "--verbose", "0"], _check_png_report),
    "gan": (["--epochs", "1", "--limit", "256", "--verbose", "0"], _check_png_report),
    "mnist_mlp": (["--epochs", "1", "--limit", "300", "--verbose", "0"], _check_mnist_mlp),
    "distributed_mnist": (["--epochs", "1", "--limit", "200", "--verbose", "0"], _check_distributed_mnist),
    "linear_regression": (["--epochs", "2", "--samples", "200"], _check_linear_regression),
    "early_stopping": (["--epochs", "3", "--limit", "300", "--patience", "0", "2", "--min-delta", "0", "0.01",
                        "--seeds", "2", "--processes", "1", "--verbose", "0"], _check_early_stopping),
    "optimizers": (["--epochs", "1", "--limit", "300", "--set-lr", "sgd=0.2", "--seeds", "2", "--processes", "1"],
                   _check_optimizers),
    "resume": (["--epochs", "2", "--limit", "300", "--kill-at", "5", "--every", "3", "--val-steps", "0"],
               _check_resume),
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


def _check_cifar10_resnet(result):
    assert 0.0 <= result["test_accuracy"] <= 1.0 and math.isfinite(result["test_loss"])
    assert len(result["history"]) == 1 and result["params"] > 0


def _check_cifar10_tf_tutorial(result):
    assert 0.0 <= result["test_accuracy"] <= 1.0 and math.isfinite(result["test_loss"])
    assert len(result["history"]) == 1 and not result["fixed"]


CIFAR_SMOKE: dict = {
    "cifar10_cnn": (["--epochs", "1", "--data", str(_CIFAR_ARCHIVE), "--augment", "--width", "4",
                     "--verbose", "0"], _check_cifar10_cnn),
    "cifar10_resnet": (["--epochs", "1", "--data", str(_CIFAR_ARCHIVE), "--width", "4", "--batch-size", "32",
                        "--verbose", "0"], _check_cifar10_resnet),
    "cifar10_tf_tutorial": (["--epochs", "1", "--data", str(_CIFAR_ARCHIVE), "--limit", "64", "--verbose", "0"],
                            _check_cifar10_tf_tutorial),
}
SMOKE.update(CIFAR_SMOKE)
# ---- end of CIFAR-10 example ----


# ---- recurrent examples (issue 4) ----
def _check_mnist_rnn(result):
    assert [r["cell"] for r in result["rows"]] == ["lstm", "gru"]
    for r in result["rows"]:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["test_loss"]) and r["epochs"] == 1
    assert [len(h) for h in result["histories"].values()] == [1, 1]


def _check_rnn_function_fit(result):
    assert [(r["function"], r["cell"]) for r in result["rows"]] == [
        ("sine", "lstm"), ("sine", "gru"), ("sum of sines", "lstm"), ("sum of sines", "gru")]
    for r in result["rows"]:
        assert math.isfinite(r["test_mse"]) and r["last_input_mse"] > 0 and r["epochs"] == 2


RECURRENT_SMOKE: dict = {
    "mnist_rnn": (["--epochs", "1", "--limit", "300", "--units", "16", "--verbose", "0"], _check_mnist_rnn),
    "rnn_function_fit": (["--epochs", "2", "--points", "300", "--units", "8", "--steps", "10"],
                         _check_rnn_function_fit),
}
SMOKE.update(RECURRENT_SMOKE)
# ---- end of recurrent examples ----


# ---- text examples (issue 4) ----
def _check_text_generation(result):
    assert len(result["history"]) == 1
    assert math.isclose(result["val_perplexity"], math.exp(result["val_loss"]))
    # one epoch on 4,000 characters (lr 0.02): clearly better than a uniform guess, far from perfect
    assert 1.0 < result["val_perplexity"] < 0.8 * result["vocab_size"]
    epoch, texts = result["samples"][-1]
    assert epoch == 1 and sorted(texts) == [0.2, 0.5, 1.0]
    assert all(len(s) == 20 for s in texts.values())


def _tiny_imdb() -> str:
    """A small imdb.npz in Keras's format (see tests/test_imdb.py), removed when the tests end."""
    import atexit
    import shutil
    import tempfile

    from test_imdb import write_imdb

    folder = tempfile.mkdtemp(prefix="cutedl-imdb-")
    atexit.register(shutil.rmtree, folder, True)
    write_imdb(Path(folder) / "imdb.npz", n_train=60, n_test=40)
    return folder


def _check_imdb_sentiment(result):
    assert result["status"] == "trained" and len(result["history"]) == 1
    assert 0.0 <= result["test_accuracy"] <= 1.0 and math.isfinite(result["test_loss"])


TEXT_SMOKE: dict = {
    "text_generation": (["--epochs", "1", "--limit", "4000", "--seq-len", "16", "--units", "16", "--lr", "0.02",
                         "--sample-len", "20", "--verbose", "0"], _check_text_generation),
    "imdb_sentiment": (["--data", _tiny_imdb(), "--epochs", "1", "--num-words", "30", "--embed", "8",
                        "--units", "4", "--maxlen", "8"], _check_imdb_sentiment),
}
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
