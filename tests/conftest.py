"""The backend fixture: every parity test runs on each CPU-reachable backend, and CuPy on a GPU.

``backend`` yields an :class:`xpnet.Device`. The array-api-strict configurations catch what
NumPy forgives: ``device1`` catches arrays created without ``device=``; the no-mask
configuration (``boolean_indexing=False, data_dependent_shapes=False``) catches boolean
indexing and data-dependent shapes, which stall a GPU. CuPy runs only where
``cupy.cuda.is_available()``; ``pytest -m gpu`` selects those cases alone.
"""

from __future__ import annotations

import contextlib

import pytest

import xpnet

CPU_BACKENDS = ["numpy", "strict-cpu", "strict-device1", "strict-no-masks", "torch-cpu"]


def _cupy_param() -> pytest.param:
    count, reason = xpnet.cuda_status()
    marks = [pytest.mark.gpu]
    if not count:
        marks.append(pytest.mark.skip(reason=f"no usable CUDA GPU for CuPy: {reason}"))
    return pytest.param("cupy", marks=marks)


BACKENDS = [*CPU_BACKENDS, _cupy_param()]

_SPECS = {
    "numpy": "cpu",
    "strict-cpu": "array_api_strict:CPU_DEVICE",
    "strict-device1": "array_api_strict:device1",
    "strict-no-masks": "array_api_strict:device1",
    "torch-cpu": "torch:cpu",
    "cupy": "cuda:0",
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
    with backend_context(request.param):
        yield xpnet.device(_SPECS[request.param])


@pytest.fixture(params=["float64", "float32"])
def dtype(request: pytest.FixtureRequest) -> str:
    return request.param
