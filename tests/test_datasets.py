"""Tests for cutedl.datasets: IDX parsing, the search order, downloads, normalize and one_hot.

Reference values come from datasets/README.md (hashes, class counts), from well-known facts
about MNIST, or from independent code in this file (an IDX writer, hashlib on the files).
Downloads go to a local http.server on 127.0.0.1; nothing leaves the machine.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

import cutedl
from cutedl import datasets
from cutedl.datasets import DatasetSource, DownloadError, fashion_mnist, idx, mnist
from cutedl.datasets.cache import Checksum, fetch

REPO_MNIST = Path(cutedl.__file__).resolve().parents[1] / "datasets" / "mnist"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# From datasets/README.md.
README_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ---------------------------------------------------------------- an independent IDX writer

def idx_bytes(array: np.ndarray, type_code: int = 0x08, *, magic: int | None = None) -> bytes:
    """The IDX encoding of ``array``, written from the format description with struct."""
    big_endian = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if magic is None:
        magic = (type_code << 8) | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=big_endian[type_code]).tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload))
    return path


def make_fake_dataset(directory: Path, n_train: int = 6, n_test: int = 3, rows: int = 4, cols: int = 5,
                      seed: int = 0):
    """Write the four MNIST-layout files of a small random dataset; return the arrays."""
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, size=(n_train, rows, cols), dtype=np.uint8)
    y_train = rng.integers(0, 10, size=n_train, dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(n_test, rows, cols), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=n_test, dtype=np.uint8)
    for name, array in zip(FILES, (x_train, y_train, x_test, y_test)):
        write_gz(directory / name, idx_bytes(array))
    return (x_train, y_train), (x_test, y_test)


def content_sha256(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def assert_same(loaded, expected):
    (x, y), (xt, yt) = loaded
    (ex, ey), (ext, eyt) = expected
    for got, want in ((x, ex), (y, ey), (xt, ext), (yt, eyt)):
        # array_equal, not assert_array_equal: the latter takes ~0.4 s on all of MNIST.
        assert got.dtype == np.uint8 and got.shape == want.shape
        assert np.array_equal(got, want)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No data dir, an empty cache in tmp, no mirror overrides, and no proxy for 127.0.0.1."""
    monkeypatch.delenv("CUTEDL_DATA_DIR", raising=False)
    monkeypatch.delenv("CUTEDL_MNIST_MIRROR", raising=False)
    monkeypatch.delenv("CUTEDL_FASHION_MNIST_MIRROR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("CUTEDL_CACHE_DIR", str(cache))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return cache


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):   # keep the test output clean
        pass


class Mirror:
    """A static http.server on 127.0.0.1 (port 0) serving ``directory`` from a thread."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.thread = None


@pytest.fixture
def serve():
    mirrors = []

    def start(directory: Path) -> Mirror:
        mirrors.append(Mirror(directory))
        return mirrors[-1]

    yield start
    for m in mirrors:
        m.stop()


def dead_url() -> str:
    """A URL on a local port where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def leftovers(directory: Path) -> list:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")) if directory.exists() else []


# ---------------------------------------------------------------- the real, shipped MNIST

@pytest.fixture(scope="module")
def real_mnist():
    return mnist.load_data(REPO_MNIST)


def test_shipped_files_match_readme_sha256():
    for name, expected in README_SHA256.items():
        assert content_sha256(REPO_MNIST / name) == expected, name
        assert mnist.SOURCE.files[name] == Checksum(expected)


