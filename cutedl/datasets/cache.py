"""Where dataset files come from: a directory you name, the repository, the user cache, or a mirror.

``fetch(source)`` returns the directory that holds all the files of a :class:`DatasetSource`,
looking in this order:

1. ``path`` when given (a directory; it must hold every file, nothing is downloaded into it);
2. ``$CUTEDL_DATA_DIR/<name>/``;
3. the repository's ``datasets/<name>/`` (present in a checkout or an editable install);
4. the user cache ``<cache>/<name>/``, where ``<cache>`` is ``cache_dir``, else ``$CUTEDL_CACHE_DIR``,
   else ``~/.cache/cutedl``. Files missing there are downloaded from the mirror.

Directories 2 and 3 are used only when they hold *every* file; otherwise the search moves on.

Downloads stream into a temporary file beside the destination, are checked against the expected
digest while streaming, and are renamed into place only when the digest matches, so the cache
never holds a partial or corrupt file. A mismatch deletes the temporary file and raises
``ValueError``; a network failure raises :class:`DownloadError` (an ``OSError``) that says where
to put the files by hand. Files found locally are not hashed (the loaders check their structure);
files in the cache were hashed when they were downloaded.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from cutedl._io import atomic_write

PathLike = Union[str, "os.PathLike[str]"]

DATA_DIR_ENV = "CUTEDL_DATA_DIR"
CACHE_DIR_ENV = "CUTEDL_CACHE_DIR"

# cutedl/datasets/cache.py -> parents[2] is the checkout root, the folder that holds datasets/.
# Same as Path(cutedl.__file__).resolve().parents[1], without importing the package mid-import.
REPO_DATASETS_DIR = Path(__file__).resolve().parents[2] / "datasets"

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 30.0
_HEX = re.compile(r"[0-9a-f]+")


class DownloadError(OSError):
    """A dataset file could not be downloaded: no network, mirror unreachable, HTTP error."""


@dataclass(frozen=True)
class Checksum:
    """The expected digest of one dataset file.

    Args:
        hexdigest: the expected digest, in hex.
        algorithm: a ``hashlib`` name: ``'sha256'`` (the default), or ``'md5'`` where a dataset
            publishes nothing better (an integrity check against corrupt downloads, not a
            defence against a malicious mirror).
        of: ``'content'`` hashes the uncompressed bytes of a gzip file, so a re-compressed copy
            of the same data still matches; ``'download'`` hashes the file exactly as served.
    """

    hexdigest: str
    algorithm: str = "sha256"
    of: str = "content"

    def __post_init__(self):
        if self.of not in ("content", "download"):
            raise ValueError(f"Checksum: of must be 'content' or 'download', got {self.of!r}.")
        if self.algorithm not in hashlib.algorithms_available:
            raise ValueError(f"Checksum: unknown hash algorithm {self.algorithm!r}; use 'sha256'.")
        digest_size = hashlib.new(self.algorithm, usedforsecurity=False).digest_size
        if not isinstance(self.hexdigest, str) or not _HEX.fullmatch(self.hexdigest) \
                or len(self.hexdigest) != 2 * digest_size:
            raise ValueError(f"Checksum: hexdigest must be {2 * digest_size} lowercase hex digits for "
                             f"{self.algorithm}, got {self.hexdigest!r}.")


@dataclass(frozen=True)
class DatasetSource:
    """A dataset made of a few files, and where to download them.

    Args:
        name: folder name under the data, repository and cache directories (e.g. ``'mnist'``).
        files: file name -> expected :class:`Checksum`.
        mirrors: base URLs tried in order; a file's URL is ``mirror + '/' + file name``.
        mirror_env: environment variable that replaces ``mirrors`` with one base URL when set.
    """

    name: str
    files: Mapping[str, Checksum]
    mirrors: Sequence[str]
    mirror_env: Optional[str] = None

    def __post_init__(self):
        if not self.name or "/" in self.name or "\\" in self.name:
            raise ValueError(f"DatasetSource: name must be a plain folder name, got {self.name!r}.")
        if not self.files:
            raise ValueError(f"DatasetSource {self.name!r}: files must name at least one file.")
        for fname, checksum in self.files.items():
            if not isinstance(checksum, Checksum):
                raise TypeError(f"DatasetSource {self.name!r}: the checksum of {fname!r} must be a "
                                f"Checksum, got {type(checksum).__name__}.")


def user_cache_dir(cache_dir: Optional[PathLike] = None) -> Path:
    """The cache root: ``cache_dir``, else ``$CUTEDL_CACHE_DIR``, else ``~/.cache/cutedl``."""
    if cache_dir is not None:
        return Path(check_pathlike(cache_dir, "cache_dir")).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cutedl"


def local_dirs(source: DatasetSource, *, search_repo: bool = True) -> list:
    """The directories searched before the cache: ``$CUTEDL_DATA_DIR/<name>``, then the repository's."""
    dirs = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        dirs.append(Path(env).expanduser() / source.name)
    if search_repo:
        dirs.append(REPO_DATASETS_DIR / source.name)
    return dirs


