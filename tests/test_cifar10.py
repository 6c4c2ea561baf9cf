"""cifar10.load_data on tiny archives written in the real format (tests/_cifar10_archive.py):
lookup order, download with sha256, pixel layout, and refusal of hostile or broken pickles."""
import hashlib
import os
import pickle
import tarfile

import numpy as np
import pytest

from _cifar10_archive import META, batch_dict, make_data, py2_pickle, write_archive
from cutedl.datasets import DownloadError, DatasetSource, Checksum, cifar10, safe_pickle


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CUTEDL_DATA_DIR", raising=False)
    monkeypatch.delenv("CUTEDL_CIFAR10_MIRROR", raising=False)
    monkeypatch.setenv("CUTEDL_CACHE_DIR", str(tmp_path / "empty-cache"))


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "data" / cifar10.ARCHIVE
    path.parent.mkdir()
    data = write_archive(path)
    return path, data


def assert_loaded(result, data):
    (x_train, y_train), (x_test, y_test) = result
    (xt, yt), (xs, ys) = data
    assert x_train.shape == (20, 3, 32, 32) and x_test.shape == (6, 3, 32, 32)
    assert x_train.dtype == x_test.dtype == y_train.dtype == y_test.dtype == np.uint8
    np.testing.assert_array_equal(x_train, xt)
    np.testing.assert_array_equal(y_train, yt)
    np.testing.assert_array_equal(x_test, xs)
    np.testing.assert_array_equal(y_test, ys)


def test_load_from_the_archive_file_and_its_directory(archive):
    path, data = archive
    assert_loaded(cifar10.load_data(path), data)
    assert_loaded(cifar10.load_data(path.parent), data)
    assert_loaded(cifar10.load_data(str(path)), data)


def test_load_from_data_dir_env(archive, monkeypatch, tmp_path):
    path, data = archive
    root = tmp_path / "root"
    (root / "cifar10").mkdir(parents=True)
    os.replace(path, root / "cifar10" / cifar10.ARCHIVE)
    monkeypatch.setenv("CUTEDL_DATA_DIR", str(root))
    assert_loaded(cifar10.load_data(mirror="file:///nonexistent/"), data)


def test_load_from_the_cache_without_downloading(archive, tmp_path):
    path, data = archive
    cache = tmp_path / "cache"
    (cache / "cifar10").mkdir(parents=True)
    os.replace(path, cache / "cifar10" / cifar10.ARCHIVE)
    assert_loaded(cifar10.load_data(cache_dir=cache, search_repo=False, mirror="file:///nonexistent/"), data)


def test_load_from_an_extracted_folder(archive, tmp_path):
    path, data = archive
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    assert_loaded(cifar10.load_data(tmp_path / "x"), data)                  # holds cifar-10-batches-py/
    assert_loaded(cifar10.load_data(tmp_path / "x" / cifar10.FOLDER), data)


def test_download_is_verified_and_cached(archive, tmp_path, monkeypatch):
    path, data = archive
    mirror = path.parent.as_uri() + "/"
    cache = tmp_path / "cache"
    # the tiny archive is not the official one: its sha256 fails, nothing is cached
    with pytest.raises(ValueError, match=r"failed its sha256 check .* expected 6d958be0"):
        cifar10.load_data(mirror=mirror, cache_dir=cache, search_repo=False)
    assert not (cache / "cifar10" / cifar10.ARCHIVE).exists()
    # with its own digest it downloads, is cached, and is then found there with no mirror at all
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(cifar10, "SOURCE", DatasetSource("cifar10", {cifar10.ARCHIVE: Checksum(digest, of="download")},
                                                         mirrors=(mirror,)))
    assert_loaded(cifar10.load_data(cache_dir=cache, search_repo=False), data)
    assert (cache / "cifar10" / cifar10.ARCHIVE).read_bytes() == path.read_bytes()
    assert_loaded(cifar10.load_data(cache_dir=cache, search_repo=False, mirror="file:///nonexistent/"), data)


def test_no_data_and_no_network_says_where_to_put_it(tmp_path):
    with pytest.raises(DownloadError, match=r"put the file 'cifar-10-python.tar.gz' \(as published, "
                                             r"not unpacked\) in .*CUTEDL_DATA_DIR"):
        cifar10.load_data(mirror=(tmp_path / "nowhere").as_uri() + "/", cache_dir=tmp_path / "c", search_repo=False)
    with pytest.raises(FileNotFoundError, match="lacks 'cifar-10-python.tar.gz'"):
        cifar10.load_data(tmp_path)


def test_pixel_layout_is_red_green_blue_planes_row_major(tmp_path):
    # one image written as the documented row: 1024 red values, 1024 green, 1024 blue, each
    # plane row-major; built index by index, independently of any reshape
    row = np.zeros(3072, dtype=np.uint8)
    for c, base in enumerate((10, 20, 30)):
        for r in range(32):
            for k in range(32):
                row[c * 1024 + r * 32 + k] = base + (r * 32 + k) % 7
    row[1] = 200            # red, row 0, column 1
    row[1024 + 32] = 201    # green, row 1, column 0
    row[2048 + 1023] = 202  # blue, last pixel
    batch = {"batch_label": "b", "labels": [3], "data": row.reshape(1, 3072), "filenames": ["a.png"]}
    x, y = cifar10.decode_batch(py2_pickle(batch))
    assert x.shape == (1, 3, 32, 32) and y.tolist() == [3]
    assert (x[0, 0, 0, 1], x[0, 1, 1, 0], x[0, 2, 31, 31]) == (200, 201, 202)
    assert (x[0, 0, 5, 9], x[0, 1, 5, 9], x[0, 2, 5, 9]) == (10 + 169 % 7, 20 + 169 % 7, 30 + 169 % 7)


