"""pad_sequences (against a per-sequence reference written from Keras's rules) and SequenceDataset."""
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cutedl
from cutedl import Dataset, Model, Session, layers, optimizers
from cutedl.data import SequenceDataset, pad_sequences


def reference_pad(seqs, maxlen, padding, truncating, value, dtype, sample_shape=()):
    """Keras's documented rules, one sequence at a time."""
    out = np.full((len(seqs), maxlen) + sample_shape, value, dtype=dtype)
    for i, s in enumerate(seqs):
        s = list(s)
        if len(s) > maxlen:
            s = s[len(s) - maxlen:] if truncating == "pre" else s[:maxlen]
        for j, v in enumerate(s):
            out[i, (maxlen - len(s) + j) if padding == "pre" else j] = v
    return out


def test_keras_documented_examples():
    seqs = [[1], [2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(pad_sequences(seqs), [[0, 0, 1], [0, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(pad_sequences(seqs, value=-1), [[-1, -1, 1], [-1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(pad_sequences(seqs, padding="post"), [[1, 0, 0], [2, 3, 0], [4, 5, 6]])
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=2), [[0, 1], [2, 3], [5, 6]])
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=2, truncating="post"), [[0, 1], [2, 3], [4, 5]])
    assert pad_sequences(seqs).dtype == np.int32


@pytest.mark.parametrize("padding,truncating", list(itertools.product(["pre", "post"], repeat=2)))
@pytest.mark.parametrize("maxlen", [None, 0, 1, 4, 12])
def test_matches_reference(padding, truncating, maxlen):
    rs = np.random.default_rng(3)
    seqs = [list(rs.integers(1, 50, rs.integers(0, 9))) for _ in range(20)] + [[]]
    want_len = max(len(s) for s in seqs) if maxlen is None else maxlen
    got = pad_sequences(seqs, maxlen, padding=padding, truncating=truncating, value=-7)
    np.testing.assert_array_equal(got, reference_pad(seqs, want_len, padding, truncating, -7, np.int32))


def test_sample_shape_float_dtype_and_array_inputs():
    rs = np.random.default_rng(0)
    seqs = [rs.standard_normal((n, 2)) for n in (3, 1, 5)] + [np.zeros((0, 2))]
    got = pad_sequences(seqs, maxlen=4, dtype="float32", padding="post", value=0.5)
    assert got.shape == (4, 4, 2) and got.dtype == np.float32
    np.testing.assert_array_equal(got, reference_pad(seqs, 4, "post", "pre", 0.5, np.float32, (2,)))
    # a 2-D array of equal-length sequences and a tuple of arrays are sequences too
    np.testing.assert_array_equal(pad_sequences(np.arange(6).reshape(2, 3), maxlen=4), [[0, 0, 1, 2], [0, 3, 4, 5]])
    assert pad_sequences([]).shape == (0, 0)


def test_many_sequences_padded_in_chunks():
    rs = np.random.default_rng(1)
    seqs = [rs.integers(1, 9, rs.integers(1, 700)) for _ in range(3000)]  # > 2**20 output positions
    np.testing.assert_array_equal(pad_sequences(seqs, padding="post", truncating="post", maxlen=600),
                                  reference_pad(seqs, 600, "post", "post", 0, np.int32))


def test_pad_sequences_errors():
    with pytest.raises(ValueError, match="padding must be 'pre' or 'post', got 'middle'"):
        pad_sequences([[1]], padding="middle")
    with pytest.raises(ValueError, match="truncating must be 'pre' or 'post'"):
        pad_sequences([[1]], truncating="both")
    with pytest.raises(ValueError, match="maxlen must be a non-negative integer or None, got -1"):
        pad_sequences([[1]], maxlen=-1)
    with pytest.raises(ValueError, match=r"item 1 is the scalar 3\. Wrap a single sequence"):
        pad_sequences([[1, 2], 3])
    with pytest.raises(ValueError, match=r"sequence 1 has steps of shape \(3,\), the first non-empty one \(2,\)"):
        pad_sequences([np.zeros((2, 2)), np.zeros((1, 3))])
    with pytest.raises(ValueError, match="value='x' is a string but dtype is int32"):
        pad_sequences([[1]], value="x")
    with pytest.raises(TypeError, match="must be a list of sequences, got int"):
        pad_sequences(5)


# ---------------------------------------------------------------------------- SequenceDataset
def ragged(n=103, seed=0, low=1, high=40):
    rs = np.random.default_rng(seed)
    # each sequence holds its own sample id + 1 (never 0, the padding), so rows can be traced
    return [np.full(rs.integers(low, high), i + 1) for i in range(n)]


def test_each_epoch_yields_every_sample_once_padded_to_its_batch():
    seqs = ragged()
    ds = SequenceDataset(seqs, np.arange(103), batch_size=8, bucket_batches=4, seed=0)
    assert len(ds) == 13 and ds.num_samples == 103
    for _ in range(2):
        seen = []
        for x, y in ds:
            assert x.dtype == np.int32 and len(x) == len(y) <= 8
            lengths = [len(seqs[i]) for i in y]
            assert x.shape[1] == max(lengths)
            np.testing.assert_array_equal(x, pad_sequences([seqs[i] for i in y]))
            seen += list(y)
        assert sorted(seen) == list(range(103))


def test_bucketing_cuts_padding_and_still_shuffles():
    seqs = ragged(640, high=200)
    lengths = np.array([len(s) for s in seqs])
    bucketed = SequenceDataset(seqs, np.arange(640), batch_size=32, seed=1)
    random_batches = SequenceDataset(seqs, np.arange(640), batch_size=32, bucket_batches=1, seed=1)

    def padded_steps(ds):
        return sum(x.size for x, _ in ds)

    assert padded_steps(bucketed) < 0.6 * padded_steps(random_batches)
    assert padded_steps(bucketed) >= lengths.sum()
    bucketed = SequenceDataset(seqs, np.arange(640), batch_size=32, seed=1)
    first = [tuple(y) for _, y in bucketed]
    second = [tuple(y) for _, y in bucketed]
    assert first != second and sorted(map(sorted, first)) != sorted(map(sorted, second))
    again = [tuple(y) for _, y in SequenceDataset(seqs, np.arange(640), batch_size=32, seed=1)]
    assert again == first  # the seed repeats the epoch order


def test_unshuffled_batches_run_by_length():
    seqs = ragged(50)
    ds = SequenceDataset(seqs, np.arange(50), batch_size=16, shuffle=False)
    widths = [x.shape[1] for x, _ in ds]
    assert widths == sorted(widths) and [len(x) for x, _ in ds] == [16, 16, 16, 2]
    assert [tuple(y) for _, y in ds] == [tuple(y) for _, y in ds]


def test_maxlen_truncation_padding_value_and_drop_remainder():
    seqs = ragged(30, high=60)
    ds = SequenceDataset(seqs, None, batch_size=7, maxlen=20, padding="post", truncating="post",
                         value=-1, drop_remainder=True, seed=2)
    assert len(ds) == 4
    batches = list(ds)
    assert len(batches) == 4 and all(len(x) == 7 and y is None for x, y in batches)
    for x, _ in batches:
        assert x.shape[1] <= 20
        ids = x[:, 0] - 1
        np.testing.assert_array_equal(x, pad_sequences([seqs[i] for i in ids], maxlen=x.shape[1], padding="post",
                                                       truncating="post", value=-1))


def test_head_and_split():
    seqs = ragged(40)
    ds = SequenceDataset(seqs, np.arange(40), batch_size=8, seed=0)
    x, y = ds.head(3)
    np.testing.assert_array_equal(y, [0, 1, 2])
    np.testing.assert_array_equal(x, pad_sequences(seqs[:3]))
    train, val = ds.split(0.25)
    assert (train.num_samples, val.num_samples, val.shuffle) == (30, 10, False)
    assert sorted(i for _, y in val for i in y) == list(range(30, 40))
    np.testing.assert_array_equal(val.head(10)[0], pad_sequences(seqs[30:]))


def test_sequence_dataset_errors():
    with pytest.raises(ValueError, match="sequences and y must have the same length, got 3 sequences and 2"):
        SequenceDataset([[1], [2], [3]], [0, 1])
    with pytest.raises(ValueError, match="sequences is empty"):
        SequenceDataset([])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        SequenceDataset([[1]], batch_size=0)
    with pytest.raises(ValueError, match="bucket_batches must be a positive integer"):
        SequenceDataset([[1]], bucket_batches=0)
    with pytest.raises(ValueError, match="maxlen=0 would leave nothing"):
        SequenceDataset([[1]], maxlen=0)
    with pytest.raises(ValueError, match="y holds 1 NaN"):
        SequenceDataset([[1], [2]], [0.0, np.nan])
    with pytest.raises(TypeError, match="must be numeric"):
        SequenceDataset([["a"], ["b"]])


class MaskedMean(layers.Layer):
    """Test helper: mean over the real (unmasked) time steps, ``(batch, T, F) -> (batch, F)``."""

    def build(self, inshape):
        self.outshape = inshape[1:]

    def forward(self, x, training=False, mask=None):
        m = np.ones(x.shape[:2], x.dtype) if mask is None else mask.astype(x.dtype)
        self._w = m[..., None] / np.maximum(m.sum(axis=1), 1)[:, None, None]  # (batch, T, 1)
        return (x * self._w).sum(axis=1)

    def backward(self, grad):
        return grad[:, None, :] * self._w


def _contains_one(n, seed):
    """Variable-length token sequences; label 1 when token 1 occurs."""
    rs = np.random.default_rng(seed)
    seqs, labels = [], rs.integers(0, 2, n)
    for label in labels:
        s = rs.integers(2, 10, rs.integers(2, 15))
        if label:
            s[rs.integers(0, len(s))] = 1
        seqs.append(s)
    return seqs, labels.reshape(-1, 1).astype(np.float32)


def test_session_fits_a_sequence_dataset_with_masked_padding():
    seqs, labels = _contains_one(600, 0)
    cutedl.set_seed(0)
    model = Model([layers.Embedding(10, 8, mask_zero=True), MaskedMean(),
                   layers.Dense(1, activation="sigmoid")]).assemble()
    sess = Session(model, "binary_crossentropy", optimizers.Adam(0.05), metrics=["accuracy"])
    history = sess.fit(SequenceDataset(seqs, labels, batch_size=32, seed=0), epochs=15, verbose=0,
                       validation_split=0.2)
    assert history.last()["val_accuracy"] > 0.9, history.last()
    test_seqs, test_labels = _contains_one(200, 1)
    result = sess.evaluate(SequenceDataset(test_seqs, test_labels, batch_size=50, shuffle=False))
    assert result["accuracy"] > 0.9
    # masking makes the padding amount irrelevant: the same sequence padded to 15 or 40 steps
    x = np.array(test_seqs[0])
    short, long = pad_sequences([x], maxlen=15), pad_sequences([x], maxlen=40)
    np.testing.assert_allclose(model.predict(short), model.predict(long), rtol=1e-6)


def test_a_plain_dataset_still_gives_its_head():
    x = np.arange(10).reshape(5, 2)
    hx, hy = Dataset(x, np.arange(5), batch_size=2).head(3)
    np.testing.assert_array_equal(hx, x[:3])
    np.testing.assert_array_equal(hy, [0, 1, 2])


def test_plain_dataset_points_ragged_input_to_sequence_tools():
    with pytest.raises(ValueError, match="Variable-length sequences need pad_sequences"):
        Dataset([[1, 2], [3]], [0, 1])


def test_batches_follow_the_dataset_interface():
    seqs = ragged(20)
    a = SequenceDataset(seqs, np.arange(20), batch_size=6, seed=4)
    b = SequenceDataset(seqs, np.arange(20), batch_size=6, seed=4)
    got = list(a.batches(transform=False))
    want = [b.batch(i) for i in b.batch_indices()]
    assert len(got) == len(want) == len(a) == 4
    for (gx, gy), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(gx, wx)
        np.testing.assert_array_equal(gy, wy)


class _Crash(cutedl.listeners.Listener):
    def on_batch_end(self, step, logs=None):
        if step == 11:
            raise RuntimeError("simulated crash")


def _resumable_fit(tmp_path, seed, crash):
    seqs, labels = _contains_one(120, 3)
    cutedl.set_seed(seed)
    model = Model([layers.Embedding(10, 4, mask_zero=True), layers.GRU(3), layers.Dense(1, activation="sigmoid")])
    sess = Session(model.assemble(), "binary_crossentropy", optimizers.Adam(0.01))
    lst = [cutedl.listeners.BackupAndRestore(tmp_path / "backup", every=2)] + ([_Crash()] if crash else [])
    sess.fit(SequenceDataset(seqs, labels, batch_size=16, bucket_batches=2), epochs=3, verbose=0, listeners=lst)
    return model


def test_a_killed_fit_on_a_sequence_dataset_resumes_exactly(tmp_path):
    straight = _resumable_fit(tmp_path / "a", 1, crash=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _resumable_fit(tmp_path / "b", 1, crash=True)
    resumed = _resumable_fit(tmp_path / "b", 99, crash=False)  # another seed: all state comes from the backup
    for p, q in zip(straight.params, resumed.params):
        np.testing.assert_array_equal(p.value, q.value)


def test_dtype_follows_the_sequences_unless_given():
    ints = SequenceDataset([[1, 2], [3]], batch_size=2, shuffle=False)
    assert next(iter(ints))[0].dtype == np.int32
    feats = [np.full((n, 3), 0.5) for n in (2, 4)]
    x, _ = next(iter(SequenceDataset(feats, batch_size=2, shuffle=False)))
    assert x.dtype == np.float32 and x.shape == (2, 4, 3)
    np.testing.assert_array_equal(x, pad_sequences(feats, dtype="float32"))
    assert next(iter(SequenceDataset([[1, 2], [3]], dtype="float64")))[0].dtype == np.float64
    with pytest.raises(ValueError, match="non-integer values but dtype is int32, which would truncate"):
        SequenceDataset(feats, dtype="int32")


# ---------------------------------------------------------------------------- properties

_PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow])
_ragged = st.lists(st.lists(st.integers(-5, 99), max_size=9), max_size=12)


@_PROPERTY
@given(seqs=_ragged, maxlen=st.one_of(st.none(), st.integers(0, 11)), padding=st.sampled_from(["pre", "post"]),
       truncating=st.sampled_from(["pre", "post"]), value=st.integers(-3, 3))
def test_pad_sequences_property(seqs, maxlen, padding, truncating, value):
    got = pad_sequences(seqs, maxlen, padding=padding, truncating=truncating, value=value)
    width = (max(map(len, seqs)) if seqs else 0) if maxlen is None else maxlen
    np.testing.assert_array_equal(got, reference_pad(seqs, width, padding, truncating, value, np.int32))


@_PROPERTY
@given(lengths=st.lists(st.integers(0, 30), min_size=1, max_size=60), batch_size=st.integers(1, 9),
       bucket_batches=st.integers(1, 4), maxlen=st.one_of(st.none(), st.integers(1, 25)),
       shuffle=st.booleans(), drop=st.booleans(), seed=st.integers(0, 3))
def test_sequence_dataset_property(lengths, batch_size, bucket_batches, maxlen, shuffle, drop, seed):
    if drop and len(lengths) < batch_size:
        return
    seqs = [np.full(n, i + 1) for i, n in enumerate(lengths)]
    ds = SequenceDataset(seqs, np.arange(len(seqs)), batch_size=batch_size, shuffle=shuffle, maxlen=maxlen,
                         bucket_batches=bucket_batches, drop_remainder=drop, seed=seed)
    seen, n_batches = [], 0
    for x, y in ds:
        kept = [min(lengths[i], maxlen or lengths[i]) for i in y]
        assert x.shape == (len(y), max(kept + [1]))  # padded to the batch's longest, at least one step
        np.testing.assert_array_equal(x, pad_sequences([seqs[i] for i in y], x.shape[1]))
        seen += list(y)
        n_batches += 1
    assert n_batches == len(ds) and len(seen) == len(set(seen))
    if not drop:
        assert sorted(seen) == list(range(len(seqs)))
    else:
        assert len(seen) == len(ds) * batch_size and len(seqs) - len(seen) < batch_size
