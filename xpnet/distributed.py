"""Synchronous data-parallel training over MPI: one process per device, gradients averaged.

Launch the same script as N processes (``mpiexec -n 4 python train.py``); each builds its
network, then::

    comm = xpnet.distributed.init()            # one process without a launcher
    comm.broadcast_params(network.params)      # every rank starts from rank 0's weights
    optimizer = DistributedOptimizer(SGD(lr=0.1), comm)
    optimizer.update(network.params, network.gradient(x_share, t_share))   # mean over ranks

Messages are few and large: :meth:`Communicator.mean_gradients` copies each dtype's arrays
(keys in sorted order, so every rank agrees) into one buffer, kept from call to call, and
reduces it with one collective. Before that, the ranks compare an 8-byte hash of the arrays'
keys, shapes and dtypes in one tiny ``Allreduce``; when they differ, every rank raises
:class:`DistributedError` naming the key, instead of hanging or averaging unrelated numbers.

How the buffers travel (:mod:`xpnet.transports`: NCCL for CuPy, else a CUDA-aware MPI, else
host copies) is chosen once per device, logged once by rank 0 on the ``"xpnet"`` logger and
given by :meth:`Communicator.transport_name`; the pack layout is :mod:`xpnet.packing`'s.

:func:`init` also installs a ``sys.excepthook`` (as ChainerMN did): an uncaught exception on
any rank prints its error and calls ``MPI.COMM_WORLD.Abort(1)``, ending the whole job
instead of leaving the other ranks waiting in a collective forever.
"""

from __future__ import annotations

import logging
import numbers
import sys
from collections.abc import Mapping
from types import ModuleType, TracebackType
from typing import Any, NoReturn

import numpy as np  # host staging and the small control messages only

from .backend import Array, Device, namespace_of
from .errors import ConfigError, DistributedError, XPNetError
from .interrupts import launched_processes
from .packing import Layout, explain, make_layout, structure_key
from .transports import choose_transport
from .validate import check_has_values

__all__ = ["Communicator", "DistributedError", "SharedError", "DistributedOptimizer", "init", "current"]

logger = logging.getLogger("xpnet")


# Distinct array structures remembered per communicator (each entry is a few hundred bytes).
_LAYOUT_CACHE_SIZE = 64


class SharedError(XPNetError):
    """An error every rank of the job raised together (see :meth:`Communicator.agree`): each
    can exit on its own, with no rank left waiting in a collective."""


