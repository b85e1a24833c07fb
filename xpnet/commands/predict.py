"""``xpnet predict``: a trained network's classes for the user's own images.

Each image is prepared as the network's training data were (:mod:`xpnet.imageio`, chosen
by the data set the checkpoint records), scored in one batch, and turned into class
probabilities with a softmax. Checkpoints written before data sets were recorded are read
as MNIST's.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..backend import Device, to_numpy
from ..checkpoint import load_checkpoint
from ..errors import DataError
from ..imageio import load_array, prepare, read_image
from ..training import send_dataset
from ..validate import check_size
from .common import command_device, recorded_dataset

__all__ = ["Prediction", "predict_files", "format_prediction", "prediction_json", "add_parser",
           "run"]


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


def predict_files(checkpoint: str | os.PathLike[str], files: Sequence[str | os.PathLike[str]], *,
                  device: str | Device = "cpu") -> list[Prediction]:
    """Classify ``files`` (PNG/JPEG through Pillow, or ``.npy`` arrays of one input) with the
    network in ``checkpoint``, on ``device``. Raises a one-line ``XPNetError`` for a file
    that cannot be read or does not fit the network."""
    network, _, meta = load_checkpoint(checkpoint, device=command_device(device))
    record = recorded_dataset(meta, network)
    shape = tuple(network.input_shape)
    inputs = []
    for path in files:
        if os.fspath(path).lower().endswith(".npy"):
            inputs.append(load_array(path, shape))
        else:
            image = read_image(path)  # its errors name the file already
            try:
                inputs.append(prepare(image, record["style"], record["input_shape"]))
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
    return [Prediction(os.fspath(path), p, record["class_names"])
            for path, p in zip(files, probabilities)]


def format_prediction(prediction: Prediction, top: int = 3) -> str:
    """``file: name 97.1%, name 1.5%, ...``, the ``top`` likeliest classes."""
    ranked = ", ".join(f"{prediction.class_names[k]} {p:.1%}" for k, p in prediction.top(top))
    return f"{prediction.file}: {ranked}"


def prediction_json(prediction: Prediction) -> str:
    """One JSON object: ``file``, ``class`` (int) and ``probabilities`` (every class, in order)."""
    return json.dumps({"file": prediction.file, "class": prediction.label,
                       "probabilities": [float(p) for p in prediction.probabilities]})


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``xpnet predict`` and its options to the ``xpnet`` parser's subcommands."""
    predict = commands.add_parser(
        "predict", help="classify your own images with a checkpoint written by xpnet train --save",
        description="Print the likeliest classes of each image, prepared as the network's "
                    "training data were (docs/datasets.md). PNG/JPEG need Pillow: pip install "
                    "'xpnet[images]'; .npy files hold one input as the data set's arrays did.")
    predict.add_argument("--checkpoint", required=True, metavar="PATH",
                         help="the .npz checkpoint written by xpnet train --save")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG or .npy files")
    predict.add_argument("--top", type=int, default=3, metavar="N",
                         help="classes printed per image (default 3)")
    predict.add_argument("--json", action="store_true",
                         help="one JSON object per image: file, class, probabilities")
    predict.add_argument("--device", default="cpu", metavar="SPEC",
                         help="device spec (default cpu)")
    predict.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``xpnet predict`` with the parsed ``args``; its exit status."""
    top = check_size("--top", args.top)
    for prediction in predict_files(args.checkpoint, args.images, device=args.device):
        print(prediction_json(prediction) if args.json else format_prediction(prediction, top))
    return 0
