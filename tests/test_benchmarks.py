"""The benchmarks compute what they claim to, on the device they claim, so their ratios compare
like with like: the implementations, the shared harness (benchmarks/harness.py) and, for the GPU
runs, which device each clock waits for and torch's precision."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import xpnet

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    """A benchmark script by path, as ``python benchmarks/<name>.py`` runs it (minus main)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load("bench_train")


@pytest.fixture(scope="module")
def conv() -> ModuleType:
    return _load("bench_conv")


@pytest.fixture(scope="module")
def harness(bench: ModuleType) -> ModuleType:
    """The module both scripts import (the scripts put benchmarks/ on the path)."""
    import harness

    return harness


@pytest.fixture(scope="module")
def data(bench):
    return bench.Data()


def test_plain_numpy_step_trains_the_same_network_as_xpnet(bench, data):
    dev = xpnet.device("cpu")
    ours = bench.xpnet_impl(dev, "float32", data, 32, 20)
    plain = bench.plain_impl(dev, data, 32, 20)
    for key in ours.params:
        np.testing.assert_array_equal(plain.params[key], ours.params[key])

    for _ in range(5):
        ours.step()
        plain.step()

    for key, value in ours.params.items():
        moved = np.max(np.abs(value - bench.xpnet.TwoLayerNet(
            bench.INPUT, 20, bench.CLASSES, dtype="float32", seed=0).params[key]))
        assert moved > 0, f"{key} did not train"
        np.testing.assert_allclose(plain.params[key], value, rtol=1e-4, atol=1e-6)


def test_every_implementation_steps_and_the_bound_counts_the_steps_products(bench, data):
    dev = xpnet.device("cpu")
    impls = [bench.xpnet_impl(dev, "float64", data, 8, 6), bench.book_impl(data, 8, 6),
             bench.plain_impl(dev, data, 8, 6), bench.bound_impl(dev, 8, 6)]
    jax_bound = bench.jax_bound_impl(dev, 8, 6)  # None without JAX
    for impl in [*impls, *([jax_bound] if jax_bound else [])]:
        impl.step()
        impl.sync()
    # x@W1 and x.T@dh (784 x 6 each way), h@W2, h.T@d, d@W2.T (6 x 10 each)
    assert bench.step_flops(8, 6) == 2 * 8 * (2 * 784 * 6 + 3 * 6 * 10)


def test_both_scripts_time_with_the_one_harness(bench, conv, harness):
    assert bench.interleaved is harness.interleaved is conv.interleaved
    assert bench.device_sync is harness.device_sync is conv.device_sync
    assert bench.BookTwoLayerNet.__module__ == "book_reference"


def test_interleaved_windows_rotate_and_run_the_given_steps(harness):
    log: list[str] = []
    impls = [harness.Impl(name, lambda name=name: log.append(name),
                          lambda name=name: log.append(f"sync {name}")) for name in "abc"]
    times = harness.interleaved(impls, windows=3, gap_s=0.0, iterations=2)
    steps = [entry for entry in log if not entry.startswith("sync")]
    # warm-up: one step each; then per window one untimed step and two timed, starts rotating
    assert steps == ["a", "b", "c",
                     *"aaa", *"bbb", *"ccc", *"bbb", *"ccc", *"aaa", *"ccc", *"aaa", *"bbb"]
    # the device is drained before and after every timed run, so no queued work leaks across
    assert log[:3] == ["sync a", "a", "sync a"]
    assert all(t["windows"] == 3 and t["iterations_per_window"] == 2 for t in times.values())
    assert all(t["min_ms"] <= t["ms"] <= t["max_ms"] for t in times.values())


class _FakeCupyDevice:
    """What xpnet's ``cuda:N`` holds as ``array_device``: ``cupy.cuda.Device(N)``."""

    def __init__(self, index: int, calls: list[int]) -> None:
        self.id, self._calls = index, calls

    def synchronize(self) -> None:
        self._calls.append(self.id)


def test_cupy_sync_waits_for_the_timed_gpu_not_gpu_0(harness):
    calls: list[int] = []
    dev = xpnet.Device("cuda:1", "cupy", None, _FakeCupyDevice(1, calls), 1)
    harness.device_sync(dev)()
    assert calls == [1]


def test_torch_sync_names_the_timed_gpu(harness, monkeypatch):
    calls: list = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    on_gpu1 = xpnet.Device("torch:cuda:1", "torch", None, torch.device("cuda", 1), 1)
    harness.device_sync(on_gpu1)()
    harness.torch_sync(torch, torch.device("cuda", 1))()
    assert calls == [torch.device("cuda", 1)] * 2
    # nothing to wait for on the CPU backends
    harness.device_sync(xpnet.device("cpu"))()
    harness.device_sync(xpnet.device("torch:cpu"))()
    harness.torch_sync(torch, torch.device("cpu"))()
    assert len(calls) == 2


