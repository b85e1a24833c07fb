"""The backend fixture: every parity test runs on each CPU-reachable backend, and on GPUs where found.

``backend`` yields an :class:`xpnet.Device`. The array-api-strict configurations catch what
NumPy forgives: ``device1`` catches arrays created without ``device=``; the no-mask
configuration (``boolean_indexing=False, data_dependent_shapes=False``) catches boolean
indexing and data-dependent shapes, which stall a GPU. JAX (``jax:cpu``) catches writes into
arrays: its arrays are immutable. The GPU cases (CuPy on cuda:0 and on
cuda:1, PyTorch on torch:cuda) run only where ``xpnet.cuda_status()`` or PyTorch finds enough
usable GPUs; ``pytest -m gpu`` selects those cases alone.

``cupy_like`` yields ``array_api_strict:device1`` under tests/cupy_semantics.py's CuPy device
rules: a second GPU's behaviour on a CPU (mark its tests ``cupy_semantics``).

``cupy_stand_in`` imports tests/fake_cupy's CuPy stand-in on NumPy as ``cupy`` (two fake GPUs,
NCCL over mpi4py), for this test and the subprocesses it starts (``PYTHONPATH``): every line
of xpnet that runs only for CuPy, on a CPU.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from cupy_semantics import cupy_device_rules
from helpers import write_idx

import xpnet

CPU_BACKENDS = ["numpy", "strict-cpu", "strict-device1", "strict-no-masks", "torch-cpu", "jax-cpu"]


def _gpu_param(name: str, available: int, needed: int, reason: str) -> pytest.param:
    """A GPU backend case, skipped (saying why) unless ``needed`` GPUs of ``available`` are usable."""
    marks = [pytest.mark.gpu]
    if available < needed:
        marks.append(pytest.mark.skip(reason=f"{name} needs {needed} usable GPU(s): {reason}"))
    return pytest.param(name, marks=marks)


def _torch_gpus() -> int:
    """PyTorch's usable GPUs; asked when a torch:cuda case runs, so that collecting the tests
    does not import torch (only the tests that use it do)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _gpu_params() -> list[pytest.param]:
    count, reason = xpnet.cuda_status()
    return [_gpu_param("cupy", count, 1, reason or f"{count} found"),
            # the second GPU: creation and kernels must follow the arrays, not GPU 0
            _gpu_param("cupy-1", count, 2, reason or f"{count} found"),
            pytest.param("torch-cuda", marks=[pytest.mark.gpu])]  # skipped in the fixture if none


BACKENDS = [*CPU_BACKENDS, *_gpu_params()]

_SPECS = {
    "numpy": "cpu",
    "strict-cpu": "array_api_strict:CPU_DEVICE",
    "strict-device1": "array_api_strict:device1",
    "strict-no-masks": "array_api_strict:device1",
    "torch-cpu": "torch:cpu",
    "jax-cpu": "jax:cpu",
    "cupy": "cuda:0",
    "cupy-1": "cuda:1",
    "torch-cuda": "torch:cuda",
}


def backend_context(name: str) -> contextlib.AbstractContextManager:
    """The array-api-strict flags a configuration runs under (nothing for the others)."""
    if name == "strict-no-masks":
        import array_api_strict

        return array_api_strict.ArrayAPIStrictFlags(boolean_indexing=False,
                                                    data_dependent_shapes=False)
    return contextlib.nullcontext()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> xpnet.Device:
    """A device of each backend configuration, with its strict flags in force for the test."""
    if request.param == "torch-cuda" and _torch_gpus() < 1:
        pytest.skip("torch-cuda needs 1 usable GPU(s): PyTorch sees no CUDA GPU")
    with backend_context(request.param):
        yield xpnet.device(_SPECS[request.param])


@pytest.fixture(params=["float64", "float32"])
def dtype(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def cupy_like() -> Iterator[xpnet.Device]:
    """``array_api_strict:device1`` as CuPy's second GPU: CPU_DEVICE is current (GPU 0) until
    a device is entered, creation functions ignore ``device=``, kernels over another
    device's arrays raise (tests/cupy_semantics.py). Restored after the test."""
    with cupy_device_rules():
        yield xpnet.device("array_api_strict:device1")


@pytest.fixture(scope="session")
def mnist_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mnist-cache")


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 300 training and 200 test images of MNIST, as uncompressed IDX files (a
    ``--data-dir`` for quick runs of the commands)."""
    from xpnet import datasets

    folder = tmp_path_factory.mktemp("small-mnist")
    (x_train, t_train), (x_test, t_test) = datasets.load_mnist(normalize=False, flatten=False)
    parts = (x_train[:300, 0], t_train[:300], x_test[:200, 0], t_test[:200])
    for name, array in zip(datasets.MNIST_FILES, parts):
        write_idx(folder / name.removesuffix(".gz"), array)
    return folder


@pytest.fixture
def isolated_mnist(mnist_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsed MNIST is cached once per test session, not in the user's ~/.cache, and read
    from the packaged files whatever $XPNET_DATA_DIR says."""
    monkeypatch.setenv("XPNET_CACHE_DIR", str(mnist_cache))
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)


FAKE_CUPY = Path(__file__).parent / "fake_cupy"


def _forget_cupy() -> dict[str, ModuleType]:
    """Drop every imported module of CuPy (real or stand-in) and what cached it; return them."""
    from xpnet import backend, cuda

    dropped = {name: sys.modules.pop(name) for name in list(sys.modules)
               if name.split(".")[0] == "cupy" or name.startswith("array_api_compat.cupy")}
    for cache in (backend._LIBRARY_OF_TYPE, backend._NAMESPACE_OF_TYPE):
        for kind in [k for k in cache if k.__module__.split(".")[0] == "cupy"]:
            del cache[kind]
    cuda.cuda_status.cache_clear()
    cuda.gpu_problem.cache_clear()
    return dropped


@pytest.fixture
def cupy_stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """tests/fake_cupy's CuPy stand-in, imported fresh as ``cupy`` (its settings are the
    ``XPNET_FAKE_*`` variables: set them with ``monkeypatch`` before requesting this fixture),
    and first on ``PYTHONPATH`` for subprocesses. A real CuPy imported before is put back
    afterwards."""
    real = _forget_cupy()
    monkeypatch.syspath_prepend(str(FAKE_CUPY))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(FAKE_CUPY), *filter(None, [os.environ.get("PYTHONPATH")])]))
    import cupy

    try:
        yield cupy
    finally:
        _forget_cupy()
        sys.modules.update(real)
