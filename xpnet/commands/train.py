"""``xpnet train``: its options, and the run behind them.

``run_training`` is start-or-resume, then :meth:`Trainer.fit` with one small callback per
output (the epoch line, the JSON log, the checkpoint), then the plot and the final line.
Every bad input raises an :class:`~xpnet.errors.XPNetError` naming the option, before
training starts where it can be known then: every output is proven writable
(:func:`xpnet.outputs.check_writable`), ``--save`` is locked for the run
(:class:`xpnet.outputs.RunLock`), and hidden sizes whose weights cannot fit the device are
refused before anything is allocated.

Under an MPI launcher (``mpiexec -n 4 xpnet train``) the same command trains data-parallel
(:mod:`xpnet.distributed`): rank 0 alone prints and writes files, ``cuda``/``auto`` give rank
``r`` the GPU ``local_rank % GPUs``, each rank gets its share of the machine's cores
(:mod:`xpnet.threads`), and the ranks agree on any setup error before the first
collective, so all of them stop with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, TextIO

import numpy as np

from .. import distributed
from ..backend import Device
from ..checkpoint import load_checkpoint, save_checkpoint
from ..datasets import Dataset, dataset_key, load_dataset
from ..errors import ConfigError, XPNetError
from ..optim import OPTIMIZERS, Optimizer, make_optimizer
from ..outputs import RunLock, check_writable
from ..registry import ACTIVATION_NAMES, MODEL_DEFAULTS, MODEL_NAMES, build_model, model_help
from ..threads import share_cores
from ..training import EpochRecord, Trainer
from ..validate import DTYPES, check_choice, check_nonnegative, check_positive, check_size
from .common import DATA_DIR_HELP, DATASET_HELP, check_fits, command_device, dataset_record

__all__ = ["DEFAULTS", "RESUME_FIXED", "TrainOptions", "add_parser", "run", "run_training"]

# Defaults of ``xpnet train``: Adam at the book's rate on a 784-100-10 network reaches about
# 97.6% test accuracy in 10 epochs, a few seconds per epoch on a 2-core CPU.
DEFAULTS: dict[str, Any] = {
    "model": "mlp", "hidden": (100,), "activation": "relu", "weight_decay": 0.0,
    "dtype": "float32", "optimizer": "adam", "lr": None, "batch_size": 100, "seed": 0,
    "train_limit": None, "epochs": 10, "iters": None, "dataset": "mnist",
}
# Settings a resumed run must share with its checkpoint: they define the network, the
# optimizer state or the order of the batches.
RESUME_FIXED = ("model", "hidden", "activation", "weight_decay", "dtype", "optimizer",
                "batch_size", "seed", "train_limit", "dataset")
CONVOLUTIONAL = {"convnet": "conv-pool", "deepconvnet": "(conv-conv-pool)x3"}


@dataclass
class TrainOptions:
    """The options of ``xpnet train``; ``None`` means the default (or, resuming, the checkpoint's)."""

    device: str = "auto"
    model: str | None = None
    hidden: Sequence[int] | None = None
    activation: str | None = None
    weight_decay: float | None = None
    dtype: str | None = None
    optimizer: str | None = None
    lr: float | None = None
    batch_size: int | None = None
    seed: int | None = None
    train_limit: int | None = None
    epochs: int | None = None
    iters: int | None = None
    data_dir: str | None = None
    dataset: str | None = None
    save: str | None = None
    resume: str | None = None
    log: str | None = None
    plot: str | None = None
    quiet: bool = False
    jit: bool = False

    def given(self) -> dict[str, Any]:
        """The training settings set explicitly (not ``None``), hidden sizes as a tuple."""
        settings = {key: getattr(self, key) for key in DEFAULTS if getattr(self, key) is not None}
        if "hidden" in settings:
            settings["hidden"] = tuple(settings["hidden"])
        if "dataset" in settings:
            settings["dataset"] = dataset_key(settings["dataset"])
        return settings


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _check_settings(settings: dict[str, Any]) -> None:
    """Raise :class:`ConfigError`, naming the option, for a setting out of range."""
    for key in ("batch_size", "epochs", "iters", "train_limit"):
        if settings.get(key) is not None:
            check_size(_flag(key), settings[key])
    if not settings["hidden"]:
        raise ConfigError("--hidden needs at least one size")
    for size in settings["hidden"]:
        check_size("each --hidden size", size)
    if settings.get("lr") is not None:
        check_positive("--lr", settings["lr"])
    check_nonnegative("--weight-decay", settings["weight_decay"])
    check_choice("activation", settings["activation"], ACTIVATION_NAMES)
    check_choice("dtype", settings["dtype"], DTYPES)


def _check_output_paths(options: TrainOptions) -> None:
    """Fail before training, not after it, when an output cannot be written."""
    for flag, path in (("--save", options.save), ("--log", options.log), ("--plot", options.plot)):
        if path is not None:
            check_writable(flag, path)
    if options.plot is not None:
        from ..plotting import require_matplotlib

        require_matplotlib(options.plot)


def _start(dev: Device, given: dict[str, Any],
           data_dir: str | None) -> tuple[Any, Optimizer, dict[str, Any], int, Dataset]:
    """A new run: ``(network, optimizer, settings, iteration 0, data)`` from the defaults and
    ``given``; the network takes its input shape and class count from the data."""
    settings = {**DEFAULTS, **MODEL_DEFAULTS.get(given.get("model"), {}), **given}
    if "iters" in given:
        settings["epochs"] = None
    _check_settings(settings)
    data = _load_data(settings, data_dir)
    if settings["model"] in CONVOLUTIONAL and len(data.input_shape) != 3:
        raise ConfigError(f"--model {settings['model']} takes images (N, C, H, W), but data set "
                          f"{data.name} holds vectors of {data.input_shape[0]} values; use "
                          "--model mlp, or save the images as (N, C, H, W) or (N, H, W)")
    _check_memory(settings, dev, data)
    network = build_model(settings["model"], input_shape=data.input_shape,
                          hidden=settings["hidden"], output_size=data.num_classes,
                          activation=settings["activation"],
                          weight_decay=settings["weight_decay"], device=dev,
                          dtype=settings["dtype"], seed=settings["seed"])
    return network, make_optimizer(settings["optimizer"], settings["lr"]), settings, 0, data


def _check_memory(settings: dict[str, Any], dev: Device, data: Dataset) -> None:
    """Refuse, before allocating, hidden sizes whose weights and gradients alone exceed the
    memory of ``dev`` (the host's for CPU devices)."""
    # a lower bound: the fully connected weights (a convnet's first one takes at least one
    # feature), each with its gradient
    first = math.prod(data.input_shape) if settings["model"] not in CONVOLUTIONAL else 1
    sizes = [first, *settings["hidden"], data.num_classes]
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    needed = 2 * weights * (8 if settings["dtype"] == "float64" else 4)
    memory = _device_memory(dev)
    if memory is not None and needed > memory:
        hidden = " ".join(map(str, settings["hidden"]))
        raise ConfigError(f"--hidden {hidden} needs at least {_bytes(needed)} for its weights and "
                          f"their gradients, more than the {_bytes(memory)} of {dev.name}; lower "
                          "--hidden")


def _device_memory(dev: Device) -> int | None:
    """The bytes of memory ``dev``'s arrays live in (the host's RAM for CPU devices), or None
    where the library does not say."""
    if dev.name.startswith("cuda"):
        return dev.array_device.mem_info[1]
    if dev.name.startswith("torch:cuda"):
        import torch

        return torch.cuda.get_device_properties(dev.array_device).total_memory
    if dev.name.startswith("jax:") and not dev.name.startswith("jax:cpu"):
        return (dev.array_device.memory_stats() or {}).get("bytes_limit")
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None


def _bytes(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,} bytes"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _resume(path: str, dev: Device, given: dict[str, Any],
            data_dir: str | None) -> tuple[Any, Optimizer, dict[str, Any], int, Dataset]:
    """A resumed run: the checkpoint's network, optimizer, settings and data set, with this
    run's length and learning rate if given.

    A setting in ``RESUME_FIXED`` given with another value than the checkpoint's is an error:
    it would change the network, the optimizer or the batches the run continues with.
    """
    network, optimizer, meta = load_checkpoint(path, device=dev)
    saved = meta["extra"].get("settings")
    if not isinstance(saved, dict) or not isinstance(meta["iteration"], int) or optimizer is None:
        raise ConfigError(f"checkpoint {path} holds no training settings (it was not written "
                          "by xpnet train), so it cannot be resumed; evaluate it instead")
    settings = {**DEFAULTS, **saved, "hidden": tuple(saved.get("hidden", ()))}
    for key in RESUME_FIXED:
        if key in given and given[key] != settings[key]:
            theirs = " ".join(map(str, settings[key])) if key == "hidden" else settings[key]
            ours = " ".join(map(str, given[key])) if key == "hidden" else given[key]
            raise ConfigError(f"checkpoint {path} was trained with {_flag(key)} {theirs}, but this "
                              f"run asks for {_flag(key)} {ours}; drop {_flag(key)} to resume, or "
                              "start a new run without --resume")
    if "lr" in given:
        settings["lr"] = given["lr"]
    if "epochs" in given or "iters" in given:
        settings["epochs"], settings["iters"] = given.get("epochs"), given.get("iters")
    _check_settings(settings)
    if "lr" in given:
        optimizer.lr = settings["lr"]
    data = _load_data(settings, data_dir)
    check_fits(network, data, f"checkpoint {path}")
    return network, optimizer, settings, meta["iteration"], data


