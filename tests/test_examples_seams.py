"""The custom training-step examples: examples/autoencoder.py and examples/gan.py.

Smoke runs of both scripts with tiny settings, and the checkpoint claims their custom steps rely
on: a GAN (two models, two optimizers, a data transform drawing z, a listener with state) and a
denoising step drawing its noise from cutedl's global generator resume bit for bit.
The examples are scripts, not a package: each is loaded from its path with importlib.
"""
import importlib.util
import math
import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

import cutedl
from cutedl import Dataset, listeners

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"cutedl_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gan():
    return load_example("gan")


@pytest.fixture(scope="module")
def autoencoder():
    return load_example("autoencoder")


def check_png(path, min_w=400, min_h=300):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[1] >= min_w and img.shape[0] >= min_h, img.shape
    assert img[..., :3].std() > 0.01  # something was drawn


# ---------------------------------------------------------------------------- smoke runs
def test_autoencoder_runs_and_draws_its_report(autoencoder, tmp_path, capsys):
    out = tmp_path / "reports" / "autoencoder.png"
    result = autoencoder.main(["--limit", "256", "--epochs", "1", "--verbose", "0", "--out", str(out)])
    assert len(result["history"]) == 1 and "mse" in result["history"].history
    # one epoch is far from converged but must beat predicting 0.5 everywhere (BCE >= log 2 there)
    assert math.isfinite(result["val_loss"]) and result["val_loss"] < math.log(2)
    check_png(out)
    assert "final val_loss" in capsys.readouterr().out


def test_gan_runs_logs_both_players_and_draws_samples(gan, tmp_path, capsys):
    out = tmp_path / "gan.png"
    result = gan.main(["--limit", "256", "--epochs", "1", "--batch-size", "64", "--verbose", "0",
                       "--out", str(out)])
    h = result["history"]
    assert len(h) == 1 and h.history["step"] == [4]
    for k in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake"):
        assert math.isfinite(h.history[k][0]), k
    assert 0.0 <= result["d_acc_real"] <= 1.0 and 0.0 <= result["d_acc_fake"] <= 1.0
    assert result["samples"].shape == (64, 784) and 0.0 <= result["samples"].min() <= result["samples"].max() <= 1.0
    check_png(out)
    assert "d_loss" in capsys.readouterr().out


def test_help_shows_defaults(gan, autoencoder, capsys):
    for module in (gan, autoencoder):
        with pytest.raises(SystemExit):
            module.main(["--help"])
        text = capsys.readouterr().out
        options = [o for o in re.split(r"\n  (?=-)", text.split("options:")[1]) if o.strip()]  # one per option
        names = [o.split()[0] for o in options]
        for flag in ("--epochs", "--batch-size", "--lr", "--seed", "--threads", "--limit", "--out"):
            assert flag in names, flag
        for o in options:
            assert o.startswith("-h") or "(default:" in o, o


def test_image_grid_places_images_row_by_row():
    images = load_example("_images")
    x = np.arange(5 * 6, dtype=np.float32).reshape(5, 6) / 30  # five 2 x 3 images
    grid = images.image_grid(x, ncols=2, shape=(2, 3), pad=1, fill=-1.0)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1)
    np.testing.assert_array_equal(grid[1:3, 1:4], x[0].reshape(2, 3))
    np.testing.assert_array_equal(grid[1:3, 5:8], x[1].reshape(2, 3))
    np.testing.assert_array_equal(grid[7:9, 1:4], x[4].reshape(2, 3))
    assert (grid[7:9, 5:8] == -1.0).all() and (grid[0] == -1.0).all()  # empty cell, border
    with pytest.raises(ValueError, match="flat or"):
        images.image_grid(x, shape=(4, 4))


# ---------------------------------------------------------------------------- resuming custom steps
class StopAt(listeners.Listener):
    """Stands for Ctrl-C: stop the fit as 'interrupted' at the end of step ``at``."""

    def __init__(self, at):
        self.at = at

    def on_batch_end(self, step, logs=None):
        if step == self.at:
            self.session.stop_fit("interrupted")


