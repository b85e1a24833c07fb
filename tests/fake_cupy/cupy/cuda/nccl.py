"""``cupy.cuda.nccl`` (cupy/cuda/nccl.py and cupy_backends/cuda/libs/nccl.pyx, v14.0.0) over
mpi4py's ``COMM_WORLD``, with NCCL's signatures: raw device pointers, element counts, NCCL
datatype and operation codes, a stream. ``XPNET_FAKE_NCCL=0`` models a CuPy that cannot load
NCCL (no nvidia-nccl-cuXX wheel): ``available`` is False and nothing else is defined
(cupy/cuda/nccl.py:12-19 catches the ImportError of the star import).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from . import runtime

available = os.environ.get("XPNET_FAKE_NCCL", "1") != "0"

if available:
    # cupy_backends/cuda/libs/nccl.pxd:5-23
    NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3
    NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_UINT32, NCCL_INT64, NCCL_UINT64 = 0, 1, 2, 3, 4, 5
    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 6, 7, 8
    NCCL_UNIQUE_ID_BYTES = 128
    _DTYPES = {NCCL_INT8: np.int8, NCCL_UINT8: np.uint8, NCCL_INT32: np.int32,
               NCCL_UINT32: np.uint32, NCCL_INT64: np.int64, NCCL_UINT64: np.uint64,
               NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32, NCCL_FLOAT64: np.float64}

    def get_version() -> int:
        return 22707

    def get_unique_id() -> bytes:
        # nccl.pyx:159-168: bytes since CuPy 14 (a tuple of ints before)
        return os.urandom(NCCL_UNIQUE_ID_BYTES)

    def _view(ptr: int, count: int, datatype: int) -> np.ndarray:
        dtype = np.dtype(_DTYPES[datatype])
        memory = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
        return np.frombuffer(memory, dtype=dtype)

    class NcclCommunicator:
        """nccl.pyx:286: one rank's communicator, bound to the GPU current at creation."""

        def __init__(self, ndev: int, commId: bytes, rank: int, config: object = None) -> None:
            from mpi4py import MPI

            if len(commId) != NCCL_UNIQUE_ID_BYTES:  # nccl.pyx:329-331
                raise ValueError(f"commId length {len(commId)} != {NCCL_UNIQUE_ID_BYTES}.")
            self._comm = MPI.COMM_WORLD
            if (self._comm.Get_size(), self._comm.Get_rank()) != (ndev, rank):
                raise RuntimeError("NCCL_ERROR_INVALID_ARGUMENT: rank or size mismatch")
            self._mpi = MPI
            self.device_id = runtime.getDevice()
            runtime.create_context(self.device_id)
            devices = self._comm.allgather(self.device_id)
            if len(set(devices)) < ndev:  # NCCL 2.5+: "Duplicate GPU detected"
                raise RuntimeError("NCCL_ERROR_INVALID_USAGE: Duplicate GPU detected")

        def rank_id(self) -> int:
            return self._comm.Get_rank()

        def size(self) -> int:
            return self._comm.Get_size()

        def allReduce(self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int,
                      stream: int) -> None:  # nccl.pyx:470-477
            operation = {NCCL_SUM: self._mpi.SUM, NCCL_PROD: self._mpi.PROD,
                         NCCL_MAX: self._mpi.MAX, NCCL_MIN: self._mpi.MIN}[op]
            recv = _view(recvbuf, count, datatype)
            send = self._mpi.IN_PLACE if sendbuf == recvbuf else _view(sendbuf, count, datatype)
            self._comm.Allreduce(send, recv, op=operation)

        def bcast(self, buff: int, count: int, datatype: int, root: int,
                  stream: int) -> None:  # nccl.pyx:504-510
            self._comm.Bcast(_view(buff, count, datatype), root=root)

        def destroy(self) -> None:
            pass