def _describe(settings: dict[str, Any], optimizer: Optimizer, data: Dataset) -> str:
    hidden = "-".join(str(s) for s in settings["hidden"])
    convolutions = CONVOLUTIONAL.get(settings["model"])
    shape, classes = data.input_shape, data.num_classes
    layers = (f"{'x'.join(map(str, shape))}-{convolutions}-{hidden}-{classes}"
              if convolutions else f"{math.prod(shape)}-{hidden}-{classes}")
    decay = f", weight decay {settings['weight_decay']:g}" if settings["weight_decay"] else ""
    length = (_plural(settings["iters"], "iteration") if settings.get("iters")
              else _plural(settings["epochs"], "epoch"))
    return (f"model {settings['model']} {layers} {settings['activation']}{decay}, optimizer "
            f"{optimizer.name} lr {optimizer.lr:g}, batch {settings['batch_size']}, {length}, "
            f"seed {settings['seed']}")


def _load_data(settings: dict[str, Any], data_dir: str | None) -> Dataset:
    data = load_dataset(settings["dataset"], dtype=settings["dtype"], data_dir=data_dir)
    limit = settings.get("train_limit")
    if limit is not None:
        data.train = (data.train[0][:limit], data.train[1][:limit])
    return data


# ------------------------------------------------------------------ one callback per output