def test_real_mnist_shapes_dtypes_and_class_counts(real_mnist):
    (x, y), (xt, yt) = real_mnist
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert y.shape == (60000,) and yt.shape == (10000,)
    assert x.dtype == xt.dtype == y.dtype == yt.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(yt, minlength=10).tolist() == TEST_COUNTS
    assert (x.min(), x.max(), xt.min(), xt.max()) == (0, 255, 0, 255)
    # Well-known facts: the first labels of each split, and the mean pixel 0.1307 * 255.
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert yt[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(x.mean() / 255.0 - 0.1307) < 1e-4
    assert x.flags.writeable and y.flags.writeable   # users shuffle in place


def test_default_search_finds_the_repository_copy(clean_env, real_mnist, monkeypatch):
    # With no data dir and an unreachable mirror, only the repository copy can answer.
    monkeypatch.setenv("CUTEDL_MNIST_MIRROR", dead_url())
    loaded = mnist.load_data()
    assert_same(loaded, real_mnist)
    assert not clean_env.exists()   # nothing was downloaded


def test_package_exports():
    assert datasets.mnist is mnist and datasets.fashion_mnist is fashion_mnist
    assert callable(datasets.normalize) and callable(datasets.one_hot)
    assert issubclass(DownloadError, OSError)
    assert len(fashion_mnist.CLASS_NAMES) == 10


# ---------------------------------------------------------------- generated files, local lookup

def test_load_generated_files_from_path(tmp_path):
    expected = make_fake_dataset(tmp_path / "d")
    assert_same(mnist.load_data(tmp_path / "d"), expected)
    assert_same(fashion_mnist.load_data(str(tmp_path / "d")), expected)


def test_data_dir_env_comes_before_the_repository(tmp_path, monkeypatch, clean_env):
    expected = make_fake_dataset(tmp_path / "data" / "mnist", n_train=7)
    monkeypatch.setenv("CUTEDL_DATA_DIR", str(tmp_path / "data"))
    assert_same(mnist.load_data(), expected)


def test_incomplete_data_dir_falls_through_to_the_next_place(tmp_path, monkeypatch, clean_env):
    expected = make_fake_dataset(tmp_path / "data" / "fashion_mnist")
    (tmp_path / "data" / "fashion_mnist" / FILES[3]).unlink()
    cached = make_fake_dataset(clean_env / "fashion_mnist", seed=1)
    monkeypatch.setenv("CUTEDL_DATA_DIR", str(tmp_path / "data"))
    loaded = fashion_mnist.load_data(mirror=dead_url())
    assert_same(loaded, cached)
    assert not np.array_equal(loaded[0][0], expected[0][0])


def test_explicit_path_must_hold_every_file(tmp_path):
    make_fake_dataset(tmp_path)
    (tmp_path / FILES[1]).unlink()
    with pytest.raises(FileNotFoundError, match="lacks 'train-labels-idx1-ubyte.gz'"):
        mnist.load_data(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        mnist.load_data(tmp_path / "nope")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        mnist.load_data(42)


# ---------------------------------------------------------------- download

def test_download_into_cache_then_reuse_without_server(clean_env, serve, real_mnist):
    mirror = serve(REPO_MNIST)   # the real files, so the real checksums pass
    loaded = mnist.load_data(mirror=mirror.url, search_repo=False)
    assert_same(loaded, real_mnist)
    assert leftovers(clean_env) == ["mnist"] + sorted(f"mnist/{n}" for n in FILES)
    mirror.stop()   # the second call must be answered by the cache alone
    assert_same(mnist.load_data(mirror=mirror.url, search_repo=False), real_mnist)


def test_mirror_env_var_and_fallback_to_next_mirror(tmp_path, clean_env, serve, monkeypatch):
    served = tmp_path / "served"
    expected = make_fake_dataset(served)
    toy = DatasetSource("toy_digits", {n: Checksum(content_sha256(served / n)) for n in FILES},
                        mirrors=(dead_url(),), mirror_env="CUTEDL_TOY_MIRROR")
    mirror = serve(served)
    monkeypatch.setenv("CUTEDL_TOY_MIRROR", mirror.url)
    assert_same(idx.load_idx_dataset(toy), expected)
    assert fetch(toy) == clean_env / "toy_digits"

    # The defaults are tried in order: a dead first mirror falls through to a live one.
    toy2 = DatasetSource("toy2", toy.files, mirrors=(dead_url(), mirror.url))
    assert_same(idx.load_idx_dataset(toy2, cache_dir=tmp_path / "other"), expected)
    assert (tmp_path / "other" / "toy2" / FILES[0]).is_file()


def test_checksum_mismatch_is_rejected_and_not_cached(tmp_path, clean_env, serve):
    served = tmp_path / "served"
    make_fake_dataset(served)
    got = content_sha256(served / FILES[0])
    mirror = serve(served)
    with pytest.raises(ValueError) as info:
        mnist.load_data(mirror=mirror.url, search_repo=False)
    message = str(info.value)
    assert "'train-images-idx3-ubyte.gz'" in message
    assert f"expected {README_SHA256[FILES[0]]}, got {got}" in message
    assert leftovers(clean_env) == ["mnist"]   # no file, no temporary file


def test_fashion_mnist_checks_the_published_md5(tmp_path, clean_env, serve):
    served = tmp_path / "served"
    make_fake_dataset(served)
    got = hashlib.md5((served / FILES[0]).read_bytes()).hexdigest()
    mirror = serve(served)
    with pytest.raises(ValueError, match=f"md5 .*expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d, got {got}"):
        fashion_mnist.load_data(mirror=mirror.url)
    assert leftovers(clean_env) == ["fashion_mnist"]


def test_download_of_non_gzip_content_is_rejected(tmp_path, clean_env, serve):
    served = tmp_path / "served"
    (served / "a.gz").parent.mkdir(parents=True)
    (served / "a.gz").write_bytes(b"<html>not found</html>")
    toy = DatasetSource("toy", {"a.gz": Checksum("0" * 64)}, mirrors=(serve(served).url,))
    with pytest.raises(ValueError, match="'a.gz' .*not a valid gzip stream"):
        fetch(toy)
    assert leftovers(clean_env) == ["toy"]


def test_server_down_gives_a_clear_error(clean_env):
    with pytest.raises(DownloadError) as info:
        mnist.load_data(mirror=dead_url(), search_repo=False)
    message = str(info.value)
    assert "Could not download mnist file 'train-images-idx3-ubyte.gz'" in message
    assert str(clean_env / "mnist") in message        # where to put the files by hand
    assert "CUTEDL_DATA_DIR" in message and "path=" in message
    assert "put the files 'train-images-idx3-ubyte.gz', " in message
    assert "'t10k-labels-idx1-ubyte.gz' (gzipped, as published) in " in message
    assert leftovers(clean_env) == ["mnist"]


def test_how_to_put_files_by_hand_follows_each_checksum(clean_env):
    # of='content' files are checked through gzip: keep them gzipped; others exactly as served
    gz, raw = Checksum("0" * 64), Checksum("0" * 64, of="download")
    cases = [({"a.gz": gz}, "put the file 'a.gz' (gzipped, as published) in "),
             ({"a.npz": raw, "b.tar.gz": raw}, "put the files 'a.npz', 'b.tar.gz' (as published, not unpacked) in "),
             ({"a.gz": gz, "b.zip": raw}, "put the files 'a.gz' (gzipped, as published), "
                                          "'b.zip' (as published, not unpacked) in ")]
    for files, expected in cases:
        toy = DatasetSource("toy", files, mirrors=(dead_url(),))
        with pytest.raises(DownloadError) as info:
            fetch(toy)
        assert expected in str(info.value)
        assert "gzipped" not in str(info.value).replace("'a.gz' (gzipped", "")


def test_http_404_is_a_download_error(tmp_path, clean_env, serve):
    mirror = serve(tmp_path / "empty")
    with pytest.raises(DownloadError, match="HTTP 404"):
        mnist.load_data(mirror=mirror.url, search_repo=False)


def test_bad_checksum_and_source_definitions():
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        Checksum("abc")
    with pytest.raises(ValueError, match="of must be 'content' or 'download'"):
        Checksum("0" * 64, of="gzip")
    with pytest.raises(TypeError, match="must be a Checksum"):
        DatasetSource("x", {"a.gz": "0" * 64}, mirrors=())


# ---------------------------------------------------------------- corrupt IDX files

def _with_replaced(tmp_path: Path, name: str, payload: bytes, *, gz: bool = True) -> Path:
    make_fake_dataset(tmp_path)
    path = tmp_path / name
    if gz:
        write_gz(path, payload)
    else:
        path.write_bytes(payload)
    return path


def test_truncated_data_is_rejected(tmp_path):
    full = idx_bytes(np.zeros((6, 4, 5), dtype=np.uint8))
    _with_replaced(tmp_path, FILES[0], full[:-7])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz' is truncated: .*\(6, 4, 5\).*"
                                         r"needs 120 data bytes, the file has 113"):
        mnist.load_data(tmp_path)


def test_truncated_header_is_rejected(tmp_path):
    _with_replaced(tmp_path, FILES[1], struct.pack(">I", 2049))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz' is truncated: its header needs 8"):
        mnist.load_data(tmp_path)


def test_truncated_gzip_stream_is_rejected(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(6, dtype=np.uint8)))
    _with_replaced(tmp_path, FILES[1], good[: len(good) // 2], gz=False)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz' is not a valid gzip file"):
        mnist.load_data(tmp_path)


def test_wrong_magic_is_rejected(tmp_path):
    # A labels file where the images belong: valid IDX, wrong magic.
    _with_replaced(tmp_path, FILES[2], idx_bytes(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz' has magic number 2049 .*expected 2051"):
        mnist.load_data(tmp_path)


def test_garbage_is_not_an_idx_file(tmp_path):
    _with_replaced(tmp_path, FILES[0], b"PK\x03\x04 a zip, not IDX")
    with pytest.raises(ValueError, match="is not an IDX file: bad magic number"):
        mnist.load_data(tmp_path)


def test_extra_bytes_are_rejected(tmp_path):
    _with_replaced(tmp_path, FILES[3], idx_bytes(np.zeros(3, dtype=np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz' is longer than its header says"):
        mnist.load_data(tmp_path)


def test_image_and_label_counts_must_agree(tmp_path):
    _with_replaced(tmp_path, FILES[1], idx_bytes(np.zeros(5, dtype=np.uint8)))
    with pytest.raises(ValueError, match="holds 6 images but .* holds 5 labels"):
        mnist.load_data(tmp_path)


def test_labels_out_of_range_are_rejected(tmp_path):
    _with_replaced(tmp_path, FILES[3], idx_bytes(np.array([1, 12, 3], dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"has label 12, expected labels in \[0, 10\)"):
        mnist.load_data(tmp_path)


@pytest.mark.parametrize("type_code, values", [
    (0x09, np.array([-128, 0, 127], dtype=np.int8)),
    (0x0B, np.array([[-300, 2], [7, 32000]], dtype=np.int16)),
    (0x0C, np.array([-(2 ** 31), 5, 2 ** 31 - 1], dtype=np.int32)),
    (0x0D, np.array([[0.5, -1.25]], dtype=np.float32)),
    (0x0E, np.array([1e300, -2.5], dtype=np.float64)),
])
def test_read_idx_other_types_plain_and_gzipped(tmp_path, type_code, values):
    payload = idx_bytes(values, type_code)
    (tmp_path / "plain.idx").write_bytes(payload)
    write_gz(tmp_path / "packed.idx.gz", payload)
    for name in ("plain.idx", "packed.idx.gz"):
        got = idx.read_idx(tmp_path / name)
        assert got.dtype == values.dtype and got.dtype.isnative
        np.testing.assert_array_equal(got, values)


# ---------------------------------------------------------------- normalize

def test_normalize_scales_uint8_to_unit_interval():
    x = np.array([[0, 1, 51], [128, 254, 255]], dtype=np.uint8)
    y = datasets.normalize(x)
    assert y.dtype == np.float32 and y.shape == (2, 3)
    np.testing.assert_allclose(y, [[0, 1 / 255, 0.2], [128 / 255, 254 / 255, 1.0]], rtol=1e-7)
    assert y[0, 0] == 0.0 and y[1, 2] == 1.0
    assert datasets.normalize(x, dtype="float64").dtype == np.float64
    assert datasets.normalize(x.astype(np.float64)).dtype == np.float64   # float64 in, float64 out
    assert datasets.normalize(x.astype(np.int64)).dtype == np.float32
    np.testing.assert_array_equal(datasets.normalize(x, scale=1.0), x.astype(np.float32))


def test_normalize_standardizes_and_leaves_input_alone():
    x = np.array([0.0, 127.5, 255.0], dtype=np.float32)
    before = x.copy()
    y = datasets.normalize(x, mean=np.float64(0.5), std=0.25)
    assert y.dtype == np.float32   # a float64 statistic does not promote the result
    np.testing.assert_allclose(y, [(0 - 0.5) / 0.25, 0.0, (1 - 0.5) / 0.25], atol=1e-6)
    np.testing.assert_array_equal(x, before)
    per_feature = datasets.normalize(np.array([[10, 20], [30, 40]]), scale=10.0, mean=[2.0, 3.0])
    np.testing.assert_allclose(per_feature, [[-1.0, -1.0], [1.0, 1.0]])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"scale": 0}, ValueError, "scale must be a positive finite number, got 0"),
    ({"std": 0.0}, ValueError, "std must be positive finite, got 0.0"),
    ({"std": [1.0, -1.0]}, ValueError, "std must be positive finite"),
    ({"mean": float("nan")}, ValueError, "mean must be finite"),
    ({"dtype": "int32"}, ValueError, "dtype must be 'float32' or 'float64'"),
])
def test_normalize_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        datasets.normalize(np.ones((2, 2), dtype=np.uint8), **kwargs)


def test_normalize_rejects_non_numbers():
    with pytest.raises(TypeError, match="x must be an array of real numbers, got dtype <U1"):
        datasets.normalize(np.array(["a", "b"]))


# ---------------------------------------------------------------- one_hot

def naive_one_hot(labels, num_classes):
    flat = [int(v) for v in np.ravel(labels)]
    rows = [[1.0 if c == v else 0.0 for c in range(num_classes)] for v in flat]
    return np.array(rows).reshape(np.shape(labels) + (num_classes,))


def test_one_hot_matches_naive():
    labels = np.array([3, 0, 9, 3, 1], dtype=np.uint8)
    y = datasets.one_hot(labels, 10)
    assert y.dtype == np.float32 and y.shape == (5, 10)
    np.testing.assert_array_equal(y, naive_one_hot(labels, 10))
    grid = np.array([[0, 2], [1, 1]])
    np.testing.assert_array_equal(datasets.one_hot(grid), naive_one_hot(grid, 3))   # inferred: 3
    np.testing.assert_array_equal(datasets.one_hot([2.0, 0.0], 4), naive_one_hot([2, 0], 4))
    assert datasets.one_hot([1], 2, dtype="float64").dtype == np.float64
    assert datasets.one_hot(np.array([], dtype=np.int64), 4).shape == (0, 4)


@pytest.mark.parametrize("labels, num_classes, match", [
    ([0, -1, 2], 3, "labels must be >= 0, got -1 at index 1"),
    ([0, 2.5], 3, "labels must be integers, got 2.5 at index 1"),
    ([float("nan")], 3, "labels must be integers, got nan at index 0"),
    ([[0, 1], [10, 2]], 10, r"labels must be < num_classes=10, got 10 at index \(1, 0\)"),
    ([], None, "cannot infer num_classes from empty labels"),
    ([0, 1], 0, "num_classes must be positive, got 0"),
])
def test_one_hot_value_errors(labels, num_classes, match):
    with pytest.raises(ValueError, match=match):
        datasets.one_hot(labels, num_classes)


def test_one_hot_type_errors():
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        datasets.one_hot(["cat", "dog"], 2)
    with pytest.raises(TypeError, match="num_classes must be an int, got float"):
        datasets.one_hot([0, 1], 2.0)


def test_mnist_load_vectors_split_and_limit():
    from cutedl.datasets import mnist

    (xt, yt), (xv, yv), (xs, ys) = mnist.load_vectors()
    assert xt.shape == (55000, 784) and xv.shape == (5000, 784) and xs.shape == (10000, 784)
    assert yt.shape == (55000, 10) and xt.dtype == np.float32 and yt.dtype == np.float32
    assert 0.0 <= xt.min() and xt.max() == 1.0
    (x_all, y_all), _ = mnist.load_data()
    # the validation images are the last 5000 training images
    np.testing.assert_array_equal(xv[-1], x_all[-1].reshape(-1) / np.float32(255))
    assert yv[-1].argmax() == y_all[-1]
    (xt, _), (xv, _), (xs, _) = mnist.load_vectors(limit=300)
    assert (len(xt), len(xv), len(xs)) == (300, 100, 1000)
    with pytest.raises(ValueError, match="val_size"):
        mnist.load_vectors(val_size=0)