def _tf32() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def _set_tf32(cudnn: bool, matmul: bool) -> None:
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


@pytest.fixture
def tf32_on() -> Iterator[None]:
    """torch's TF32 flags on (cuDNN's default), restored after the test (they are
    process-wide, and monkeypatch would delete these class-level properties on undo)."""
    saved = _tf32()
    _set_tf32(True, True)
    yield
    _set_tf32(*saved)


def test_conv_compares_with_torch_on_xpnets_gpu_in_full_fp32(conv, tf32_on, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cupy_gpu1 = xpnet.Device("cuda:1", "cupy", None, _FakeCupyDevice(1, []), 1)
    assert conv.torch_device(cupy_gpu1, torch) == torch.device("cuda", 1)
    assert _tf32() == (False, False)

    _set_tf32(True, True)
    torch_gpu1 = xpnet.Device("torch:cuda:1", "torch", None, torch.device("cuda", 1), 1)
    assert conv.torch_device(torch_gpu1, torch) == torch.device("cuda", 1)
    assert _tf32() == (False, False)


def test_conv_on_the_cpu_leaves_torch_alone_and_refuses_a_gpu_torch_cannot_see(
        conv, tf32_on, monkeypatch):
    assert conv.torch_device(xpnet.device("cpu"), torch) == torch.device("cpu")
    assert conv.torch_device(xpnet.device("torch:cpu"), torch) == torch.device("cpu")
    assert _tf32() == (True, True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="sees no CUDA GPU"):
        conv.torch_device(xpnet.Device("cuda:1", "cupy", None, _FakeCupyDevice(1, []), 1), torch)


def test_conv_sets_torchs_precision_before_it_times(conv, harness, monkeypatch, tmp_path):
    order: list[str] = []

    def full_fp32(torch_module, where) -> None:
        order.append(f"fp32 {where}")
        harness.torch_full_fp32(torch_module, where)

    def interleaved(*args, **kwargs):
        order.append("timing")
        return harness.interleaved(*args, **kwargs)

    monkeypatch.setattr(conv, "torch_full_fp32", full_fp32)
    monkeypatch.setattr(conv, "interleaved", interleaved)
    out = tmp_path / "conv.json"
    conv.main(["--quick", "--gap-s", "0", "--json", str(out)])
    assert order == ["fp32 cpu", *["timing"] * (len(conv.SHAPES) + len(conv.NETWORK_NAMES))]
    result = json.loads(out.read_text())
    assert [row["shape"] for row in result["rows"]] == [shape[0] for shape in conv.SHAPES]
    assert [row["network"] for row in result["networks"]] == list(conv.NETWORK_NAMES)
    for row in (*result["rows"], *result["networks"]):
        assert row["ms"] and all(ms > 0 for ms in row["ms"].values())


@pytest.mark.cupy_semantics
def test_xpnet_steps_run_on_a_second_gpu(bench, data, cupy_like):
    """On CuPy's rules (creation on the current GPU, kernels over another GPU's arrays raise)
    the xpnet training and evaluation steps allocate and compute on the device timed."""
    train = bench.xpnet_impl(cupy_like, "float32", data, 8, 6)
    evaluate = bench.xpnet_eval_impl(cupy_like, "float32", data, 6)
    for impl in (train, evaluate):
        impl.step()
        impl.sync()
    assert all(xpnet.device_of(p) == cupy_like for p in train.params.values())


@pytest.mark.parametrize("mode", [["--quick", "--windows", "2"], ["--throughput", "--quick"]],
                         ids=["overhead", "throughput"])
def test_distributed_benchmark_runs_and_reports_every_case(mode):
    """bench_distributed.py starts its own mpiexec jobs; each case gets a row of positive figures."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'xpnet[mpi]'")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_distributed.py"
    env = {**os.environ, "MPIEXEC_TIMEOUT": "120"}
    done = subprocess.run([sys.executable, str(script), *mode], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()
            if line.startswith(("784-", "mlp ", "convnet "))]
    assert len(rows) == (2 if mode[0] == "--quick" else 3), done.stdout
    for row in rows:
        numbers = [float(cell.rstrip("x").replace(",", "")) for cell in row[1:]
                   if cell.rstrip("x").replace(",", "").replace(".", "").isdigit()]
        assert numbers and all(number > 0 for number in numbers), row