def _epoch_line(say: Callable[[str], None]) -> Callable[[EpochRecord], None]:
    def print_epoch(record: EpochRecord) -> None:
        say(f"epoch {record.epoch:>3} | iter {record.iterations:>6} | loss {record.loss:.4f} | "
            f"train acc, test acc | {record.train_acc:.4f}, {record.test_acc:.4f} | "
            f"{record.seconds:.1f} s, {record.samples_per_s:,.0f} samples/s")
    return print_epoch


def _json_log(log_file: TextIO) -> Callable[[EpochRecord], None]:
    def write_record(record: EpochRecord) -> None:
        log_file.write(json.dumps(record.as_dict()) + "\n")
        log_file.flush()
    return write_record


def _checkpoint(path: str, trainer: Trainer, settings: dict[str, Any],
                data: Dataset) -> Callable[[EpochRecord], None]:
    saved = {key: settings[key] for key in DEFAULTS}
    saved["hidden"] = list(saved["hidden"])
    dataset = dataset_record(data)

    def save(record: EpochRecord) -> None:
        save_checkpoint(path, trainer.network, trainer.optimizer, epoch=record.epoch,
                        iteration=trainer.iteration, seed=settings["seed"],
                        extra={"settings": saved, "test_acc": record.test_acc,
                               "dataset": dataset})
    return save


def _open_log(path: str, resuming: bool) -> TextIO:
    # a resumed run continues its log; a new run starts a new one
    try:
        return open(path, "a" if resuming else "w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --log {path}: {exc}") from None


