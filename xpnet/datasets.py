"""Data sets: MNIST packaged for offline use, with the signature of *Deep Learning from Scratch*;
Fashion-MNIST, KMNIST and CIFAR-10 downloaded and verified on first use; the user's own arrays.

:func:`load` (``load_mnist``'s signature plus a name) and :func:`load_dataset` (the same, with
the class count and names) cover them all; docs/datasets.md tells the whole story.

The four MNIST files (IDX format, gzip-compressed) ship inside the package in ``xpnet/data/mnist/``,
copied unchanged from the standard distribution. MNIST is by Yann LeCun, Corinna Cortes and
Christopher J.C. Burges and is distributed under the Creative Commons Attribution-Share Alike 3.0
license; see ``xpnet/data/mnist/LICENSE.md``.

``load_mnist`` returns host NumPy arrays; the caller moves them to a device. Parsed files are cached
as ``.npy`` under ``$XPNET_CACHE_DIR`` (else ``$XDG_CACHE_HOME/xpnet`` or ``~/.cache/xpnet``) so a
second load, even in a new process, skips the gunzip.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .download import Source, fetch, sources_for, unverified_digest
from .errors import DataError
from .validate import DTYPES

__all__ = ["CACHE_DIR_ENV", "DATA_DIR_ENV", "DATASETS", "DATASET_NAMES", "MNIST_FILES",
           "MNIST_SHA256", "Dataset", "DatasetInfo", "dataset_key", "load", "load_dataset",
           "load_mnist", "read_cifar10", "read_idx"]

DATA_DIR_ENV = "XPNET_DATA_DIR"
CACHE_DIR_ENV = "XPNET_CACHE_DIR"

# Order matters: train images, train labels, test images, test labels.
MNIST_FILES: tuple[str, str, str, str] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# sha256 of the packaged .gz files (as in shared/data/mnist/SHA256SUMS and data/mnist/LICENSE.md).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "34bf019e38a93acdfe07defd62941bce69d20d41bb920bb80250a971f6b6c0b5",
    "train-labels-idx1-ubyte.gz": "977e216a2c6281a1e6e1387a1180913c83b30ec61e43fea5a39363e8dd4d265a",
    "t10k-images-idx3-ubyte.gz": "accef5d0659b773fdb5fa19094a42d64e6066844c8a9a9e3beba55480763b1da",
    "t10k-labels-idx1-ubyte.gz": "1e351ee1639e1bfcf17c53977ac41029c580406e8c593550198fbb66f91f2f25",
}

_PACKAGED_DIR = Path(__file__).resolve().parent / "data" / "mnist"
_NUM_CLASSES = 10
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UBYTE = 0x08
# Type bytes of the IDX spec, only to make the "unsupported" message specific.
_IDX_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
                   0x0D: "float32", 0x0E: "float64"}
# Bump when the cached array layout changes, so stale caches are never read.
_CACHE_VERSION = "1"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzip-compressed or not, as a writable uint8 array.

    Compression is detected from the magic bytes ``1f 8b``, not from the name. Any malformed
    input (bad gzip stream, bad magic, unsupported type, truncated or oversized data) raises
    ``DataError`` naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise DataError(f"{path} is a corrupt or truncated gzip file ({exc}); "
                            "replace it with a fresh copy") from exc
    dims, header_len = _parse_idx_header(data, path)
    expected = math.prod(dims)
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(f"IDX file {path} {what}: header says shape {dims}, i.e. {expected} data "
                        f"bytes, but the file holds {actual}; replace it with a fresh copy")
    # frombuffer over bytes is read-only; the copy makes the result writable like any other array.
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def _parse_idx_header(data: bytes, path: Path) -> tuple[tuple[int, ...], int]:
    """Validate an uncompressed IDX header; return (dims, header length in bytes)."""
    if len(data) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(data)} bytes, shorter than the "
                        "4-byte magic number")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file: magic number 0x{data[:4].hex()} does not "
                        "start with two zero bytes")
    type_byte, ndim = data[2], data[3]
    if type_byte != _IDX_UBYTE:
        name = _IDX_TYPE_NAMES.get(type_byte, "unknown")
        raise DataError(f"unsupported IDX type 0x{type_byte:02x} ({name}) in {path}: only 0x08 "
                        "(unsigned byte) is supported")
    if not 1 <= ndim <= 4:
        raise DataError(f"IDX file {path} declares {ndim} dimensions; expected 1 to 4")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"IDX file {path} is truncated inside its header: {len(data)} bytes, "
                        f"the header of a {ndim}-D file needs {header_len}")
    return struct.unpack(f">{ndim}I", data[4:header_len]), header_len


def _idx_shape(path: Path) -> tuple[int, ...] | None:
    """The shape an IDX file's header declares (reads the header only), or None if unreadable."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(2)
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if head == _GZIP_MAGIC else raw
            data = stream.read(4 + 4 * 4)
        return _parse_idx_header(data, path)[0]
    except (OSError, EOFError, zlib.error, DataError):
        return None


