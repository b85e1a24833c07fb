"""The benchmarks' timing harness: interleaved windows, medians, device synchronisation, the
machine's description and the table helpers, shared by bench_train.py and bench_conv.py.

Import it after any thread settings (``OMP_NUM_THREADS``...): it imports NumPy, whose BLAS
reads them once, when it loads.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import xpnet

# --- what is timed ---------------------------------------------------------------------------


class Impl:
    """One thing to time: ``step()`` does one unit of work, ``sync()`` waits for the device.

    ``params`` are the arrays it trains, where a check needs to compare them.
    """

    def __init__(self, name: str, step: Callable[[], Any], sync: Callable[[], None],
                 params: dict[str, Any] | None = None) -> None:
        self.name, self.step, self.sync, self.params = name, step, sync, params


def no_sync() -> None:
    return None


def device_sync(dev: xpnet.Device) -> Callable[[], None]:
    """What waits for the work queued on ``dev`` itself (GPU kernels run asynchronously).

    On CuPy ``dev.array_device`` is ``cupy.cuda.Device(N)``, whose ``synchronize()`` makes N
    current, waits for all its streams and restores the current device. A bare
    ``get_current_stream().synchronize()`` would wait for the current device's stream: GPU 0's
    outside ``with dev:``, while the work runs on N.
    """
    if dev.backend == "cupy":
        return dev.array_device.synchronize
    if dev.backend == "torch":
        import torch

        return torch_sync(torch, dev.array_device)
    return no_sync


def jax_sync(arrays: Callable[[], Any]) -> Callable[[], None]:
    """What waits for JAX's work: it dispatches asynchronously and has no device-wide wait, so
    block on the arrays a step produced last (``arrays()``; every earlier step feeds them)."""
    import jax

    return lambda: jax.block_until_ready(arrays())


def jax_device_for(dev: xpnet.Device) -> xpnet.Device | None:
    """The JAX device to compare with xpnet on ``dev``: JAX's GPU N for GPU N, its CPU for the
    CPU backends; None where JAX is not installed or has no such GPU (or ``dev`` is JAX's)."""
    if dev.backend == "jax":
        return None
    gpu = dev.backend == "cupy" or (dev.backend == "torch" and dev.array_device.type == "cuda")
    try:
        return xpnet.device(f"jax:cuda:{dev.index or 0}" if gpu else "jax:cpu")
    except xpnet.DeviceError:
        return None


def torch_sync(torch: Any, where: Any) -> Callable[[], None]:
    """What waits for torch's work on device ``where``: ``torch.cuda.synchronize()`` without a
    device waits for the current device, GPU 0 unless something set another."""
    if where.type != "cuda":
        return no_sync
    return lambda: torch.cuda.synchronize(where)


def torch_device_for(dev: xpnet.Device, torch: Any) -> Any:
    """The torch device to compare with xpnet on ``dev``: the same GPU (``cuda:N`` ->
    ``torch.device("cuda", N)``), the CPU for the CPU backends; None where ``dev`` is a CuPy GPU
    this torch cannot use."""
    if dev.backend == "torch":
        return dev.array_device
    if dev.backend == "cupy":
        return torch.device("cuda", dev.index) if torch.cuda.is_available() else None
    return torch.device("cpu")


def torch_full_fp32(torch: Any, where: Any) -> None:
    """On CUDA, keep torch's float32 convolutions and matmuls in full FP32, as CuPy's are.

    cuDNN convolutions may use TF32 by default (``torch.backends.cudnn.allow_tf32`` is True),
    which would compare TF32 kernels with CuPy's FP32 ones (CuPy uses TF32 only when
    ``CUPY_TF32`` is set). Call it before timing; the flags are process-wide.
    """
    if where is not None and where.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


# --- timing ------------------------------------------------------------------------------------

def timed(impl: Impl, iterations: int) -> float:
    """Seconds per iteration of ``iterations`` steps, the device drained before and after."""
    impl.sync()
    start = time.perf_counter()
    for _ in range(iterations):
        impl.step()
    impl.sync()
    return (time.perf_counter() - start) / iterations


def interleaved(impls: Sequence[Impl], windows: int, gap_s: float, *, window_s: float = 0.0,
                iterations: int | None = None) -> dict[str, dict[str, float]]:
    """Median ms per step of each implementation over ``windows`` interleaved windows.

    A window runs ``iterations`` steps if given, else as many as fill about ``window_s``
    (sized by a warm-up of one step, then ~window_s of steps). The starting implementation
    rotates every window, so none always follows the same other. Each window starts after
    ``gap_s`` of sleep: OpenBLAS's and PyTorch's OpenMP worker threads keep spinning for a
    while after their last call, and on a 2-core machine the spinning threads of the previous
    window's library would slow the next one several-fold. Then one untimed step wakes this
    library's threads (unless a window is a single step).
    """
    counts = {}
    for impl in impls:
        per_step = timed(impl, 1)
        if iterations is None and window_s:
            time.sleep(gap_s)
            per_step = timed(impl, max(1, int(window_s / per_step)))
        counts[impl.name] = iterations or max(1, round(window_s / per_step))
    samples: dict[str, list[float]] = {impl.name: [] for impl in impls}
    for w in range(windows):
        for impl in [*impls[w % len(impls):], *impls[:w % len(impls)]]:
            time.sleep(gap_s)
            if counts[impl.name] > 1:
                impl.step()
            samples[impl.name].append(timed(impl, counts[impl.name]) * 1e3)
    return {name: {"ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
                   "iterations_per_window": counts[name], "windows": len(ms)}
            for name, ms in samples.items()}


# --- numbers and tables ------------------------------------------------------------------------

def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if value < 10 else f"{value:.1f}"


def table(lines: list[list[str]], say: Callable[[str], None]) -> None:
    """Right-aligned columns, the first line a header underlined with dashes."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for k, line in enumerate(lines):
        say("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
        if k == 0:
            say("  ".join("-" * w for w in widths))


# --- the machine -------------------------------------------------------------------------------

def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def openblas_threads() -> int | None:
    """Threads of the OpenBLAS that NumPy loaded, asked through its C API (None if unknown)."""
    import ctypes

    with contextlib.suppress(OSError):
        for line in Path("/proc/self/maps").read_text().splitlines():
            if "openblas" in line and line.endswith(".so"):
                lib = ctypes.CDLL(line.split()[-1])
                for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                             "openblas_get_num_threads"):
                    if hasattr(lib, name):
                        return int(getattr(lib, name)())
    return None


def blas_kernels() -> list[dict[str, Any]]:
    """The BLAS libraries loaded in this process and the kernel each runs, as threadpoolctl's
    ``threadpool_info()`` reports them: ``internal_api`` (openblas, mkl, blis), ``version``,
    ``architecture`` (the CPU kernel OpenBLAS chose, e.g. Haswell or SkylakeX: the
    ``OPENBLAS_CORETYPE`` variable overrides its detection, and an older kernel can halve large
    matrix products), ``num_threads`` and the file. Call it after importing NumPy and PyTorch."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl is not installed (pip install threadpoolctl)"}]
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return [{key: library.get(key) for key in keys} for library in threadpool_info()
            if library.get("user_api") == "blas"]


