"""How the packed buffers of :mod:`xpnet.distributed` travel between ranks.

==========================  ==============================================================
NumPy, torch CPU            MPI on the packed buffer itself (buffer protocol, DLPack)
array-api-strict            MPI on a host copy of the packed buffer
CuPy                        NCCL (``cupy.cuda.nccl``, its id broadcast over MPI) when every
                            rank can load it; else a CUDA-aware MPI; else a host copy
torch CUDA                  a CUDA-aware MPI; else a host copy
==========================  ==============================================================

Every transport has ``allreduce(buf)`` and ``bcast(buf, root)``, returning the result (the
buffer itself, or a new one on its device), and a ``name`` that the first line of a
data-parallel run prints. A host copy costs a device -> host -> device round trip per
collective: ``pip install 'xpnet[cuda12,mpi]'`` (or ``cuda13``) brings the NCCL wheel that
CuPy loads, so CuPy ranks use NCCL.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np  # host staging only

from .backend import Array, Device, to_numpy
from .errors import ConfigError, DistributedError
from .packing import kind_of
from .validate import dtype_name

__all__ = ["MpiTransport", "HostTransport", "NcclTransport", "choose_transport", "cuda_aware",
           "nccl_wheel", "CUDA_AWARE_VARIABLE"]

# An explicit answer for MPIs that cannot say whether they take CUDA memory: 1 or 0
CUDA_AWARE_VARIABLE = "XPNET_CUDA_AWARE_MPI"


class MpiTransport:
    """MPI on the buffer's own memory: NumPy and torch CPU buffers, or GPU buffers under a
    CUDA-aware MPI (after ``synchronize``: MPI does not wait for the device's queue)."""

    def __init__(self, comm: Any, mpi: ModuleType, name: str,
                 synchronize: Callable[[], None] | None = None) -> None:
        self.comm, self.mpi, self.name, self.synchronize = comm, mpi, name, synchronize

    def _exported(self, buf: Array) -> Array:
        if self.synchronize is not None:
            self.synchronize()
        # a torch tensor that requires grad refuses DLPack export; detach() shares its memory
        return buf.detach() if getattr(buf, "requires_grad", False) else buf

    def allreduce(self, buf: Array) -> Array:
        self.comm.Allreduce(self.mpi.IN_PLACE, self._exported(buf), op=self.mpi.SUM)
        return buf

    def bcast(self, buf: Array, root: int) -> Array:
        self.comm.Bcast(self._exported(buf), root=root)
        return buf


class HostTransport:
    """MPI on a host copy, sent back to ``device``: the way for any array MPI cannot read."""

    def __init__(self, comm: Any, mpi: ModuleType, device: Device, name: str) -> None:
        self.comm, self.mpi, self.device, self.name = comm, mpi, device, name

    def allreduce(self, buf: Array) -> Array:
        host = np.require(to_numpy(buf), requirements=("C", "W"))
        self.comm.Allreduce(self.mpi.IN_PLACE, host, op=self.mpi.SUM)
        return self.device.send(host)

    def bcast(self, buf: Array, root: int) -> Array:
        host = np.require(to_numpy(buf), requirements=("C", "W"))
        self.comm.Bcast(host, root=root)
        return self.device.send(host)


class NcclTransport:
    """NCCL through CuPy: the collective is queued on the current stream, no host sync."""

    name = "NCCL"

    def __init__(self, nccl: ModuleType, communicator: Any, cupy: ModuleType) -> None:
        self.nccl, self.communicator, self.cupy = nccl, communicator, cupy
        self.types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                      "float64": nccl.NCCL_FLOAT64, "int32": nccl.NCCL_INT32,
                      "int64": nccl.NCCL_INT64, "int8": nccl.NCCL_INT8, "uint8": nccl.NCCL_UINT8}

    def _type(self, buf: Array) -> int:
        try:
            return self.types[dtype_name(buf.dtype)]
        except KeyError:
            raise DistributedError(f"NCCL cannot reduce {buf.dtype} arrays; use one of "
                                   f"{', '.join(self.types)}") from None

    def allreduce(self, buf: Array) -> Array:
        stream = self.cupy.cuda.get_current_stream().ptr
        self.communicator.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._type(buf),
                                    self.nccl.NCCL_SUM, stream)
        return buf

    def bcast(self, buf: Array, root: int) -> Array:
        stream = self.cupy.cuda.get_current_stream().ptr
        self.communicator.bcast(buf.data.ptr, buf.size, self._type(buf), root, stream)
        return buf


def choose_transport(comm: Any, mpi: ModuleType, device: Device, rank: int, size: int) -> Any:
    """The transport for ``device``'s buffers: a collective, every rank must call it."""
    kind = kind_of(device)
    if kind == "host" and device.backend != "array_api_strict":
        return MpiTransport(comm, mpi, "MPI on the packed buffer itself")
    if kind == "host":
        return HostTransport(comm, mpi, device, "MPI through a host copy")
    return _gpu_transport(comm, mpi, device, rank, size)


def _all(comm: Any, mpi: ModuleType, flag: bool) -> bool:
    """Whether ``flag`` is true on every rank (a collective)."""
    return bool(comm.allreduce(int(flag), op=mpi.MIN))


