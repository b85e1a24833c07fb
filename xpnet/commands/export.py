"""``xpnet export``: write a checkpoint's network as an ONNX model (:mod:`xpnet.export`)."""

from __future__ import annotations

import argparse

from ..export import BATCH_DIM, INPUT_NAME, export_checkpoint
from ..outputs import check_writable

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``xpnet export`` and its options to the ``xpnet`` parser's subcommands."""
    export = commands.add_parser(
        "export", help="write a checkpoint's network as an ONNX model (needs pip install 'xpnet[onnx]')")
    export.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="the .npz checkpoint written by xpnet train --save")
    export.add_argument("--output", required=True, metavar="PATH", help="the .onnx file to write")
    export.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``xpnet export`` with the parsed ``args``; its exit status."""
    check_writable("--output", args.output)  # before the checkpoint is read and converted
    path, network = export_checkpoint(args.checkpoint, args.output)
    shape = ", ".join(map(str, (BATCH_DIM, *network.input_shape)))
    print(f"xpnet: exported {args.checkpoint} ({network.name}, {network.dtype}) to {path}: "
          f"input {INPUT_NAME} ({shape}), {path.stat().st_size:,} bytes")
    return 0
