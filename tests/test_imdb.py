"""IMDB loader on small files written the way Keras's imdb.npz was (np.savez of object arrays of
lists), checked against Keras's algorithm re-written here; hostile pickles are refused."""
import hashlib
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from cutedl.data import SequenceDataset, pad_sequences
from cutedl.datasets import DownloadError, imdb
from test_datasets import dead_url, serve  # noqa: F401  (serve is a fixture)


def object_array(lists):
    out = np.empty(len(lists), dtype=object)
    for i, item in enumerate(lists):
        out[i] = item
    return out


def make_reviews(n, seed, vocab=40):
    rs = np.random.default_rng(seed)
    return [[int(w) for w in rs.integers(1, vocab, rs.integers(1, 12))] for _ in range(n)], \
        rs.integers(0, 2, n).astype(np.int64)


def write_imdb(path, n_train=30, n_test=20, seed=0):
    """An imdb.npz in Keras's layout; returns the lists it holds."""
    (xtr, ytr), (xte, yte) = make_reviews(n_train, seed), make_reviews(n_test, seed + 1)
    np.savez(path, x_train=object_array(xtr), y_train=ytr, x_test=object_array(xte), y_test=yte)
    return (xtr, ytr), (xte, yte)


def keras_load(raw, num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1, oov_char=2, index_from=3):
    """keras.datasets.imdb.load_data's documented steps, on lists, one word at a time."""
    (x_train, labels_train), (x_test, labels_test) = raw
    rs = np.random.RandomState(seed)
    i = np.arange(len(x_train))
    rs.shuffle(i)
    x_train, labels_train = [x_train[k] for k in i], labels_train[i]
    i = np.arange(len(x_test))
    rs.shuffle(i)
    x_test, labels_test = [x_test[k] for k in i], labels_test[i]
    prefix = [start_char] if start_char is not None else []
    x_train = [prefix + [w + index_from for w in x] for x in x_train]
    x_test = [prefix + [w + index_from for w in x] for x in x_test]
    if maxlen:
        keep = [len(x) < maxlen for x in x_train]
        x_train, labels_train = [x for x, k in zip(x_train, keep) if k], labels_train[keep]
        keep = [len(x) < maxlen for x in x_test]
        x_test, labels_test = [x for x, k in zip(x_test, keep) if k], labels_test[keep]
    xs = x_train + x_test
    if not num_words:
        num_words = max(max(x) for x in xs)
    if oov_char is not None:
        xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    else:
        xs = [[w for w in x if skip_top <= w < num_words] for x in xs]
    n = len(x_train)
    return (xs[:n], labels_train), (xs[n:], labels_test)


def assert_same(got, want):
    for (gx, gy), (wx, wy) in zip(got, want):
        assert gx.dtype == object and gx.shape == (len(wx),)
        assert all(g.dtype == np.int32 for g in gx)
        assert [g.tolist() for g in gx] == wx
        np.testing.assert_array_equal(gy, wy)


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "imdb.npz"
    return path, write_imdb(path)


@pytest.mark.parametrize("kwargs", [
    {},
    {"num_words": 20},
    {"num_words": 25, "skip_top": 5},
    {"maxlen": 8},
    {"num_words": 15, "oov_char": None},
    {"start_char": None, "index_from": 0},
    {"start_char": None, "index_from": 2, "skip_top": 3, "oov_char": None},
    {"seed": 7, "start_char": 5, "oov_char": 9},
])
def test_matches_keras(npz, kwargs):
    path, raw = npz
    assert_same(imdb.load_data(path, **kwargs), keras_load(raw, **kwargs))


def test_real_file_layout_round_trip(tmp_path):
    # A Keras-era file: pickle protocol 2 naming numpy.core.multiarray, numpy ints in the lists.
    lists = [[1, 2, 3], [np.int64(4)], []]
    stream = pickle.dumps(object_array(lists), protocol=2).replace(b"numpy._core.multiarray",
                                                                   b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in stream
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (3,)})
    path = tmp_path / "old.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue() + stream)
        zf.writestr("y.npy", _npy(np.array([1, 0, 1])))
    arrays = imdb.read_npz(path)
    assert [list(map(int, r)) for r in arrays["x"]] == lists
    np.testing.assert_array_equal(arrays["y"], [1, 0, 1])


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _hostile_npz(path, payload_object):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x_train.npy", buf.getvalue() + pickle.dumps(payload_object))
        for k in ("y_train", "x_test", "y_test"):
            zf.writestr(f"{k}.npy", _npy(np.array([0])))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_hostile_pickle_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    _hostile_npz(tmp_path / "imdb.npz", object_array([_RunsCode(marker)]))
    with pytest.raises(ValueError, match=r"x_train: refused to load the global (posix|os|nt)\.system: an IMDB "
                                         r"array .* Nothing in it was run\. Delete the file"):
        imdb.load_data(tmp_path / "imdb.npz")
    assert not marker.exists()
    # np.load would have run it: the file really is hostile
    with np.load(tmp_path / "imdb.npz", allow_pickle=True) as f:
        f["x_train"]
    assert marker.exists()


@pytest.mark.parametrize("payload, message", [
    (object_array([eval]), "refused to load the global builtins.eval"),
    ([[1, 2]], "does not hold the object array"),                      # a bare list, not an array
    (object_array([{"a": 1}]), "review 0 is a dict"),
    (object_array([[1, "two"]]), r"x_train review 0 holds str 'two', not a word index"),
    (object_array([[1, -2]]), r"x_train review 0 holds int -2, not a word index"),
])
def test_unexpected_pickle_content_is_refused(tmp_path, payload, message):
    _hostile_npz(tmp_path / "imdb.npz", payload)
    with pytest.raises(ValueError, match=message):
        imdb.load_data(tmp_path / "imdb.npz")