def load_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    dtype: str = "float32",
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load MNIST as ``((x_train, t_train), (x_test, t_test))`` host NumPy arrays.

    - ``flatten``: images are ``(N, rows*cols)`` (784 for MNIST), else ``(N, 1, rows, cols)``.
    - ``normalize``: pixels are ``pixel / 255`` in ``dtype`` ("float32" or "float64"); otherwise
      the raw uint8 pixels, as in the book, and ``dtype`` does not apply to them.
    - ``one_hot_label``: labels are ``(N, 10)`` one-hot in ``dtype``; otherwise int64 ``(N,)``.
    - ``data_dir``: a folder holding the four ``MNIST_FILES``, each gzip-compressed (``.gz``) or
      not (the same name without ``.gz``), e.g. Fashion-MNIST. ``None`` means ``$XPNET_DATA_DIR``
      if set, else the copy packaged with xpnet, whose sha256 is checked on first use.

    Raises ``DataError`` for a bad ``dtype``, a missing or corrupt file, or files that disagree
    (image and label counts, image sizes, labels outside 0..9).
    """
    float_dtype = _check_dtype(dtype)
    folder, origin = _resolve_data_dir(data_dir)
    packaged = folder.resolve() == _PACKAGED_DIR
    paths = _find_files(folder, origin, packaged)
    raw = [_load_raw(path, name, packaged) for path, name in zip(paths, MNIST_FILES)]
    x_train, t_train = _check_split(raw[0], raw[1], paths[0], paths[1])
    x_test, t_test = _check_split(raw[2], raw[3], paths[2], paths[3])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"training images are {x_train.shape[1]}x{x_train.shape[2]} ({paths[0]}) "
                        f"but test images are {x_test.shape[1]}x{x_test.shape[2]} ({paths[2]})")
    train = (_images(x_train, normalize, flatten, float_dtype),
             _labels(t_train, one_hot_label, float_dtype))
    test = (_images(x_test, normalize, flatten, float_dtype),
            _labels(t_test, one_hot_label, float_dtype))
    return train, test


def _check_dtype(dtype: object) -> np.dtype:
    try:
        # np.dtype(None) is float64: reject None rather than pick a dtype silently.
        resolved = None if dtype is None else np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in DTYPES:
        raise DataError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return resolved


def _resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """Return (folder, a phrase saying where it came from, for error messages)."""
    if data_dir is not None:
        folder, origin = Path(data_dir).expanduser(), "the data_dir argument"
    elif os.environ.get(DATA_DIR_ENV):
        folder, origin = Path(os.environ[DATA_DIR_ENV]).expanduser(), f"${DATA_DIR_ENV}"
    else:
        return _PACKAGED_DIR, "the copy packaged with xpnet"
    if not folder.is_dir():
        raise DataError(f"MNIST data folder {folder} (from {origin}) does not exist or is not a "
                        f"folder; point data_dir / --data-dir / ${DATA_DIR_ENV} at a folder "
                        f"holding {', '.join(MNIST_FILES)}, or unset it to use the packaged copy")
    return folder, origin


def _find_files(folder: Path, origin: str, packaged: bool) -> list[Path]:
    """Locate each of MNIST_FILES, ``.gz`` first, then uncompressed (not for the packaged copy)."""
    found, missing = [], []
    for name in MNIST_FILES:
        candidates = [folder / name]
        if not packaged:
            candidates.append(folder / name.removesuffix(".gz"))
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(" or ".join(str(p) for p in candidates))
        else:
            found.append(path)
    if missing:
        if packaged:
            fix = (f"the installed xpnet is incomplete: reinstall it, or set ${DATA_DIR_ENV} "
                   "(or pass data_dir / --data-dir) to a folder holding the MNIST files")
        else:
            fix = (f"put the files there (gzip-compressed or not), point data_dir / --data-dir / "
                   f"${DATA_DIR_ENV} at another folder, or unset it to use the packaged copy")
        raise DataError(f"MNIST file(s) missing from {folder} ({origin}): {'; '.join(missing)}. "
                        f"To fix: {fix}")
    return found


def _load_raw(path: Path, name: str, packaged: bool) -> np.ndarray:
    """The parsed uint8 array of one file, from the .npy cache when it holds a valid copy."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"cannot read MNIST file {path}: {exc}") from exc
    if packaged:
        # The cache entry is written only after the sha256 check, so a hit keyed by the expected
        # sum needs no re-hash of the .gz.
        key = MNIST_SHA256[name]
    else:
        # User files may change in place; path + size + mtime_ns is cheap and catches that.
        ident = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        key = hashlib.sha256(ident.encode()).hexdigest()
    cache_file = _cache_file(name, key)
    shape = _idx_shape(path)
    if cache_file is not None and shape is not None:
        cached = _read_cache(cache_file, shape)
        if cached is not None:
            return cached
    if packaged:
        _verify_sha256(path, MNIST_SHA256[name])
    array = read_idx(path)
    if cache_file is not None:
        _write_cache(cache_file, array)
    return array