class Communicator:
    """The processes of one data-parallel job, and the collectives training needs.

    Wraps an mpi4py communicator (``init()`` uses ``MPI.COMM_WORLD``); with ``None`` it is a
    job of one process, where every collective returns its input. Every rank must call the
    same collectives in the same order, as with MPI itself.
    """

    def __init__(self, mpi_comm: Any | None = None) -> None:
        self._comm = mpi_comm
        self._mpi: ModuleType | None = None
        self.local_size = 1
        if mpi_comm is None:
            self.rank, self.size, self.local_rank = 0, 1, 0
        else:
            from mpi4py import MPI

            self._mpi = MPI
            self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
            node = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED)
            self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
            node.Free()
        self._layouts: dict[tuple, Layout] = {}
        self._transports: dict[str, Any] = {}
        self._check = np.empty(2, dtype=np.int64)

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    @property
    def is_root(self) -> bool:
        """True on rank 0: the one that prints, logs and writes files."""
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share ``[start, stop)`` of ``n`` items; the shares of the
        ranks, in rank order, cover ``range(n)`` and differ in length by at most one."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def barrier(self) -> None:
        """Wait until every rank has called ``barrier``."""
        if self._comm is not None:
            self._comm.Barrier()

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Root's ``obj`` (any picklable object) on every rank."""
        self._check_root(root)
        return obj if self._comm is None else self._comm.bcast(obj, root=root)

    def allgather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        return [obj] if self._comm is None else self._comm.allgather(obj)

    def abort(self, exit_code: int = 1) -> NoReturn:
        """End every rank of the job now with ``exit_code`` (a one-process job just exits).

        An error that ends one rank must end them all: a rank that merely exits leaves the
        others waiting in their next collective for ever.
        """
        sys.stdout.flush()
        sys.stderr.flush()
        if self._comm is None or self.size == 1:
            raise SystemExit(exit_code)
        self._mpi.COMM_WORLD.Abort(exit_code)
        raise SystemExit(exit_code)  # not reached: Abort ends the process

    def agree(self, error: XPNetError | None) -> None:
        """Raise :class:`SharedError` on every rank if any rank passes an error, else return.

        For the setup before training, where one rank may fail alone (its data file, its
        GPU): every rank calls this before the first collective, so all stop together. Each
        rank raises its own message, or the first failing rank's. A one-process job raises
        ``error`` itself.
        """
        if self._comm is None or self.size == 1:
            if error is not None:
                raise error  # alone, an error is shared as it is
            return
        messages = self.allgather_object(None if error is None else str(error))
        failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
        if failed:
            rank, message = failed[0]
            raise SharedError(str(error) if error is not None else f"rank {rank}: {message}")

    def allreduce_sum(self, x: Any) -> Any:
        """The sum over ranks of ``x``: a Python number (exact for ints), or an array of any
        backend and shape, returned on its device in its dtype (a new array; ``x`` itself in a
        one-process job). For metrics: sum counts, then divide, never average means."""
        if self._comm is None or self.size == 1:
            return x
        if isinstance(x, numbers.Number):
            return self._comm.allreduce(x, op=self._mpi.SUM)
        return self._reduce({"x": x}, "allreduce_sum", "array", mean=False)["x"]

    def mean_gradients(self, grads: Mapping[str, Array]) -> dict[str, Array]:
        """The mean over ranks of each array in ``grads``, keyed and ordered like ``grads``.

        Arrays of one dtype travel as one buffer, in sorted key order; ``grads`` is left as it
        was. Ranks whose dicts differ in keys, shapes or dtypes all raise
        :class:`DistributedError` naming the first differing key. In a one-process job it
        returns a new dict holding the same arrays.
        """
        if self._comm is None or self.size == 1:
            return dict(grads)
        return self._reduce(grads, "mean_gradients", "gradient", mean=True)

    def broadcast_params(self, params: dict[str, Array], root: int = 0) -> dict[str, Array]:
        """Make every rank's ``params`` hold root's values, and return ``params``.

        The entries of ``params`` are rebound to new arrays (so immutable backends work too),
        each on the device and in the dtype it had; root's entries stay as they are. Ranks
        whose dicts differ in keys, shapes or dtypes all raise :class:`DistributedError`.
        """
        self._check_root(root)
        if self._comm is None or self.size == 1:
            return params
        layout = self._agreed_layout(params, "broadcast_params", "parameter")
        if not layout.groups:
            return params
        device = layout.devices[0]
        transport = self._transport(device)
        xp = namespace_of(params[layout.groups[0].keys[0]])
        with device:
            for group in layout.groups:
                if self.rank == root:
                    buf = xp.concat([xp.reshape(params[key], (-1,)) for key in group.keys])
                else:
                    buf = xp.empty((group.size,), dtype=group.dtype, device=device.array_device)
                buf = transport.bcast(buf, root)
                if self.rank != root:
                    for key, shape, (start, stop) in zip(group.keys, group.shapes, group.bounds):
                        params[key] = xp.reshape(buf[start:stop], shape)
        return params

    def _check_root(self, root: int) -> None:
        if not (isinstance(root, int) and 0 <= root < self.size):
            raise ConfigError(f"root must be a rank from 0 to {self.size - 1}, got {root!r}")

    def _reduce(self, arrays: Mapping[str, Array], operation: str, noun: str,
                mean: bool) -> dict[str, Array]:
        """Sum (or mean) over ranks of each array: one collective per dtype."""
        layout = self._agreed_layout(arrays, operation, noun)
        if not layout.groups:
            return {}
        if mean:
            for group in layout.groups:
                if not group.name.startswith(("float", "complex")):
                    raise DistributedError(f"{operation}: {noun} {group.keys[0]!r} has dtype "
                                           f"{group.name}; averaging needs floating-point arrays")
        device = layout.devices[0]
        transport = self._transport(device)
        xp = namespace_of(arrays[layout.groups[0].keys[0]])
        reduced = {}
        with device:  # CuPy allocates on the current GPU, whatever device= says
            if not layout.buffers:
                layout.buffers = [xp.empty((group.size,), dtype=group.dtype,
                                           device=device.array_device) for group in layout.groups]
            for group, buf in zip(layout.groups, layout.buffers):
                for key, (start, stop) in zip(group.keys, group.bounds):
                    buf[start:stop] = xp.reshape(arrays[key], (-1,))
                buf = transport.allreduce(buf)
                # new arrays, not views of the reused buffer: the next call overwrites it
                for key, shape, (start, stop) in zip(group.keys, group.shapes, group.bounds):
                    piece = xp.reshape(buf[start:stop], shape)
                    reduced[key] = piece / self.size if mean else xp.asarray(piece, copy=True)
        return {key: reduced[key] for key in arrays}

    def _agreed_layout(self, arrays: Mapping[str, Array], operation: str, noun: str) -> Layout:
        """``arrays``' layout, once every rank has checked that all ranks have the same one."""
        try:
            structure = structure_key(arrays)
        except (AttributeError, TypeError) as exc:
            raise DistributedError(f"{operation} takes a dict of arrays with str keys "
                                   f"({exc})") from None
        layout = self._layouts.get(structure)
        if layout is None:
            if len(self._layouts) >= _LAYOUT_CACHE_SIZE:
                self._layouts.clear()
            layout = self._layouts[structure] = make_layout(arrays)
        # one 16-byte message: MIN of (digest, -digest) is (min, -max), equal only if all agree
        check = self._check
        check[0], check[1] = layout.digest, -layout.digest
        self._comm.Allreduce(self._mpi.IN_PLACE, check, op=self._mpi.MIN)
        if check[0] != -check[1]:
            raise DistributedError(explain(self._comm.allgather(layout.manifest), operation, noun))
        # the ranks agree, so these checks fail on every rank alike
        if len(layout.devices) > 1:
            raise DistributedError(f"{operation}: the arrays are on several devices "
                                   f"({', '.join(d.name for d in layout.devices)}); keep a "
                                   "model's arrays on one device")
        if layout.devices:
            check_has_values(layout.devices[0], operation, DistributedError)
        return layout

    def _transport(self, device: Device) -> Any:
        """How ``device``'s buffers travel: chosen on first use (collectively for GPUs)."""
        transport = self._transports.get(device.name)
        if transport is None:
            transport = choose_transport(self._comm, self._mpi, device, self.rank, self.size)
            self._transports[device.name] = transport
            if self.is_root:
                logger.info("xpnet.distributed: %d processes; %s arrays travel by %s",
                            self.size, device.name, transport.name)
        return transport

    def transport_name(self, device: Device) -> str:
        """How arrays on ``device`` travel between the ranks (``NCCL``, ``CUDA-aware MPI``,
        ``MPI through a host copy (why)``...): chosen now if not yet, so a collective then;
        ``"none (one process)"`` in a one-process job."""
        if self._comm is None or self.size == 1:
            return "none (one process)"
        return self._transport(device).name


