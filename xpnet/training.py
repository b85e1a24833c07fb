"""Training on a device: the book's mini-batch loop as the :class:`Trainer` (``xpnet train``'s
options, printing and files are :mod:`xpnet.commands`).

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
at a time, leaving out the last ``N % batch_size`` (every step has one shape). The order,
like the layers' random numbers, depends only on where training stands, so a resumed run
draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Array, Device, to_numpy
from .compiled import compile_step
from .distributed import Communicator, DistributedOptimizer
from .errors import ConfigError, XPNetError
from .layers import last_layer_of
from .optim import Optimizer
from .rng import Generator
from .validate import check_size

__all__ = ["EpochRecord", "Trainer", "TrainingError", "epoch_seed", "send_dataset", "EVAL_BATCH_SIZE",
           "eval_batch_size_of"]


class TrainingError(XPNetError, ArithmeticError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did (one line of ``--log``'s JSON lines).

    ``iterations`` counts the updates since the start of the run (the book's ``i``); ``loss``
    is the epoch's mean mini-batch loss; ``seconds`` its wall time, evaluation included;
    ``samples_per_s`` training samples per second of training.
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


EpochCallback = Callable[[EpochRecord], None]

# rows per evaluation call for a network that names none (``eval_batch_size``): large enough to
# keep a GPU busy, small enough that a convnet's windows stay in memory
EVAL_BATCH_SIZE = 2000


def eval_batch_size_of(network: Any, given: int | None = None) -> int:
    """``given`` if set, else the rows ``network`` asks to be scored at a time (its
    ``eval_batch_size``: 100 for the convnets), else :data:`EVAL_BATCH_SIZE`."""
    if given is None:
        given = getattr(network, "eval_batch_size", EVAL_BATCH_SIZE)
    return check_size("eval_batch_size", given)


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
    Accuracies are counted ``eval_batch_size`` rows at a time (:func:`eval_batch_size_of`).
    ``progress`` shows a tqdm bar on stderr, meant for interactive terminals.

    With ``comm`` (an :class:`xpnet.distributed.Communicator` of several processes) training
    is data-parallel and its results do not depend on the number of processes: every process
    holds the whole data set and draws the same batch order; ``batch_size`` is the global
    batch, of which rank ``r`` takes the ``r``-th contiguous share; gradients are averaged
    (:class:`~xpnet.distributed.DistributedOptimizer`); layers with ``batch_statistics`` use
    the global batch's; losses and accuracies are combined over the ranks (accuracies as counts).

    Before every step the layers' ``random_streams`` (Dropout's masks) get generators
    reseeded (:meth:`~xpnet.Generator.reseed`) to the stream of ``(seed, epoch, step in the
    epoch, layer)``: a run resumed anywhere, even mid-epoch, repeats the uninterrupted run;
    every rank draws the same numbers and takes its rows.
    ``jit=True`` runs each step as one compiled program (:mod:`xpnet.compiled`; JAX, one
    process). Which step runs (eager, compiled, data-parallel) is picked once, here.
    """

    def __init__(self, network: Any, optimizer: Optimizer, train: tuple[Any, Any],
                 test: tuple[Any, Any], *, batch_size: int = 100, seed: int = 0,
                 eval_batch_size: int | None = None, progress: bool = False,
                 comm: Communicator | None = None, jit: bool = False) -> None:
        self.network = network
        self.optimizer = optimizer
        self.comm = comm if comm is not None else Communicator()
        self._last_layer = last_layer_of(network)
        self.device: Device = network.device
        self.seed = int(seed)
        self.progress = progress
        failure = None
        try:  # what may fail on one rank alone (its data, its device): the ranks agree first
            self._update = self._pick_update(jit)
            self._take_data(train, test, batch_size, eval_batch_size)
            self._streams = []  # (generator, (layer position, stream index)), reseeded each step
            for position, layer in enumerate(network.layers.values()):
                for index, name in enumerate(layer.random_streams):
                    setattr(layer, name, Generator(self.device, self.seed))
                    self._streams.append((getattr(layer, name), (position, index)))
        except XPNetError as exc:
            failure = exc
        self.comm.agree(failure)
        if self.comm.size > 1:
            self._join_replicas()
        self.iterations_per_epoch = self.x_train.shape[0] // self.batch_size
        self.iteration = 0
        self.history: list[EpochRecord] = []
        self.loss_history: list[float] = []  # every mini-batch loss, as the book's train_loss_list
        self._losses: list[Array] = []  # this epoch's losses, still on the device

    def _pick_update(self, jit: bool) -> Callable[[Array, Array], Any]:
        """The update of one step: compiled, eager, or eager with gradients averaged over the ranks."""
        if self.comm.size > 1 and self.device.backend == "jax":  # both problems at once
            also = " nor --jit (it compiles a one-process step)" if jit else ""
            raise ConfigError("data-parallel training does not take JAX arrays yet (it packs "
                              "gradients into a reused buffer; JAX's arrays are immutable)"
                              f"{also}; train JAX on one process, with or without --jit, or "
                              f"use cpu, cuda or torch{' without --jit' if jit else ''} on "
                              f"{self.comm.size} processes")
        if jit and self.comm.size > 1:
            raise ConfigError("--jit compiles a one-process step; leave it out to "
                              f"train on {self.comm.size} processes")
        if jit:
            return compile_step(self.network, self.optimizer)
        network, optimizer = self.network, self.optimizer
        if self.comm.size > 1:  # gradients averaged over the ranks before each update
            optimizer = DistributedOptimizer(optimizer, self.comm)

        def update(x: Array, t: Array) -> None:
            optimizer.update(network.params, network.gradient(x, t))
        return update

    def _take_data(self, train: tuple[Any, Any], test: tuple[Any, Any], batch_size: int,
                   eval_batch_size: int | None) -> None:
        self.batch_size = check_size("batch_size", batch_size)
        self.eval_batch_size = eval_batch_size_of(self.network, eval_batch_size)
        self.x_train, self.t_train = send_dataset(self.network, *train)
        self.x_test, self.t_test = send_dataset(self.network, *test)
        n, ranks = self.x_train.shape[0], self.comm.size
        if self.batch_size > n:
            raise ConfigError(f"batch size {self.batch_size} is larger than the training set "
                              f"({n} samples); use a batch size of at most {n}")
        if self.batch_size % ranks:
            raise ConfigError(f"batch size {self.batch_size} is not divisible by the {ranks} "
                              f"processes; use a multiple of {ranks} (it is the global batch)")
        self.share = self.batch_size // ranks  # this rank's rows of each global batch

    def _join_replicas(self) -> None:
        """Make this rank's network one replica of the job's: rank 0's weights, and the
        communicator in every layer that reduces over the batch or draws random numbers."""
        self.comm.broadcast_params(self.network.params)
        for layer in self.network.layers.values():
            if layer.batch_statistics or layer.random_streams:
                layer.replicas = self.comm

    def step(self, x_batch: Array, t_batch: Array) -> None:
        """One update: gradient (averaged over the ranks), optimizer step, and the batch loss
        kept on the device. With several ranks, the batch is this rank's share."""
        epoch, step = divmod(self.iteration, self.iterations_per_epoch)
        for generator, words in self._streams:
            generator.reseed(epoch, step, *words)
        with self.device:
            self._update(x_batch, t_batch)
        # left by the gradient's forward pass (a second one, as in the book's loop, would cost
        # a third of the step): the data loss, without a weight-decay penalty
        self._losses.append(self._last_layer.loss)
        self.iteration += 1

    def batch_order(self, epoch: int) -> Array:
        """Epoch ``epoch``'s (from 0) permutation of the training set, drawn on the device."""
        return Generator(self.device, epoch_seed(self.seed, epoch)).permutation(self.x_train.shape[0])

    def fit(self, *, epochs: int | None = None, iterations: int | None = None,
            on_epoch: EpochCallback | Sequence[EpochCallback] = ()) -> list[EpochRecord]:
        """Train until ``epochs`` epochs (or ``iterations`` updates) are done in total, counting
        what an earlier run did (``self.iteration``); return the new records. ``on_epoch`` (a
        callable, or several in order) gets each :class:`EpochRecord` (print, log, checkpoint)."""
        callbacks = [on_epoch] if callable(on_epoch) else list(on_epoch)
        if (epochs is None) == (iterations is None):
            raise ConfigError("give the length of training as epochs or as iterations, not both")
        if epochs is not None:
            iterations = check_size("epochs", epochs) * self.iterations_per_epoch
        target = check_size("iterations", iterations)
        per_epoch, batch = self.iterations_per_epoch, self.batch_size
        xp = self.device.xp
        records = []
        while self.iteration < target:
            start, epoch = self.iteration, self.iteration // per_epoch
            stop = min((epoch + 1) * per_epoch, target)
            started = time.perf_counter()
            order = self.batch_order(epoch)
            # entering the device makes it CuPy's current GPU, where xp.take allocates
            mine = self.comm.rank * self.share
            with self.device, self._progress_bar(epoch + 1, (stop - start) * batch) as bar:
                for i in range(start - epoch * per_epoch, stop - epoch * per_epoch):
                    first = i * batch + mine
                    indices = order[first:first + self.share]
                    self.step(xp.take(self.x_train, indices, axis=0),
                              xp.take(self.t_train, indices, axis=0))
                    if bar is not None:
                        bar.update(batch)
            record = self._end_epoch(epoch + 1, start, started)
            records.append(record)
            for callback in callbacks:
                callback(record)
        return records

    def _progress_bar(self, epoch: int, total: int) -> Any:
        if not self.progress or not self.comm.is_root:
            return contextlib.nullcontext()
        from tqdm import tqdm
        # The previous epoch's loss: the current one would need a sync per refresh.
        postfix = f"loss {self.history[-1].loss:.4f}" if self.history else None
        return tqdm(total=total, desc=f"epoch {epoch}", unit="samples", unit_scale=True,
                    leave=False, file=sys.stderr, postfix=postfix, dynamic_ncols=True)

    def _end_epoch(self, epoch: int, start: int, started: float) -> EpochRecord:
        """The epoch's log point: the one place the host waits for the device."""
        with self.device:
            losses = to_numpy(self.device.xp.stack(self._losses)).astype(np.float64)
        self._losses = []
        # the global batch's loss is the mean of the ranks' (equal shares); every rank then
        # sees the same losses, so a NaN stops every rank at once instead of leaving some waiting
        losses = self.comm.allreduce_sum(losses) / self.comm.size
        trained = time.perf_counter()
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            first = start + int(bad[0]) + 1  # iterations are numbered from 1 in messages
            raise TrainingError(f"loss became {losses[bad[0]]} at iteration {first}, during epoch "
                                f"{epoch} (iterations {start + 1}-{start + losses.size}); training "
                                "stopped. Lower the learning rate, or pick another optimizer")
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
        """Fraction of ``x`` classified as ``t``, counted on the device ``eval_batch_size`` rows
        at a time; with several ranks each counts its share of the rows and the counts are summed."""
        start, stop = self.comm.shard(x.shape[0])
        correct = int(to_numpy(self.network.count_correct(
            x[start:stop, ...], t[start:stop, ...], min(self.eval_batch_size, stop - start)))
        ) if stop > start else 0
        return self.comm.allreduce_sum(correct) / x.shape[0]