def _verify_sha256(path: Path, expected: str) -> None:
    found = unverified_digest(path, expected, "sha256")
    if found is not None:
        raise DataError(f"packaged MNIST file {path} is corrupt: its sha256 is {found}, "
                        f"expected {expected}; reinstall xpnet")


def _cache_root() -> Path | None:
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative paths
        return Path(xdg) / "xpnet"
    try:
        return Path.home() / ".cache" / "xpnet"
    except RuntimeError:  # no home directory: run without a cache
        return None


def _cache_dir() -> Path | None:
    root = _cache_root()
    return None if root is None else root / "idx"


def _cache_file(name: str, key: str) -> Path | None:
    folder = _cache_dir()
    if folder is None:
        return None
    return folder / f"{name.removesuffix('.gz')}-v{_CACHE_VERSION}-{key[:32]}.npy"


def _read_cache(cache_file: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array, or None if absent or unusable (it is then rewritten)."""
    try:
        array = np.load(cache_file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(array, np.ndarray):  # a stray .npz: np.load returned an NpzFile
        array.close()
        return None
    if array.dtype != np.uint8 or array.shape != shape:
        return None
    return array


def _write_cache(cache_file: Path, array: np.ndarray) -> None:
    """Write atomically (temp file + rename): a crash or a concurrent reader never sees half a
    file. Any failure only means no cache."""
    tmp_name = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_file.parent, prefix=".tmp-", suffix=".npy",
                                         delete=False) as tmp:
            tmp_name = tmp.name
            np.save(tmp, array, allow_pickle=False)
        os.replace(tmp_name, cache_file)
    except OSError:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def _check_split(images: np.ndarray, labels: np.ndarray, images_path: Path,
                 labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    if images.ndim != 3:
        raise DataError(f"{images_path} should hold images of shape (count, rows, cols) but "
                        f"holds shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path} should hold labels of shape (count,) but holds shape "
                        f"{labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                        f"{labels.shape[0]} labels; the two files must come from the same split")
    if labels.size and labels.max() >= _NUM_CLASSES:
        index = int(np.argmax(labels >= _NUM_CLASSES))
        raise DataError(f"{labels_path} holds label {labels[index]} at index {index}; labels must "
                        f"be 0..{_NUM_CLASSES - 1}")
    return images, labels


def _images(x: np.ndarray, normalize: bool, flatten: bool, dtype: np.dtype) -> np.ndarray:
    """``(N, rows, cols)`` become ``(N, 1, rows, cols)``, or ``(N, D)`` with ``flatten``; uint8
    pixels become ``pixel / 255`` in ``dtype`` with ``normalize``, floats are cast to it."""
    n = x.shape[0]
    if flatten:
        x = x.reshape(n, -1)
    elif x.ndim == 3:
        x = x.reshape(n, 1, *x.shape[1:])
    if x.dtype == np.uint8 and normalize:
        x = x.astype(dtype)
        # In-place division: as fast as multiplying by 1/255 and exactly the book's pixel / 255.
        np.divide(x, dtype.type(255), out=x)
    elif x.dtype.kind == "f":
        x = x.astype(dtype, copy=False)
    return x


def _labels(t: np.ndarray, one_hot: bool, dtype: np.dtype,
            num_classes: int = _NUM_CLASSES) -> np.ndarray:
    if not one_hot:
        return t.astype(np.int64)
    one_hot_t = np.zeros((t.shape[0], num_classes), dtype=dtype)
    one_hot_t[np.arange(t.shape[0]), t] = 1
    return one_hot_t


# ------------------------------------------------------------------ more data sets

@dataclass(frozen=True)
class DatasetInfo:
    """A named data set: its files (official URL, mirrors, published MD5), class names, and
    ``style``, how :mod:`xpnet.imageio` prepares a user's image like its images were."""

    name: str
    files: tuple[Source, ...]
    class_names: tuple[str, ...]
    style: str


def _idx_sources(mirrors: tuple[str, ...], md5s: tuple[str, str, str, str]) -> tuple[Source, ...]:
    return tuple(Source(name, tuple(m + name for m in mirrors), md5)
                 for name, md5 in zip(MNIST_FILES, md5s))


CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
# Official URLs and MD5s as torchvision's datasets/mnist.py and cifar.py publish them.
DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo("mnist", (), tuple("0123456789"), "mnist"),
    DatasetInfo("fashion-mnist", _idx_sources(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
         "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"), "fashion"),
    # class names: the data set's kmnist_classmap.csv (U+304A ... U+3092), with their romaji
    DatasetInfo("kmnist", _idx_sources(
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        ("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
         "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134")),
        ("o (\u304a)", "ki (\u304d)", "su (\u3059)", "tsu (\u3064)", "na (\u306a)",
         "ha (\u306f)", "ma (\u307e)", "ya (\u3084)", "re (\u308c)", "wo (\u3092)"),
        "mnist"),
    DatasetInfo("cifar10", (Source(CIFAR10_ARCHIVE,
                                   ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                                   "c58f30108f718f92721af3b95e74349a"),),
                ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"), "cifar"),
)}
DATASET_NAMES = tuple(DATASETS)


