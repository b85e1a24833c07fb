"""CuPy's device rules on array-api-strict's devices: ``cuda:1`` for a CI without a GPU.

array-api-strict has several devices (``CPU_DEVICE``, ``device1``, ``device2``...) but no
*current* device: every function honours ``device=`` and keeps results on its inputs' device.
CuPy does not. :func:`cupy_device_rules` patches array-api-strict, while active, to behave
as CuPy 14 with array-api-compat 1.16 does, CPU_DEVICE playing GPU 0:

- **A current device**, per thread, ``CPU_DEVICE`` at first like GPU 0; entering a device
  (``with dev:``, through ``xpnet.backend.DEVICE_CONTEXTS["array_api_strict"]``, registered
  while the rules are active) makes it current, as ``cupy.cuda.Device.__enter__`` calls
  ``runtime.setDevice`` (cupy/cuda/device.pyx).
- **Creation functions ignore ``device=``** and allocate on the current device:
  array-api-compat's cupy/_aliases.py wraps ``arange empty empty_like eye full full_like
  linspace ones ones_like zeros zeros_like`` with the shared ``common/_aliases.py``
  versions, which only call ``_check_device`` (a no-op for CuPy, common/_helpers.py) and
  never pass ``device`` on; CuPy allocates with ``memory.alloc`` on the current device.
- **``asarray`` honours ``device=``** (``with cp.cuda.Device(device):`` in cupy/_aliases.py)
  and without it copies to the current device: ``cp.asarray``/``cp.array`` of an array of
  another GPU go through ``ndarray.copy``, which "makes a copy of a given array in the
  current device" (cupy/_core/core.pyx, ``_array_from_cupy_ndarray`` and ``copy``). That is
  also where array-api code's copies (``asarray(x, copy=True)``) land.
- **An operation on an array of another device raises**: elementwise and reduction kernels
  check every argument with ``_check_peer_access`` (cupy/_core/_kernel.pyx), which raises
  ``ValueError("The device where the array resides (1) is different from the current
  device (0). Peer access is unavailable between these devices.")``. ``take`` and
  ``astype`` allocate their result on the current device (``_take`` in
  _routines_indexing.pyx, ``_astype`` in core.pyx) and then run such a kernel; matmul
  allocates there and calls the current device's cuBLAS handle. This holds for module
  functions and for operators (``+``, ``@``, ``x[mask]``, ``x[i] = v``, in-place ``-=``).
  Where the GPUs have peer access, CuPy instead warns (``PerformanceWarning``) and computes
  on the current GPU, so the same code misplaces its results instead of failing: the rule
  here catches the same mistakes, loudly.

What runs anywhere, as on CuPy: views (basic indexing, ``reshape``, transposes,
``expand_dims``, ``squeeze``, broadcasting; CuPy launches no kernel for them), moves
(``to_device``, which CuPy's wrapper runs inside ``with device:``), reads to the host
(``float()``, ``bool()``, ``int()``: CuPy's ``get()`` enters the array's device) and dtype
queries. ``linalg`` and ``fft`` are not covered (xpnet uses neither).
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import array_api_strict
from array_api_strict._array_object import Array

from xpnet import backend

__all__ = ["cupy_device_rules", "current_device", "CREATION", "VIEWS", "NO_KERNEL", "KERNEL_METHODS"]

# array-api-compat's cupy/_aliases.py: creation wrappers that drop device=
CREATION = frozenset({"arange", "empty", "empty_like", "eye", "full", "full_like", "linspace",
                      "ones", "ones_like", "zeros", "zeros_like"})
# views: CuPy launches no kernel, the result shares the input's memory and device
VIEWS = frozenset({"broadcast_arrays", "broadcast_to", "expand_dims", "flip", "matrix_transpose",
                   "moveaxis", "permute_dims", "reshape", "squeeze", "unstack"})
# no array computation at all: dtype queries, flags, the namespace info, DLPack import
NO_KERNEL = frozenset({"broadcast_shapes", "can_cast", "finfo", "iinfo", "isdtype", "result_type",
                       "from_dlpack", "__array_namespace_info__", "set_array_api_strict_flags",
                       "get_array_api_strict_flags", "reset_array_api_strict_flags"})
_OPERATORS = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift")
# Array methods that launch a kernel (operators, their reflected and in-place forms)
KERNEL_METHODS = (tuple(f"__{p}{op}__" for op in _OPERATORS for p in ("", "r", "i"))
                  + ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__abs__",
                     "__neg__", "__pos__", "__invert__", "__setitem__"))

_FIRST_DEVICE = array_api_strict.Device("CPU_DEVICE")  # GPU 0: current until something is entered
_state = threading.local()  # CUDA's current device is per host thread
_active = False


def current_device() -> array_api_strict.Device:
    """The device that creation functions and kernels use now (this thread's)."""
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else _FIRST_DEVICE


class _Use:
    """``with`` it, ``device`` is current; re-entrant, like ``cupy.cuda.Device``."""

    __slots__ = ("device",)

    def __init__(self, device: array_api_strict.Device) -> None:
        self.device = device

    def __enter__(self) -> array_api_strict.Device:
        if not hasattr(_state, "stack"):
            _state.stack = []
        _state.stack.append(self.device)
        return self.device

    def __exit__(self, *exc: object) -> None:
        _state.stack.pop()


def _arrays_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Array]:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Array):
            yield value
        elif isinstance(value, (list, tuple)):  # concat, stack
            yield from (v for v in value if isinstance(v, Array))


