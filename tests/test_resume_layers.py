"""Exact resume with the other layer families: convolution, BatchNormalization (moving statistics),
augmentation transforms with their own generators, Embedding, masked Bidirectional LSTM and a
bucketing SequenceDataset."""
import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, augment, layers, listeners
from cutedl.sequences import SequenceDataset


class Kill(listeners.Listener):
    def __init__(self, at=None):
        self.at = at

    def on_batch_end(self, step, logs=None):
        if self.at is not None and step == self.at:
            raise RuntimeError("crash")


def _fit(sess, ds, tmp, kill):
    try:
        return sess.fit(ds, epochs=3, listeners=[listeners.BackupAndRestore(tmp, every=3), Kill(kill)], verbose=0)
    except RuntimeError:
        return None

def cnn_run(tmp, seed, kill=None):
    cutedl.set_seed(seed)
    rs = np.random.default_rng(0)
    x = rs.standard_normal((40, 1, 8, 8)).astype(np.float32)
    y = rs.integers(0, 3, 40)
    m = Model([layers.Conv2D(4, 3, inshape=(1, 8, 8), padding="same"), layers.BatchNormalization(),
               layers.Activation("relu"), layers.MaxPooling2D(2), layers.Flatten(), layers.Dropout(0.3),
               layers.Dense(3, activation="softmax")]).assemble()
    s = Session(m, "sparse_categorical_crossentropy", "adam")
    ds = Dataset(x, y, batch_size=8, transform=augment.Compose([augment.RandomFlip(), augment.RandomCrop(1)]))
    return s, _fit(s, ds, tmp, kill)

def rnn_run(tmp, seed, kill=None):
    cutedl.set_seed(seed)
    rs = np.random.default_rng(0)
    seqs = [rs.integers(1, 20, rs.integers(2, 9)) for _ in range(40)]
    y = rs.integers(0, 2, 40)
    m = Model([layers.Embedding(20, 5, mask_zero=True, inshape=(None,)), layers.Bidirectional(layers.LSTM(4)),
               layers.Dropout(0.2), layers.Dense(2, activation="softmax")]).assemble()
    s = Session(m, "sparse_categorical_crossentropy", "adam")
    return s, _fit(s, SequenceDataset(seqs, y, batch_size=8, bucket_batches=2), tmp, kill)

@pytest.mark.parametrize("run", [cnn_run, rnn_run])
def test_resume_with_other_layers(tmp_path, run):
    """Killed at step 8 (checkpoint at step 6), resumed with another global seed."""
    a, ha = run(tmp_path / "a", 1)
    _, none = run(tmp_path / "b", 1, kill=8)
    assert none is None
    b, hb = run(tmp_path / "b", 7)
    for p, q in zip(a.model.params, b.model.params):
        np.testing.assert_array_equal(p.value, q.value, err_msg=p.name)
    assert ha["loss"] == hb["loss"] and ha["step"] == hb["step"] == [5, 10, 15]
