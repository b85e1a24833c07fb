"""Training on a device: the :class:`Trainer` loop and :func:`run_training`, behind ``xpnet train``.

What runs where (docs/training.md says why):

- The whole data set is sent to the device once and reshaped once to the network's
  ``input_shape``; mini-batches are gathered there with ``xp.take`` from a permutation that
  is drawn there too.
- :meth:`Trainer.step` (gradient, optimizer update, keeping the mini-batch loss) never
  waits for the device: no ``float()``, no ``.item()``, no transfer. The losses stay 0-d
  device arrays until the end of the epoch.
- Once per epoch, at the log point, the epoch's losses come to the host in one transfer,
  are checked for NaN/inf, and the accuracies are counted with ``count_correct`` in large
  batches. That is the only time the host waits.

Mini-batches: epoch ``e`` (counted from 0) visits the training set in the order of a
permutation drawn by ``Generator(device, seed=epoch_seed(seed, e))``, ``batch_size`` samples
at a time; the last ``N % batch_size`` samples of that order are left out of the epoch, so
every step has the same shape. The order depends only on ``(seed, e)``, so a run resumed
from a checkpoint, even in the middle of an epoch, draws exactly the batches the
uninterrupted run would have drawn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import models
from .backend import Array, Device, to_numpy
from .backend import device as resolve_device
from .errors import ConfigError, XPNetError
from .optim import Optimizer, make_optimizer
from .rng import Generator

__all__ = ["EpochRecord", "Trainer", "TrainingError", "TrainOptions", "DEFAULTS", "epoch_seed", "send_dataset",
           "run_training", "evaluate_checkpoint"]


class TrainingError(XPNetError, ArithmeticError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did (one line of ``--log``'s JSON lines).

    ``iterations`` counts the updates since the start of the run (the book's ``i``);
    ``loss`` is the mean mini-batch loss over the epoch; ``seconds`` is the epoch's wall
    time, evaluation included; ``samples_per_s`` is training samples per second of training.
    """

    epoch: int
    iterations: int
    loss: float
    train_acc: float
    test_acc: float
    seconds: float
    samples_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# rows per evaluation call: large enough to keep a GPU busy, small enough that a convnet's
# im2col windows (about 45 KB per image) stay in memory (10000 rows took 3 GB and ran slower)
EVAL_BATCH_SIZE = 2000


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s batch order, a function of ``(seed, epoch)`` alone."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def send_dataset(network: Any, x: Any, t: Any) -> tuple[Array, Array]:
    """``(x, t)`` on ``network``'s device: ``x`` in its dtype shaped ``(N, *input_shape)``,
    integer labels as int64 (one-hot rows in the network's dtype)."""
    dev = network.device
    x = dev.send(x, network.dtype)
    shape = (x.shape[0], *network.input_shape)
    if tuple(x.shape) != shape:
        x = dev.xp.reshape(x, shape)
    return x, dev.send(t, "int64" if len(t.shape) == 1 else network.dtype)


