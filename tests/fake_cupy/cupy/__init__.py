"""A CuPy 14 stand-in on NumPy, for tests without a GPU (see tests/fake_cupy/README.md).

Arrays are :class:`ndarray` objects holding a NumPy array and the id of the GPU they live on.
Module functions are NumPy's, wrapped with CuPy's device rules:

- **Kernels run on the current device** and refuse arrays of another one: elementwise,
  reduction and indexing kernels check each argument with ``_check_peer_access``
  (cupy/_core/_kernel.pyx), raising ``ValueError("The device where the array resides (1) is
  different from the current device (0). ...")``. The stand-in has no peer access.
- **Results and new arrays are allocated on the current device**, whatever ``device=`` says:
  array-api-compat's cupy namespace drops it for ``zeros``, ``ones``, ``arange``...
  (array_api_compat/cupy/_aliases.py), CuPy allocates with ``memory.alloc`` on the current
  device; the ``*_like`` functions too (cupy/_creation/basic.py).
- **Copies cross devices**: ``asarray``/``array``/``copy`` of another GPU's array copy it to
  the current device (cupy/_core/core.pyx, ``_array_from_cupy_ndarray`` and ``copy``).
- **Views stay where their memory is** (``reshape``, transposes, basic indexing...).
- ``ndarray.device`` is a new ``cupy.cuda.Device`` on each access (core.pyx:1984 ->
  cupy/cuda/memory.pyx:467-469); no implicit conversion to NumPy (core.pyx:1693-1699).
"""

from __future__ import annotations

import builtins  # the module's own any, bool, max... are NumPy's, below
import types
from collections.abc import Callable
from typing import Any

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

from . import cuda
from .cuda import runtime

__version__ = "14.0.0"

# functions that return views of their input's memory: no kernel, the input's device
_VIEWS = frozenset({"reshape", "transpose", "permute_dims", "moveaxis", "swapaxes", "expand_dims",
                    "squeeze", "broadcast_to", "broadcast_arrays", "flip", "unstack", "split",
                    "atleast_1d", "atleast_2d", "atleast_3d", "matrix_transpose", "view",
                    "ravel", "diagonal"})
# functions that allocate on the current device from arrays of any device
_COPIES = frozenset({"asarray", "array", "asanyarray", "ascontiguousarray", "copy", "empty_like",
                     "zeros_like", "ones_like", "full_like"})
# no kernel, no array result (dtype queries)
_NO_KERNEL = frozenset({"result_type", "can_cast", "isdtype", "issubdtype", "shape", "ndim",
                        "size", "iterable", "isscalar", "broadcast_shapes", "dtype", "finfo",
                        "iinfo", "promote_types", "min_scalar_type"})


def _peer_error(resides: int, current: int) -> ValueError:
    # cupy/_core/_kernel.pyx:107-123, _check_peer_access, where peer access is unavailable
    return ValueError(f"The device where the array resides ({resides}) is different from the "
                      f"current device ({current}). Peer access is unavailable between these "
                      "devices.")


