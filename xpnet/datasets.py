"""MNIST loading, packaged for offline use, with the signature of *Deep Learning from Scratch*.

The four MNIST files (IDX format, gzip-compressed) ship inside the package in ``xpnet/data/mnist/``,
copied unchanged from the standard distribution. MNIST is by Yann LeCun, Corinna Cortes and
Christopher J.C. Burges and is distributed under the Creative Commons Attribution-Share Alike 3.0
license; see ``xpnet/data/mnist/LICENSE.md``.

``load_mnist`` returns host NumPy arrays; the caller moves them to a device. Parsed files are cached
as ``.npy`` under ``$XPNET_CACHE_DIR`` (else ``$XDG_CACHE_HOME/xpnet`` or ``~/.cache/xpnet``) so a
second load, even in a new process, skips the gunzip.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError
from .validate import DTYPES

__all__ = ["CACHE_DIR_ENV", "DATA_DIR_ENV", "MNIST_FILES", "MNIST_SHA256", "load_mnist", "read_idx"]

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

# (resolved path, size, mtime_ns, expected sha256) of packaged files hashed in this process, so the
# ~15 ms hash runs once per process and not on every cache miss.
_VERIFIED: set[tuple[str, int, int, str]] = set()


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
        _verify_sha256(path, stat, MNIST_SHA256[name])
    array = read_idx(path)
    if cache_file is not None:
        _write_cache(cache_file, array)
    return array


def _verify_sha256(path: Path, stat: os.stat_result, expected: str) -> None:
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if memo in _VERIFIED:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DataError(f"packaged MNIST file {path} is corrupt: its sha256 is "
                        f"{digest.hexdigest()}, expected {expected}; reinstall xpnet")
    _VERIFIED.add(memo)


def _cache_dir() -> Path | None:
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative paths
            root = Path(xdg) / "xpnet"
        else:
            try:
                root = Path.home() / ".cache" / "xpnet"
            except RuntimeError:  # no home directory: run without a cache
                return None
    return root / "idx"


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
    n, rows, cols = x.shape
    x = x.reshape(n, rows * cols) if flatten else x.reshape(n, 1, rows, cols)
    if normalize:
        x = x.astype(dtype)
        # In-place division: as fast as multiplying by 1/255 and exactly the book's pixel / 255.
        np.divide(x, dtype.type(255), out=x)
    return x


def _labels(t: np.ndarray, one_hot: bool, dtype: np.dtype) -> np.ndarray:
    if not one_hot:
        return t.astype(np.int64)
    one_hot_t = np.zeros((t.shape[0], _NUM_CLASSES), dtype=dtype)
    one_hot_t[np.arange(t.shape[0]), t] = 1
    return one_hot_t