def run_training(options: TrainOptions, *, out: TextIO | None = None) -> list[EpochRecord]:
    """Run ``xpnet train``: build or resume, train, print, and write the requested files.

    Prints to ``out`` (stdout by default): the device line first, one line per epoch
    (unless ``quiet``), and the final test accuracy; under a launcher, rank 0 alone prints
    and writes. Returns the epoch records of this run.
    """
    comm = distributed.init()
    out = out or sys.stdout

    def say(line: str) -> None:
        if comm.is_root:
            print(line, file=out, flush=True)

    failure, log_file, threads = None, None, None
    with contextlib.ExitStack() as cleanup:  # the lock and the log, whatever ends the run
        try:  # what one rank may fail at alone; then the ranks agree before the first collective
            given = options.given()
            if given.get("epochs") is not None and given.get("iters") is not None:
                raise ConfigError("--epochs and --iters are mutually exclusive; give one of them")
            if comm.is_root:
                _check_output_paths(options)
                if options.save is not None:
                    cleanup.enter_context(RunLock(options.save))  # one run per checkpoint file
            dev = command_device(options.device, comm)
            threads = share_cores(comm.local_size)  # after the device's library is loaded
            network, optimizer, settings, iteration, data = (
                _resume(options.resume, dev, given, options.data_dir)
                if options.resume is not None else _start(dev, given, options.data_dir))
            if options.log and comm.is_root:
                log_file = cleanup.enter_context(_open_log(options.log, options.resume is not None))
        except XPNetError as exc:
            failure = exc
        comm.agree(failure)
        trainer = Trainer(network, optimizer, data.train, data.test,
                          batch_size=settings["batch_size"], seed=settings["seed"], comm=comm,
                          progress=not options.quiet and sys.stderr.isatty(), jit=options.jit)
        return _train(trainer, options, settings, iteration, dev, say, log_file, data, threads)


def _train(trainer: Trainer, options: TrainOptions, settings: dict[str, Any], iteration: int,
           dev: Device, say: Callable[[str], None], log_file: TextIO | None,
           data: Dataset, threads: int | None) -> list[EpochRecord]:
    comm = trainer.comm
    processes = (f", {comm.size} processes (data-parallel, gradients by "
                 f"{comm.transport_name(dev)})" if comm.size > 1 else "")
    if threads is not None:
        processes += f", {_plural(threads, 'thread')} each"
    compiled = ", each step compiled (--jit)" if options.jit else ""
    say(f"xpnet: training on {dev.name} ({dev.backend}), {settings['dtype']}{processes}{compiled}")
    if not options.quiet:
        if data.name != "mnist":
            say(f"data set {data.name}: {data.train[0].shape[0]} training and "
                f"{data.test[0].shape[0]} test samples of {'x'.join(map(str, data.input_shape))}, "
                f"{data.num_classes} classes")
        say(_describe(settings, trainer.optimizer, data))
    trainer.iteration = iteration
    target = (settings["iters"] if settings.get("iters")
              else settings["epochs"] * trainer.iterations_per_epoch)
    if iteration >= target:  # the same on every rank
        comm.agree(ConfigError(f"checkpoint {options.resume} is already at iteration {iteration} "
                               f"of {target}; ask for more with --epochs or --iters"))
    if options.resume is not None and not options.quiet:
        say(f"resuming from {options.resume} at iteration {iteration} "
            f"(epoch {iteration // trainer.iterations_per_epoch})")

    callbacks = [] if options.quiet else [_epoch_line(say)]
    if log_file is not None:
        callbacks.append(_json_log(log_file))
    if options.save is not None and comm.is_root:
        callbacks.append(_checkpoint(options.save, trainer, settings, data))
    started = time.perf_counter()
    # NumPy's overflow warnings would come before the one line saying the loss diverged
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        records = trainer.fit(iterations=target, on_epoch=callbacks)
    if options.plot is not None and comm.is_root:
        from ..plotting import plot_history

        plot_history(trainer.history, options.plot, loss_history=trainer.loss_history)
    final = records[-1]
    say(f"final test accuracy: {final.test_acc:.4f} (epoch {final.epoch}, "
        f"{final.iterations} iterations, {time.perf_counter() - started:.1f} s)")
    return records


# ------------------------------------------------------------------ the subcommand

def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``xpnet train`` and its options to the ``xpnet`` parser's subcommands."""
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
    train.set_defaults(run=run, out_of_memory_fix="lower --batch-size or --hidden, or pick a "
                                                  "smaller --model")


def run(args: argparse.Namespace) -> int:
    """Run ``xpnet train`` with the parsed ``args``; its exit status."""
    options = {field.name: getattr(args, field.name) for field in fields(TrainOptions)}
    xpnet_logger = logging.getLogger("xpnet")
    level = xpnet_logger.level
    if args.quiet:  # the device line says which device: no warning why it is not a GPU
        xpnet_logger.setLevel(logging.ERROR)
    try:
        run_training(TrainOptions(**options))
    finally:
        xpnet_logger.setLevel(level)
    return 0