def _cifar_decode(raw):
    return safe_pickle.decode(raw, cifar10.PICKLE_GLOBALS, encoding="bytes", what="b", content="a CIFAR-10 batch")


def test_meta_and_batches_decode_to_plain_data():
    meta = _cifar_decode(py2_pickle(META))
    assert meta[b"label_names"] == [n.encode() for n in cifar10.CLASS_NAMES]
    assert meta[b"num_vis"] == 3072
    (x, y), _ = make_data(2, 1)
    d = _cifar_decode(py2_pickle(batch_dict(x[:2], y[:2], "training batch 1 of 5")))
    assert sorted(d) == [b"batch_label", b"data", b"filenames", b"labels"]
    assert type(d[b"data"]) is np.ndarray and d[b"labels"] == [int(v) for v in y[:2]]


class _System:
    """Unpickles to ``os.system(cmd)``."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_hostile_batch_inside_an_archive_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / cifar10.ARCHIVE
    write_archive(path, members={"data_batch_3": pickle.dumps({"data": _System(f"touch {marker}")}, protocol=2)})
    with pytest.raises(ValueError, match=r"data_batch_3: refused to load the global (posix|os|nt)\.system: a "
                                         r"CIFAR-10 batch never holds it.*Nothing in it was run\. Delete the archive"):
        cifar10.load_data(path)
    assert not marker.exists()


def test_the_cifar_allowlist_refuses_object_arrays_and_py3_bytes():
    # numpy_array_globals(kinds="biuf"): object arrays are refused (the rest is in test_safe_pickle)
    with pytest.raises(ValueError, match="refused dtype object"):
        cifar10.decode_batch(pickle.dumps(np.array([1, None], dtype=object), protocol=4))
    # Python 3 protocol 2 spells bytes through _codecs.encode: refused too (not the real layout)
    with pytest.raises(ValueError, match="refused to load the global _codecs.encode"):
        cifar10.decode_batch(pickle.dumps({b"data": 1}, protocol=2))


@pytest.mark.parametrize("batch, match", [
    ({"labels": [1]}, "expected 'data' and 'labels'"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}, "'labels' must be a list of 2 ints"),
    ({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}, "labels must be 0..9"),
    ({"data": np.zeros((1, 1024), np.uint8), "labels": [1]}, r"shape \(n, 3072\), got uint8 array of shape \(1, 1024\)"),
    ({"data": np.zeros((1, 3072), np.float32), "labels": [1]}, "got float32 array"),
    ({"data": [1, 2], "labels": [1]}, "got list"),
])
def test_bad_batch_layout(batch, match):
    with pytest.raises(ValueError, match=match):
        cifar10.decode_batch(py2_pickle(batch), "data_batch_1")


def test_not_a_dict_and_truncated_pickles():
    with pytest.raises(ValueError, match="holds a list, expected a dict"):
        cifar10.decode_batch(b"\x80\x02]q\x01(K\x01K\x02e.", "b")   # [1, 2], as cPickle writes it
    raw = py2_pickle(batch_dict(np.zeros((1, 3, 32, 32), np.uint8), [1], "b"))
    with pytest.raises(ValueError, match=r"b is not a valid pickle of a CIFAR-10 batch \(corrupt or truncated"):
        cifar10.decode_batch(raw[: len(raw) // 2], "b")


def test_corrupt_and_incomplete_archives(tmp_path):
    path = tmp_path / "a" / cifar10.ARCHIVE
    path.parent.mkdir()
    write_archive(path, members={"test_batch": None})
    with pytest.raises(ValueError, match="lacks test_batch"):
        cifar10.load_data(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a readable cifar-10-python.tar.gz"):
        cifar10.load_data(path)
    path.write_bytes(b"not a tar at all")
    with pytest.raises(ValueError, match="not a readable"):
        cifar10.load_data(path)


def test_class_names():
    assert cifar10.CLASS_NAMES[6] == "frog" and len(cifar10.CLASS_NAMES) == 10


# ---------------------------------------------------------------------------- the example
def _example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "cifar10_cnn.py"
    spec = importlib.util.spec_from_file_location("cutedl_example_cifar10_cnn_t", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_without_data_says_where_to_put_it(tmp_path):
    with pytest.raises(SystemExit, match=r"(?s)CIFAR-10 is not available .*cifar-10-python.tar.gz.*--data PATH"):
        _example().main(["--data", str(tmp_path), "--verbose", "0"])


def test_example_without_batch_norm_and_its_split(archive, tmp_path):
    path, _ = archive
    result = _example().main(["--epochs", "1", "--data", str(path), "--no-batch-norm", "--width", "2",
                              "--verbose", "0", "--report", str(tmp_path / "r.png")])
    assert not result["batch_norm"] and not result["augment"]
    assert result["history"].params["samples"] == 16   # 20 training images, 4 held out for validation
    assert (tmp_path / "r.png").is_file()
    model = _example().build_model(batch_norm=False)
    assert not any(type(l).__name__ == "BatchNormalization" for l in model.layers)
    assert sum(type(l).__name__ == "BatchNormalization" for l in _example().build_model().layers) == 5


def test_example_channel_stats_match_numpy():
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    x[:, 1] //= 3
    mean, std = _example().channel_stats(x)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3), keepdims=True) / 255.0, rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3), keepdims=True) / 255.0, rtol=1e-12)
    assert mean.shape == (1, 3, 1, 1)