def _check_current(operation: str, arrays: Iterator[Array]) -> None:
    current = current_device()
    for x in arrays:
        if x.device != current:
            raise ValueError(
                f"{operation}: The device where the array resides ({x.device._device}) is "
                f"different from the current device ({current._device}). Peer access is "
                "unavailable between these devices. (CuPy's kernels raise this: enter the "
                "arrays' device first)")


def _kernel(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def on_current_device(*args: Any, **kwargs: Any) -> Any:
        _check_current(name, _arrays_in(args, kwargs))
        return function(*args, **kwargs)

    return on_current_device


def _creation(function: Callable[..., Any]) -> Callable[..., Any]:
    def on_current_device(*args: Any, device: Any = None, **kwargs: Any) -> Any:
        return function(*args, device=current_device(), **kwargs)  # device= is dropped, as on CuPy

    return on_current_device


def _asarray(function: Callable[..., Any]) -> Callable[..., Any]:
    def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Any:
        target = current_device() if device is None else device
        if isinstance(obj, Array) and obj.device != target:
            if copy is False:
                raise ValueError("Unable to avoid copy while creating an array as requested")
            copy = True  # another device's memory is never shared
        return function(obj, dtype=dtype, device=target, copy=copy)

    return asarray


def _getitem(method: Callable[..., Any]) -> Callable[..., Any]:
    def __getitem__(self: Array, key: Any, /) -> Any:
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, Array) for k in keys):  # basic indexing is a view; array indexing a kernel
            _check_current("__getitem__", iter((self, *keys)))
        return method(self, key)

    return __getitem__


def _patches() -> dict[tuple[Any, str], Any]:
    """``(owner, attribute) -> replacement`` for everything the rules change."""
    patches: dict[tuple[Any, str], Any] = {}
    for name in array_api_strict.__all__:
        function = getattr(array_api_strict, name)
        if not isinstance(function, types.FunctionType) or name in VIEWS | NO_KERNEL:
            continue
        if name in CREATION:
            patches[(array_api_strict, name)] = _creation(function)
        elif name == "asarray":
            patches[(array_api_strict, name)] = _asarray(function)
        else:
            patches[(array_api_strict, name)] = _kernel(name, function)
    for name in KERNEL_METHODS:
        patches[(Array, name)] = _kernel(name, getattr(Array, name))
    patches[(Array, "__getitem__")] = _getitem(Array.__getitem__)
    return patches


@contextlib.contextmanager
def cupy_device_rules() -> Iterator[None]:
    """CuPy's device rules on array-api-strict while inside; everything restored after."""
    global _active
    if _active:
        raise RuntimeError("cupy_device_rules is already active")
    patches = _patches()
    originals = {key: getattr(*key) for key in patches}
    _active = True
    try:
        for (owner, name), replacement in patches.items():
            setattr(owner, name, replacement)
        backend.DEVICE_CONTEXTS["array_api_strict"] = _Use
        yield
    finally:
        backend.DEVICE_CONTEXTS.pop("array_api_strict", None)
        for (owner, name), original in originals.items():
            setattr(owner, name, original)
        _state.stack = []
        _active = False
