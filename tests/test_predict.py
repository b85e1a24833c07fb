"""``xpnet predict`` and the image preparation behind it (:mod:`xpnet.imageio`)."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
from PIL import Image

from xpnet import imageio
from xpnet.checkpoint import load_checkpoint, save_checkpoint
from xpnet.cli import main
from xpnet.commands.common import dataset_record
from xpnet.datasets import DATASETS, Dataset, load_mnist
from xpnet.errors import ConfigError, DataError
from xpnet.registry import build_model


def run(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def bar_on_white(height=100, width=60) -> np.ndarray:
    image = np.full((height, width), 255, np.uint8)
    image[20:80, 25:35] = 0  # a dark stroke 60 tall, 10 wide
    return image


# ------------------------------------------------------------------ xpnet.imageio

def test_mnist_like_inverts_fits_20x20_keeping_aspect_and_centres_by_mass():
    digit = imageio.mnist_like(bar_on_white())
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    ink = np.argwhere(digit > 0.5)
    assert tuple(ink.max(axis=0) - ink.min(axis=0) + 1) == (20, 3)  # 60x10 -> 20x round(3.33)
    rows, cols = np.indices(digit.shape)
    centre = ((rows * digit).sum() / digit.sum(), (cols * digit).sum() / digit.sum())
    assert abs(centre[0] - 14) <= 0.5 and abs(centre[1] - 14) <= 0.5
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # black background


def test_mnist_like_does_not_invert_white_on_black_or_care_about_colour():
    white_on_black = imageio.mnist_like(255 - bar_on_white())
    np.testing.assert_allclose(white_on_black, imageio.mnist_like(bar_on_white()))
    rgb = np.repeat(bar_on_white()[..., None], 3, axis=2)
    np.testing.assert_allclose(imageio.mnist_like(rgb), white_on_black, atol=1e-6)
    rgba = np.zeros((100, 60, 4), np.uint8)  # transparent background, opaque black stroke
    rgba[20:80, 25:35, 3] = 255
    np.testing.assert_allclose(imageio.mnist_like(rgba), white_on_black, atol=1e-6)


def test_mnist_like_reproduces_mnists_own_digits(isolated_mnist):
    """An MNIST digit drawn large, black on white, prepared again, is close to the original."""
    (_, _), (x, _) = load_mnist(normalize=False, flatten=False)
    similarity = []
    for digit in x[:50, 0]:
        drawn = np.asarray(Image.fromarray(255 - digit).resize((140, 140), Image.BICUBIC))
        again = imageio.mnist_like(drawn)
        similarity.append(np.corrcoef(again.ravel(), digit.ravel() / 255)[0, 1])
    # a pixel of rounding in the centring costs thin strokes much correlation, hence the minimum
    assert np.median(similarity) > 0.95 and min(similarity) > 0.6


def test_fashion_style_fills_the_frame_centred():
    item = np.zeros((10, 5), np.uint8)
    item[:, :] = 200
    item[0, 0] = 0
    prepared = imageio.mnist_like(np.pad(item, 3), box=28, centre="box")
    ink = np.argwhere(prepared > 0.3)
    assert tuple(ink.min(axis=0)) == (0, 7) and tuple(ink.max(axis=0)) == (27, 20)


@pytest.mark.parametrize("image, match", [
    (np.zeros((5, 5), np.uint8), r"the image is blank"),
    (np.zeros((5,), np.uint8), r"an image must be \(H, W\)"),
    (np.zeros((5, 5), np.int32), r"uint8 or floats"),
])
def test_mnist_like_errors(image, match):
    with pytest.raises(DataError, match=match):
        imageio.mnist_like(image)


def test_resize_area_averages_what_each_pixel_covers():
    rng = np.random.default_rng(0)
    image = rng.random((6, 8))
    halved = imageio.resize_area(image, 3, 4)
    np.testing.assert_allclose(halved, image.reshape(3, 2, 4, 2).mean(axis=(1, 3)))
    odd = imageio.resize_area(image, 4, 5)
    np.testing.assert_allclose(odd.mean(), image.mean())  # every input pixel counted once
    np.testing.assert_allclose(imageio.resize_area(image, 12, 16),
                               image.repeat(2, axis=0).repeat(2, axis=1))
    colour = rng.random((6, 8, 3))
    np.testing.assert_allclose(imageio.resize_area(colour, 3, 4)[..., 1],
                               imageio.resize_area(colour[..., 1], 3, 4))


def test_cifar_like_is_channel_first_rgb_32x32():
    image = np.zeros((64, 96, 3), np.uint8)
    image[..., 0] = 255  # pure red
    prepared = imageio.cifar_like(image)
    assert prepared.shape == (3, 32, 32) and prepared.dtype == np.float32
    np.testing.assert_allclose(prepared[0], 1.0)
    np.testing.assert_allclose(prepared[1:], 0.0)
    gray = imageio.cifar_like(np.full((10, 10), 51, np.uint8))
    np.testing.assert_allclose(gray, 0.2)


def test_reading_images_without_pillow_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ConfigError, match=r"needs Pillow: pip install 'xpnet\[images\]'"):
        imageio.read_image(tmp_path / "x.png")


# ------------------------------------------------------------------ xpnet predict

@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory, mnist_cache):
    path = tmp_path_factory.mktemp("predict") / "mnist.npz"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XPNET_CACHE_DIR", str(mnist_cache))
        patch.delenv("XPNET_DATA_DIR", raising=False)
        assert main(["train", "--device", "cpu", "--train-limit", "5000", "--epochs", "2",
                     "--save", str(path), "-q"]) == 0
    return path


def test_predict_reads_handwriting_like_images(capsys, isolated_mnist, mnist_checkpoint, tmp_path):
    (_, _), (x, t) = load_mnist(normalize=False, flatten=False)
    files = []
    for i in range(10):  # drawn large, black on white, off centre: as a user's scan might be
        canvas = np.full((200, 160), 255, np.uint8)
        canvas[30:170, 10:150] = 255 - np.asarray(Image.fromarray(x[i, 0]).resize((140, 140)))
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(canvas).save(files[-1])
    code, out, err = run(capsys, "predict", "--checkpoint", str(mnist_checkpoint), "--json",
                         *map(str, files))
    assert code == 0, err
    results = [json.loads(line) for line in out]
    assert [set(r) for r in results] == [{"file", "class", "probabilities"}] * 10
    assert [r["file"] for r in results] == list(map(str, files))
    for r in results:
        assert len(r["probabilities"]) == 10 and abs(sum(r["probabilities"]) - 1) < 1e-9
        assert r["class"] == int(np.argmax(r["probabilities"]))
    correct = sum(r["class"] == label for r, label in zip(results, t[:10]))
    assert correct >= 8, [r["class"] for r in results]


def test_predict_prints_the_top_classes(capsys, isolated_mnist, mnist_checkpoint, tmp_path):
    (_, _), (x, _) = load_mnist(normalize=False, flatten=False)
    np.save(tmp_path / "digit.npy", x[0, 0])  # the data set's own form: uint8 28x28
    code, out, err = run(capsys, "predict", "--checkpoint", str(mnist_checkpoint), "--top", "2",
                         str(tmp_path / "digit.npy"))
    assert code == 0, err
    network, _, _ = load_checkpoint(mnist_checkpoint)
    scores = network.predict((x[:1] / np.float32(255)).reshape(1, 784))
    probabilities = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    first, second = np.argsort(-probabilities[0])[:2]
    assert out == [f"{tmp_path / 'digit.npy'}: {first} {probabilities[0, first]:.1%}, "
                   f"{second} {probabilities[0, second]:.1%}"]


def test_predict_names_cifar_classes_and_prepares_photos_as_cifar(capsys, tmp_path):
    network = build_model("mlp", input_shape=(3, 32, 32), hidden=[8], output_size=10, seed=0)
    info = DATASETS["cifar10"]
    empty = (np.zeros((1, 3, 32, 32), np.float32), np.zeros(1, np.int64))
    record = dataset_record(Dataset("cifar10", empty, empty, 10, info.class_names, info.style))
    save_checkpoint(tmp_path / "c.npz", network, None, epoch=1, seed=0,
                    extra={"dataset": record})
    photo = np.random.default_rng(0).integers(0, 256, (48, 64, 3)).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=95)
    code, out, err = run(capsys, "predict", "--checkpoint", str(tmp_path / "c.npz"), "--top", "10",
                         str(tmp_path / "photo.jpg"))
    assert code == 0, err
    names = [part.rsplit(" ", 1)[0] for part in out[0].split(": ", 1)[1].split(", ")]
    assert sorted(names) == sorted(info.class_names)
    prepared = imageio.cifar_like(np.asarray(Image.open(tmp_path / "photo.jpg")))
    scores = network.predict(prepared.reshape(1, -1))[0]
    assert names[0] == info.class_names[int(np.argmax(scores))]


@pytest.mark.parametrize("make, match", [
    (lambda d: d / "missing.png", r"image .*missing.png does not exist"),
    (lambda d: (d / "text.png").write_text("not an image") and d / "text.png",
     r"cannot read image .*text.png"),
    (lambda d: np.save(d / "wrong.npy", np.zeros((3, 3))) or d / "wrong.npy",
     r"wrong.npy holds shape \(3, 3\) but the network takes \(784,\)"),
    (lambda d: np.save(d / "ints.npy", np.zeros((28, 28), np.int64)) or d / "ints.npy",
     r"ints.npy has dtype int64; give uint8 pixels or floats"),
    (lambda d: Image.new("L", (9, 9), 255).save(d / "blank.png") or d / "blank.png",
     r"blank.png: the image is blank"),
])
def test_predict_errors_are_one_line(capsys, mnist_checkpoint, tmp_path, make, match):
    code, out, err = run(capsys, "predict", "--checkpoint", str(mnist_checkpoint),
                         str(make(tmp_path)))
    assert code == 2 and out == [] and err.count("\n") == 1
    assert err.startswith("xpnet predict: error: ") and re.search(match, err), err
