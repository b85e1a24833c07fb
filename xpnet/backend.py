"""Devices: where arrays live, and the namespace ``xp`` that computes on them.

A :class:`Device` is chosen once, by a spec string, and knows three things: its array
namespace ``xp``, the device object that namespace's ``device=`` arguments expect, and
its name. Layers never consult a device: they find ``xp`` from their input arrays with
:func:`namespace_of`. Devices matter where arrays are *created* (parameters, data, random
numbers) and where they cross from the host, which :meth:`Device.send` does.

CuPy also has a *current* GPU, where creation functions (which ignore ``device=``), ``take``,
``astype`` and kernels allocate, and whose kernels refuse another GPU's arrays. Code that
computes on arrays it was given runs inside :func:`on_device_of` (or
:func:`on_input_device`), which enters the arrays' GPU; on JAX it enters full float32 matmul
precision instead (see :data:`DEVICE_CONTEXTS`), and on other backends it does nothing.
Whether CuPy can use a GPU at all is :mod:`xpnet.cuda`'s question.

Specs (see ``docs/backends.md``)::

    cpu | numpy                      NumPy on the host
    cuda | cuda:N | cupy | cupy:N    CuPy on GPU N (default 0)
    auto                             cuda:0 if a GPU is usable, else cpu (saying why)
    torch:cpu | torch:cuda[:N]       PyTorch
    torch:meta                       PyTorch's shape-only device (finds host syncs in tests)
    jax | jax:cpu | jax:cuda[:N]     JAX (jax:gpu[:N] is an alias); float64 turns on jax_enable_x64
    array_api_strict[:DEVICE]        the standard and nothing else (CPU_DEVICE, device1, ...)
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device_of
from array_api_compat import is_cupy_array, is_jax_array, is_numpy_array, is_torch_array, to_device

from .cuda import cuda_status, gpu_problem
from .cuda import make_current as make_current_gpu
from .errors import BackendMismatchError, DeviceError

__all__ = ["Device", "device", "device_of", "namespace_of", "to_numpy", "cuda_status", "VALID_SPECS",
           "DEVICE_CONTEXTS", "on_device_of", "on_input_device"]

logger = logging.getLogger("xpnet")

VALID_SPECS = (
    "cpu, numpy, cuda, cuda:N, cupy, cupy:N, auto, torch:cpu, torch:cuda, torch:cuda:N, "
    "torch:meta, jax, jax:cpu, jax:cuda, jax:cuda:N (jax:gpu[:N]), array_api_strict, "
    "array_api_strict:DEVICE (for example array_api_strict:device1)"
)

Array = Any  # any array of a supported library; the standard has no common type

# Backend name -> what enters one of its devices (``Device.array_device``) as a context
# manager. Only backends with a "current device" need one: CuPy's creation functions ignore
# ``device=`` (array-api-compat's cupy/_aliases.py), and its kernels raise on arrays of a
# GPU other than the current one (cupy/_core/_kernel.pyx, _check_peer_access).
# ``cupy.cuda.Device`` is itself a re-entrant context manager (cupy/cuda/device.pyx).
#
# JAX has no current device, but has a setting xpnet's calls must run under: its float32
# matrix products default to TF32 on NVIDIA GPUs from Ampere on ("DEFAULT: ... On GPU: uses
# tensorfloat32 if available", jax/_src/lax/lax.py:2138-2149, Precision, JAX 0.10.2), where
# CuPy and PyTorch compute in float32. ``jax.default_matmul_precision`` is a context manager
# (jax/_src/config.py:1755), so the full precision holds inside xpnet's calls and their
# traces (``precision=HIGHEST`` on each dot_general) and nowhere else in the process.
DEVICE_CONTEXTS: dict[str, Callable[[Any], contextlib.AbstractContextManager]] = {
    "cupy": lambda array_device: array_device,
    "jax": lambda array_device: _jax_full_precision(),
}
_NO_CONTEXT = contextlib.nullcontext()  # stateless, so one instance serves every caller


def _jax_full_precision() -> contextlib.AbstractContextManager:
    import jax

    return jax.default_matmul_precision("highest")


class Device:
    """A place arrays live, with the namespace that computes on them.

    ``xp`` is the array-api-compat namespace, ``array_device`` is what that namespace's
    ``device=`` arguments take, ``name`` is the canonical spec (``"cuda:0"``), and
    ``fallback_reason`` says why ``"auto"`` chose the CPU (``None`` otherwise).
    Entering the device (``with dev:``) enters its backend's entry of :data:`DEVICE_CONTEXTS`:
    CuPy's current GPU (where its creation functions, ``take``, ``astype`` and kernels
    allocate), JAX's full float32 matmul precision; for other backends it does nothing.
    """

    def __init__(self, name: str, backend: str, xp: ModuleType, array_device: Any,
                 index: int | None = None, fallback_reason: str | None = None) -> None:
        self.name = name
        self.backend = backend
        self.xp = xp
        self.array_device = array_device
        self.index = index
        self.fallback_reason = fallback_reason
        self._contexts: list[contextlib.AbstractContextManager] = []

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __enter__(self) -> Device:
        enter = DEVICE_CONTEXTS.get(self.backend)
        context = _NO_CONTEXT if enter is None else enter(self.array_device)
        context.__enter__()
        self._contexts.append(context)  # popped by __exit__ even if DEVICE_CONTEXTS changed since
        return self

    def __exit__(self, *exc: object) -> None:
        self._contexts.pop().__exit__(*exc)

    @property
    def xp_library(self) -> ModuleType:
        """The library itself (``numpy``, ``cupy``, ``torch``, ``jax``, ``array_api_strict``)."""
        return importlib.import_module(self.backend)

    def dtype(self, dtype: Any) -> Any:
        """This namespace's dtype for ``"float32"``, ``"float64"``, ``"int64"``… or a dtype.

        On JAX, asking for float64 turns on ``jax_enable_x64`` (without it JAX would make
        float32 arrays, silently); int64 is int32 there while x64 is off (JAX's index width).
        """
        if self.backend == "jax" and dtype is not None:
            return _jax_dtype(dtype)
        if not isinstance(dtype, str):
            return dtype
        try:
            return getattr(self.xp, dtype)
        except AttributeError:
            raise DeviceError(f"unknown dtype {dtype!r}; use 'float32' or 'float64'") from None

    def send(self, x: Any, dtype: Any = None) -> Array:
        """Return ``x`` (an array of any supported library, or nested Python numbers) here.

        Like ``asarray``, it does not copy when ``x`` already lives here with that dtype.
        Arrays from another library travel through host memory.
        """
        dtype = self.dtype(dtype)
        library = _library_of(x)
        # all of it inside the device: CuPy's astype allocates its result on the current GPU
        with self:
            if library == self.backend:
                if array_device_of(x) != self.array_device:
                    x = to_device(x, self.array_device)
                return x if dtype is None or x.dtype == dtype else self.xp.astype(x, dtype)
            host = to_numpy(x) if library else np.asarray(x)
            if dtype is None and self.backend == "jax":
                dtype = _jax_dtype(host.dtype)  # float64 data stays float64 (x64 on)
            return self.xp.asarray(host, dtype=dtype, device=self.array_device)


def _library_of(x: Any) -> str | None:
    """The name of the library that made array ``x``, or None for non-arrays."""
    if is_numpy_array(x):
        return "numpy"
    if is_torch_array(x):
        return "torch"
    if is_cupy_array(x):
        return "cupy"
    if is_jax_array(x):  # concrete arrays and, inside jax.jit, tracers
        return "jax"
    if type(x).__module__.startswith("array_api_strict") and hasattr(x, "__array_namespace__"):
        return "array_api_strict"  # its Array; not its Device or dtype objects
    return None


# array type -> _library_of its instances (None for non-arrays): the per-call look-up of
# on_device_of and on_input_device, which run on every layer call
_LIBRARY_OF_TYPE: dict[type, str | None] = {}


def _cached_library_of(x: Any) -> str | None:
    try:
        return _LIBRARY_OF_TYPE[type(x)]
    except KeyError:
        library = _LIBRARY_OF_TYPE[type(x)] = _library_of(x)
        return library


def on_device_of(*arrays: Any) -> contextlib.AbstractContextManager:
    """A context manager entering the device of the first of ``arrays`` whose backend has a
    current device, or JAX's full precision (see :data:`DEVICE_CONTEXTS`); a no-op for
    everything else.

    Public entries wrap themselves in it so that arrays on ``cuda:1`` compute and allocate
    on GPU 1 without the caller writing ``with dev:``. Python scalars and ``None`` are skipped.
    """
    for x in arrays:
        enter = DEVICE_CONTEXTS.get(_cached_library_of(x))
        if enter is not None:
            return enter(getattr(x, "device", None))  # a JAX tracer has no device
    return _NO_CONTEXT


Function = TypeVar("Function", bound=Callable[..., Any])


def on_input_device(function: Function) -> Function:
    """Decorate a function or method to run on the device of its first array argument whose
    backend has a current device (see :func:`on_device_of`).

    The form of :func:`on_device_of` for layer methods and public functions: on NumPy it costs
    a dict look-up per argument and one extra call, no context manager (tests/test_backend.py
    holds it under 1 us).
    """
    @functools.wraps(function)
    def on_device_of_inputs(*args: Any, **kwargs: Any) -> Any:
        for x in args:  # ``self`` first for a method: a type seen once, then a dict hit
            enter = DEVICE_CONTEXTS.get(_cached_library_of(x))
            if enter is not None:
                with enter(getattr(x, "device", None)):
                    return function(*args, **kwargs)
        with on_device_of(*kwargs.values()):  # arrays given by keyword
            return function(*args, **kwargs)

    return on_device_of_inputs  # type: ignore[return-value]


def device_of(x: Array) -> Device:
    """The :class:`Device` array ``x`` lives on (to create more arrays beside it)."""
    library = _library_of(x)
    if library is None:
        raise DeviceError(f"{type(x).__name__} is not an array of NumPy, CuPy, PyTorch, JAX or "
                          "array-api-strict")
    where = array_device_of(x)
    if library == "numpy":
        return device("cpu")
    if library == "torch":
        return device(f"torch:{where}")  # torch.device prints as cpu, cuda:N or meta
    if library == "cupy":
        return device(f"cuda:{where.id}")
    if library == "jax":
        if where is None:
            raise DeviceError("a JAX array traced by jax.jit has no device; call device_of on "
                              "concrete arrays")
        return device("jax:cpu" if where.platform == "cpu" else f"jax:cuda:{where.id}")
    return device(f"array_api_strict:{where._device}")


def to_numpy(x: Array) -> np.ndarray:
    """Copy an array of any supported library to a host NumPy array (a host sync on a GPU)."""
    library = _library_of(x)
    if library == "numpy":
        return x
    if library == "cupy":
        return x.get()
    if library == "torch":
        return x.detach().cpu().numpy()
    if library == "jax":
        return np.array(x)  # a copy: np.asarray would be a read-only view of JAX's buffer
    if library == "array_api_strict":
        import array_api_strict

        return np.asarray(to_device(x, array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(x)


def _describe(x: Any) -> str:
    library = _library_of(x) or type(x).__name__
    try:
        return f"{library} array on {array_device_of(x)}"
    except Exception:
        return f"{library} object"


def namespace_of(*arrays: Any) -> ModuleType:
    """The array namespace of ``arrays``, which must share one library and one device.

    Python scalars and ``None`` are skipped. Mixing raises :class:`BackendMismatchError`
    naming both arrays and how to move one (``xpnet.device(spec).send(x)``).
    """
    # Fast path, taken by every layer call: arrays of one type already seen. array_namespace
    # is slow for this (docs/performance.md, "What made xpnet faster", item 3).
    kind = type(arrays[0]) if arrays else None
    xp = _NAMESPACE_OF_TYPE.get(kind)
    if xp is not None and (len(arrays) == 1 or all(type(a) is kind for a in arrays)
                           and (kind is np.ndarray or _on_one_device(arrays))):
        return xp
    found = [a for a in arrays if a is not None and not isinstance(a, (int, float, complex, bool))]
    if not found:  # Python numbers alone, as in the book's scalar examples
        return _compat_numpy()
    try:
        xp = array_namespace(*found)
    except TypeError:
        kinds = sorted({_describe(a) for a in found})
        raise BackendMismatchError(
            f"arrays from different libraries met in one operation: {' and '.join(kinds)}; "
            "move them to one device first, e.g. x = xpnet.device('cpu').send(x)"
        ) from None
    first = array_device_of(found[0])
    for other in found[1:]:
        if not _same_device(array_device_of(other), first):
            raise BackendMismatchError(
                f"arrays on different devices met in one operation: {_describe(found[0])} and "
                f"{_describe(other)}; move one with xpnet.device(spec).send(x)"
            )
    if len(arrays) == len(found) and all(type(a) is type(found[0]) for a in found):
        _NAMESPACE_OF_TYPE[type(found[0])] = xp  # a library's namespace depends on the type alone
    return xp


# array type -> its namespace, filled by namespace_of once a call of that type has succeeded
_NAMESPACE_OF_TYPE: dict[type, ModuleType] = {}


def _on_one_device(arrays: tuple[Any, ...]) -> bool:
    first = array_device_of(arrays[0])
    return all(_same_device(array_device_of(a), first) for a in arrays[1:])


def _same_device(a: Any, b: Any) -> bool:
    # inside jax.jit an array is a tracer, whose device array-api-compat reports as None:
    # it meets concrete arrays (constants such as a fixed Dropout mask) on their device
    return a is None or b is None or a == b


@functools.cache
def _compat_numpy() -> ModuleType:
    return importlib.import_module("array_api_compat.numpy")


_SPEC = re.compile(
    r"^(?:(?P<cpu>cpu|numpy)|(?P<auto>auto)|(?P<cupy>cuda|cupy)(?::(?P<cupy_index>\d+))?"
    r"|torch:(?P<torch>cpu|meta|cuda(?::(?P<torch_index>\d+))?)"
    r"|(?P<jax>jax)(?::(?P<jax_platform>cpu|(?:cuda|gpu)(?::(?P<jax_index>\d+))?))?"
    r"|(?P<strict>array_api_strict)(?::(?P<strict_device>\w+))?)$"
)


def device(spec: str | Device = "cpu", *, make_current: bool = False) -> Device:
    """Resolve a device spec (see the module docstring) to a :class:`Device`.

    An explicit CUDA spec without a usable GPU raises :class:`DeviceError` with the cause
    and the fix; ``"auto"`` falls back to the CPU and logs why, in one line. Only the GPU
    chosen is probed (:func:`xpnet.cuda.gpu_problem`). ``make_current=True``, for a process
    that computes on this one device (a command, a rank of a data-parallel job), first makes
    a CuPy GPU the process's current device (:func:`xpnet.cuda.make_current`), so that no
    CUDA context is ever created on another GPU.
    """
    if isinstance(spec, Device):
        return spec
    match = _SPEC.match(spec.strip().lower()) if isinstance(spec, str) else None
    if match is None:
        raise DeviceError(f"unknown device {spec!r}; valid forms: {VALID_SPECS}")
    if match["cpu"]:
        return Device("cpu", "numpy", _compat_numpy(), "cpu")
    if match["auto"]:
        reason = _cupy_problem(0, make_current)
        if not reason:
            return _cupy_device(0)
        logger.warning("xpnet: no usable GPU (%s); using the CPU", reason)
        cpu = device("cpu")
        cpu.fallback_reason = reason
        return cpu
    if match["cupy"]:
        return _cupy_device(int(match["cupy_index"] or 0), make_current)
    if match["torch"]:
        return _torch_device(match["torch"], match["torch_index"])
    if match["jax"]:
        return _jax_device(match["jax_platform"], match["jax_index"])
    return _strict_device(match["strict_device"] or "cpu_device")


def _cupy_problem(index: int, make_current: bool) -> str | None:
    """Why GPU ``index`` (one the machine has, when it has any) cannot be used, or None; made
    CuPy's current GPU first if ``make_current``, so its probe opens no context elsewhere."""
    count, reason = cuda_status()
    if not count:
        return reason
    if make_current:
        make_current_gpu(index)
    return gpu_problem(index)


def _cupy_device(index: int, make_current: bool = False) -> Device:
    count, _ = cuda_status()
    if count and index >= count:
        raise DeviceError(f"cannot use cuda:{index}: this machine has {count} CUDA device(s), "
                          f"numbered 0 to {count - 1}")
    reason = _cupy_problem(index, make_current)
    if reason:
        raise DeviceError(f"cannot use cuda:{index}: {reason}. Use --device cpu (or auto) to run "
                          "on the CPU")
    import cupy

    return Device(f"cuda:{index}", "cupy", importlib.import_module("array_api_compat.cupy"),
                  cupy.cuda.Device(index), index)


def _torch_device(kind: str, index: str | None) -> Device:
    try:
        import torch
    except ImportError:
        raise DeviceError(f"cannot use torch:{kind}: PyTorch is not installed; "
                          "pip install 'xpnet[torch]'") from None
    xp = importlib.import_module("array_api_compat.torch")
    if not kind.startswith("cuda"):
        return Device(f"torch:{kind}", "torch", xp, torch.device(kind))
    position = int(index or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if position >= count:
        cause = (f"this machine has {count} CUDA device(s) visible to PyTorch" if count else
                 "this PyTorch build has no CUDA support or sees no GPU")
        raise DeviceError(f"cannot use torch:cuda:{position}: {cause}. Use torch:cpu, or install a "
                          "CUDA build of PyTorch on a machine with an NVIDIA GPU")
    return Device(f"torch:cuda:{position}", "torch", xp, torch.device("cuda", position), position)


def _strict_device(name: str) -> Device:
    try:
        import array_api_strict
    except ImportError:
        raise DeviceError("cannot use array_api_strict: it is not installed; "
                          "pip install array-api-strict") from None
    # strict's device names are case-sensitive; the spec was lower-cased
    devices = {d._device.lower(): d for d in array_api_strict.__array_namespace_info__().devices()}
    if name not in devices:
        raise DeviceError(f"unknown array_api_strict device {name!r}; it has "
                          f"{', '.join(d._device for d in devices.values())}")
    chosen = devices[name]
    return Device(f"array_api_strict:{chosen._device}", "array_api_strict", array_api_strict, chosen)


def _jax_device(platform: str | None, index: str | None) -> Device:
    """``jax`` (JAX's default device), ``jax:cpu``, or ``jax:cuda[:N]`` (``gpu`` is an alias);
    ``platform`` is the spec after ``jax:`` (``cuda:1``), ``index`` its number."""
    asked = "jax" if platform is None else f"jax:{platform}"
    try:
        import jax
    except ImportError:
        raise DeviceError(f"cannot use {asked}: JAX is not installed; pip install 'xpnet[jax]' "
                          "(or 'xpnet[jax-cuda12]' for NVIDIA GPUs)") from None
    if platform is None:
        chosen = jax.devices()[0]
    else:
        try:  # JAX calls its NVIDIA platform "gpu" (and "cuda")
            devices = jax.devices("cpu" if platform == "cpu" else "gpu")
        except RuntimeError:
            raise DeviceError(f"cannot use {asked}: this JAX has no GPU backend (it sees "
                              f"{', '.join(sorted({d.platform for d in jax.devices()}))}); "
                              "pip install 'xpnet[jax-cuda12]' (jax[cuda12]) on a machine with "
                              "an NVIDIA GPU, or use jax:cpu") from None
        position = int(index or 0)
        if position >= len(devices):
            raise DeviceError(f"cannot use {asked}: JAX sees {len(devices)} GPU(s), numbered 0 "
                              f"to {len(devices) - 1}")
        chosen = devices[position]
    name = "jax:cpu" if chosen.platform == "cpu" else f"jax:cuda:{chosen.id}"
    return Device(name, "jax", jax.numpy, chosen, None if chosen.platform == "cpu" else chosen.id)


def _jax_dtype(dtype: Any) -> Any:
    """JAX's dtype for a name or dtype, turning on ``jax_enable_x64`` for float64.

    JAX makes float32 arrays when float64 is asked for without x64 (a warning at most), so a
    float64 network would silently compute in float32. The flag is process-wide; networks
    and data in float32 are unaffected, as xpnet always names its dtypes.
    """
    import jax
    import jax.numpy as jnp

    try:
        name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        resolved = jnp.dtype(name)
    except TypeError:
        raise DeviceError(f"unknown dtype {dtype!r}; use 'float32' or 'float64'") from None
    if jax.config.jax_enable_x64:
        return resolved
    if resolved.name in ("float64", "complex128"):
        jax.config.update("jax_enable_x64", True)
        logger.info("xpnet: turned on jax_enable_x64 for %s arrays on JAX", name)
    elif resolved.name in ("int64", "uint64"):
        return jnp.dtype(resolved.name.replace("64", "32"))  # labels, indices: JAX's width
    return resolved