class DistributedOptimizer:
    """An xpnet optimizer whose ``update`` first averages the gradients over the ranks.

    ``DistributedOptimizer(SGD(lr=0.1), comm).update(params, grads)`` is
    ``SGD.update(params, comm.mean_gradients(grads))``: with every rank starting from the
    same parameters, every rank then makes the same step, the one a single process would make
    on the union of the ranks' batches. Every other attribute (``lr``, ``config``,
    ``state_dict()``, ``load_state_dict()``, ``step_count``) is the wrapped optimizer's, read
    and written through, so checkpoints and learning-rate schedules work unchanged.
    """

    def __init__(self, optimizer: Any, comm: Communicator) -> None:
        object.__setattr__(self, "optimizer", optimizer)
        object.__setattr__(self, "comm", comm)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r}, {self.comm!r})"

    def update(self, params: dict[str, Array], grads: Mapping[str, Array]) -> None:
        """Average ``grads`` over the ranks, then let the wrapped optimizer update ``params``."""
        self.optimizer.update(params, self.comm.mean_gradients(grads))

    def __getattr__(self, name: str) -> Any:
        if name in ("optimizer", "comm"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.optimizer, name, value)


_world: Communicator | None = None


def current() -> Communicator | None:
    """The communicator :func:`init` made, or None before it was called."""
    return _world


def init() -> Communicator:
    """The job's :class:`Communicator` over ``MPI.COMM_WORLD`` (the same one on every call).

    Without a launcher, or without mpi4py, it is a one-process job (rank 0 of 1), so a
    script runs the same anywhere. With more than one process it installs the except hook
    that ends the whole job when any rank raises (see the module docstring). A process that a
    launcher started as one of several, but that would train alone, raises
    :class:`DistributedError` instead.
    """
    global _world
    if _world is None:
        launched = launched_processes()
        try:
            from mpi4py import MPI
        except ImportError as exc:
            if launched > 1:
                raise DistributedError(f"this process is one of {launched} started by an MPI "
                                       f"launcher, but mpi4py cannot be imported ({exc}); "
                                       "pip install 'xpnet[mpi]', or run without mpiexec") from None
            world = Communicator(None)
        else:
            world = Communicator(MPI.COMM_WORLD)
            if world.size == 1 and launched > 1:  # each rank would train alone, all writing files
                raise DistributedError(
                    f"this process is one of {launched} started by an MPI launcher, but MPI "
                    "sees a job of 1: mpi4py loaded another MPI than the launcher's (see python "
                    "-m mpi4py --mpi-library); use the mpiexec of that MPI")
            if world.size > 1:
                _install_except_hook(world)
        _world = world
    return _world


def _install_except_hook(comm: Communicator) -> None:
    """Print an uncaught exception (an :class:`XPNetError` as one line), then abort the job."""
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException,
             tb: TracebackType | None) -> None:
        try:
            if issubclass(exc_type, XPNetError):
                print(f"[rank {comm.rank}] error: {exc}", file=sys.stderr)
            else:
                print(f"[rank {comm.rank}] uncaught exception; ending all {comm.size} ranks",
                      file=sys.stderr)
                previous(exc_type, exc, tb)
        finally:
            comm.abort(1)

    sys.excepthook = hook