@dataclass
class Dataset:
    """A loaded data set: host NumPy ``train`` and ``test`` pairs ``(x, t)`` and what a network
    and ``xpnet predict`` need to know of it."""

    name: str  # a DATASETS key, or the resolved path of an .npz file
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    num_classes: int
    class_names: tuple[str, ...]
    style: str  # xpnet.imageio's preparation of a user's image: mnist, fashion, cifar or plain

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape: ``(C, H, W)`` for images, ``(D,)`` for flat data."""
        return tuple(self.train[0].shape[1:])


def dataset_key(name: str | os.PathLike[str]) -> str:
    """The canonical name of a data set: a :data:`DATASETS` key, or an ``.npz`` file's resolved
    path. Raises ``DataError`` for anything else."""
    text = os.fspath(name)
    if text.lower() in DATASETS:
        return text.lower()
    path = Path(text).expanduser()
    if text.endswith(".npz") or path.is_file():
        return str(path.resolve())
    raise DataError(f"unknown data set {text!r}: give one of {', '.join(DATASET_NAMES)}, or the "
                    "path of an .npz file holding x_train, t_train, x_test, t_test")


def load(name: str | os.PathLike[str] = "mnist", normalize: bool = True, flatten: bool = True,
         one_hot_label: bool = False, *, dtype: str = "float32",
         data_dir: str | os.PathLike[str] | None = None,
         sources: Mapping[str, Any] | None = None, progress: bool | None = None,
         timeout: float = 30.0,
         ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, t_train), (x_test, t_test))`` of a data set, as :func:`load_mnist` returns
    MNIST's (host NumPy; the same ``normalize``, ``flatten``, ``one_hot_label``, ``dtype``).

    See :func:`load_dataset` for ``name``, ``data_dir``, ``sources``, ``progress`` and
    ``timeout``. Unflattened images are ``(N, C, H, W)``.
    """
    data = load_dataset(name, normalize, flatten, one_hot_label, dtype=dtype, data_dir=data_dir,
                        sources=sources, progress=progress, timeout=timeout)
    return data.train, data.test


