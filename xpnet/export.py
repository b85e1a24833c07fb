"""Export a trained network to ONNX by running its own ``predict`` on ndonnx arrays.

ndonnx is an Array API library whose arrays record every operation applied to them as an
ONNX graph. Layers find ``xp`` from their inputs (:func:`xpnet.backend.namespace_of`), so
the layers' forward passes given an ndonnx input, with ndonnx constants in place of their
parameters and ``state_names`` arrays (BatchNorm's running statistics), record the network's
inference pass: the same layer code
that trains on NumPy, CuPy and PyTorch writes the model, with no export code per layer.

The model has one input ``x`` of the network's dtype, shape ``(N, *network.input_shape)``
with ``N`` free, and one output ``scores``: ``network.predict(x, train_flg=False)``, the class
scores before softmax. A layer whose inference pass uses what ndonnx cannot record is
refused in one line naming the layer and ndonnx's reason. See docs/export.md for what the
graph holds and where it runs.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import to_numpy
from .checkpoint import load_checkpoint, write_atomically
from .errors import XPNetError, first_line
from .layers import call_forward
from .registry import NETWORKS
from .training import eval_batch_size_of
from .validate import check_has_values

if TYPE_CHECKING:
    import onnx

    from .models import Sequential

__all__ = ["ExportError", "onnx_model", "export_onnx", "export_checkpoint", "evaluate_onnx",
           "INPUT_NAME", "OUTPUT_NAME", "BATCH_DIM", "ONNX_PROVIDER"]

INPUT_NAME = "x"
OUTPUT_NAME = "scores"
BATCH_DIM = "N"
DATASET_KEY = "xpnet.dataset"  # metadata: the data set the exported network was trained on
ONNX_PROVIDER = "CPUExecutionProvider"  # in every onnxruntime build; GPU builds add others
INSTALL_HINT = "pip install 'xpnet[onnx]'"
# onnxruntime's names of the tensor types a network can have
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64"}


class ExportError(XPNetError):
    """An ONNX export or evaluation that cannot run: a missing library, an unwritable output,
    a file that is not a usable ONNX model."""


def _require(module: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{purpose} needs {module}, which is not installed: {INSTALL_HINT}") from None


def onnx_model(network: Sequential, *, dataset: str | None = None) -> onnx.ModelProto:
    """The ONNX model of ``network.predict(x, train_flg=False)``, recorded by ndonnx.

    ``network`` is left exactly as it was: the same ``params`` dict and arrays, and every
    layer attribute (parameters, running statistics, forward caches) the same object.
    ``dataset`` (the name of the data set it was trained on) goes into the model's metadata,
    where :func:`evaluate_onnx` finds it.
    """
    ndx = _require("ndonnx", "exporting to ONNX")
    check_has_values(network.device, "exporting weights", ExportError)
    x = ndx.argument(shape=(BATCH_DIM, *network.input_shape), dtype=getattr(ndx, network.dtype))
    scores = _inference_pass(network, x, ndx)
    model = ndx.build({INPUT_NAME: x}, {OUTPUT_NAME: scores})
    # ndonnx guards each matmul against empty inputs with an If node, which hides the batch
    # dimension from shape inference; naming it tells runtimes and viewers it is x's N
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    model.producer_name = "xpnet"
    model.doc_string = (f"xpnet {network.name}: {OUTPUT_NAME} = predict({INPUT_NAME}, "
                        "train_flg=False), class scores before softmax")
    model.metadata_props.add(key="xpnet.config", value=json.dumps(network.config))
    model.metadata_props.add(key="xpnet.dtype", value=network.dtype)
    if dataset is not None:
        model.metadata_props.add(key=DATASET_KEY, value=dataset)
    return model


def _inference_pass(network: Sequential, x: Any, ndx: ModuleType) -> Any:
    """``network.predict(x, train_flg=False)`` run on a shallow copy of each layer holding
    ndonnx constants (host copies) of its parameters and ``state_names`` arrays: whatever the
    forward passes write lands on the copies, so ``network`` is left exactly as it was. A
    layer ndonnx cannot record is named in one line."""
    state = network.state_dict()
    for name, layer in network.layers.items():
        twin = copy.copy(layer)
        for key, (owner, attribute) in network.param_slots.items():
            if owner == name:
                setattr(twin, attribute, ndx.asarray(to_numpy(network.params[key])))
        for attribute in layer.state_names:
            setattr(twin, attribute, ndx.asarray(state[f"{name}.{attribute}"]))
        try:
            x = call_forward(twin, x, False)
        except Exception as exc:  # ndonnx's failures are of many types, from deep inside it
            raise ExportError(f"layer {name} ({type(layer).__name__}) cannot be exported to ONNX: "
                              f"ndonnx cannot record its inference pass ({first_line(exc)})") from None
    return x


def export_onnx(network: Sequential, path: str | os.PathLike[str], *,
                dataset: str | None = None) -> Path:
    """Write ``network``'s inference pass to ``path`` as an ONNX model; return the path.

    One input ``x`` (the network's dtype, shape ``(N, *network.input_shape)``, ``N`` free),
    one output ``scores``. The file is written atomically: a failure leaves no file behind
    (and an existing one as it was). Raises :class:`ExportError` when ndonnx is missing or
    the file cannot be written. ``network`` is unchanged and can keep training. ``dataset``
    is recorded as in :func:`onnx_model`.
    """
    path = Path(path).expanduser()
    _write_atomically(path, onnx_model(network, dataset=dataset).SerializeToString())
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    """To a temporary file in the same folder, then renamed over ``path`` (as checkpoints are)."""
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    write_atomically(path, lambda f: f.write(data), ExportError)


def export_checkpoint(checkpoint: str | os.PathLike[str],
                      output: str | os.PathLike[str]) -> tuple[Path, Sequential]:
    """Run ``xpnet export``: ``(path written, network)`` for the network saved in ``checkpoint``,
    with the data set the checkpoint records (if any) in the model's metadata.

    A missing or damaged checkpoint raises :class:`~xpnet.CheckpointError`, before any file
    is written.
    """
    _require("ndonnx", "exporting to ONNX")  # before reading the checkpoint: the cheaper failure
    network, _, meta = load_checkpoint(checkpoint, device="cpu")
    record = meta["extra"].get("dataset")
    dataset = record.get("name") if isinstance(record, dict) else None
    return export_onnx(network, output, dataset=dataset), network


def evaluate_onnx(path: str | os.PathLike[str], *, dataset: str | os.PathLike[str] | None = None,
                  data_dir: str | None = None,
                  eval_batch_size: int | None = None) -> tuple[float, int, int]:
    """``(accuracy, correct, total)`` of the ONNX model at ``path`` on the test set of
    ``dataset`` (a name or an ``.npz`` file, as :func:`~xpnet.datasets.load_dataset` takes;
    default: the one the export recorded, else MNIST),
    run by onnxruntime alone (the counterpart of ``evaluate_checkpoint``), scored
    ``eval_batch_size`` rows at a time (default: what the exported network asks for,
    :func:`~xpnet.training.eval_batch_size_of`).

    The model needs one input taking the data set's samples (images flattened or not; an
    input of shape ``(N, C, H, W)`` takes images of that shape only) and one output of class
    scores; :func:`export_onnx` writes such models. A model that does not fit the data set
    (sample shape, class count) is refused in one line. The class of a row is the first
    maximum of its scores, as in ``Sequential.count_correct``.
    """
    from .datasets import load_dataset

    session = _session(Path(path).expanduser())
    eval_batch_size = eval_batch_size_of(_exported_network_class(session), eval_batch_size)
    (x_info,), (scores_info,) = session.get_inputs(), session.get_outputs()
    if dataset is None:
        dataset = session.get_modelmeta().custom_metadata_map.get(DATASET_KEY, "mnist")
    data = load_dataset(dataset, dtype=_ORT_DTYPES[x_info.type], data_dir=data_dir)
    x, t = data.test
    sample = tuple(x_info.shape[1:])
    fits = all(isinstance(d, int) for d in sample) and (
        sample == data.input_shape if len(sample) == 3
        else math.prod(sample) == math.prod(data.input_shape))
    if not fits:
        raise ExportError(f"{path} takes input of shape {tuple(x_info.shape)}, which does not fit "
                          f"data set {data.name}'s samples of shape {data.input_shape}")
    classes = scores_info.shape[-1] if len(scores_info.shape) == 2 else None
    if isinstance(classes, int) and classes != data.num_classes:
        raise ExportError(f"{path} scores {classes} classes, but data set {data.name} has "
                          f"{data.num_classes}; give the --dataset it was trained on")
    x = x.reshape(-1, *sample)
    correct = 0
    for start in range(0, x.shape[0], eval_batch_size):
        stop = start + eval_batch_size
        scores, = session.run(None, {x_info.name: x[start:stop]})
        correct += int(np.count_nonzero(np.argmax(scores, axis=1) == t[start:stop]))
    return correct / x.shape[0], correct, x.shape[0]


def _session(path: Path) -> Any:
    """An onnxruntime session of the model at ``path``: one float input, one output."""
    ort = _require("onnxruntime", "evaluating an ONNX model")
    if not path.is_file():
        raise ExportError(f"ONNX model {path} does not exist")
    try:
        session = ort.InferenceSession(str(path), providers=[ONNX_PROVIDER])
    except Exception as exc:  # onnxruntime's errors are its own types, one per failure
        raise ExportError(f"{path} is not a readable ONNX model: {first_line(exc)}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1 or inputs[0].type not in _ORT_DTYPES:
        raise ExportError(f"{path} is not an image classifier xpnet can evaluate: it needs one "
                          "float input (images) and one output (class scores), as xpnet export "
                          "writes")
    return session


def _exported_network_class(session: Any) -> Any:
    """The class of the network an xpnet export recorded in the model's metadata (None for
    other models)."""
    config = session.get_modelmeta().custom_metadata_map.get("xpnet.config")
    try:
        return NETWORKS.get(json.loads(config).get("model")) if config else None
    except (ValueError, AttributeError):
        return None
