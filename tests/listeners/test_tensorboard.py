"""listeners.TensorBoard: event files read back with TensorBoard's own reader."""
import subprocess
import sys

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, optimizers

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(log_dir):
    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def _fit(extra=(), epochs=3, tb=None, **tb_kwargs):
    rs = np.random.default_rng(0)
    x = rs.standard_normal((80, 5)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]
    model = Model([layers.Dense(6, inshape=5, activation="relu"), layers.Dense(2, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(0.01), metrics=["accuracy"])
    tb = tb or listeners.TensorBoard(**tb_kwargs)
    h = sess.fit(Dataset(x[:64], y[:64], batch_size=16), epochs=epochs, val_data=(x[64:], y[64:]),
                 listeners=[tb, *extra], verbose=0)
    return model, h, tb


def test_scalars_of_every_check(tmp_path):
    model, h, tb = _fit(log_dir=tmp_path / "run")
    acc = _read(tmp_path / "run")
    tags = set(acc.Tags()["scalars"])
    assert tags == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    for key in tags:
        events = acc.Scalars(key)
        assert [e.step for e in events] == h["step"]
        np.testing.assert_allclose([e.value for e in events], h[key], rtol=1e-6)
    assert acc.Tags()["histograms"] == [] and tb.writer is None


def test_histograms_and_hparams(tmp_path):
    model, h, _ = _fit(log_dir=tmp_path / "run", histograms=True, hparams={"lr": 0.01, "seed": 3, "opt": "adam"})
    acc = _read(tmp_path / "run")
    names = {p.name for p in model.params}
    assert set(acc.Tags()["histograms"]) == {f"{kind}/{n}" for kind in ("weights", "grads") for n in names}
    last = acc.Histograms(f"weights/{model.params[0].name}")[-1]
    assert last.step == h["step"][-1]
    assert last.histogram_value.num == model.params[0].size
    assert last.histogram_value.min == pytest.approx(float(model.params[0].value.min()))
    hp = _read(tmp_path / "run" / "hparams")
    content = hp.PluginTagToContent("hparams")
    assert content and any(b"lr" in blob for blob in content.values())
    assert hp.Scalars("hparam/val_loss")[0].value == pytest.approx(h["val_loss"][-1], rel=1e-6)


def test_resume_purges_events_after_the_checkpoint(tmp_path):
    class KillLate(listeners.Listener):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 3:  # after epoch 3's check was written, before its checkpoint
                raise RuntimeError("simulated crash")

    cutedl.set_seed(1)
    _, straight, _ = _fit(log_dir=tmp_path / "a", epochs=4)
    cutedl.set_seed(1)
    crashed = listeners.TensorBoard(tmp_path / "b")
    with pytest.raises(RuntimeError):
        _fit(tb=crashed, epochs=4, extra=[listeners.BackupAndRestore(tmp_path / "bk"), KillLate()])
    crashed.writer.close()  # what the dying process's exit handler flushes
    assert [e.step for e in _read(tmp_path / "b").Scalars("val_loss")] == [4, 8, 12]
    cutedl.set_seed(1)
    _fit(log_dir=tmp_path / "b", epochs=4, extra=[listeners.BackupAndRestore(tmp_path / "bk"), listeners.Listener()])
    events = _read(tmp_path / "b").Scalars("val_loss")
    assert [e.step for e in events] == straight["step"]  # epoch 3's first write was purged
    np.testing.assert_allclose([e.value for e in events], straight["val_loss"], rtol=1e-6)


def test_tensorboardx_is_imported_lazily_with_a_clear_error():
    code = ("import sys, cutedl, cutedl.listeners; assert 'tensorboardX' not in sys.modules; "
            "sys.modules['tensorboardX'] = None\n"
            "from cutedl.listeners.tensorboard import _summary_writer\n"
            "try:\n    _summary_writer()\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install -e ".[tensorboard]"' in out


def test_arguments():
    with pytest.raises(TypeError, match="hparams values must be"):
        listeners.TensorBoard("runs", hparams={"layers": [1, 2]})
    with pytest.raises(TypeError, match="histograms must be True or False"):
        listeners.TensorBoard("runs", histograms="yes")