def load_dataset(name: str | os.PathLike[str] = "mnist", normalize: bool = True,
                 flatten: bool = False, one_hot_label: bool = False, *, dtype: str = "float32",
                 data_dir: str | os.PathLike[str] | None = None,
                 sources: Mapping[str, Any] | None = None, progress: bool | None = None,
                 timeout: float = 30.0) -> Dataset:
    """A data set by name, with its class count and names (:class:`Dataset`).

    - ``name``: ``mnist`` (the packaged copy, offline; ``data_dir`` or ``$XPNET_DATA_DIR`` as in
      :func:`load_mnist`), ``fashion-mnist``, ``kmnist``, ``cifar10``, or the path of an
      ``.npz`` file (see docs/datasets.md for what it must hold).
    - ``data_dir``: for the downloaded sets, the folder holding their files (placed there by
      hand or downloaded into it); default ``<cache>/datasets/<name>`` (``$XPNET_CACHE_DIR``,
      else ``$XDG_CACHE_HOME/xpnet`` or ``~/.cache/xpnet``). Every file is checked against its
      published MD5 before use.
    - ``sources``: ``{filename: {"urls": [...], "md5": "..."}}`` replacing the official
      sources (a local mirror; tests); else ``$XPNET_DATASET_SOURCES``, see
      :func:`xpnet.download.sources_override`.
    - ``progress``: a download progress bar (default: stderr is a terminal); ``timeout``:
      seconds a download may wait for the server.

    Raises ``DataError`` (one line) for an unknown name, a download that fails, a file that
    is corrupt or fails its checksum, or an ``.npz`` that does not hold a data set.
    """
    float_dtype = _check_dtype(dtype)
    key = dataset_key(name)
    if key not in DATASETS:
        if data_dir is not None:
            raise DataError(f"data_dir / --data-dir {data_dir} does not apply to an .npz data set "
                            f"({key}): drop it")
        return _load_npz(Path(key), normalize, flatten, one_hot_label, float_dtype)
    info = DATASETS[key]
    if key == "mnist":
        train, test = load_mnist(normalize, flatten, one_hot_label, dtype=dtype,
                                 data_dir=data_dir)
    else:
        paths = _fetch_all(info, data_dir, sources, progress, timeout)
        if key == "cifar10":
            (x_train, t_train), (x_test, t_test) = read_cifar10(paths[CIFAR10_ARCHIVE])
            train = (_images(x_train, normalize, flatten, float_dtype),
                     _labels(t_train, one_hot_label, float_dtype))
            test = (_images(x_test, normalize, flatten, float_dtype),
                    _labels(t_test, one_hot_label, float_dtype))
        else:
            train, test = load_mnist(normalize, flatten, one_hot_label, dtype=dtype,
                                     data_dir=paths[MNIST_FILES[0]].parent)
    return Dataset(key, train, test, _NUM_CLASSES, info.class_names, info.style)


