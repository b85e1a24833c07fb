"""Whether CuPy can use a CUDA GPU here, and why not: the diagnosis behind ``cuda`` and ``auto``.

Two steps, so that a process touches no GPU but its own. :func:`cuda_status` asks the CUDA
runtime only (versions and ``getDeviceCount``), which creates no CUDA context on any GPU.
:func:`gpu_problem` then runs, on the one GPU that will be used, a kernel (NVRTC), a matrix
product (cuBLAS) and a random draw (cuRAND): CuPy loads each library at first use, so a wheel
without its ``[ctk]`` extra imports fine and fails there. Probing GPU 0 in every process
instead kept a context and cuBLAS state there in every rank, and failed every rank but one
on GPUs in EXCLUSIVE_PROCESS compute mode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .errors import first_line

__all__ = ["cuda_status", "gpu_problem", "make_current", "cuda_major", "CUPY_INSTALL_HINT"]

CUPY_INSTALL_HINT = "install CuPy with pip install 'xpnet[cuda12]' (or [cuda13] for CUDA 13 drivers)"


@functools.cache
def cuda_status() -> tuple[int, str]:
    """``(number of CUDA GPUs CuPy sees, reason if none)``, asked once per process.

    ``import cupy`` succeeds on machines without a GPU, so this asks the CUDA runtime and
    names the cause of a failure (no driver, a driver older than the CUDA this CuPy was built
    for, no visible device) in one line with the fix. It runs nothing on a GPU: whether the
    CUDA libraries work is :func:`gpu_problem`'s question, asked of the GPU in use.
    """
    try:
        import cupy
    except ImportError:
        return 0, f"CuPy is not installed; {CUPY_INSTALL_HINT}"
    except Exception as exc:  # a broken CuPy install raises anything from its extension modules
        return 0, f"CuPy failed to import ({first_line(exc)}); reinstall it: {CUPY_INSTALL_HINT}"
    runtime = cupy.cuda.runtime
    try:
        # the runtime is linked into CuPy statically: this answers even without a driver
        built = runtime.runtimeGetVersion()
        driver = runtime.driverGetVersion()  # 0 when no driver is installed
    except Exception as exc:
        return 0, f"CuPy is installed but CUDA is unusable: {first_line(exc)}"
    wheel = f"this CuPy ({cupy.__version__}) is built for CUDA {_cuda_version(built)}"
    if not driver:
        return 0, (f"CuPy is installed but no NVIDIA driver was found; {wheel} and needs a driver "
                   f"for CUDA {built // 1000}.0 or newer")
    if driver // 1000 < built // 1000:  # CUDA's minor-version compatibility stops at the major
        fix = (f"pip install 'xpnet[cuda{driver // 1000}]' for this driver, or update the driver"
               if driver // 1000 in (12, 13) else "update the NVIDIA driver")
        return 0, (f"CuPy cannot use the GPU: the NVIDIA driver supports CUDA "
                   f"{_cuda_version(driver)} but {wheel}; {fix}")
    try:
        count = runtime.getDeviceCount()
    except Exception as exc:  # cudaErrorNoDevice and the like
        count, why = 0, f" ({first_line(exc)})"
    else:
        why = ""
    if not count:
        return 0, (f"CuPy is installed and a driver for CUDA {_cuda_version(driver)} found, but no "
                   f"CUDA device is visible{why}; check nvidia-smi and CUDA_VISIBLE_DEVICES")
    return count, ""


def cuda_major() -> int:
    """The CUDA major version this CuPy is built for (12 or 13): which wheels fit it."""
    import cupy

    return cupy.cuda.runtime.runtimeGetVersion() // 1000


# (what runs, the CUDA library it needs, how): CuPy compiles kernels with NVRTC at first use
# (cupy/_core/core.pyx: compile_with_cache, with the CUDA headers), imports cuBLAS at the first
# matmul (cupy/_core/_routines_linalg.pyx: tensordot_core) and cuRAND with its Generator API,
# on the bit generator xpnet.Generator uses
_PROBES: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("a kernel", "NVRTC or the CUDA headers", lambda cupy: cupy.arange(4, dtype="float32") * 2),
    ("a matrix product", "cuBLAS",
     lambda cupy: cupy.matmul(cupy.ones((2, 2), dtype="float32"), cupy.ones((2, 2), dtype="float32"))),
    ("a random draw", "cuRAND",
     lambda cupy: cupy.random.Generator(cupy.random.Philox4x3210(0, size=4)).random(4)),
)


@functools.cache
def gpu_problem(index: int) -> str:
    """What fails on GPU ``index`` (one line with its fix), or ``""``; asked once per GPU.

    Runs each probe on that GPU alone. Call it after :func:`cuda_status` found the GPU.
    """
    import cupy

    built = cupy.cuda.runtime.runtimeGetVersion()
    problem = _probe(cupy, index, built // 1000)
    driver = cupy.cuda.runtime.driverGetVersion()
    if problem and driver < built:
        problem += (f" (the driver supports CUDA {_cuda_version(driver)}, older than the "
                    f"{_cuda_version(built)} CuPy is built for: updating it may help)")
    return problem


def _probe(cupy: ModuleType, index: int, major: int) -> str:
    with cupy.cuda.Device(index):
        for what, library, run in _PROBES:
            try:
                run(cupy)
                cupy.cuda.get_current_stream().synchronize()  # launch errors surface here
            except Exception as exc:
                return (f"CuPy sees GPU {index} but {what} failed there: {library} is missing or "
                        f"broken ({first_line(exc)}); pip install 'xpnet[cuda{major}]' installs "
                        f"cupy-cuda{major}x[ctk], which brings the CUDA libraries as wheels")
    return ""


def make_current(index: int) -> None:
    """Make GPU ``index`` this process's (this thread's) current CUDA device, for good.

    For a process that computes on one GPU (a command, a rank): ``cupy.cuda.Device.__exit__``
    restores the device current before the ``with`` by ``cudaSetDevice``
    (cupy/cuda/device.pyx:179-180, v14.0.0), which since CUDA 12 creates that device's
    context, so every ``with dev:`` on GPU 1 would otherwise end by opening GPU 0.
    """
    import cupy

    cupy.cuda.Device(index).use()


def _cuda_version(version: int) -> str:
    """CUDA's integer version (12090) as text (12.9)."""
    return f"{version // 1000}.{version % 1000 // 10}"