def test_corrupt_or_incomplete_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a valid .npz file"):
        imdb.load_data(tmp_path / "junk.npz")
    np.savez(tmp_path / "part.npz", x_train=object_array([[1]]), y_train=np.array([1]))
    with pytest.raises(ValueError, match=r"lacks the array\(s\) \['x_test', 'y_test'\]"):
        imdb.load_data(tmp_path / "part.npz")
    np.savez(tmp_path / "bad.npz", x_train=object_array([[1], [2]]), y_train=np.array([1]),
             x_test=object_array([[1]]), y_test=np.array([0]))
    with pytest.raises(ValueError, match="holds 2 reviews but 1 labels"):
        imdb.load_data(tmp_path / "bad.npz")


def test_bad_arguments(npz):
    path, _ = npz
    with pytest.raises(ValueError, match=r"num_words must be an integer in \[1, 2147483647\] or None, got 0"):
        imdb.load_data(path, num_words=0)
    with pytest.raises(ValueError, match=r"skip_top must be an integer in \[0, 2147483647\]"):
        imdb.load_data(path, skip_top=-1)
    with pytest.raises(ValueError, match="no review is shorter than maxlen=2"):
        imdb.load_data(path, maxlen=2)


@pytest.fixture
def no_local_files(monkeypatch, tmp_path):
    monkeypatch.delenv("CUTEDL_DATA_DIR", raising=False)
    monkeypatch.delenv("CUTEDL_IMDB_MIRROR", raising=False)
    monkeypatch.setenv("CUTEDL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(imdb, "KERAS_CACHE_DIR", tmp_path / "keras")
    return tmp_path


def test_lookup_order(no_local_files, monkeypatch):
    tmp = no_local_files
    raw = write_imdb(_mkdir(tmp / "data" / "imdb") / "imdb.npz", seed=3)
    write_imdb(_mkdir(tmp / "keras") / "imdb.npz", seed=4)
    monkeypatch.setenv("CUTEDL_DATA_DIR", str(tmp / "data"))
    assert_same(imdb.load_data(search_repo=False), keras_load(raw))     # $CUTEDL_DATA_DIR first
    assert_same(imdb.load_data(tmp / "data" / "imdb"), keras_load(raw))  # a directory as path
    monkeypatch.delenv("CUTEDL_DATA_DIR")
    keras_raw = write_imdb(tmp / "keras" / "imdb.npz", seed=5)
    assert_same(imdb.load_data(search_repo=False), keras_load(keras_raw))  # then Keras's cache


def _mkdir(p):
    p.mkdir(parents=True)
    return p


def test_download_is_checked_against_keras_sha256(no_local_files, serve, monkeypatch):  # noqa: F811
    tmp = no_local_files
    served = _mkdir(tmp / "served")
    raw = write_imdb(served / "imdb.npz")
    mirror = serve(served)
    # Our generated file is not Keras's: the published sha256 rejects it and nothing is cached.
    with pytest.raises(ValueError, match="failed its sha256 check"):
        imdb.load_data(mirror=mirror.url, search_repo=False)
    assert not (tmp / "cache" / "imdb" / "imdb.npz").exists()
    # With the file's own digest it is downloaded into the cache, then found there.
    digest = hashlib.sha256((served / "imdb.npz").read_bytes()).hexdigest()
    source = imdb.DatasetSource("imdb", {"imdb.npz": imdb.Checksum(digest, of="download")}, (mirror.url,))
    monkeypatch.setattr(imdb, "SOURCE", source)
    assert_same(imdb.load_data(search_repo=False), keras_load(raw))
    mirror.stop()
    assert_same(imdb.load_data(search_repo=False), keras_load(raw))


def test_missing_data_says_how_to_get_it(no_local_files):
    with pytest.raises(DownloadError, match=r"put the file 'imdb\.npz' \(as published, not unpacked\) in "
                                           r".*~/\.keras/datasets/ is found too"):
        imdb.load_data(mirror=dead_url(), search_repo=False)


def test_word_index(tmp_path):
    (tmp_path / "imdb_word_index.json").write_text(json.dumps({"the": 1, "and": 2, "film": 19}))
    index = imdb.get_word_index(tmp_path / "imdb_word_index.json")
    assert index == {"the": 1, "and": 2, "film": 19}
    assert imdb.get_word_index(tmp_path) == index
    (tmp_path / "bad.json").write_text(json.dumps({"the": "one"}))
    with pytest.raises(ValueError, match="mapping words to positive integers"):
        imdb.get_word_index(tmp_path / "bad.json")


def test_reviews_feed_pad_sequences_and_sequence_dataset(npz):
    path, _ = npz
    (x_train, y_train), _ = imdb.load_data(path, num_words=30)
    padded = pad_sequences(x_train, maxlen=10)
    assert padded.shape == (30, 10) and padded.max() < 30
    ds = SequenceDataset(x_train, y_train, batch_size=8)
    assert sum(len(x) for x, _ in ds) == 30


def test_sentiment_example_says_how_to_get_the_data(tmp_path, capsys):
    from test_examples import load_example

    result = load_example("imdb_sentiment").main(["--data", str(tmp_path / "nowhere")])
    assert result["status"] == "no data"
    out = capsys.readouterr().out
    assert "IMDB data not available" in out and imdb.HOW_TO_GET in out and "nowhere' does not exist" in out
    with pytest.raises(FileNotFoundError, match=r"lacks 'imdb\.npz'"):
        imdb.load_data(tmp_path)  # an existing directory without the file