def fake_images(n=48, seed=0):
    return np.random.default_rng(seed).random((n, 784), dtype=np.float32)


def gan_fit(gan, tmp_path, seed, stop_at=None):
    """A tiny GAN fit (hidden 16, 6 steps per epoch, 2 epochs) with checkpoints every step."""

    class Samples(gan.SampleGrid):
        def draw(self):  # keep the samples, skip the PNG (the smoke test draws it)
            pass

    cutedl.set_seed(seed)
    sess = gan.build_session(lr=1e-3, hidden=16)
    grid = Samples(tmp_path / "gan.png", np.random.default_rng(9).standard_normal((4, gan.LATENT)), keep=2)
    backup = listeners.BackupAndRestore(tmp_path / "backup", every=1)
    extra = [] if stop_at is None else [StopAt(stop_at)]
    h = sess.fit(gan.gan_data(fake_images(), batch_size=8), epochs=2, listeners=[backup, grid, *extra], verbose=0)
    return sess, h, grid, backup


def test_interrupted_gan_resumes_bit_exact(gan, tmp_path):
    straight, h1, grid1, _ = gan_fit(gan, tmp_path / "straight", seed=3)
    assert h1.stop_reason == "completed" and len(h1) == 2

    _, h, _, backup = gan_fit(gan, tmp_path / "resumed", seed=3, stop_at=8)
    assert h.stop_reason == "interrupted" and Path(backup.path).exists()
    # a new process: another global seed, so every weight and generator must come from the checkpoint
    resumed, h2, grid2, backup = gan_fit(gan, tmp_path / "resumed", seed=77)
    assert backup.restored == {"epoch": 2, "batches_done": 2, "epoch_done": False, "samples": 48}

    def everything(sess):
        d, d_opt = sess.tracked["discriminator"], sess.tracked["d_optimizer"]
        return (sess.model.get_weights() + d.get_weights()
                + [np.asarray(v) for opt in (sess.optimizer, d_opt) for v in _leaves(opt.get_state())])

    a, b = everything(straight), everything(resumed)
    assert len(a) == len(b) == 8 + 2 * 8 + 2  # G and D weights, two Adams' m and v, their iterations
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    for k in ("step", "epoch", "d_loss", "g_loss", "d_acc_real", "d_acc_fake", "lr"):
        assert h1.history[k] == h2.history[k], k
    assert grid1.checks == grid2.checks == [(1, 6), (2, 12)]
    for u, v in zip(grid1.samples, grid2.samples):
        np.testing.assert_array_equal(u, v)


def _leaves(tree):
    """The numbers and arrays of a nested optimizer state, in a fixed order."""
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in _leaves(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]


def test_denoising_step_noise_resumes_bit_exact(autoencoder, tmp_path):
    x = fake_images(40, seed=1)

    def fit(seed, folder, stop_at=None):
        cutedl.set_seed(seed)
        model = cutedl.Model([cutedl.layers.Dense(16, inshape=784, activation="relu"),
                              cutedl.layers.Dense(784, activation="sigmoid")]).assemble()
        sess = autoencoder.DenoisingSession(model, "binary_crossentropy", cutedl.optimizers.Adam(1e-3), noise=0.5)
        extra = [] if stop_at is None else [StopAt(stop_at)]
        h = sess.fit(Dataset(x, x, batch_size=10), epochs=2, verbose=0,
                     listeners=[listeners.BackupAndRestore(tmp_path / folder), *extra])
        return model, h

    straight, h1 = fit(5, "straight")
    assert fit(5, "resumed", stop_at=3)[1].stop_reason == "interrupted"
    resumed, h2 = fit(6, "resumed")
    for u, v in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(u, v)
    assert h1.history["loss"] == h2.history["loss"]
