"""How a dict of arrays travels as a few flat buffers: the pack layout of :mod:`xpnet.distributed`.

A :class:`Layout` is computed once per distinct structure (keys, shapes, dtypes, devices) and
cached by the communicator under :func:`structure_key`: one :class:`Group` per dtype, its
arrays packed in sorted key order, so every rank agrees on where each array lies. The ranks
compare the layout's 8-byte ``digest`` before each collective; :func:`explain` names the first
key on which they differ.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .backend import Array, Device, device_of
from .validate import dtype_name

__all__ = ["Group", "Layout", "make_layout", "structure_key", "explain", "kind_of"]


@dataclass(frozen=True)
class Group:
    """The arrays of one dtype, packed in key order into one flat buffer."""

    dtype: Any
    name: str  # the dtype's name: float32, int64...
    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    bounds: tuple[tuple[int, int], ...]  # each key's [start, stop) in the buffer
    size: int


@dataclass(eq=False)
class Layout:
    """What a dict of arrays looks like: computed once per distinct structure, then cached."""

    manifest: tuple  # ((key, shape, dtype name, kind), ...) sorted by key: what ranks compare
    digest: int  # 62-bit hash of the manifest, equal on ranks whose manifests are equal
    devices: tuple[Device, ...]  # distinct devices of the arrays, in key order
    groups: tuple[Group, ...]  # one per dtype, in order of dtype name
    # One pack buffer per group, made on first use and reused: a fresh buffer handed to MPICH
    # page-faults on every call and reduces slower (measured in docs/performance.md).
    buffers: list[Array] = field(default_factory=list)


def kind_of(device: Device) -> str:
    """Which memory a device's arrays live in, as far as moving them is concerned."""
    if device.backend == "cupy":
        return "cupy"
    if device.backend == "torch" and device.name.startswith("torch:cuda"):
        return "torch-cuda"
    if device.name == "torch:meta":
        return "torch-meta"
    return "host"


def make_layout(arrays: Mapping[str, Array]) -> Layout:
    keys = sorted(arrays)
    devices = {key: device_of(arrays[key]) for key in keys}
    manifest = tuple((key, tuple(arrays[key].shape), dtype_name(arrays[key].dtype),
                      kind_of(devices[key])) for key in keys)
    digest = int.from_bytes(hashlib.blake2b(repr(manifest).encode(), digest_size=8).digest(),
                            "little") >> 2  # below 2**62, so -digest fits in an int64 too
    groups = []
    for name in sorted({entry[2] for entry in manifest}):
        members = [entry for entry in manifest if entry[2] == name]
        bounds, start = [], 0
        for _, shape, _, _ in members:
            bounds.append((start, start + math.prod(shape)))
            start = bounds[-1][1]
        groups.append(Group(arrays[members[0][0]].dtype, name, tuple(m[0] for m in members),
                             tuple(m[1] for m in members), tuple(bounds), start))
    return Layout(manifest, digest, tuple(dict.fromkeys(devices.values())), tuple(groups))


def _ranks(ranks: list[int]) -> str:
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


def explain(manifests: list[tuple], operation: str, noun: str) -> str:
    """One line naming the first key on which the ranks' manifests differ, and how."""
    per_rank = [{key: tuple(rest) for key, *rest in manifest} for manifest in manifests]
    fix = ("every rank must pass the same keys, shapes and dtypes (the same model, --dtype and "
           "--device)")
    for key in sorted(set().union(*per_rank)):
        values = [entries.get(key) for entries in per_rank]
        if len(set(values)) == 1:
            continue
        if None in values:
            have = [r for r, v in enumerate(values) if v is not None]
            lack = [r for r, v in enumerate(values) if v is None]
            return (f"{operation}: {noun} {key!r} is on {_ranks(have)} but not on "
                    f"{_ranks(lack)}; {fix}")
        for what, position in (("shape", 0), ("dtype", 1), ("device kind", 2)):
            seen: dict[Any, list[int]] = {}
            for rank, value in enumerate(values):
                seen.setdefault(value[position], []).append(rank)
            if len(seen) > 1:
                where = ", ".join(f"{value} on {_ranks(ranks)}" for value, ranks in seen.items())
                return f"{operation}: {noun} {key!r} has {what} {where}; {fix}"
    return f"{operation}: the ranks passed different arrays; {fix}"  # a hash collision, 1 in 2**62


def structure_key(arrays: Mapping[str, Array]) -> tuple:
    """What identifies ``arrays``' layout, as a hashable cache key: per key, the array's type,
    device, dtype and shape. Raises ``AttributeError`` or ``TypeError`` for non-arrays.

    Devices enter the key by their ``repr``, never as objects: CuPy's ``ndarray.device``
    returns a new ``cupy.cuda.Device`` (cupy/_core/core.pyx:1984 and cupy/cuda/memory.pyx:468,
    v14.0.0), a class with ``__richcmp__`` and no ``__hash__`` (cupy/cuda/device.pyx:120 and :334),
    so a key holding one raises ``TypeError: unhashable type``.
    """
    return tuple((key, type(value), _device_token(value), value.dtype, tuple(value.shape))
                 for key, value in sorted(arrays.items()))


def _device_token(value: Any) -> str | None:
    # NumPy < 2 arrays have no device attribute, but they all live on the CPU
    where = getattr(value, "device", None)
    return where if where is None or isinstance(where, str) else repr(where)