def _fetch_all(info: DatasetInfo, data_dir: str | os.PathLike[str] | None,
               sources: Mapping[str, Any] | None, progress: bool | None,
               timeout: float) -> dict[str, Path]:
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
    else:
        root = _cache_root()
        if root is None:
            raise DataError(f"no cache folder for {info.name} (no home directory): pass "
                            f"data_dir / --data-dir, or set ${CACHE_DIR_ENV}")
        folder = root / "datasets" / info.name
    table = sources_for(info.files, info.name, sources)
    paths = {}
    for filename, source in table.items():
        by_hand = (f"to place it by hand, download {source.urls[0]} into {folder} (or into a "
                   "folder you pass as --data-dir / data_dir)")
        paths[filename] = fetch(source, folder, timeout=timeout, progress=progress,
                                by_hand=by_hand)
    return paths


# ------------------------------------------------------------------ CIFAR-10's pickled batches

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)
_CIFAR_PIXELS = 3 * 32 * 32


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds and nothing else: dicts, lists, strings, numbers and
    uint8 NumPy arrays (which a pickle rebuilds through ``numpy``'s ``_reconstruct``,
    ``ndarray`` and ``dtype``, and, from Python 3 protocol-2 pickles, ``_codecs.encode`` for
    the raw bytes). Any other global, ``os.system`` say, is refused: loading cannot run code."""

    _RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]  # numpy.core (1.x) or numpy._core (2.x)
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
                ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
                ("numpy", "ndarray"): np.ndarray,
                ("numpy", "dtype"): np.dtype,
                ("_codecs", "encode"): codecs.encode}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"global {module}.{name} is not part of a CIFAR batch") from None


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global the CIFAR format does not hold."""


