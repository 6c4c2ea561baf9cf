"""fit / evaluate / predict on data that does not fit in memory: indexable sources and generators."""
import itertools

import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, optimizers


def arrays(n=64):
    rs = np.random.default_rng(0)
    x = rs.standard_normal((n, 4)).astype(np.float32)
    return x, np.eye(2, dtype=np.float32)[rs.integers(0, 2, n)]


class Batches:
    """Keras PyDataset protocol: __len__ batches, __getitem__(i) -> (x, y); counts reads."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.bs = x, y, batch_size
        self.reads = []
        self.epochs_ended = 0

    def __len__(self):
        return int(np.ceil(len(self.x) / self.bs))

    def __getitem__(self, i):
        self.reads.append(i)
        return self.x[i * self.bs:(i + 1) * self.bs], self.y[i * self.bs:(i + 1) * self.bs]

    def on_epoch_end(self):
        self.epochs_ended += 1


def session():
    cutedl.set_seed(3)
    m = Model([layers.Dense(8, inshape=4, activation="relu"), layers.Dense(2, activation="softmax")]).assemble()
    return Session(m, "categorical_crossentropy", optimizers.SGD(0.1), metrics=["accuracy"])


def test_indexable_source_trains_like_the_same_unshuffled_dataset():
    x, y = arrays()
    a = session()
    ha = a.fit(Batches(x, y, 16), epochs=3, val_data=Batches(x, y, 32), verbose=0)
    b = session()
    hb = b.fit(Dataset(x, y, batch_size=16, shuffle=False), epochs=3, val_data=(x, y), verbose=0)
    assert ha.history["loss"] == hb.history["loss"]
    np.testing.assert_allclose(ha.history["val_loss"], hb.history["val_loss"], rtol=1e-6)
    src = Batches(x, y, 16)
    a.fit(src, epochs=2, verbose=0)
    assert src.epochs_ended == 2
    np.testing.assert_allclose(a.evaluate(Batches(x, y, 8))["loss"], a.evaluate((x, y))["loss"], rtol=1e-6)
    np.testing.assert_allclose(a.predict(Batches(x, y, 10)), a.predict(x), rtol=1e-6)


def test_generator_with_steps_per_epoch():
    x, y = arrays()

    def forever():
        for i in itertools.count():
            j = (i % 4) * 16
            yield x[j:j + 16], y[j:j + 16]

    a = session()
    ha = a.fit(forever(), epochs=3, steps_per_epoch=4, verbose=0)
    b = session()
    hb = b.fit(Dataset(x, y, batch_size=16, shuffle=False), epochs=3, verbose=0)
    assert ha.history["loss"] == hb.history["loss"] and ha.params["steps_per_epoch"] == 4


def test_finite_generator_without_steps_runs_until_it_ends_then_says_so():
    x, y = arrays()
    gen = ((x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16))
    with pytest.warns(UserWarning, match="ran out of batches"):
        h = session().fit(gen, epochs=3, verbose=0)
    assert h.history["step"] == [4] and h.stop_reason == "data_exhausted"


def test_resume_of_an_indexable_source_is_exact_and_reads_no_skipped_batch(tmp_path):
    x, y = arrays()

    class Stop(listeners.Listener):
        def on_batch_end(self, step, logs=None):
            if step == 6:
                self.session.stop_fit("interrupted")

    straight = session()
    straight.fit(Batches(x, y, 16), epochs=3, verbose=0)
    s = session()
    s.fit(Batches(x, y, 16), epochs=3, listeners=[listeners.BackupAndRestore(tmp_path), Stop()], verbose=0)
    s = session()
    src = Batches(x, y, 16)
    s.fit(src, epochs=3, listeners=[listeners.BackupAndRestore(tmp_path)], verbose=0)
    assert src.reads[:2] == [0, 2]  # the shape check reads batch 0; the resumed epoch starts at batch 2
    for a, b in zip(straight.model.get_weights(), s.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_generator_cannot_be_resumed_and_says_so(tmp_path):
    x, y = arrays()
    gen = itertools.cycle([(x[:16], y[:16])])
    with pytest.raises(ValueError, match="cannot resume exactly"):
        session().fit(gen, epochs=1, steps_per_epoch=2, listeners=[listeners.BackupAndRestore(tmp_path)],
                      verbose=0)


def test_source_errors_teach():
    x, y = arrays()
    with pytest.raises(ValueError, match="validation_split"):
        session().fit(Batches(x, y, 16), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch=9 but the source has only 4"):
        session().fit(Batches(x, y, 16), steps_per_epoch=9, verbose=0)

    class Bad:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return x[:4]

    with pytest.raises(ValueError, match=r"must be a tuple \(x, y\)"):
        session().fit(Bad(), verbose=0)


@pytest.mark.parametrize("bad, shown", [([[1, "a", 3]], "'a'"), ([[1, None]], "None")])
def test_pad_sequences_names_a_non_numeric_element(bad, shown):
    from cutedl.data import pad_sequences
    with pytest.raises(ValueError, match=f"sequence 0 holds the non-numeric value {shown}"):
        pad_sequences(bad)