class ndarray(NDArrayOperatorsMixin):
    """``cupy.ndarray``: a NumPy array on fake GPU ``_device_id``."""

    __slots__ = ("_array", "_device_id")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, shape: Any, dtype: Any = float, memptr: Any = None, strides: Any = None,
                 order: str = "C") -> None:
        # core.pyx ndarray.__init__: uninitialised memory on the current device
        self._array = numpy.empty(shape, dtype=dtype, order=order)
        self._device_id = _allocate()

    # --- where it lives -------------------------------------------------------------------
    @property
    def device(self) -> cuda.Device:
        return cuda.Device(self._device_id)  # a new Device each time

    @property
    def data(self) -> cuda.MemoryPointer:
        return cuda.MemoryPointer(self._array.ctypes.data, self._device_id)

    def get(self, stream: Any = None, order: str = "C", out: Any = None,
            blocking: bool = True) -> numpy.ndarray:
        """A host copy (core.pyx ``get``; waits for the device)."""
        return numpy.array(self._array, order=order, copy=True)

    def __array__(self, dtype: Any = None, copy: Any = None) -> numpy.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        # core.pyx: version 3; a CUDA-aware MPI reads the memory through it (here, host memory)
        contiguous = self._array.flags.c_contiguous
        return {"shape": self._array.shape, "typestr": self._array.dtype.str,
                "descr": self._array.dtype.descr, "data": (self._array.ctypes.data, False),
                "strides": None if contiguous else self._array.strides, "version": 3,
                "stream": None}

    # --- attributes --------------------------------------------------------------------------
    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    nbytes = property(lambda self: self._array.nbytes)
    itemsize = property(lambda self: self._array.itemsize)
    strides = property(lambda self: self._array.strides)
    flags = property(lambda self: self._array.flags)
    T = property(lambda self: _wrap(self._array.T, self._device_id))
    mT = property(lambda self: _wrap(self._array.mT, self._device_id))

    def __repr__(self) -> str:
        return f"{self._array!r}  # on GPU {self._device_id}"

    def __len__(self) -> int:
        return len(self._array)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # a read to the host: CuPy's get() enters the array's device, so any device works
    def __float__(self) -> float:
        return float(self._array)

    def __int__(self) -> int:
        return int(self._array)

    def __bool__(self) -> bool:
        return builtins.bool(self._array)

    def __complex__(self) -> complex:
        return complex(self._array)

    def __index__(self) -> int:
        return self._array.__index__()

    # --- indexing ----------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> ndarray:
        if _has_arrays(key):  # advanced indexing: a gather kernel on the current device
            return _call(self._array.__class__.__getitem__, (self, key), {})
        return _wrap(self._array[_unwrap(key)], self._device_id)  # a view

    def __setitem__(self, key: Any, value: Any) -> None:
        _check_current((self, key, value))  # a scatter kernel
        self._array[_unwrap(key)] = _unwrap(value)

    # --- kernels -------------------------------------------------------------------------------
    def __array_ufunc__(self, ufunc: numpy.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        result = _call(getattr(ufunc, method), inputs, kwargs)
        if out is not None:  # in place (x += y): the array itself, as CuPy returns it
            return out[0] if len(out) == 1 else out
        return result

    def __array_function__(self, func: Callable, types: Any, args: Any, kwargs: Any) -> Any:
        return _call(func, args, kwargs, func.__name__)

    def __getattr__(self, name: str) -> Any:
        # the methods (astype, sum, max, reshape, copy, item, fill...) are NumPy's, with the rules;
        # not its protocols (__array_interface__ would hand NumPy the memory, which CuPy refuses)
        if name.startswith("__"):
            raise AttributeError(name)
        method = getattr(self._array, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            unbound = getattr(numpy.ndarray, name)
            return _call(unbound, (self, *args), kwargs, name)
        return call


def _allocate() -> int:
    """The current device, with its context (the first allocation there creates it)."""
    device = runtime.getDevice()
    runtime.create_context(device)
    return device


def _wrap(value: Any, device: int | None = None) -> Any:
    if isinstance(value, numpy.generic):  # CuPy returns 0-d arrays, never NumPy scalars
        value = numpy.asarray(value)
    if isinstance(value, numpy.ndarray):
        array = ndarray.__new__(ndarray)
        array._array = value
        array._device_id = _allocate() if device is None else device
        return array
    if isinstance(value, (tuple, list)) and builtins.any(isinstance(v, (numpy.ndarray, numpy.generic))
                                                for v in value):
        return type(value)(_wrap(v, device) for v in value)
    if hasattr(value, "_fields") and isinstance(value, tuple):  # NamedTuple results
        return type(value)(*(_wrap(v, device) for v in value))
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, ndarray):
        return value._array
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _arrays(value: Any):
    if isinstance(value, ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _arrays(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _arrays(v)


def _has_arrays(key: Any) -> bool:
    items = key if isinstance(key, tuple) else (key,)
    return builtins.any(isinstance(k, (ndarray, numpy.ndarray, list)) for k in items)


def _check_current(values: Any) -> int:
    current = runtime.getDevice()
    for array in _arrays(values):
        if array._device_id != current:
            raise _peer_error(array._device_id, current)
    return current


def _call(function: Callable, args: Any, kwargs: Any, name: str | None = None) -> Any:
    name = name or getattr(function, "__name__", "")
    if name in _NO_KERNEL:
        return function(*_unwrap(args), **_unwrap(kwargs))
    if name in _VIEWS:
        first = next(_arrays((args, kwargs)), None)
        device = first._device_id if first is not None else None
    elif name in _COPIES:
        device = None
    else:
        device = _check_current((args, kwargs))
    return _wrap(function(*_unwrap(args), **_unwrap(kwargs)), device)


def _module_function(name: str, function: Callable) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        return _call(function, args, kwargs, name)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"cupy.{name}: numpy.{name} on the current GPU."
    return call


def asarray(a: Any, dtype: Any = None, order: Any = None, *, blocking: bool = False) -> ndarray:
    """cupy.asarray: ``a`` itself when it is on the current device with that dtype, else a
    copy there (from the host, or from another GPU: core.pyx ``_array_from_cupy_ndarray``)."""
    if (isinstance(a, ndarray) and a._device_id == runtime.getDevice()
            and (dtype is None or numpy.dtype(dtype) == a.dtype)):
        return a
    return array(a, dtype=dtype, order=order)


def array(obj: Any, dtype: Any = None, copy: bool | None = True, order: Any = "K",
          subok: bool = False, ndmin: int = 0, *, blocking: bool = False) -> ndarray:
    if (copy is False or copy is None) and isinstance(obj, ndarray) \
            and obj._device_id == runtime.getDevice() and (dtype is None or obj.dtype == dtype):
        return obj
    host = numpy.array(_unwrap(obj), dtype=dtype, order=order or "K", ndmin=ndmin, copy=True)
    return _wrap(host)


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None,
            blocking: bool = True) -> numpy.ndarray:
    return a.get() if isinstance(a, ndarray) else numpy.asarray(a, order=order)


def get_array_module(*args: Any) -> types.ModuleType:
    import sys

    return sys.modules[__name__] if builtins.any(isinstance(a, ndarray) for a in args) else numpy


__all__ = ["ndarray", "asarray", "array", "asnumpy", "get_array_module"]
_namespace = globals()
for _name in numpy.__all__:
    if _name in _namespace:  # ours: ndarray, asarray, array
        continue
    _value = getattr(numpy, _name)
    if isinstance(_value, types.ModuleType):
        continue
    if callable(_value) and not isinstance(_value, type):
        _value = _module_function(_name, _value)
    _namespace[_name] = _value
    __all__.append(_name)
del _name, _value, _namespace

from . import fft, linalg, random  # noqa: E402, F401  (after the functions they wrap)