def read_cifar10(path: str | os.PathLike[str]) -> tuple[tuple[np.ndarray, np.ndarray],
                                                        tuple[np.ndarray, np.ndarray]]:
    """``((x_train, t_train), (x_test, t_test))`` from CIFAR-10's ``cifar-10-python.tar.gz``:
    uint8 images ``(N, 3, 32, 32)`` and int64 labels, read from the archive in memory (nothing
    is extracted) with a restricted unpickler. Verify the archive's checksum first: that is
    what makes its contents trustworthy; the unpickler is the second wall."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:gz") as archive:
            train = [_read_batch(archive, name, path) for name in _CIFAR_TRAIN]
            test = [_read_batch(archive, name, path) for name in _CIFAR_TEST]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable CIFAR-10 archive (corrupt or truncated: "
                        f"{exc}); delete it to download it again") from None
    return tuple((np.concatenate([x for x, _ in batches]),  # type: ignore[return-value]
                  np.concatenate([t for _, t in batches])) for batches in (train, test))


def _read_batch(archive: tarfile.TarFile, name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    member = f"{_CIFAR_FOLDER}/{name}"
    try:
        stream = archive.extractfile(member)
    except KeyError:
        stream = None
    if stream is None:
        raise DataError(f"{path} lacks {member}: it is not CIFAR-10's python archive")
    where = f"{member} in {path}"
    try:
        batch = _BatchUnpickler(io.BytesIO(stream.read()), encoding="latin1").load()
    except _Refused as exc:
        raise DataError(f"{where} is refused: {exc}; it is not the published CIFAR-10") from None
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError, IndexError,
            KeyError) as exc:
        raise DataError(f"{where} is not a readable pickle ({exc})") from None
    data = batch.get("data") if isinstance(batch, dict) else None
    labels = batch.get("labels") if isinstance(batch, dict) else None
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != _CIFAR_PIXELS or not isinstance(labels, list)
            or len(labels) != data.shape[0]
            or not all(isinstance(v, int) and 0 <= v < _NUM_CLASSES for v in labels)):
        raise DataError(f"{where} does not hold a CIFAR-10 batch: a dict of 'data' (uint8, N x "
                        f"{_CIFAR_PIXELS}) and 'labels' (N ints 0..9)")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


# ------------------------------------------------------------------ the user's own arrays

_NPZ_KEYS = ("x_train", "t_train", "x_test", "t_test")


def _load_npz(path: Path, normalize: bool, flatten: bool, one_hot: bool,
              dtype: np.dtype) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"data set file {path} does not exist") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds one array; a data set is an .npz holding "
                        f"{', '.join(_NPZ_KEYS)} (np.savez)")
    with archive:
        missing = [key for key in _NPZ_KEYS if key not in archive.files]
        if missing:
            raise DataError(f"{path} lacks {', '.join(missing)}: a data set .npz holds "
                            f"{', '.join(_NPZ_KEYS)} (and optionally class_names)")
        try:
            arrays = {key: archive[key] for key in (*_NPZ_KEYS, "class_names")
                      if key in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: cannot read its arrays ({exc}); save plain numeric "
                            "arrays with np.savez") from None
    splits = [_npz_split(path, arrays, split) for split in ("train", "test")]
    (x_train, t_train), (x_test, t_test) = splits
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: x_train samples have shape {x_train.shape[1:]} but x_test "
                        f"samples {x_test.shape[1:]}; they must match")
    num_classes = int(max(t_train.max(), t_test.max())) + 1
    names = tuple(str(i) for i in range(num_classes))
    if "class_names" in arrays:
        given = arrays["class_names"]
        if given.ndim != 1 or given.dtype.kind not in "US" or given.shape[0] < num_classes:
            raise DataError(f"{path}: class_names must be a 1-D array of at least {num_classes} "
                            f"strings (labels go up to {num_classes - 1}), got dtype "
                            f"{given.dtype} shape {given.shape}")
        names = tuple(str(n) for n in given)
        num_classes = len(names)
    train = (_images(x_train, normalize, flatten, dtype),
             _labels(t_train, one_hot, dtype, num_classes))
    test = (_images(x_test, normalize, flatten, dtype),
            _labels(t_test, one_hot, dtype, num_classes))
    return Dataset(str(path), train, test, num_classes, names, "plain")


def _npz_split(path: Path, arrays: dict[str, np.ndarray],
               split: str) -> tuple[np.ndarray, np.ndarray]:
    x, t = arrays[f"x_{split}"], arrays[f"t_{split}"]
    if x.ndim not in (2, 3, 4) or x.shape[0] == 0 or 0 in x.shape:
        raise DataError(f"{path}: x_{split} has shape {x.shape}; give (N, C, H, W) images, "
                        "(N, H, W) grayscale images or (N, D) vectors, N > 0")
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise DataError(f"{path}: x_{split} has dtype {x.dtype}; give uint8 pixels (scaled to "
                        "[0, 1]) or floating-point values (used as they are)")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{path}: x_{split} holds NaN or infinite values")
    if t.ndim != 1 or t.dtype.kind not in "iu":
        raise DataError(f"{path}: t_{split} has dtype {t.dtype} shape {t.shape}; give integer "
                        "class labels 0..K-1, one per sample (not one-hot rows)")
    if t.shape[0] != x.shape[0]:
        raise DataError(f"{path}: x_{split} holds {x.shape[0]} samples but t_{split} "
                        f"{t.shape[0]} labels")
    if t.min() < 0:
        raise DataError(f"{path}: t_{split} holds label {t.min()}; labels are 0..K-1")
    return x, t
