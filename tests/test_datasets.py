"""Tests of xpnet.datasets: the packaged MNIST, the IDX parser, user data folders and the cache."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers import idx_bytes, write_idx

from xpnet import datasets
from xpnet.datasets import DATA_DIR_ENV, MNIST_FILES, MNIST_SHA256, load_mnist, read_idx
from xpnet.errors import DataError

PACKAGED = Path(datasets.__file__).parent / "data" / "mnist"
# From shared/data/README.md (the data folder beside the project).
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Every test gets its own empty cache and no user data folder, so none touches ~/.cache."""
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory) -> Path:
    """A cache folder of this module, filled once with the parsed packaged MNIST (~1 s)."""
    folder = tmp_path_factory.mktemp("mnist-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XPNET_CACHE_DIR", str(folder))
        mp.delenv(DATA_DIR_ENV, raising=False)
        load_mnist(normalize=False)
    return folder


@pytest.fixture
def use_mnist_cache(mnist_cache, monkeypatch) -> Path:
    monkeypatch.setenv("XPNET_CACHE_DIR", str(mnist_cache))
    return mnist_cache


@pytest.fixture(scope="module")
def mnist_raw(mnist_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XPNET_CACHE_DIR", str(mnist_cache))
        mp.delenv(DATA_DIR_ENV, raising=False)
        return load_mnist(normalize=False)


@pytest.fixture(scope="module")
def mnist_default(mnist_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XPNET_CACHE_DIR", str(mnist_cache))
        mp.delenv(DATA_DIR_ENV, raising=False)
        return load_mnist()


def write_mnist_like(folder: Path, n_train: int = 7, n_test: int = 3, *, gz: bool = False,
                     size: tuple[int, int] = (28, 28), seed: int = 0) -> dict[str, np.ndarray]:
    """Write four small IDX files under MNIST's names (with .gz or not); return their arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        MNIST_FILES[0]: rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        MNIST_FILES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        MNIST_FILES[2]: rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        MNIST_FILES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / (name if gz else name.removesuffix(".gz")), array, gz=gz)
    return arrays


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.npy"))


# --- the packaged MNIST -------------------------------------------------------------------------


def test_packaged_mnist_shapes_values_and_label_counts(mnist_default):
    (x_train, t_train), (x_test, t_test) = mnist_default
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert t_train.shape == (60000,) and t_test.shape == (10000,)
    assert t_train.dtype == np.int64 and t_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert x_test.min() == 0.0 and x_test.max() == 1.0
    assert abs(float(x_train.mean(dtype=np.float64)) - 0.1307) < 1e-3
    assert np.bincount(t_train, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    assert np.bincount(t_test, minlength=10).sum() == 10000


def test_normalize_is_exactly_pixel_over_255(mnist_default, mnist_raw):
    (x_train, _), _ = mnist_default
    (raw_train, _), _ = mnist_raw
    # np.array_equal: assert_array_equal's extra passes over 47M elements cost about a second.
    assert np.array_equal(x_train, raw_train.astype(np.float32) / np.float32(255))


def test_unnormalized_is_raw_uint8(mnist_raw):
    (x_train, t_train), (x_test, _) = mnist_raw
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert x_train.shape == (60000, 784)
    assert x_train.max() == 255
    assert abs(float(x_train.mean(dtype=np.float64)) - 33.318) < 1e-2
    assert t_train.dtype == np.int64


def test_unflattened_shape(use_mnist_cache, mnist_default):
    (x_train, t_train), (x_test, _) = load_mnist(flatten=False)
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert np.array_equal(x_train.reshape(60000, 784), mnist_default[0][0])


def test_one_hot_labels(use_mnist_cache, mnist_default):
    (_, t_train), (_, t_test) = load_mnist(one_hot_label=True)
    for one_hot, labels in ((t_train, mnist_default[0][1]), (t_test, mnist_default[1][1])):
        assert one_hot.shape == (labels.shape[0], 10) and one_hot.dtype == np.float32
        assert set(np.unique(one_hot).tolist()) == {0.0, 1.0}
        np.testing.assert_array_equal(one_hot.sum(axis=1), 1)
        np.testing.assert_array_equal(one_hot.argmax(axis=1), labels)


def test_float64(use_mnist_cache, mnist_raw):
    (x_train, t_train), (x_test, t_test) = load_mnist(dtype="float64", one_hot_label=True)
    assert x_train.dtype == np.float64 and x_test.dtype == np.float64
    assert t_train.dtype == np.float64 and t_test.dtype == np.float64
    assert x_train.shape == (60000, 784)
    assert np.array_equal(x_test, mnist_raw[1][0] / 255.0)


@pytest.mark.parametrize("dtype", ["float16", "int32", "uint8", "flaot32", None])
def test_bad_dtype_names_the_valid_ones(dtype):
    with pytest.raises(DataError, match="float32, float64"):
        load_mnist(dtype=dtype)


def test_second_load_comes_from_the_cache(use_mnist_cache, mnist_raw, monkeypatch):
    assert len(cache_files(use_mnist_cache)) == 4

    def no_parsing(path):
        raise AssertionError(f"read_idx({path}) called although the cache holds it")

    monkeypatch.setattr(datasets, "read_idx", no_parsing)
    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False)
    for got, want in zip((x_train, t_train, x_test, t_test), (*mnist_raw[0], *mnist_raw[1])):
        np.testing.assert_array_equal(got, want)


def test_packaged_sha256_mismatch(use_mnist_cache, monkeypatch):
    name = "train-labels-idx1-ubyte.gz"
    monkeypatch.setitem(MNIST_SHA256, name, "0" * 64)
    with pytest.raises(DataError, match="sha256") as excinfo:
        load_mnist()
    message = str(excinfo.value)
    assert name in message and "corrupt" in message and "reinstall" in message


def test_packaged_files_match_the_embedded_sums_and_the_license():
    license_text = (PACKAGED / "LICENSE.md").read_text()
    for word in ("Yann LeCun", "Corinna Cortes", "Christopher J.C. Burges", "CC BY-SA 3.0"):
        assert word in license_text
    assert set(MNIST_SHA256) == set(MNIST_FILES)
    for name in MNIST_FILES:
        assert hashlib.sha256((PACKAGED / name).read_bytes()).hexdigest() == MNIST_SHA256[name]
        assert MNIST_SHA256[name] in license_text


# --- read_idx -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(5,), (4, 3, 2), (2, 1, 3, 3)])
def test_read_idx_round_trip(tmp_path, gz, shape):
    array = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    got = read_idx(write_idx(tmp_path / "a.idx", array, gz=gz))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, array)
    got[...] = 0  # writable, not a view of immutable bytes


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), gz=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_read_idx_round_trip_property(tmp_path, shape, gz, seed):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "p.idx", array, gz=gz)), array)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "raw.gz", array)), array)
    packed = write_idx(tmp_path / "packed.idx", array, gz=True)
    np.testing.assert_array_equal(read_idx(packed), array)


def _raises_naming(path: Path, match: str) -> None:
    with pytest.raises(DataError, match=match) as excinfo:
        read_idx(path)
    assert path.name in str(excinfo.value)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_data(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 5, 5), np.uint8))[:-7]
    path = tmp_path / "cut.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    _raises_naming(path, r"truncated.*100 data bytes.*holds 93")


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_trailing_bytes(tmp_path, gz):
    data = idx_bytes(np.zeros((4,), np.uint8)) + b"\x00\x01"
    path = tmp_path / "long.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    _raises_naming(path, r"trailing bytes.*4 data bytes.*holds 6")


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "notidx.bin"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    _raises_naming(path, "not an IDX file")


@pytest.mark.parametrize("type_byte", [0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x42])
def test_read_idx_unsupported_type(tmp_path, type_byte):
    path = tmp_path / "floats.idx"
    path.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8), type_byte=type_byte))
    _raises_naming(path, f"unsupported IDX type 0x{type_byte:02x}")


@pytest.mark.parametrize("ndim", [0, 5, 255])
def test_read_idx_bad_ndim(tmp_path, ndim):
    path = tmp_path / "dims.idx"
    path.write_bytes(bytes([0, 0, 8, ndim]) + bytes(64))
    _raises_naming(path, f"declares {ndim} dimensions")


@pytest.mark.parametrize("data", [b"", b"\x00\x00", b"\x00\x00\x08\x03" + bytes(7)])
def test_read_idx_truncated_header(tmp_path, data):
    path = tmp_path / "head.idx"
    path.write_bytes(data)
    _raises_naming(path, "truncated")


def test_read_idx_corrupt_gzip_stream(tmp_path):
    # Random pixels do not compress, so the middle of the .gz is deflate data, not header.
    array = np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    packed = bytearray(gzip.compress(idx_bytes(array)))
    middle = len(packed) // 2
    packed[middle:middle + 16] = bytes(b ^ 0xFF for b in packed[middle:middle + 16])
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(bytes(packed))
    _raises_naming(path, "corrupt or truncated gzip")


def test_read_idx_truncated_gzip_stream(tmp_path):
    packed = gzip.compress(idx_bytes(np.zeros((10, 28, 28), np.uint8)))
    path = tmp_path / "short.gz"
    path.write_bytes(packed[: len(packed) // 2])
    _raises_naming(path, "corrupt or truncated gzip")


def test_read_idx_missing_file(tmp_path):
    _raises_naming(tmp_path / "nowhere.idx", "does not exist")


# --- user data folders --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_data_dir_with_another_dataset(tmp_path, gz):
    """A user folder (gz or not) is parsed, not sha-checked: any valid IDX content loads."""
    arrays = write_mnist_like(tmp_path / "data", gz=gz)
    (x_train, t_train), (x_test, t_test) = load_mnist(data_dir=tmp_path / "data")
    assert x_train.shape == (7, 784) and x_test.shape == (3, 784)
    np.testing.assert_array_equal(x_train, arrays[MNIST_FILES[0]].reshape(7, 784) / np.float32(255))
    np.testing.assert_array_equal(t_train, arrays[MNIST_FILES[1]])
    np.testing.assert_array_equal(t_test, arrays[MNIST_FILES[3]])
    (x_train, _), _ = load_mnist(normalize=False, flatten=False, data_dir=str(tmp_path / "data"))
    np.testing.assert_array_equal(x_train, arrays[MNIST_FILES[0]].reshape(7, 1, 28, 28))


def test_other_image_sizes_flatten_to_rows_times_cols(tmp_path):
    write_mnist_like(tmp_path, size=(4, 6))
    (x_train, _), (x_test, _) = load_mnist(data_dir=tmp_path)
    assert x_train.shape == (7, 24) and x_test.shape == (3, 24)
    (x_train, _), _ = load_mnist(flatten=False, data_dir=tmp_path)
    assert x_train.shape == (7, 1, 4, 6)


def test_data_dir_env_var_is_honoured_and_the_argument_wins(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "env", n_train=5)
    write_mnist_like(tmp_path / "arg", n_train=6)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert load_mnist()[0][0].shape == (5, 784)
    assert load_mnist(data_dir=tmp_path / "arg")[0][0].shape == (6, 784)


def test_data_dir_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(DataError, match=rf"nope.*\${DATA_DIR_ENV}"):
        load_mnist()


def test_truncated_images_file_in_data_dir(tmp_path):
    write_mnist_like(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as excinfo:
        load_mnist(data_dir=tmp_path)
    assert str(images) in str(excinfo.value)


def test_truncated_copy_of_the_real_images_gz(tmp_path):
    write_mnist_like(tmp_path, gz=True)
    images = tmp_path / MNIST_FILES[0]
    images.write_bytes((PACKAGED / MNIST_FILES[0]).read_bytes()[:200_000])
    with pytest.raises(DataError, match="corrupt or truncated gzip") as excinfo:
        load_mnist(data_dir=tmp_path)
    assert str(images) in str(excinfo.value)


def test_missing_file_names_it_the_folder_and_the_fix(tmp_path):
    write_mnist_like(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as excinfo:
        load_mnist(data_dir=tmp_path)
    message = str(excinfo.value)
    assert "t10k-labels-idx1-ubyte" in message and str(tmp_path) in message
    assert DATA_DIR_ENV in message and "--data-dir" in message
    assert "train-images" not in message  # only the missing file is named


def test_missing_packaged_file_says_reinstall(tmp_path, monkeypatch):
    partial = tmp_path / "pkg"
    partial.mkdir()
    for name in MNIST_FILES[1:]:
        (partial / name).write_bytes(b"")
    monkeypatch.setattr(datasets, "_PACKAGED_DIR", partial.resolve())
    with pytest.raises(DataError, match="reinstall") as excinfo:
        load_mnist()
    assert MNIST_FILES[0] in str(excinfo.value)


def test_image_and_label_counts_must_match(tmp_path):
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="3 images.*4 labels"):
        load_mnist(data_dir=tmp_path)


def test_train_and_test_image_sizes_must_match(tmp_path):
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 27, 28), np.uint8))
    with pytest.raises(DataError, match="28x28.*27x28"):
        load_mnist(data_dir=tmp_path)


def test_images_file_must_be_3d(tmp_path):
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((7, 784), np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*\(7, 784\)"):
        load_mnist(data_dir=tmp_path)


def test_label_out_of_range(tmp_path):
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 10, 3, 4, 5], np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte holds label 10 at index 3"):
        load_mnist(data_dir=tmp_path)


# --- the cache ----------------------------------------------------------------------------------


def test_user_files_are_cached_and_changes_invalidate_the_cache(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "data")
    first = load_mnist(normalize=False, data_dir=tmp_path / "data")
    assert len(cache_files(tmp_path / "cache")) == 4

    calls = []
    real_read_idx = datasets.read_idx
    monkeypatch.setattr(datasets, "read_idx",
                        lambda path: calls.append(path) or real_read_idx(path))
    again = load_mnist(normalize=False, data_dir=tmp_path / "data")
    assert calls == []
    np.testing.assert_array_equal(again[0][0], first[0][0])

    # Rewriting a file changes its mtime, so the stale cache entry is not used. The mtimes are set
    # explicitly: two writes within one filesystem clock tick can share an mtime.
    new = write_mnist_like(tmp_path / "data", seed=1)
    for path in (tmp_path / "data").iterdir():
        mtime = path.stat().st_mtime_ns + 10**9
        os.utime(path, ns=(mtime, mtime))
    changed = load_mnist(normalize=False, data_dir=tmp_path / "data")
    assert len(calls) == 4
    np.testing.assert_array_equal(changed[0][0], new[MNIST_FILES[0]].reshape(7, 784))


def test_corrupt_cache_files_are_ignored_and_rewritten(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "data")
    first = load_mnist(normalize=False, data_dir=tmp_path / "data")
    files = cache_files(tmp_path / "cache")
    assert len(files) == 4
    files[0].write_bytes(b"not a numpy file")
    files[1].write_bytes(files[1].read_bytes()[:-5])  # truncated .npy
    np.save(files[2], np.zeros((2, 2), np.uint8))  # valid .npy, wrong shape
    np.save(files[3], np.zeros((2, 2), np.float64))  # valid .npy, wrong shape and dtype

    calls = []
    real_read_idx = datasets.read_idx
    monkeypatch.setattr(datasets, "read_idx",
                        lambda path: calls.append(path) or real_read_idx(path))
    again = load_mnist(normalize=False, data_dir=tmp_path / "data")
    assert len(calls) == 4
    for got, want in zip((*again[0], *again[1]), (*first[0], *first[1])):
        np.testing.assert_array_equal(got, want)
    assert cache_files(tmp_path / "cache") == files
    for path in files:
        assert np.load(path, allow_pickle=False).dtype == np.uint8
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_unwritable_cache_folder_is_skipped(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be created under a file")
    monkeypatch.setenv("XPNET_CACHE_DIR", str(blocker / "cache"))
    (x_train, _), _ = load_mnist(data_dir=tmp_path / "data")
    assert x_train.shape == (7, 784)


def test_cache_location_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("XPNET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_mnist_like(tmp_path / "data")
    load_mnist(data_dir=tmp_path / "data")
    assert len(cache_files(tmp_path / "xdg" / "xpnet")) == 4