def _gpu_transport(comm: Any, mpi: ModuleType, device: Device, rank: int, size: int) -> Any:
    """NCCL (CuPy), else a CUDA-aware MPI, else host memory: whatever every rank can use."""
    reason = "NCCL is used through CuPy only"
    if device.backend == "cupy":
        transport, reason = _nccl(comm, mpi, device, rank, size)
        if transport is not None:
            return transport
    if _all(comm, mpi, cuda_aware(comm)):
        # MPI reads the buffer once the stream that wrote it is done: that stream alone, not
        # every stream of the GPU (cupy/cuda/stream.pyx:88 get_current_stream(device_id))
        if device.backend == "cupy":
            stream = device.xp_library.cuda.get_current_stream(device.array_device.id)
            synchronize = stream.synchronize
        else:
            import torch

            synchronize = torch.cuda.current_stream(device.array_device).synchronize
        return MpiTransport(comm, mpi, "CUDA-aware MPI", synchronize)
    return HostTransport(comm, mpi, device, "MPI through a host copy "
                         f"({reason}, and the MPI is not CUDA-aware on every rank)")


def nccl_wheel() -> str:
    """The pip package that brings NCCL to this CuPy: ``nvidia-nccl-cu12`` or ``-cu13``.

    CuPy looks for the wheel named after its own CUDA major version
    (``f'{package_prefix}-cu{cuda_major_ver}'`` in cupy/_environment.py:488, v14.0.0, and its
    hint ``pip install "nvidia-nccl-cu{cuda_major}..."`` at :570).
    """
    from .cuda import cuda_major

    return f"nvidia-nccl-cu{cuda_major()}"


def _nccl(comm: Any, mpi: ModuleType, device: Device, rank: int,
          size: int) -> tuple[NcclTransport | None, str]:
    """An NCCL communicator on ``device`` if every rank can make one, else why not."""
    import cupy

    try:
        from cupy.cuda import nccl

        reason = "" if nccl.available else (f"CuPy cannot load NCCL (pip install {nccl_wheel()}, "
                                            "which the cuda12 and cuda13 extras bring)")
    except ImportError as exc:
        nccl, reason = None, f"CuPy has no NCCL module ({exc})"
    # NCCL (2.5 and later) refuses two ranks on one GPU: find out before, on every rank
    gpu = (mpi.Get_processor_name(), cupy.cuda.runtime.deviceGetPCIBusId(device.index))
    seen = comm.allgather((gpu, reason))
    reason = next((why for _, why in seen if why), "")
    if not reason and len({where for where, _ in seen}) < size:
        reason = "ranks share a GPU, which NCCL does not support"
    if reason:
        return None, reason
    # bytes since CuPy 14 (cupy_backends/cuda/libs/nccl.pyx:159, v14.0.0)
    unique_id = comm.bcast(nccl.get_unique_id() if rank == 0 else None, root=0)
    try:
        with device:  # NCCL binds the communicator to the current GPU
            communicator = nccl.NcclCommunicator(size, unique_id, rank)
    except Exception as exc:  # the others may wait in theirs: the except hook ends the job
        raise DistributedError(f"NCCL could not start on rank {rank} ({exc}); run with "
                               "NCCL_DEBUG=WARN to see why") from exc
    return NcclTransport(nccl, communicator, cupy), ""


def cuda_aware(comm: Any) -> bool:
    """Whether this MPI takes CUDA device memory, asked the documented ways in turn.

    1. ``XPNET_CUDA_AWARE_MPI`` (``1`` or ``0``), for an MPI that cannot say.
    2. ``MPIX_Query_cuda_support()``: Open MPI's extension (mpi-ext.h; "returns 1 if there is
       CUDA aware support", ompi/mpiext/cuda/c/mpiext_cuda.c), which MPICH 4 exports too
       (PMPIX_Query_cuda_support in libmpi.so.12 of the mpich 5.0.2 wheel). mpi4py 4.1 has no
       Python call for it, so it is looked up in the MPI library mpi4py loaded.
    3. MPI 4.1's ``mpi_memory_alloc_kinds`` info key naming ``cuda``; Open MPI 5 is
       CUDA-aware without saying so there.
    """
    setting = os.environ.get(CUDA_AWARE_VARIABLE, "").strip()
    if setting:
        if setting not in ("0", "1"):
            raise ConfigError(f"{CUDA_AWARE_VARIABLE}={setting!r}: use 1 (the MPI takes CUDA memory) "
                              "or 0 (it does not), or unset it to ask the MPI")
        return setting == "1"
    return _query_cuda_support() or _alloc_kinds_name_cuda(comm)


def _query_cuda_support() -> bool:
    query = getattr(_mpi_library(), "MPIX_Query_cuda_support", None)
    if query is None:
        return False
    query.restype, query.argtypes = ctypes.c_int, []
    return query() == 1


def _mpi_library() -> Any:
    """The MPI library mpi4py uses, for symbols mpi4py does not wrap (dlsym on mpi4py's
    extension module also searches the libmpi it links)."""
    from mpi4py import MPI

    try:
        return ctypes.CDLL(MPI.__file__)
    except OSError:
        return None


def _alloc_kinds_name_cuda(comm: Any) -> bool:
    info = comm.Get_info()
    try:
        kinds = info.Get("mpi_memory_alloc_kinds") or ""
    finally:
        info.Free()
    return any(kind.split(":")[0] == "cuda" for kind in kinds.split(","))
