"""The ``xpnet`` command: ``xpnet check``, ``xpnet train``, ``xpnet evaluate`` and ``xpnet export``."""

from __future__ import annotations

import argparse
import sys

from . import distributed
from .errors import XPNetError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="check every layer's gradients and its agreement with NumPy float64 on a device")
    check.add_argument("--device", default="cpu",
                       help="device spec, e.g. cpu, cuda, torch:cpu, jax:cpu (default cpu)")
    check.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    check.set_defaults(run=run_check)
    _add_train(commands)
    evaluate = commands.add_parser(
        "evaluate", help="print the MNIST test accuracy of a checkpoint written by xpnet train --save, "
                         "or of an ONNX model written by xpnet export")
    model = evaluate.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", metavar="PATH", help="the .npz checkpoint")
    model.add_argument("--onnx", metavar="PATH", help="an ONNX model, run by onnxruntime on the CPU")
    # None, not "auto": --onnx refuses a --device it would not use
    evaluate.add_argument("--device", metavar="SPEC",
                          help="device spec for --checkpoint, e.g. cpu, cuda, torch:cpu (default auto)")
    evaluate.add_argument("--data-dir", metavar="DIR",
                          help="folder of MNIST files (default: $XPNET_DATA_DIR, else the packaged copy)")
    evaluate.set_defaults(run=run_evaluate)
    export = commands.add_parser(
        "export", help="write a checkpoint's network as an ONNX model (needs pip install 'xpnet[onnx]')")
    export.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="the .npz checkpoint written by xpnet train --save")
    export.add_argument("--output", required=True, metavar="PATH", help="the .onnx file to write")
    export.set_defaults(run=run_export)
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    from .commands import DEFAULTS
    from .registry import ACTIVATION_NAMES
    from .optim import OPTIMIZERS
    from .registry import MODEL_NAMES, model_help

    train = commands.add_parser(
        "train", help="train a network on MNIST", description=(
            "Train a network on MNIST on a device and print train/test accuracy each epoch. "
            "Options left out take the defaults shown, or, with --resume, the checkpoint's."))
    # Defaults are None so that --resume can tell an option given from one left out.
    train.add_argument("--device", default="auto", metavar="SPEC",
                       help="device spec: auto, cpu, cuda[:N], torch:cpu, torch:cuda, jax:cpu, "
                            "jax:cuda[:N] (default auto)")
    train.add_argument("--jit", action="store_true",
                       help="compile each training step into one program (JAX devices only)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, metavar="N", help=f"passes over the training set "
                        f"(default {DEFAULTS['epochs']})")
    length.add_argument("--iters", type=int, metavar="N",
                        help="mini-batch updates in all, as in the book (10000); instead of --epochs")
    train.add_argument("--batch-size", type=int, metavar="N", help=f"default {DEFAULTS['batch_size']}")
    train.add_argument("--lr", type=float, metavar="RATE",
                       help="learning rate (default: the optimizer's, the book's)")
    train.add_argument("--optimizer", metavar="NAME",
                       help=f"{', '.join(OPTIMIZERS)} (default {DEFAULTS['optimizer']})")
    train.add_argument("--model", metavar="NAME",
                       help=f"{', '.join(MODEL_NAMES)} (default {DEFAULTS['model']}). {model_help()}")
    train.add_argument("--hidden", type=int, nargs="+", metavar="SIZE",
                       help=f"hidden layer sizes (default {' '.join(map(str, DEFAULTS['hidden']))}; "
                            "deepconvnet: 50)")
    train.add_argument("--activation", metavar="NAME",
                       help=f"{' or '.join(ACTIVATION_NAMES)} (default {DEFAULTS['activation']})")
    train.add_argument("--weight-decay", type=float, metavar="LAMBDA",
                       help="L2 weight decay lambda (default 0)")
    train.add_argument("--dtype", metavar="NAME", help="float32 or float64 (default float32)")
    train.add_argument("--seed", type=int, metavar="N", help=f"seeds the weights and the batch order "
                       f"(default {DEFAULTS['seed']})")
    train.add_argument("--train-limit", type=int, metavar="N",
                       help="train on the first N training images only (for quick runs)")
    train.add_argument("--data-dir", metavar="DIR",
                       help="folder of MNIST files (default: $XPNET_DATA_DIR, else the packaged copy)")
    train.add_argument("--save", metavar="PATH", help="write a checkpoint (.npz) after every epoch")
    train.add_argument("--resume", metavar="PATH", help="continue the run saved in this checkpoint")
    train.add_argument("--log", metavar="PATH", help="write one JSON line per epoch")
    train.add_argument("--plot", metavar="PATH", help="draw loss and accuracy curves (PNG; needs "
                       "matplotlib: pip install 'xpnet[plot]')")
    train.add_argument("-q", "--quiet", action="store_true",
                       help="print only the device line and the final accuracy")
    train.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from .commands import TrainOptions, run_training

    options = {key: value for key, value in vars(args).items() if key not in ("command", "run")}
    run_training(TrainOptions(**options))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from .backend import device
    from .commands import evaluate_checkpoint

    if args.onnx is not None:
        from .errors import ConfigError
        from .export import ONNX_PROVIDER, evaluate_onnx

        if args.device is not None:
            raise ConfigError(f"--device applies to --checkpoint; --onnx runs on onnxruntime's "
                              f"{ONNX_PROVIDER}")
        print(f"xpnet: evaluating {args.onnx} on onnxruntime ({ONNX_PROVIDER})", flush=True)
        accuracy, correct, total = evaluate_onnx(args.onnx, data_dir=args.data_dir)
    else:
        dev = device(args.device or "auto")
        print(f"xpnet: evaluating {args.checkpoint} on {dev.name} ({dev.backend})", flush=True)
        accuracy, correct, total = evaluate_checkpoint(args.checkpoint, device=dev,
                                                       data_dir=args.data_dir)
    print(f"test acc {accuracy:.4f} ({correct}/{total})")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .export import BATCH_DIM, INPUT_NAME, export_checkpoint

    path, network = export_checkpoint(args.checkpoint, args.output)
    shape = ", ".join(map(str, (BATCH_DIM, *network.input_shape)))
    print(f"xpnet: exported {args.checkpoint} ({network.name}, {network.dtype}) to {path}: "
          f"input {INPUT_NAME} ({shape}), {path.stat().st_size:,} bytes")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from .backend import device
    from .device_check import format_table, run_checks

    dev = device(args.device)
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)
    print(f"xpnet check on {dev.name} ({dev.backend}), against NumPy float64")
    rows = run_checks(dev, dtypes)
    print(format_table(rows))
    failed = sum(not row.passed for row in rows)
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except XPNetError as exc:
        sys.stderr.write(f"xpnet {args.command}: error: {exc}\n")  # one write: ranks' lines stay whole
        sys.stderr.flush()
        job = distributed.current()
        if job is not None and job.size > 1 and not isinstance(exc, distributed.SharedError):
            job.abort(2)  # this rank alone failed: the others would wait for it for ever
        return 2
    except KeyboardInterrupt:
        # the checkpoint of the last finished epoch (train --save) is intact: resume from it
        print(f"xpnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
