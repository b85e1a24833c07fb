"""``xpnet predict``: a trained network's classes for the user's own images.

Each image is prepared as the network's training data were (:mod:`xpnet.imageio`, chosen
by the data set the checkpoint records), scored in one batch, and turned into class
probabilities with a softmax. Checkpoints written before data sets were recorded are read
as MNIST's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Device, to_numpy
from .checkpoint import load_checkpoint
from .errors import DataError
from .imageio import load_array, prepare, read_image
from .training import send_dataset

__all__ = ["Prediction", "predict_files", "format_prediction", "prediction_json"]


@dataclass
class Prediction:
    """One image's result: ``probabilities[k]`` of class ``k``, named ``class_names[k]``."""

    file: str
    probabilities: np.ndarray
    class_names: tuple[str, ...]

    @property
    def label(self) -> int:
        return int(np.argmax(self.probabilities))

    def top(self, count: int) -> list[tuple[int, float]]:
        """The ``count`` likeliest classes as ``(class, probability)``, likeliest first."""
        order = np.argsort(-self.probabilities, kind="stable")[:count]
        return [(int(k), float(self.probabilities[k])) for k in order]


def _recorded(meta: dict[str, Any], network: Any) -> tuple[str, tuple[str, ...], tuple[int, ...]]:
    """``(style, class names, sample shape)`` of the checkpoint's data set; a checkpoint that
    records none was trained on MNIST (the only data set there was)."""
    record = meta["extra"].get("dataset")
    classes = network.config.get("output_size", 10)
    shape = tuple(network.input_shape)
    if not isinstance(record, dict):
        return "mnist", tuple(str(k) for k in range(classes)), (1, 28, 28)
    names = record.get("class_names") or [str(k) for k in range(classes)]
    return (str(record.get("style", "plain")), tuple(str(n) for n in names),
            tuple(record.get("input_shape", shape)))


def predict_files(checkpoint: str | os.PathLike[str], files: Sequence[str | os.PathLike[str]], *,
                  device: str | Device = "cpu") -> list[Prediction]:
    """Classify ``files`` (PNG/JPEG through Pillow, or ``.npy`` arrays of one input) with the
    network in ``checkpoint``, on ``device``. Raises a one-line ``XPNetError`` for a file
    that cannot be read or does not fit the network."""
    network, _, meta = load_checkpoint(checkpoint, device=device)
    style, names, image_shape = _recorded(meta, network)
    shape = tuple(network.input_shape)
    inputs = []
    for path in files:
        if os.fspath(path).lower().endswith(".npy"):
            inputs.append(load_array(path, shape))
        else:
            try:
                inputs.append(prepare(read_image(path), style, image_shape))
            except DataError as exc:
                raise DataError(f"{path}: {exc}") from None
    if not inputs:
        raise DataError("no images given")
    batch = np.stack([x.reshape(shape) for x in inputs])
    x, _ = send_dataset(network, batch, np.zeros(len(inputs), dtype=np.int64))
    scores = to_numpy(network.predict(x)).astype(np.float64)
    scores -= scores.max(axis=1, keepdims=True)
    probabilities = np.exp(scores)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return [Prediction(os.fspath(path), p, names) for path, p in zip(files, probabilities)]


def format_prediction(prediction: Prediction, top: int = 3) -> str:
    """``file: name 97.1%, name 1.5%, ...``, the ``top`` likeliest classes."""
    ranked = ", ".join(f"{prediction.class_names[k]} {p:.1%}" for k, p in prediction.top(top))
    return f"{prediction.file}: {ranked}"


def prediction_json(prediction: Prediction) -> str:
    """One JSON object: ``file``, ``class`` (int) and ``probabilities`` (every class, in order)."""
    return json.dumps({"file": prediction.file, "class": prediction.label,
                       "probabilities": [float(p) for p in prediction.probabilities]})