class Trainer:
    """Mini-batch training of ``network`` with ``optimizer`` on the network's device.

    ``train`` and ``test`` are ``(x, t)`` pairs of any supported library (host NumPy is
    usual), with ``t`` integer labels or one-hot rows. They are sent to the network's device
    once, ``x`` reshaped to ``(N, *network.input_shape)`` and cast to the network's dtype.
    ``iteration`` is the number of updates done; set it (from a checkpoint) to resume.
    ``progress`` shows a tqdm bar on stderr, meant for interactive terminals.
    """

    def __init__(self, network: Any, optimizer: Optimizer, train: tuple[Any, Any],
                 test: tuple[Any, Any], *, batch_size: int = 100, seed: int = 0,
                 eval_batch_size: int = EVAL_BATCH_SIZE, progress: bool = False) -> None:
        self.network = network
        self.optimizer = optimizer
        # the book names it lastLayer in TwoLayerNet and last_layer in MultiLayerNet
        self._last_layer = getattr(network, "lastLayer", None) or getattr(network, "last_layer", None)
        if self._last_layer is None:
            raise ConfigError(f"{type(network).__name__} has no lastLayer (its loss layer, e.g. "
                              "SoftmaxWithLoss), where Trainer reads each batch's loss")
        self.device: Device = network.device
        self.batch_size = models.check_size("batch_size", batch_size)
        self.eval_batch_size = models.check_size("eval_batch_size", eval_batch_size)
        self.seed = int(seed)
        self.progress = progress
        self.x_train, self.t_train = self._send(*train)
        self.x_test, self.t_test = self._send(*test)
        n = self.x_train.shape[0]
        if self.batch_size > n:
            raise ConfigError(f"batch size {self.batch_size} is larger than the training set "
                              f"({n} samples); use a batch size of at most {n}")
        self.iterations_per_epoch = n // self.batch_size
        self.iteration = 0
        self.history: list[EpochRecord] = []
        self.loss_history: list[float] = []  # every mini-batch loss, as the book's train_loss_list
        self._losses: list[Array] = []  # this epoch's losses, still on the device

    def _send(self, x: Any, t: Any) -> tuple[Array, Array]:
        return send_dataset(self.network, x, t)

    def step(self, x_batch: Array, t_batch: Array) -> None:
        """One update: gradient, optimizer step, and the batch loss kept on the device."""
        with self.device:
            grads = self.network.gradient(x_batch, t_batch)
            self.optimizer.update(self.network.params, grads)
        # the loss gradient's forward pass left in the last layer: a second forward pass (as
        # the book's loop does) would cost a third of the step. It is the data loss (cross
        # entropy), without a weight-decay penalty.
        self._losses.append(self._last_layer.loss)
        self.iteration += 1

    def batch_order(self, epoch: int) -> Array:
        """Epoch ``epoch``'s (from 0) permutation of the training set, drawn on the device."""
        return Generator(self.device, epoch_seed(self.seed, epoch)).permutation(self.x_train.shape[0])

    def fit(self, *, epochs: int | None = None, iterations: int | None = None,
            on_epoch: Callable[[EpochRecord], None] | None = None) -> list[EpochRecord]:
        """Train until ``epochs`` epochs (or ``iterations`` updates) are done in total.

        Counts include what an earlier run did (``self.iteration``), so a resumed trainer
        finishes where the uninterrupted run would. ``on_epoch`` is called with each
        :class:`EpochRecord` (to print, log or save a checkpoint). Returns the new records.
        """
        if (epochs is None) == (iterations is None):
            raise ConfigError("give the length of training as epochs or as iterations, not both")
        if epochs is not None:
            iterations = models.check_size("epochs", epochs) * self.iterations_per_epoch
        target = models.check_size("iterations", iterations)
        per_epoch, batch = self.iterations_per_epoch, self.batch_size
        xp = self.device.xp
        records = []
        while self.iteration < target:
            epoch = self.iteration // per_epoch
            start = self.iteration
            stop = min((epoch + 1) * per_epoch, target)
            started = time.perf_counter()
            order = self.batch_order(epoch)
            # entering the device makes it CuPy's current GPU, where xp.take allocates
            with self.device, self._progress_bar(epoch + 1, (stop - start) * batch) as bar:
                for i in range(start - epoch * per_epoch, stop - epoch * per_epoch):
                    indices = order[i * batch:(i + 1) * batch]
                    self.step(xp.take(self.x_train, indices, axis=0),
                              xp.take(self.t_train, indices, axis=0))
                    if bar is not None:
                        bar.update(batch)
            record = self._end_epoch(epoch + 1, start, started)
            records.append(record)
            if on_epoch is not None:
                on_epoch(record)
        return records

    def _progress_bar(self, epoch: int, total: int) -> Any:
        if not self.progress:
            return contextlib.nullcontext()
        from tqdm import tqdm

        # The previous epoch's loss: the current one would need a sync per refresh.
        postfix = f"loss {self.history[-1].loss:.4f}" if self.history else None
        return tqdm(total=total, desc=f"epoch {epoch}", unit="samples", unit_scale=True,
                    leave=False, file=sys.stderr, postfix=postfix, dynamic_ncols=True)

    def _end_epoch(self, epoch: int, start: int, started: float) -> EpochRecord:
        """The epoch's log point: the one place the host waits for the device."""
        xp = self.device.xp
        with self.device:
            losses = to_numpy(xp.stack(self._losses)).astype(np.float64)
        self._losses = []
        trained = time.perf_counter()
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            first = start + int(bad[0]) + 1  # iterations are numbered from 1 in messages
            raise TrainingError(
                f"loss became {losses[bad[0]]} at iteration {first}, during epoch {epoch} "
                f"(iterations {start + 1}-{start + losses.size}); training stopped. Lower the "
                "learning rate (--lr), or pick another optimizer")
        self.loss_history.extend(losses.tolist())
        record = EpochRecord(
            epoch=epoch, iterations=self.iteration, loss=float(losses.mean()),
            train_acc=self.accuracy(self.x_train, self.t_train),
            test_acc=self.accuracy(self.x_test, self.t_test),
            seconds=time.perf_counter() - started,
            samples_per_s=losses.size * self.batch_size / max(trained - started, 1e-9))
        self.history.append(record)
        return record

    def accuracy(self, x: Array, t: Array) -> float:
        """Fraction of ``x`` classified as ``t``, counted on the device ``eval_batch_size`` rows at a time."""
        correct = self.network.count_correct(x, t, min(self.eval_batch_size, x.shape[0]))
        return int(to_numpy(correct)) / x.shape[0]


