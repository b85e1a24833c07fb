"""Data sets beyond the packaged MNIST: Fashion-MNIST, KMNIST and CIFAR-10 made small by the
test in their official formats and served from 127.0.0.1, the user's own .npz arrays, and
``xpnet train/evaluate --dataset`` on each."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from dataset_server import (FileServer, cifar_batch, cifar_files, cifar_tarball, idx_files, md5,
                            sources)

from xpnet import download
from xpnet.cli import main
from xpnet.datasets import load, load_dataset, read_cifar10
from xpnet.download import DownloadError
from xpnet.errors import DataError

FASHION, FASHION_ARRAYS = idx_files(seed=1)
KMNIST, KMNIST_ARRAYS = idx_files(seed=2)
CIFAR, CIFAR_ARRAYS = cifar_files(seed=3, per_batch=20)
QUICK = ["--device", "cpu", "--epochs", "2", "--batch-size", "50", "--hidden", "20", "-q"]
TINY = ["--device", "cpu", "--epochs", "2", "--batch-size", "10", "--hidden", "20", "-q"]


@pytest.fixture(scope="module")
def server():
    with FileServer() as running:
        yield running


@pytest.fixture(scope="module")
def tables(server):
    return {"fashion-mnist": sources(server, FASHION, "fashion"),
            "kmnist": sources(server, KMNIST, "kmnist"),
            "cifar10": sources(server, CIFAR, "cifar")}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def served(tables, tmp_path, monkeypatch, cache):
    """$XPNET_DATASET_SOURCES pointing every downloaded data set at the local server."""
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(tables))
    monkeypatch.setenv("XPNET_DATASET_SOURCES", str(path))
    return path


def run(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


# ------------------------------------------------------------------ downloaded data sets

def test_fashion_mnist_is_downloaded_verified_and_loaded(server, tables, tmp_path):
    data = load_dataset("fashion-mnist", data_dir=tmp_path / "f", sources=tables["fashion-mnist"])
    x_train, t_train, x_test, t_test = FASHION_ARRAYS
    assert data.train[0].shape == (200, 1, 28, 28) and data.train[0].dtype == np.float32
    np.testing.assert_array_equal(data.train[0][:, 0], x_train / np.float32(255))
    np.testing.assert_array_equal(data.test[1], t_test.astype(np.int64))
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert (data.num_classes, data.input_shape, data.style) == (10, (1, 28, 28), "fashion")
    requests = len(server.requests)
    load_dataset("fashion-mnist", data_dir=tmp_path / "f", sources=tables["fashion-mnist"])
    assert len(server.requests) == requests  # verified files are not downloaded again


def test_load_has_load_mnists_signature(tables, tmp_path):
    kwargs = {"data_dir": tmp_path / "f", "sources": tables["fashion-mnist"]}
    (x, t), (x_test, _) = load("fashion-mnist", **kwargs)
    assert x.shape == (200, 784) and x_test.shape == (100, 784) and t.dtype == np.int64
    (x, t), _ = load("fashion-mnist", normalize=False, one_hot_label=True, dtype="float64",
                     **kwargs)
    assert x.dtype == np.uint8 and t.shape == (200, 10) and t.dtype == np.float64
    np.testing.assert_array_equal(t.argmax(axis=1), FASHION_ARRAYS[1])


def test_kmnist_from_the_environment_into_the_default_cache(served, cache):
    data = load_dataset("KMNIST")
    assert data.name == "kmnist" and data.class_names[0] == "o (\u304a)"
    np.testing.assert_array_equal(data.train[1], KMNIST_ARRAYS[1])
    assert sorted(p.name for p in (cache / "datasets" / "kmnist").glob("*.gz")) == sorted(KMNIST)


def test_cifar10_batches_in_channel_first_order(tables, tmp_path):
    data = load_dataset("cifar10", data_dir=tmp_path / "c", sources=tables["cifar10"])
    x_train, t_train, x_test, t_test = CIFAR_ARRAYS
    assert data.train[0].shape == (100, 3, 32, 32) and data.input_shape == (3, 32, 32)
    np.testing.assert_array_equal(data.train[0], x_train / np.float32(255))
    np.testing.assert_array_equal(data.test[1], t_test)
    assert data.class_names[0] == "airplane" and data.style == "cifar"


def test_files_placed_by_hand_are_verified_and_used_offline(tmp_path):
    for name, content in FASHION.items():
        (tmp_path / name).write_bytes(content)
    offline = {name: {"urls": ["http://127.0.0.1:9/never"], "md5": md5(content)}
               for name, content in FASHION.items()}
    (x, _), _ = load("fashion-mnist", data_dir=tmp_path, sources=offline)
    assert x.shape == (200, 784)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(KMNIST["t10k-labels-idx1-ubyte.gz"])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz has MD5 .*delete it"):
        load("fashion-mnist", data_dir=tmp_path, sources=offline)


def test_no_network_says_where_to_place_the_files(tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    offline = {name: {"urls": ["http://127.0.0.1:9/" + name], "md5": md5(c)}
               for name, c in CIFAR.items()}
    with pytest.raises(DownloadError) as info:
        load("cifar10", data_dir=tmp_path / "c", sources=offline, timeout=1)
    assert waits == [1.0, 2.0]  # three attempts, with exponential backoff
    message = str(info.value)
    assert "\n" not in message and "http://127.0.0.1:9/cifar-10-python.tar.gz" in message
    assert f"into {tmp_path / 'c'}" in message and "--data-dir" in message


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def _serve_cifar(server, tmp_path, name, archive, md5_given=None):
    server.files[f"{name}/cifar-10-python.tar.gz"] = archive
    table = {"cifar-10-python.tar.gz": {"urls": [server.url(f"{name}/cifar-10-python.tar.gz")],
                                        "md5": md5_given or md5(archive)}}
    return lambda: load("cifar10", data_dir=tmp_path / name, sources=table, timeout=2)


def test_a_crafted_pickle_is_refused_and_never_runs(server, tmp_path):
    marker = tmp_path / "marker"
    evil = pickle.dumps({"data": _Exploit(marker), "labels": []}, protocol=2)
    archive, _ = cifar_files(seed=4, replace={"data_batch_3": evil})
    with pytest.raises(DataError, match=r"data_batch_3 in .* is refused: global "
                                        r"(posix|nt|os)\.system is not part of a CIFAR batch"):
        _serve_cifar(server, tmp_path, "evil", archive["cifar-10-python.tar.gz"])()
    assert not marker.exists()


def test_the_checksum_is_checked_before_anything_is_unpickled(server, tmp_path):
    marker = tmp_path / "marker"
    evil = pickle.dumps({"data": _Exploit(marker), "labels": []}, protocol=2)
    archive, _ = cifar_files(seed=4, replace={"test_batch": evil})
    with pytest.raises(DownloadError, match=r"MD5 .* expected c58f3"):
        _serve_cifar(server, tmp_path, "tampered", archive["cifar-10-python.tar.gz"],
                     md5_given="c58f30108f718f92721af3b95e74349a")()
    assert not marker.exists() and not (tmp_path / "tampered" / "cifar-10-python.tar.gz").exists()


def test_a_corrupt_tarball_is_one_line(server, tmp_path):
    corrupt = CIFAR["cifar-10-python.tar.gz"][:5000]
    with pytest.raises(DataError, match=r"is not a readable CIFAR-10 archive \(corrupt") as info:
        _serve_cifar(server, tmp_path, "corrupt", corrupt)()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("members, match", [
    ({"data_batch_1": b"not a pickle"}, r"data_batch_1 in .* is not a readable pickle"),
    ({"data_batch_1": cifar_batch(np.zeros((2, 3072), np.float64), np.zeros(2, int))},
     r"does not hold a CIFAR-10 batch"),
    ({"test_batch": cifar_batch(np.zeros((2, 3072), np.uint8), np.array([0, 10]))},
     r"does not hold a CIFAR-10 batch"),
])
def test_malformed_batches(tmp_path, members, match):
    archive, _ = cifar_files(seed=5, replace=members)
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(archive["cifar-10-python.tar.gz"])
    with pytest.raises(DataError, match=match):
        read_cifar10(path)


def test_an_archive_without_the_batches(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(cifar_tarball({"readme": b"hello"}))
    with pytest.raises(DataError, match=r"lacks cifar-10-batches-py/data_batch_1"):
        read_cifar10(path)


def test_unknown_data_set_names_the_choices():
    with pytest.raises(DataError, match=r"unknown data set 'cifar100': give one of mnist, "
                                        r"fashion-mnist, kmnist, cifar10, or the path"):
        load("cifar100")


# ------------------------------------------------------------------ the user's own .npz

def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _images(rng, n, shape, classes=3, dtype=np.uint8):
    t = rng.integers(0, classes, n)
    x = rng.integers(0, 50, (n, *shape)).astype(dtype)
    for i, label in enumerate(t):  # the class shows as a bright band: learnable in 2 epochs
        x[i, ..., 2 * label:2 * label + 2, :] = 255 if dtype == np.uint8 else 1.0
    return x, t


def test_npz_images_channels_first(tmp_path):
    rng = np.random.default_rng(0)
    (x, t), (x2, t2) = _images(rng, 20, (3, 8, 8)), _images(rng, 10, (3, 8, 8))
    path = _npz(tmp_path / "d.npz", x_train=x, t_train=t, x_test=x2, t_test=t2)
    data = load_dataset(path)
    assert data.name == str(path.resolve()) and data.input_shape == (3, 8, 8)
    np.testing.assert_array_equal(data.train[0], x / np.float32(255))
    assert data.num_classes == max(t.max(), t2.max()) + 1 and data.class_names[0] == "0"
    assert data.style == "plain"


def test_npz_grayscale_vectors_floats_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    gray = _npz(tmp_path / "g.npz", x_train=np.zeros((4, 5, 6), np.uint8), t_train=[0, 1, 0, 1],
                x_test=np.zeros((2, 5, 6), np.uint8), t_test=[1, 4],
                class_names=np.array(["a", "b", "c", "d", "e", "f"]))
    data = load_dataset(gray)
    assert data.input_shape == (1, 5, 6) and data.num_classes == 6 and data.class_names[5] == "f"
    floats = rng.normal(size=(4, 7))
    flat = _npz(tmp_path / "v.npz", x_train=floats, t_train=np.array([0, 1, 2, 0], np.uint8),
                x_test=floats[:2], t_test=np.array([1, 1], np.int32))
    data = load_dataset(flat, dtype="float64")
    assert data.input_shape == (7,) and data.num_classes == 3
    np.testing.assert_array_equal(data.train[0], floats)  # floats are taken as they are


GOOD = {"x_train": np.zeros((4, 2, 2), np.uint8), "t_train": np.array([0, 1, 0, 1]),
        "x_test": np.zeros((2, 2, 2), np.uint8), "t_test": np.array([1, 0])}


@pytest.mark.parametrize("change, match", [
    ({"t_test": None}, r"lacks t_test: a data set .npz holds x_train, t_train, x_test, t_test"),
    ({"x_train": np.zeros((4, 2, 2), np.int16)}, r"x_train has dtype int16; give uint8"),
    ({"x_train": np.zeros((4,), np.uint8)}, r"x_train has shape \(4,\); give \(N, C, H, W\)"),
    ({"x_test": np.zeros((2, 3, 3), np.uint8)}, r"samples have shape \(2, 2\) but x_test"),
    ({"t_train": np.eye(4, 2)}, r"t_train has dtype float64 shape \(4, 2\); give integer"),
    ({"t_train": np.array([0, 1, 0])}, r"x_train holds 4 samples but t_train 3 labels"),
    ({"t_test": np.array([-1, 0])}, r"t_test holds label -1; labels are 0..K-1"),
    ({"x_test": np.full((2, 2, 2), np.nan)}, r"x_test holds NaN or infinite values"),
    ({"x_train": np.array([[1], [2], [3], [4]], dtype=object)}, r"cannot read its arrays"),
    ({"class_names": np.array(["only one"])}, r"class_names must be a 1-D array of at least 2"),
])
def test_npz_errors_are_one_line(tmp_path, change, match):
    arrays = {**GOOD, **change}
    path = tmp_path / "d.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(DataError, match=match) as info:
        load_dataset(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_npz_with_a_data_dir_is_refused(tmp_path):
    path = _npz(tmp_path / "d.npz", **GOOD)
    with pytest.raises(DataError, match=r"--data-dir .* does not apply to an .npz data set"):
        load_dataset(path, data_dir=tmp_path)


def test_npz_that_is_not_one(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match=r"text.npz is not a readable .npz file"):
        load_dataset(tmp_path / "text.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"one.npy holds one array"):
        load_dataset(tmp_path / "one.npy")
    with pytest.raises(DataError, match=r"missing.npz does not exist"):
        load_dataset(tmp_path / "missing.npz")


# ------------------------------------------------------------------ xpnet train / evaluate

@pytest.mark.parametrize("name, train, shape, model", [
    ("fashion-mnist", 200, "1x28x28", "mlp"), ("kmnist", 200, "1x28x28", "convnet"),
    ("cifar10", 100, "3x32x32", "convnet")])
def test_two_epochs_on_each_downloaded_data_set(capsys, served, tmp_path, name, train, shape,
                                                model):
    save = tmp_path / "run.npz"
    code, out, err = run(capsys, "train", "--dataset", name, "--model", model, *QUICK[:-1],
                         "--save", str(save))
    assert code == 0, err
    assert out[1] == (f"data set {name}: {train} training and 100 test samples of {shape}, "
                      "10 classes")
    assert re.match(rf"final test accuracy: \d\.\d{{4}} \(epoch 2, {2 * train // 50} iterations",
                    out[-1]), out
    code, out, err = run(capsys, "evaluate", "--checkpoint", str(save), "--device", "cpu")
    assert code == 0 and out[-1].startswith("test acc "), err  # the checkpoint's data set


@pytest.mark.parametrize("model", ["convnet", "deepconvnet"])
def test_two_epochs_on_an_npz_of_3x32x32_images(capsys, tmp_path, model):
    rng = np.random.default_rng(0)
    (x, t), (x2, t2) = _images(rng, 100, (3, 32, 32)), _images(rng, 50, (3, 32, 32))
    path = _npz(tmp_path / "mine.npz", x_train=x, t_train=t, x_test=x2, t_test=t2)
    code, out, err = run(capsys, "train", "--dataset", str(path), "--model", model,
                         "--device", "cpu", "--epochs", "2", "--batch-size", "50", "--hidden", "10")
    assert code == 0, err
    assert out[2].startswith(f"model {model} 3x32x32-") and out[2].split(" ")[2].endswith("-3")
    accuracy = float(re.match(r"final test accuracy: (\d\.\d{4})", out[-1])[1])
    assert 0 <= accuracy <= 1


def _tiny_npz(tmp_path, shape=(1, 4, 4), classes=3, name="tiny.npz"):
    rng = np.random.default_rng(0)
    x, t = rng.integers(0, 255, (30, *shape)).astype(np.uint8), np.arange(30) % classes
    return _npz(tmp_path / name, x_train=x, t_train=t, x_test=x[:9], t_test=t[:9])


def test_evaluate_refuses_a_checkpoint_that_does_not_fit_the_data(capsys, tmp_path):
    save = tmp_path / "run.npz"
    code, _, err = run(capsys, "train", "--dataset", str(_tiny_npz(tmp_path)), *TINY,
                       "--save", str(save))
    assert code == 0, err
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(save), "--device", "cpu",
                       "--dataset", "mnist")
    assert code == 2
    assert err == (f"xpnet evaluate: error: checkpoint {save} takes inputs of shape (16,), but "
                   "data set mnist holds (1, 28, 28); give the --dataset it was trained on\n")
    other = _tiny_npz(tmp_path, classes=5, name="five.npz")
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(save), "--device", "cpu",
                       "--dataset", str(other))
    assert code == 2 and err == (f"xpnet evaluate: error: checkpoint {save} scores 3 classes, "
                                 f"but data set {other} has 5; give the --dataset it was "
                                 "trained on\n")
    code, _, err = run(capsys, "train", "--resume", str(save), "--dataset", str(other),
                       "--epochs", "3", "--device", "cpu")
    assert code == 2 and "was trained with --dataset" in err and err.count("\n") == 1


def test_the_checkpoint_records_its_data_set(capsys, tmp_path):
    save, path = tmp_path / "run.npz", _tiny_npz(tmp_path)
    assert run(capsys, "train", "--dataset", str(path), *TINY, "--save", str(save))[0] == 0
    with np.load(save) as saved:
        meta = json.loads(str(saved["meta"][()]))
    assert meta["extra"]["dataset"] == {"name": str(path.resolve()), "input_shape": [1, 4, 4],
                                        "num_classes": 3, "class_names": ["0", "1", "2"],
                                        "style": "plain"}
    assert meta["extra"]["settings"]["dataset"] == str(path.resolve())


@pytest.mark.parametrize("model, shape, match", [
    ("convnet", (1, 4, 4), r"a 5x5 filter .* image"),
    ("deepconvnet", (1, 2, 2), r"Pool3 cannot take samples of shape .*; use larger images"),
])
def test_networks_whose_geometry_does_not_fit_are_one_line(capsys, tmp_path, model, shape, match):
    code, _, err = run(capsys, "train", "--dataset", str(_tiny_npz(tmp_path, shape)), *TINY,
                       "--model", model)
    assert code == 2 and re.search(match, err) and err.count("\n") == 1, err


def test_convnets_refuse_vectors(capsys, tmp_path):
    path = _npz(tmp_path / "v.npz", x_train=np.zeros((4, 9)), t_train=[0, 1, 0, 1],
                x_test=np.zeros((2, 9)), t_test=[0, 1])
    code, _, err = run(capsys, "train", "--dataset", str(path), *TINY[:-3], "--model", "convnet")
    assert code == 2 and "takes images (N, C, H, W), but data set" in err, err


def test_evaluate_onnx_on_a_data_set(capsys, tmp_path):
    """An exported network is scored on the data set given, as its checkpoint is, by default on
    the one its checkpoint recorded; data it cannot take (sample shape, class count) is refused
    in one line."""
    save, model, path = tmp_path / "run.npz", tmp_path / "tiny.onnx", _tiny_npz(tmp_path)
    assert run(capsys, "train", "--dataset", str(path), *TINY, "--save", str(save))[0] == 0
    assert run(capsys, "export", "--checkpoint", str(save), "--output", str(model))[0] == 0
    code, by_checkpoint, err = run(capsys, "evaluate", "--checkpoint", str(save), "--device",
                                   "cpu")
    assert code == 0 and re.fullmatch(r"test acc \d\.\d{4} \(\d/9\)", by_checkpoint[-1]), err
    code, by_onnx, err = run(capsys, "evaluate", "--onnx", str(model), "--dataset", str(path))
    assert code == 0 and by_onnx[-1] == by_checkpoint[-1], err
    code, by_default, err = run(capsys, "evaluate", "--onnx", str(model))  # the recorded data set
    assert code == 0 and by_default[-1] == by_checkpoint[-1], err
    code, _, err = run(capsys, "evaluate", "--onnx", str(model), "--dataset", "mnist")
    assert code == 2 and err == (f"xpnet evaluate: error: {model} takes input of shape ('N', 16), "
                                 "which does not fit data set mnist's samples of shape "
                                 "(1, 28, 28)\n")
    other = _tiny_npz(tmp_path, classes=5, name="five.npz")
    code, _, err = run(capsys, "evaluate", "--onnx", str(model), "--dataset", str(other))
    assert code == 2 and err == (f"xpnet evaluate: error: {model} scores 3 classes, but data set "
                                 f"{other} has 5; give the --dataset it was trained on\n")