"""``cupy.cuda.runtime`` (cupy_backends/cuda/api/runtime.pyx): the calls xpnet makes, on fake GPUs.

A CUDA context is created on a GPU by the first allocation or kernel there and, since CUDA
12, by ``cudaSetDevice`` ("This function will also immediately initialize the runtime state
on the primary context", CUDA Runtime API, cudaSetDevice). With ``XPNET_FAKE_EXCLUSIVE_DIR``
set, each GPU is in EXCLUSIVE_PROCESS compute mode: a second process's context creation fails
with cudaErrorDevicesUnavailable, as on such nodes.
"""

from __future__ import annotations

import os
import threading

_COUNT = int(os.environ.get("XPNET_FAKE_GPUS", "2"))
_VERSION = int(os.environ.get("XPNET_FAKE_CUDA", "12090"))
_EXCLUSIVE = os.environ.get("XPNET_FAKE_EXCLUSIVE_DIR")

_state = threading.local()  # CUDA's current device is per host thread, 0 in a new one
contexts: list[int] = []  # the GPUs this process has a context on, in order of creation


class CUDARuntimeError(RuntimeError):
    """cupy_backends.cuda.api.runtime.CUDARuntimeError: ``'<name>: <message>'``."""

    def __init__(self, status: int, name: str, message: str) -> None:
        self.status = status
        super().__init__(f"{name}: {message}")


def _check(device: int) -> None:
    if not 0 <= device < _COUNT:
        raise CUDARuntimeError(101, "cudaErrorInvalidDevice", "invalid device ordinal")


def runtimeGetVersion() -> int:  # the CUDA runtime linked into this CuPy
    return _VERSION


def driverGetVersion() -> int:
    return _VERSION


def getDeviceCount() -> int:  # asks the driver; creates no context
    if not _COUNT:
        raise CUDARuntimeError(100, "cudaErrorNoDevice", "no CUDA-capable device is detected")
    return _COUNT


def getDevice() -> int:
    return getattr(_state, "device", 0)


def setDevice(device: int) -> None:
    _check(device)
    _state.device = device
    create_context(device)


def deviceGetPCIBusId(device: int) -> str:
    _check(device)
    return f"0000:{device + 0x17:02x}:00.0"


def memGetInfo() -> tuple[int, int]:
    # runtime.pyx:611-615 (cupy_backends/cuda/api): cudaMemGetInfo on the current device, whose
    # context it needs; an H100's 80 GB, all free
    create_context(getDevice())
    return 80 * 10**9, 80 * 10**9


def deviceSynchronize() -> None:
    create_context(getDevice())


def create_context(device: int) -> None:
    """The first CUDA work of this process on ``device``: its context (refused in
    EXCLUSIVE_PROCESS mode when another process holds the GPU)."""
    if device in contexts:
        return
    if _EXCLUSIVE:
        holder = os.path.join(_EXCLUSIVE, f"gpu{device}")
        try:
            fd = os.open(holder, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            with open(holder, encoding="utf-8") as file:
                if file.read().strip() != str(os.getpid()):
                    raise CUDARuntimeError(46, "cudaErrorDevicesUnavailable",
                                           "CUDA-capable device(s) is/are busy or unavailable") from None
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(str(os.getpid()))
    contexts.append(device)
