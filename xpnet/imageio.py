"""A user's image made to look like a data set's images, for ``xpnet predict``.

A network only knows its data's look: MNIST's digits are white on black, fitted into a
20x20 box and centred by their mass in 28x28; CIFAR-10's photos are 32x32 RGB. Every step
here is plain NumPy on ``[0, 1]`` floats and is spelled out so that another implementation
(the docs site's browser demo) can reproduce it exactly: docs/datasets.md has the recipe.

Decoding PNG/JPEG files needs Pillow (``pip install "xpnet[images]"``); ``.npy`` files and
arrays need nothing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

__all__ = ["STYLES", "read_image", "to_unit", "grayscale", "resize_area", "mnist_like",
           "cifar_like", "plain", "prepare", "load_array"]

# ITU-R BT.601 luma, the weights of Pillow's convert("L")
_LUMA = np.array([0.299, 0.587, 0.114])
# pixels above this fraction of the brightest count as ink when cropping
_INK = 0.1
STYLES = ("mnist", "fashion", "cifar", "plain")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """A PNG/JPEG (or any format Pillow reads) as a uint8 array ``(H, W)``, ``(H, W, 3)`` or
    ``(H, W, 4)``. Raises ``DataError`` naming the file if it is missing or unreadable, and
    ``ConfigError`` saying how to install Pillow if it is missing."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ConfigError(f"reading {path} needs Pillow: pip install 'xpnet[images]' (or give the "
                          "image as a .npy array)") from None
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "RGB", "RGBA"):
                alpha = "A" in image.getbands() or "transparency" in image.info
                image = image.convert("RGBA" if alpha else "RGB")
            return np.asarray(image)
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def to_unit(image: np.ndarray) -> np.ndarray:
    """float64 values in [0, 1]: uint8 divided by 255, floats clipped; an alpha channel
    (``(H, W, 4)`` or gray + alpha ``(H, W, 2)``) composited over white, as a viewer shows it."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise DataError(f"an image must be (H, W) or (H, W, channels) with 1 to 4 channels, got "
                        f"shape {image.shape}")
    if image.dtype == np.uint8:
        values = image / 255.0
    elif image.dtype.kind == "f":
        values = np.clip(image.astype(np.float64), 0.0, 1.0)
    else:
        raise DataError(f"image pixels must be uint8 or floats in [0, 1], got {image.dtype}")
    if values.ndim == 3 and values.shape[2] in (2, 4):
        alpha = values[..., -1:]
        values = values[..., :-1] * alpha + (1.0 - alpha)
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    return values


def grayscale(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` luma in [0, 1] (BT.601: 0.299 R + 0.587 G + 0.114 B) of any image."""
    values = to_unit(image)
    return values @ _LUMA if values.ndim == 3 else values


def _area_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)`` weights: output pixel i averages input span
    ``[i * s, (i + 1) * s)`` with ``s = size_in / size_out``, partial pixels by their overlap."""
    scale = size_in / size_out
    edges = np.arange(size_out + 1) * scale
    starts, stops = edges[:-1, None], edges[1:, None]
    pixels = np.arange(size_in)[None, :]
    overlap = np.clip(np.minimum(stops, pixels + 1) - np.maximum(starts, pixels), 0.0, None)
    return overlap / scale


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (``(H, W)`` or ``(H, W, C)`` floats) resized by area averaging: each output
    pixel is the mean of the input area it covers (a box filter: no aliasing when shrinking,
    blocky when enlarging)."""
    rows, cols = _area_matrix(image.shape[0], height), _area_matrix(image.shape[1], width)
    return np.einsum("ih,hw...,jw->ij...", rows, image, cols)


