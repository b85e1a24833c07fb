"""``cupy.cuda`` (cupy/cuda/__init__.py, v14.0.0): devices, streams, the runtime, NCCL."""

from __future__ import annotations

from . import runtime
from .device import Device, get_device_id


class Stream:
    """``cupy.cuda.Stream``: the null stream of a GPU; work here is done when it returns."""

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int = 0,
                 device_id: int = -1) -> None:
        self.ptr = ptr
        self.device_id = runtime.getDevice() if device_id < 0 else device_id

    def synchronize(self) -> None:
        # stream.pyx:158: cudaStreamSynchronize on this stream's GPU, whichever is current
        runtime.create_context(self.device_id)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class ExternalStream(Stream):
    def __init__(self, ptr: int, device_id: int = -1) -> None:
        super().__init__(ptr=ptr)


def get_current_stream(device_id: int = -1) -> Stream:
    # stream.pyx:64-68, 88: the current stream of device_id (default: the current GPU)
    return Stream(null=True, device_id=device_id)


def is_available() -> bool:
    # cupy/cuda/__init__.py: runtime.getDeviceCount() > 0, any error meaning no
    try:
        return runtime.getDeviceCount() > 0
    except Exception:
        return False


class MemoryPointer:
    """``cupy.cuda.MemoryPointer``: where an array's data lies (cupy/cuda/memory.pyx)."""

    def __init__(self, ptr: int, device_id: int) -> None:
        self.ptr, self.device_id = ptr, device_id

    @property
    def device(self) -> Device:
        return Device(self.device_id)  # memory.pyx:467-469: a new Device on every access


__all__ = ["Device", "get_device_id", "runtime", "Stream", "ExternalStream", "get_current_stream",
           "is_available", "MemoryPointer"]