# --------------------------------------------------------------------------- the command

# Defaults of ``xpnet train``: Adam at the book's rate on a 784-100-10 network reaches about
# 97.6% test accuracy in 10 epochs, a few seconds per epoch on a 2-core CPU.
DEFAULTS: dict[str, Any] = {
    "model": "mlp", "hidden": (100,), "activation": "relu", "weight_decay": 0.0,
    "dtype": "float32", "optimizer": "adam", "lr": None, "batch_size": 100, "seed": 0,
    "train_limit": None, "epochs": 10, "iters": None,
}
# Settings a resumed run must share with its checkpoint: they define the network, the
# optimizer state or the order of the batches.
RESUME_FIXED = ("model", "hidden", "activation", "weight_decay", "dtype", "optimizer",
                "batch_size", "seed", "train_limit")
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


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
    save: str | None = None
    resume: str | None = None
    log: str | None = None
    plot: str | None = None
    quiet: bool = False

    def given(self) -> dict[str, Any]:
        """The training settings set explicitly (not ``None``), hidden sizes as a tuple."""
        settings = {key: getattr(self, key) for key in DEFAULTS if getattr(self, key) is not None}
        if "hidden" in settings:
            settings["hidden"] = tuple(settings["hidden"])
        return settings


def _check_settings(settings: dict[str, Any]) -> None:
    """Raise :class:`ConfigError`, naming the option, for a non-positive size, rate or length."""
    for key in ("batch_size", "epochs", "iters", "train_limit"):
        if settings.get(key) is not None:
            models.check_size("--" + key.replace("_", "-"), settings[key])
    if not settings["hidden"]:
        raise ConfigError("--hidden needs at least one size")
    for size in settings["hidden"]:
        models.check_size("each --hidden size", size)
    lr = settings.get("lr")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {lr!r}")
    decay = settings["weight_decay"]
    if not (math.isfinite(decay) and decay >= 0):
        raise ConfigError(f"--weight-decay must be zero or a positive number, got {decay!r}")
    if settings["activation"] not in ("relu", "sigmoid"):
        raise ConfigError(f"unknown activation {settings['activation']!r}; choose relu or sigmoid")
    if settings["dtype"] not in ("float32", "float64"):
        raise ConfigError(f"unknown dtype {settings['dtype']!r}; choose float32 or float64")


def _check_output_paths(options: TrainOptions) -> None:
    """Fail before training, not after it, when an output cannot be written."""
    for flag, path in (("--save", options.save), ("--log", options.log), ("--plot", options.plot)):
        if path is None:
            continue
        folder = Path(path).expanduser().resolve().parent
        if not folder.is_dir():
            raise ConfigError(f"{flag} {path}: folder {folder} does not exist; create it first")
    if options.plot is not None:
        from .plotting import require_matplotlib

        require_matplotlib(options.plot)


