"""Device specs, the CUDA fallback rule, moving arrays, and mixing errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from array_api_compat import device as array_device_of

import xpnet
from xpnet import backend as backend_module


@pytest.mark.parametrize("spec, name, library", [
    ("cpu", "cpu", "numpy"),
    ("numpy", "cpu", "numpy"),
    ("torch:cpu", "torch:cpu", "torch"),
    ("torch:meta", "torch:meta", "torch"),
    ("array_api_strict", "array_api_strict:CPU_DEVICE", "array_api_strict"),
    ("array_api_strict:device1", "array_api_strict:device1", "array_api_strict"),
    ("ARRAY_API_STRICT:Device1", "array_api_strict:device1", "array_api_strict"),
])
def test_spec_forms(spec, name, library):
    dev = xpnet.device(spec)
    assert (dev.name, dev.backend) == (name, library)
    x = dev.send(np.arange(3.0), "float32")
    assert array_device_of(x) == dev.array_device
    assert x.dtype == dev.dtype("float32")


def test_device_passes_through_a_device():
    dev = xpnet.device("torch:cpu")
    assert xpnet.device(dev) is dev


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "torch", "torch:tpu", "cpu:0", "", "cuda:-1"])
def test_unknown_spec_lists_the_valid_forms(spec):
    with pytest.raises(xpnet.DeviceError, match="valid forms: cpu, numpy, cuda, cuda:N"):
        xpnet.device(spec)


def test_unknown_strict_device_names_the_real_ones():
    with pytest.raises(xpnet.DeviceError, match="CPU_DEVICE, device1"):
        xpnet.device("array_api_strict:device9")


@pytest.fixture
def no_gpu(monkeypatch):
    reason = "CuPy is installed but no NVIDIA driver was found"
    monkeypatch.setattr(backend_module, "cuda_status", lambda: (0, reason))
    return reason


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cupy:1"])
def test_explicit_cuda_without_gpu_names_cause_and_fix(no_gpu, spec):
    with pytest.raises(xpnet.DeviceError) as info:
        xpnet.device(spec)
    message = str(info.value)
    assert no_gpu in message and "--device cpu" in message and "\n" not in message


def test_cuda_index_beyond_the_device_count(monkeypatch):
    monkeypatch.setattr(backend_module, "cuda_status", lambda: (1, ""))
    with pytest.raises(xpnet.DeviceError, match="has 1 CUDA device"):
        xpnet.device("cuda:3")


def test_auto_falls_back_to_cpu_saying_why_in_one_line(no_gpu, caplog):
    with caplog.at_level(logging.WARNING, logger="xpnet"):
        dev = xpnet.device("auto")
    assert dev.name == "cpu" and dev.fallback_reason == no_gpu
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and no_gpu in lines[0] and "\n" not in lines[0]


def test_cuda_status_reports_why_without_a_gpu():
    count, reason = xpnet.cuda_status()
    assert isinstance(count, int)
    if count == 0:  # CuPy missing, no driver or no device: each says which
        assert "CuPy" in reason


def test_torch_cuda_on_a_cpu_build_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA build of PyTorch with a GPU")
    with pytest.raises(xpnet.DeviceError, match="torch:cpu"):
        xpnet.device("torch:cuda")


def test_send_moves_arrays_between_libraries_and_devices():
    host = np.arange(6.0).reshape(2, 3)
    strict1 = xpnet.device("array_api_strict:device1")
    torch_cpu = xpnet.device("torch:cpu")
    s = strict1.send(host)
    t = torch_cpu.send(s, "float32")
    back = xpnet.device("cpu").send(t)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, host)
    s2 = xpnet.device("array_api_strict:device2").send(s)
    assert array_device_of(s2) == xpnet.device("array_api_strict:device2").array_device
    np.testing.assert_array_equal(xpnet.to_numpy(s2), host)


def test_send_does_not_copy_what_is_already_there():
    x = np.ones(3, dtype=np.float32)
    assert xpnet.device("cpu").send(x, "float32") is x


def test_mixing_libraries_names_both_and_the_fix():
    a = np.ones((2, 3))
    b = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(xpnet.BackendMismatchError, match=r"numpy array on cpu and torch array on cpu.*send"):
        xpnet.namespace_of(a, b)


def test_mixing_devices_names_both():
    a = xpnet.device("array_api_strict:CPU_DEVICE").send(np.ones(3))
    b = xpnet.device("array_api_strict:device1").send(np.ones(3))
    with pytest.raises(xpnet.BackendMismatchError, match="different devices.*CPU_DEVICE.*device1"):
        xpnet.namespace_of(a, b)
    W = xpnet.device("array_api_strict:device1").send(np.ones((3, 2)))
    with pytest.raises(xpnet.BackendMismatchError, match="different devices"):
        xpnet.Affine(W, b[:2]).forward(a[None, :])


def test_namespace_skips_python_scalars():
    xp = xpnet.namespace_of(np.ones(2), 1.0, None)
    assert xp.__name__ == "array_api_compat.numpy"


@pytest.mark.parametrize("spec", ["cpu", "torch:cpu", "array_api_strict:device1"])
def test_generator_draws_on_the_device_reproducibly(spec):
    dev = xpnet.device(spec)
    first, again = xpnet.Generator(dev, seed=5), xpnet.Generator(dev, seed=5)
    u = first.random((3, 4), "float32")
    assert array_device_of(u) == dev.array_device and u.dtype == dev.dtype("float32")
    np.testing.assert_array_equal(xpnet.to_numpy(u), xpnet.to_numpy(again.random((3, 4), "float32")))
    values = xpnet.to_numpy(u)
    assert values.min() >= 0 and values.max() < 1
    idx = xpnet.to_numpy(first.integers(10, 1000))
    assert idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < 10 and len(set(idx)) == 10
    perm = xpnet.to_numpy(first.permutation(50))
    assert sorted(perm) == list(range(50))
    normal = xpnet.to_numpy(first.normal((4000,), "float64"))
    assert abs(normal.mean()) < 0.1 and abs(normal.std() - 1) < 0.1


@pytest.mark.parametrize("spec", ["cpu", "torch:cpu", "torch:meta", "array_api_strict:device1"])
def test_device_of_finds_where_an_array_lives(spec):
    dev = xpnet.device(spec)
    assert xpnet.device_of(dev.send(np.zeros(2))) == dev


def test_device_of_refuses_a_non_array():
    with pytest.raises(xpnet.DeviceError, match="list is not an array"):
        xpnet.device_of([1.0, 2.0])
