"""What several ``xpnet`` subcommands share: the device a command runs on, the data set a
checkpoint records (written by ``train``, read by ``evaluate`` and ``predict``), and whether a
network fits a data set."""

from __future__ import annotations

import math
from typing import Any

from .. import distributed
from ..backend import Device, cuda_status
from ..backend import device as resolve_device
from ..datasets import DATASETS, Dataset
from ..errors import ConfigError
from ..validate import check_has_values

__all__ = ["DATASET_HELP", "DATA_DIR_HELP", "command_device", "dataset_record",
           "recorded_dataset", "check_fits"]

DATASET_HELP = ("mnist (packaged), fashion-mnist, kmnist, cifar10 (downloaded once, verified), or "
                "an .npz file holding x_train, t_train, x_test, t_test")
DATA_DIR_HELP = ("folder of the data set's files (mnist: default $XPNET_DATA_DIR, else the "
                 "packaged copy; others: default the cache, where they are downloaded)")


def command_device(spec: str | Device, comm: distributed.Communicator | None = None) -> Device:
    """The device ``spec`` names, refusing ``torch:meta`` (it holds no values to train).

    In a job of several processes a GPU spec without a number (``cuda``, ``auto``,
    ``torch:cuda``) means GPU ``local_rank`` modulo the GPUs this machine shows; an explicit
    ``cuda:N`` is honoured.
    """
    if comm is not None and comm.size > 1 and isinstance(spec, str):
        spec = _rank_gpu(spec.strip().lower(), comm.local_rank)
    dev = resolve_device(spec, make_current=True)  # a CuPy GPU: no context on any other
    check_has_values(dev, "training or evaluating")
    return dev


def _rank_gpu(spec: str, local_rank: int) -> str:
    if spec in ("cuda", "cupy", "auto"):
        count = cuda_status()[0]
        return f"cuda:{local_rank % count}" if count else spec  # device() says why there is none
    if spec == "torch:cuda":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f"torch:cuda:{local_rank % count}" if count else spec
    return spec


def dataset_record(data: Dataset) -> dict[str, Any]:
    """What a checkpoint keeps of its data set (``extra["dataset"]``): enough for ``xpnet
    evaluate`` to pick the data and refuse other data, and for ``xpnet predict`` to prepare
    images and name classes without the data."""
    return {"name": data.name, "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "class_names": list(data.class_names),
            "style": data.style}


def recorded_dataset(meta: dict[str, Any], network: Any) -> dict[str, Any]:
    """The :func:`dataset_record` a checkpoint's ``meta`` holds, its gaps filled from
    ``network``; a checkpoint that records none was trained on MNIST (the only data set there
    was)."""
    record = meta["extra"].get("dataset")
    if not isinstance(record, dict):
        mnist = DATASETS["mnist"]
        record = {"name": mnist.name, "input_shape": [1, 28, 28], "class_names": mnist.class_names,
                  "style": mnist.style}
    classes = network.output_shape[-1]
    return {"name": str(record.get("name", "mnist")),
            "input_shape": tuple(record.get("input_shape", network.input_shape)),
            "num_classes": classes,
            "class_names": tuple(map(str, record.get("class_names") or range(classes))),
            "style": str(record.get("style", "plain"))}


def check_fits(network: Any, data: Dataset, what: str) -> None:
    """Raise :class:`ConfigError` in one line when ``network`` cannot take ``data``: another
    sample shape (the size, for fully connected networks) or another class count."""
    shape = tuple(network.input_shape)
    fits = (shape == data.input_shape if len(shape) == 3
            else math.prod(shape) == math.prod(data.input_shape))
    if not fits:
        raise ConfigError(f"{what} takes inputs of shape {shape}, but data set {data.name} holds "
                          f"{data.input_shape}; give the --dataset it was trained on")
    classes = network.output_shape[-1]
    if classes != data.num_classes:
        raise ConfigError(f"{what} scores {classes} classes, but data set {data.name} has "
                          f"{data.num_classes}; give the --dataset it was trained on")