def mnist_like(image: np.ndarray, *, box: int = 20, size: int = 28,
               centre: str = "mass") -> np.ndarray:
    """A ``(size, size)`` float32 image in [0, 1] made the way MNIST's digits were.

    1. Grayscale in [0, 1] (:func:`grayscale`).
    2. If the one-pixel border is light on average (mean > 0.5), invert (``1 - v``): MNIST is
       white ink on black.
    3. Crop to the bounding box of the ink: pixels above 0.1 times the brightest.
    4. Resize (:func:`resize_area`) so the longer side is ``box`` pixels, the other
       ``max(1, round(side * box / longer))``: the aspect ratio is kept.
    5. Paste at ``((size - h) // 2, (size - w) // 2)`` on a black ``size`` x ``size`` canvas.
    6. ``centre="mass"``: shift by ``round(size / 2 - c)`` rows and columns, ``c`` the centre
       of mass (intensity-weighted mean row and column index), zeros shifted in: the centre of
       mass lands within half a pixel of row and column ``size / 2`` = 14, where MNIST's
       digits have theirs (not 13.5, the geometric centre: see docs/datasets.md).
       ``centre="box"`` keeps step 5's placement.

    MNIST and KMNIST: ``box=20`` and ``centre="mass"``; Fashion-MNIST's products fill the
    frame: ``box=28, centre="box"``. A blank image raises ``DataError``.
    """
    if centre not in ("mass", "box"):
        raise ConfigError(f"centre must be 'mass' or 'box', got {centre!r}")
    values = grayscale(image)
    border = np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])
    if border.mean() > 0.5:
        values = 1.0 - values
    peak = values.max()
    if peak <= 0.0:
        raise DataError("the image is blank: no ink to classify")
    rows = np.flatnonzero((values > _INK * peak).any(axis=1))
    cols = np.flatnonzero((values > _INK * peak).any(axis=0))
    values = values[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    height, width = values.shape
    longer = max(height, width)
    height, width = (max(1, round(height * box / longer)), max(1, round(width * box / longer)))
    values = resize_area(values, height, width)
    canvas = np.zeros((size, size))
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top:top + height, left:left + width] = values
    if centre == "mass":
        total = canvas.sum()
        index = np.arange(size)
        mass_row = (canvas.sum(axis=1) @ index) / total
        mass_col = (canvas.sum(axis=0) @ index) / total
        canvas = _shift(canvas, round(size / 2 - mass_row), round(size / 2 - mass_col))
    return canvas.astype(np.float32)


def _shift(image: np.ndarray, down: int, right: int) -> np.ndarray:
    """``image`` moved ``down`` rows and ``right`` columns, zeros shifted in."""
    shifted = np.zeros_like(image)
    height, width = image.shape
    src_rows = slice(max(0, -down), min(height, height - down))
    dst_rows = slice(max(0, down), min(height, height + down))
    src_cols = slice(max(0, -right), min(width, width - right))
    dst_cols = slice(max(0, right), min(width, width + right))
    shifted[dst_rows, dst_cols] = image[src_rows, src_cols]
    return shifted


def cifar_like(image: np.ndarray, *, size: int = 32) -> np.ndarray:
    """A ``(3, size, size)`` float32 RGB image in [0, 1], as CIFAR-10's: the whole picture
    resized (:func:`resize_area`, aspect not kept: crop it first to keep it); grayscale is
    repeated into three channels, alpha composited over white."""
    return _rgb(image, size, size)


def _rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    values = to_unit(image)
    if values.ndim == 2:
        values = np.repeat(values[..., None], 3, axis=2)
    return np.transpose(resize_area(values, height, width), (2, 0, 1)).astype(np.float32)


def plain(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An image resized to a ``(C, H, W)`` input: grayscale for C = 1, RGB for C = 3."""
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise DataError(f"the network takes inputs of shape {shape}, which no picture fits; "
                        "give a .npy array of that shape instead")
    channels, height, width = shape
    if channels == 1:
        return resize_area(grayscale(image), height, width)[None].astype(np.float32)
    return _rgb(image, height, width)


def prepare(image: np.ndarray, style: str, shape: tuple[int, ...]) -> np.ndarray:
    """A decoded picture as one input of a network trained on ``style`` data (a
    :data:`STYLES` entry, the ``style`` of :class:`xpnet.datasets.Dataset`) whose samples
    have ``shape``. The result has ``shape``'s size; the caller reshapes it."""
    if style == "mnist":
        prepared = mnist_like(image)
    elif style == "fashion":
        prepared = mnist_like(image, box=28, centre="box")
    elif style == "cifar":
        prepared = cifar_like(image)
    else:
        prepared = plain(image, shape)
    if prepared.size != math.prod(shape):
        raise DataError(f"the prepared image has {prepared.size} values but the network takes "
                        f"{shape}")
    return prepared


def load_array(path: str | os.PathLike[str], shape: tuple[int, ...]) -> np.ndarray:
    """A ``.npy`` file holding one input of ``shape`` (or the same values in another shape
    of that size: ``(H, W)`` for ``(1, H, W)``): uint8 divided by 255, floats as they are,
    exactly as the training data were."""
    try:
        array = np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"array file {path} does not exist") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError(f"{path} is an .npz archive; give one image as a .npy array")
    if array.size != math.prod(shape):
        raise DataError(f"{path} holds shape {array.shape} but the network takes {shape} "
                        f"({math.prod(shape)} values)")
    if array.dtype == np.uint8:
        return (array / 255.0).astype(np.float32)
    if array.dtype.kind != "f":
        raise DataError(f"{path} has dtype {array.dtype}; give uint8 pixels or floats")
    return array.astype(np.float32)