def blas_summary(kernels: list[dict[str, Any]]) -> str:
    """``openblas 0.3.31 (SkylakeX kernel, 2 threads)``, one entry per library, for a header."""
    if kernels and "error" in kernels[0]:
        return kernels[0]["error"]
    return "; ".join(f"{k['internal_api']} {k['version']} ({k['architecture'] or '?'} kernel, "
                     f"{k['num_threads']} threads)" for k in kernels) or "no BLAS loaded"


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def environment(dev: xpnet.Device, torch: Any) -> dict[str, Any]:
    """The machine and libraries a run measured (``torch`` is the module, or None)."""
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    env = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__,
        "numpy_blas": f"{blas.get('name', '?')} {blas.get('version', '')}".strip(),
        "numpy_blas_threads": openblas_threads(), "xpnet": xpnet.__version__,
        "device": dev.name, "load_average_at_start": load_average(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS") if k in os.environ},
        # which kernels the figures come from (OPENBLAS_CORETYPE pins an older one)
        "blas_kernels": blas_kernels(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    with contextlib.suppress(ImportError):
        import jax

        env["jax"] = f"{jax.__version__} ({', '.join(str(d) for d in jax.devices())})"
    if dev.backend == "cupy":
        import cupy

        env["cupy"] = cupy.__version__
        env["gpu"] = cupy.cuda.runtime.getDeviceProperties(dev.index)["name"].decode()
    elif dev.backend == "torch" and dev.array_device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev.array_device)
    return env
