"""``cupy.cuda.Device`` (cupy/cuda/device.pyx, v14.0.0)."""

from __future__ import annotations

import threading

from . import runtime

_stacks = threading.local()


def _stack() -> list[int]:
    # _ThreadLocalStack (device.pyx): the devices to restore, per thread
    if not hasattr(_stacks, "stack"):
        _stacks.stack = []
    return _stacks.stack


class Device:
    """A CUDA device; ``with Device(n):`` makes it current (device.pyx:120)."""

    # device.pyx:334 defines __richcmp__ and no __hash__: instances are unhashable
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, device: int | Device | None = None) -> None:
        # device.pyx:146-150: the current device by default
        self.id = runtime.getDevice() if device is None else int(device)

    def __int__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"  # device.pyx:183

    def __enter__(self) -> Device:
        # device.pyx:172-177: push the current device, switch only if it differs
        current = runtime.getDevice()
        _stack().append(current)
        if self.id != current:
            runtime.setDevice(self.id)
        return self

    def __exit__(self, *exc: object) -> None:
        runtime.setDevice(_stack().pop())  # device.pyx:179-180: unconditionally

    def use(self) -> Device:
        runtime.setDevice(self.id)  # device.pyx:185-192
        return self

    def synchronize(self) -> None:
        # device.pyx:194-202: enter the device, cudaDeviceSynchronize, restore
        previous = runtime.getDevice()
        try:
            runtime.setDevice(self.id)
            runtime.deviceSynchronize()
        finally:
            runtime.setDevice(previous)

    @property
    def pci_bus_id(self) -> str:
        return runtime.deviceGetPCIBusId(self.id)

    @property
    def mem_info(self) -> tuple[int, int]:
        # device.pyx:293-306: (free, total) bytes, asked with this device current
        previous = runtime.getDevice()
        try:
            runtime.setDevice(self.id)
            return runtime.memGetInfo()
        finally:
            runtime.setDevice(previous)

    @property
    def compute_capability(self) -> str:
        return "90"

    # device.pyx:334-349
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and self.id == other.id

    def __ne__(self, other: object) -> bool:
        return not (isinstance(other, Device) and self.id == other.id)

    def __lt__(self, other: Device) -> bool:
        return self.id < other.id if isinstance(other, Device) else NotImplemented

    def __le__(self, other: Device) -> bool:
        return self.id <= other.id if isinstance(other, Device) else NotImplemented

    def __gt__(self, other: Device) -> bool:
        return self.id > other.id if isinstance(other, Device) else NotImplemented

    def __ge__(self, other: Device) -> bool:
        return self.id >= other.id if isinstance(other, Device) else NotImplemented


def get_device_id() -> int:
    return runtime.getDevice()
