"""``xpnet evaluate``: the test accuracy of a checkpoint written by ``xpnet train --save``, on
a device, or of an ONNX model written by ``xpnet export``, on onnxruntime."""

from __future__ import annotations

import argparse

from ..backend import Device, to_numpy
from ..checkpoint import load_checkpoint
from ..datasets import load_dataset
from ..errors import ConfigError
from ..export import ONNX_PROVIDER, evaluate_onnx
from ..training import eval_batch_size_of, send_dataset
from .common import DATA_DIR_HELP, DATASET_HELP, check_fits, command_device, recorded_dataset

__all__ = ["add_parser", "run", "evaluate_checkpoint"]


def evaluate_checkpoint(path: str, *, device: str | Device = "cpu", data_dir: str | None = None,
                        eval_batch_size: int | None = None,
                        dataset: str | None = None) -> tuple[float, int, int]:
    """``(accuracy, correct, total)`` of the network saved in ``path`` on the test set of
    ``dataset`` (default: the one the checkpoint records, else MNIST), scored
    ``eval_batch_size`` rows at a time (default: the network's own choice). A network that
    does not fit the data (sample shape, class count) is refused in one line."""
    network, _, meta = load_checkpoint(path, device=command_device(device))
    if dataset is None:
        dataset = recorded_dataset(meta, network)["name"]
    data = load_dataset(dataset, dtype=network.dtype, data_dir=data_dir)
    check_fits(network, data, f"checkpoint {path}")
    x, t = send_dataset(network, *data.test)
    rows = eval_batch_size_of(network, eval_batch_size)
    correct = int(to_numpy(network.count_correct(x, t, min(rows, x.shape[0]))))
    return correct / x.shape[0], correct, x.shape[0]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``xpnet evaluate`` and its options to the ``xpnet`` parser's subcommands."""
    evaluate = commands.add_parser(
        "evaluate", help="print the test accuracy of a checkpoint written by xpnet train --save, "
                         "or of an ONNX model written by xpnet export")
    model = evaluate.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", metavar="PATH", help="the .npz checkpoint")
    model.add_argument("--onnx", metavar="PATH", help="an ONNX model, run by onnxruntime on the CPU")
    # None, not "auto": --onnx refuses a --device it would not use
    evaluate.add_argument("--device", metavar="SPEC",
                          help="device spec for --checkpoint, e.g. cpu, cuda, torch:cpu (default auto)")
    evaluate.add_argument("--dataset", metavar="NAME",
                          help=f"{DATASET_HELP} (default: the one the checkpoint or the exported "
                               "model records, else mnist)")
    evaluate.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    evaluate.set_defaults(run=run, out_of_memory_fix="evaluate on another device (--device cpu)")


def run(args: argparse.Namespace) -> int:
    """Run ``xpnet evaluate`` with the parsed ``args``; its exit status."""
    if args.onnx is not None:
        if args.device is not None:
            raise ConfigError(f"--device applies to --checkpoint; --onnx runs on onnxruntime's "
                              f"{ONNX_PROVIDER}")
        print(f"xpnet: evaluating {args.onnx} on onnxruntime ({ONNX_PROVIDER})", flush=True)
        accuracy, correct, total = evaluate_onnx(args.onnx, dataset=args.dataset,
                                                 data_dir=args.data_dir)
    else:
        dev = command_device(args.device or "auto")
        print(f"xpnet: evaluating {args.checkpoint} on {dev.name} ({dev.backend})", flush=True)
        accuracy, correct, total = evaluate_checkpoint(args.checkpoint, device=dev,
                                                       data_dir=args.data_dir,
                                                       dataset=args.dataset)
    print(f"test acc {accuracy:.4f} ({correct}/{total})")
    return 0