def _build_network(settings: dict[str, Any], dev: Device) -> Any:
    """The network ``settings`` describe, initialised from ``settings["seed"]``."""
    return models.build_model(settings["model"], input_shape=IMAGE_SHAPE, hidden=settings["hidden"],
                              output_size=NUM_CLASSES, activation=settings["activation"],
                              weight_decay=settings["weight_decay"], device=dev,
                              dtype=settings["dtype"], seed=settings["seed"])


def _describe(settings: dict[str, Any], optimizer: Optimizer) -> str:
    hidden = "-".join(str(s) for s in settings["hidden"])
    layers = (f"{'x'.join(map(str, IMAGE_SHAPE))}-conv-pool-{hidden}-{NUM_CLASSES}"
              if settings["model"] == "convnet"
              else f"{IMAGE_SHAPE[1] * IMAGE_SHAPE[2]}-{hidden}-{NUM_CLASSES}")
    decay = f", weight decay {settings['weight_decay']:g}" if settings["weight_decay"] else ""
    length = (f"{settings['iters']} iterations" if settings.get("iters")
              else f"{settings['epochs']} epochs")
    return (f"model {settings['model']} {layers} {settings['activation']}{decay}, optimizer "
            f"{optimizer.name} lr {optimizer.lr:g}, batch {settings['batch_size']}, {length}, "
            f"seed {settings['seed']}")


def _training_device(spec: str | Device) -> Device:
    dev = resolve_device(spec)
    if dev.name == "torch:meta":
        raise ConfigError("torch:meta holds shapes but no values, so nothing can be trained or "
                          "measured there (it exists to find host syncs in tests); use torch:cpu")
    return dev


def _load_data(settings: dict[str, Any], data_dir: str | None) -> tuple[tuple, tuple]:
    from .datasets import load_mnist

    (x_train, t_train), test = load_mnist(dtype=settings["dtype"], data_dir=data_dir)
    limit = settings.get("train_limit")
    if limit is not None:
        x_train, t_train = x_train[:limit], t_train[:limit]
    return (x_train, t_train), test