def mirrors_for(source: DatasetSource, mirror: Optional[str] = None) -> tuple:
    """The base URLs to try: ``mirror`` if given, else ``$<mirror_env>`` if set, else the defaults."""
    if mirror is not None:
        if not isinstance(mirror, str) or not mirror:
            raise TypeError(f"{source.name}: mirror must be a base URL string, got {mirror!r}.")
        return (mirror,)
    env = os.environ.get(source.mirror_env) if source.mirror_env else None
    if env:
        return (env,)
    return tuple(source.mirrors)


def fetch(source: DatasetSource, path: Optional[PathLike] = None, *, mirror: Optional[str] = None,
          cache_dir: Optional[PathLike] = None, search_repo: bool = True) -> Path:
    """The directory holding every file of ``source``, downloading into the cache what is missing.

    Args:
        source: what to find.
        path: a directory that must hold every file (then nothing else is searched).
        mirror: base URL to download from, instead of ``$<mirror_env>`` or the defaults.
        cache_dir: cache root instead of ``$CUTEDL_CACHE_DIR`` / ``~/.cache/cutedl``.
        search_repo: look in the repository's ``datasets/<name>/`` (False skips it, e.g. to test
            the download).
    Returns:
        The directory, as a ``Path``.
    Raises:
        FileNotFoundError: ``path`` is not a directory or lacks a file.
        DownloadError: a file could not be downloaded from any mirror.
        ValueError: a downloaded file does not match its checksum (it is not kept).
    """
    names = list(source.files)
    if path is not None:
        directory = Path(check_pathlike(path, "path")).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"{source.name}: path must be a directory holding {_listing(names)}; "
                                    f"{str(directory)!r} is not a directory.")
        missing = [n for n in names if not (directory / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{source.name}: directory {str(directory)!r} lacks {_listing(missing)}. "
                                    f"Put the files there, or call load_data() without path to search "
                                    f"${DATA_DIR_ENV}, the repository and the cache, and download.")
        return directory

    for directory in local_dirs(source, search_repo=search_repo):
        if all((directory / n).is_file() for n in names):
            return directory

    directory = user_cache_dir(cache_dir) / source.name
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        urls = mirrors_for(source, mirror)
        for name in missing:
            _download_from_mirrors(source, name, urls, directory)
    return directory


def download_file(url: str, dest: PathLike, checksum: Checksum, *, timeout: float = _TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` through a temporary file, renamed into place only if it matches.

    Raises:
        DownloadError: the request or the transfer failed (the temporary file is removed).
        ValueError: the digest does not match (the temporary file is removed, ``dest`` untouched).
    """
    dest = Path(dest)
    # Create the folder outside the network try-block: a permission error is not a download error.
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except ValueError as err:   # urllib's answer to a malformed URL
        raise ValueError(f"Cannot download {dest.name!r}: {url!r} is not a valid URL ({err}). "
                         f"A mirror is a base URL such as 'https://host/path/'.") from err
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"{url}: {_reason(err)}") from err

    hasher = _StreamHasher(checksum)

    def writer(f):
        while True:
            try:
                chunk = response.read(_CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as err:
                raise DownloadError(f"{url}: transfer failed ({_reason(err)})") from err
            if not chunk:
                break
            try:
                hasher.update(chunk)
            except zlib.error as err:
                raise ValueError(f"Downloaded file {dest.name!r} from {url} is not a valid gzip "
                                 f"stream ({err}); it was deleted. The mirror may be corrupt: try "
                                 f"another one with mirror=...") from err
            f.write(chunk)
        got = hasher.hexdigest()
        if got != checksum.hexdigest:
            what = "uncompressed content" if checksum.of == "content" else "file"
            raise ValueError(f"Downloaded file {dest.name!r} from {url} failed its {checksum.algorithm} "
                             f"check of the {what}: expected {checksum.hexdigest}, got {got}. It was "
                             f"deleted, not cached. The mirror may be corrupt or serve another "
                             f"version: try again, or another mirror with mirror=...")

    with response:
        atomic_write(dest, writer)   # removes the temporary file when writer raises
    return dest


def file_digest(path: PathLike, checksum: Checksum) -> str:
    """The hex digest of ``path`` the way ``checksum`` defines it (content or file as stored)."""
    hasher = _StreamHasher(checksum)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


class _StreamHasher:
    """Hash a file chunk by chunk; for ``of='content'``, inflate the gzip stream on the way, so a
    download is checked without being read back or held whole in memory."""

    def __init__(self, checksum: Checksum):
        # usedforsecurity=False: md5 is an integrity check here, and FIPS builds refuse it otherwise.
        self._hash = hashlib.new(checksum.algorithm, usedforsecurity=False)
        self._gunzip = checksum.of == "content"
        self._inflate = _gzip_inflater() if self._gunzip else None

    def update(self, chunk: bytes) -> None:
        if not self._gunzip:
            self._hash.update(chunk)
            return
        while chunk:
            self._hash.update(self._inflate.decompress(chunk))
            if self._inflate.eof:
                # A gzip file may hold several members back to back; continue with the next.
                chunk = self._inflate.unused_data
                self._inflate = _gzip_inflater()
            else:
                chunk = b""

    def hexdigest(self) -> str:
        if self._gunzip:
            self._hash.update(self._inflate.flush())
        return self._hash.hexdigest()


def _gzip_inflater():
    return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)   # 16+: expect a gzip header and trailer


def _download_from_mirrors(source: DatasetSource, name: str, mirrors: Sequence[str], directory: Path) -> None:
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            download_file(url, directory / name, source.files[name])
            return
        except DownloadError as err:   # try the next mirror; a checksum ValueError stops at once
            failures.append(str(err))
    env = f" or ${source.mirror_env}" if source.mirror_env else ""
    raise DownloadError(
        f"Could not download {source.name} file {name!r}: " + "; ".join(failures) + ". "
        f"Without network, put {_files_as_published(source)} in "
        f"{str(directory)!r}, or in '<dir>/{source.name}/' with ${DATA_DIR_ENV}=<dir>, or pass "
        f"load_data(path=<a directory holding them>). Another mirror can be chosen with "
        f"mirror=...{env}.")


def _files_as_published(source: DatasetSource) -> str:
    """``source``'s files, saying in what form to put them by hand: a file checked by its gzip
    content (``of='content'``) is kept gzipped; any other exactly as downloaded, not unpacked."""
    def form(checksum: Checksum) -> str:
        return "gzipped, as published" if checksum.of == "content" else "as published, not unpacked"

    forms = {form(c) for c in source.files.values()}
    if len(forms) == 1:
        noun = "the file" if len(source.files) == 1 else "the files"
        return f"{noun} {_listing(list(source.files))} ({forms.pop()})"
    return "the files " + ", ".join(f"{n!r} ({form(c)})" for n, c in source.files.items())


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _listing(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def check_pathlike(value, what: str):
    """``value`` if it is a str or ``os.PathLike`` (a TypeError naming ``what`` otherwise)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a str or os.PathLike directory, got {type(value).__name__}.")
    return value
