"""The ``xpnet`` command: ``xpnet check``, ``xpnet train``, ``xpnet evaluate``, ``xpnet predict`` and
``xpnet export``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import distributed
from .errors import XPNetError
from .interrupts import end_interrupted, end_job, is_rank_zero
from .interrupts import restore as _restore_sigint

__all__ = ["main", "build_parser"]

DATASET_HELP = ("mnist (packaged), fashion-mnist, kmnist, cifar10 (downloaded once, verified), or "
                "an .npz file holding x_train, t_train, x_test, t_test")
DATA_DIR_HELP = ("folder of the data set's files (mnist: default $XPNET_DATA_DIR, else the "
                 "packaged copy; others: default the cache, where they are downloaded)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpnet", description=__doc__.replace("``", ""))
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="check every layer's gradients and its agreement with NumPy float64 on a device")
    check.add_argument("--device", default="cpu",
                       help="device spec, e.g. cpu, cuda, torch:cpu, jax:cpu (default cpu)")
    check.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    check.set_defaults(run=run_check)
    _add_train(commands)
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
                          help=f"{DATASET_HELP} (default: the checkpoint's, else mnist)")
    evaluate.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    evaluate.set_defaults(run=run_evaluate)
    _add_predict(commands)
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
        "train", help="train a network on MNIST or another data set", description=(
            "Train a network on a data set (MNIST by default) on a device and print train/test "
            "accuracy each epoch. "
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
    train.add_argument("--dataset", metavar="NAME", help=f"{DATASET_HELP} (default mnist)")
    train.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
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
    xpnet_logger = logging.getLogger("xpnet")
    level = xpnet_logger.level
    if args.quiet:  # the device line says which device: no warning why it is not a GPU
        xpnet_logger.setLevel(logging.ERROR)
    try:
        run_training(TrainOptions(**options))
    finally:
        xpnet_logger.setLevel(level)
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
        if args.dataset is not None:
            raise ConfigError("--dataset applies to --checkpoint; --onnx is scored on MNIST")
        print(f"xpnet: evaluating {args.onnx} on onnxruntime ({ONNX_PROVIDER})", flush=True)
        accuracy, correct, total = evaluate_onnx(args.onnx, data_dir=args.data_dir)
    else:
        dev = device(args.device or "auto")
        print(f"xpnet: evaluating {args.checkpoint} on {dev.name} ({dev.backend})", flush=True)
        accuracy, correct, total = evaluate_checkpoint(args.checkpoint, device=dev,
                                                       data_dir=args.data_dir,
                                                       dataset=args.dataset)
    print(f"test acc {accuracy:.4f} ({correct}/{total})")
    return 0


def _add_predict(commands: argparse._SubParsersAction) -> None:
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
    predict.set_defaults(run=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from .predict import format_prediction, predict_files, prediction_json
    from .validate import check_size

    top = check_size("--top", args.top)
    for prediction in predict_files(args.checkpoint, args.images, device=args.device):
        print(prediction_json(prediction) if args.json else format_prediction(prediction, top))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .export import BATCH_DIM, INPUT_NAME, export_checkpoint
    from .outputs import check_writable

    check_writable("--output", args.output)  # before the checkpoint is read and converted
    path, network = export_checkpoint(args.checkpoint, args.output)
    shape = ", ".join(map(str, (BATCH_DIM, *network.input_shape)))
    print(f"xpnet: exported {args.checkpoint} ({network.name}, {network.dtype}) to {path}: "
          f"input {INPUT_NAME} ({shape}), {path.stat().st_size:,} bytes")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from .backend import device
    from .device_check import format_failures, format_header, format_row, run_checks

    dev = device(args.device, make_current=True)
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)
    print(f"xpnet check on {dev.name} ({dev.backend}), against NumPy float64")
    print(format_header(), flush=True)
    rows = run_checks(dev, dtypes, on_row=lambda row: print(format_row(row), flush=True))
    if any(row.message for row in rows):
        print(format_failures(rows))
    failed = sum(not row.passed for row in rows)
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _restore_sigint()  # from here Ctrl-C is a KeyboardInterrupt, caught below
        return args.run(args)
    except XPNetError as exc:
        return _fail(args.command, str(exc), shared=isinstance(exc, distributed.SharedError))
    except MemoryError as exc:
        return _fail(args.command, _out_of_memory(args.command, exc))
    except RuntimeError as exc:  # a device's allocator: torch, JAX (CuPy's is a MemoryError)
        if not _is_out_of_memory(exc):
            raise
        return _fail(args.command, _out_of_memory(args.command, exc))
    except BrokenPipeError:  # the reader went away (xpnet check | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes at exit
        return 1
    except KeyboardInterrupt:
        # the checkpoint of the last finished epoch (train --save) is intact: resume from it
        end_interrupted(f"xpnet {args.command}: interrupted\n")
        return 130


def _fail(command: str, message: str, shared: bool = False) -> int:
    """One line on stderr and exit status 2; an error every rank shares is rank 0's to say."""
    if shared and not is_rank_zero():
        return 2
    sys.stderr.write(f"xpnet {command}: error: {message}\n")
    if not shared:  # this rank alone failed: the others would wait for it for ever
        end_job(2)
    return 2


_OOM_OPTIONS = {"train": "lower --batch-size or --hidden, or pick a smaller --model",
                "evaluate": "evaluate on another device (--device cpu)"}


def _is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(sign in text for sign in ("OutOfMemory", "out of memory", "RESOURCE_EXHAUSTED",
                                         "can't allocate memory"))


def _out_of_memory(command: str, exc: BaseException) -> str:
    what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    fix = _OOM_OPTIONS.get(command, "use a device with more memory")
    return f"out of memory ({what}); {fix}"


if __name__ == "__main__":
    sys.exit(main())
