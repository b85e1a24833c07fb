"""The parity suite: every case of xpnet.device_check on every backend, against NumPy float64.

For each layer and network case: outputs and all gradients match NumPy float64 (float64
runs within 1e-12 relative, float32 runs within 1e-5 of the float64 result), stay on the
input's device in its dtype, and pass the gradient check on the backend itself.
"""

from __future__ import annotations

import pytest
from array_api_compat import device as array_device_of

import xpnet
from xpnet.device_check import CASES, PARITY_RTOL, parity_errors

_REFERENCE: dict[str, dict] = {}


def _reference(case) -> dict:
    if case.name not in _REFERENCE:
        _REFERENCE[case.name] = case.run(xpnet.device("cpu"), "float64")
    return _REFERENCE[case.name]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_matches_numpy_float64(case, backend, dtype):
    results = case.run(backend, dtype)
    for key, value in results.items():
        assert array_device_of(value) == backend.array_device, key
        assert value.dtype == backend.dtype(dtype), key
    errors = parity_errors(_reference(case), results)
    worst = {key: rel for key, (_, rel) in errors.items() if rel > PARITY_RTOL[dtype]}
    assert not worst, f"{case.name} on {backend.name} {dtype}: relative errors {worst}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_gradient_check(case, backend, dtype):
    reports = case.gradcheck(backend, dtype)
    assert reports, "the check compared no gradient"
    for report in reports:
        assert report.max_rel_error <= report.rtol + report.atol