def run_training(options: TrainOptions, *, out: TextIO | None = None) -> list[EpochRecord]:
    """Run ``xpnet train``: build or resume, train, print, and write the requested files.

    Prints to ``out`` (stdout by default): the device line first, one line per epoch
    (unless ``quiet``), and the final test accuracy. Returns the epoch records of this run.
    Every bad input raises an :class:`~xpnet.errors.XPNetError` before training starts.
    """
    from .checkpoint import load_checkpoint, save_checkpoint

    out = out or sys.stdout
    given = options.given()
    if given.get("epochs") is not None and given.get("iters") is not None:
        raise ConfigError("--epochs and --iters are mutually exclusive; give one of them")
    _check_output_paths(options)
    dev = _training_device(options.device)
    if options.resume is not None:
        network, optimizer, meta = load_checkpoint(options.resume, device=dev)
        settings = _resumed_settings(options.resume, meta, given)
        _check_settings(settings)
        if "lr" in given:
            optimizer.lr = settings["lr"]
        iteration = meta["iteration"]
    else:
        settings = {**DEFAULTS, **given}
        if "iters" in given:
            settings["epochs"] = None
        _check_settings(settings)
        network = _build_network(settings, dev)
        optimizer = make_optimizer(settings["optimizer"], settings["lr"])
        iteration = 0

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    say(f"xpnet: training on {dev.name} ({dev.backend}), {settings['dtype']}")
    if not options.quiet:
        say(_describe(settings, optimizer))
    train, test = _load_data(settings, options.data_dir)
    trainer = Trainer(network, optimizer, train, test, batch_size=settings["batch_size"],
                      seed=settings["seed"], progress=not options.quiet and sys.stderr.isatty())
    trainer.iteration = iteration
    target = (settings["iters"] if settings.get("iters")
              else settings["epochs"] * trainer.iterations_per_epoch)
    if iteration >= target:
        raise ConfigError(f"checkpoint {options.resume} is already at iteration {iteration} of "
                          f"{target}; ask for more with --epochs or --iters")
    if options.resume is not None and not options.quiet:
        say(f"resuming from {options.resume} at iteration {iteration} "
            f"(epoch {iteration // trainer.iterations_per_epoch})")
    saved = {key: settings[key] for key in DEFAULTS}
    saved["hidden"] = list(saved["hidden"])
    # a resumed run continues its log; a new run starts a new one
    log_mode = "a" if options.resume is not None else "w"
    try:
        log_file = open(options.log, log_mode, encoding="utf-8") if options.log else None
    except OSError as exc:
        raise ConfigError(f"cannot write --log {options.log}: {exc}") from None

    def on_epoch(record: EpochRecord) -> None:
        if not options.quiet:
            say(f"epoch {record.epoch:>3} | iter {record.iterations:>6} | loss "
                f"{record.loss:.4f} | train acc, test acc | {record.train_acc:.4f}, "
                f"{record.test_acc:.4f} | {record.seconds:.1f} s, "
                f"{record.samples_per_s:,.0f} samples/s")
        if log_file is not None:
            log_file.write(json.dumps(record.as_dict()) + "\n")
            log_file.flush()
        if options.save is not None:
            save_checkpoint(options.save, network, optimizer, epoch=record.epoch,
                            iteration=trainer.iteration, seed=settings["seed"],
                            extra={"settings": saved, "test_acc": record.test_acc})

    started = time.perf_counter()
    try:
        records = trainer.fit(iterations=target, on_epoch=on_epoch)
    finally:
        if log_file is not None:
            log_file.close()
    if options.plot is not None:
        from .plotting import plot_history

        plot_history(trainer.history, options.plot, loss_history=trainer.loss_history)
    final = records[-1]
    say(f"final test accuracy: {final.test_acc:.4f} (epoch {final.epoch}, "
        f"{final.iterations} iterations, {time.perf_counter() - started:.1f} s)")
    return records


def _resumed_settings(path: str, meta: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's settings with this run's length and learning rate, if given.

    A setting in ``RESUME_FIXED`` given with another value than the checkpoint's is an error:
    it would change the network, the optimizer or the batches the run continues with.
    """
    saved = meta["extra"].get("settings")
    if not isinstance(saved, dict) or not isinstance(meta["iteration"], int):
        raise ConfigError(f"checkpoint {path} holds no training settings (it was not written "
                          "by xpnet train), so it cannot be resumed; evaluate it instead")
    settings = {**DEFAULTS, **saved, "hidden": tuple(saved.get("hidden", ()))}
    for key in RESUME_FIXED:
        if key in given and given[key] != settings[key]:
            flag = "--" + key.replace("_", "-")
            theirs = " ".join(map(str, settings[key])) if key == "hidden" else settings[key]
            ours = " ".join(map(str, given[key])) if key == "hidden" else given[key]
            raise ConfigError(f"checkpoint {path} was trained with {flag} {theirs}, but this run "
                              f"asks for {flag} {ours}; drop {flag} to resume, or start a new "
                              "run without --resume")
    if "lr" in given:
        settings["lr"] = given["lr"]
    if "epochs" in given or "iters" in given:
        settings["epochs"], settings["iters"] = given.get("epochs"), given.get("iters")
    return settings


def evaluate_checkpoint(path: str, *, device: str | Device = "cpu", data_dir: str | None = None,
                        eval_batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, int, int]:
    """``(accuracy, correct, total)`` of the network saved in ``path`` on the MNIST test set."""
    from .checkpoint import load_checkpoint
    from .datasets import load_mnist

    network, _, _ = load_checkpoint(path, device=_training_device(device))
    _, test = load_mnist(dtype=network.dtype, data_dir=data_dir)
    x, t = send_dataset(network, *test)
    correct = int(to_numpy(network.count_correct(x, t, min(eval_batch_size, x.shape[0]))))
    return correct / x.shape[0], correct, x.shape[0]

