"""Device specs, the CUDA fallback rule, moving arrays, and mixing errors."""

from __future__ import annotations

import logging
import shutil
import sys
import timeit
import types

import array_api_strict
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
    ("jax:cpu", "jax:cpu", "jax"),
    ("JAX:CPU", "jax:cpu", "jax"),
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


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "torch", "torch:tpu", "cpu:0", "", "cuda:-1",
                                  "jax:tpu", "jax:cpu:0", "jax:cuda:x"])
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


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no NVIDIA driver on this machine")
def test_cuda_status_finds_the_gpu_of_a_gpu_machine():
    """The real probe (a kernel, a matmul and a draw on GPU 0) passes where a GPU is."""
    count, reason = xpnet.cuda_status()
    assert count >= 1, reason


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


@pytest.mark.parametrize("spec", ["cpu", "torch:cpu", "torch:meta", "array_api_strict:device1",
                                  "jax:cpu"])
def test_device_of_finds_where_an_array_lives(spec):
    dev = xpnet.device(spec)
    assert xpnet.device_of(dev.send(np.zeros(2))) == dev


def test_jax_devices_name_what_they_chose_or_why_not(monkeypatch):
    import jax

    default = xpnet.device("jax")
    assert default.backend == "jax" and default.array_device == jax.devices()[0]
    assert default.name == ("jax:cpu" if default.array_device.platform == "cpu"
                            else f"jax:cuda:{default.array_device.id}")
    gpus = len(jax.devices("gpu")) if default.name != "jax:cpu" else 0
    for spec in ("jax:cuda:99", "jax:gpu:99") if gpus else ("jax:cuda", "jax:gpu:1"):
        with pytest.raises(xpnet.DeviceError, match=f"^cannot use {spec}: "):
            xpnet.device(spec)
    monkeypatch.setitem(sys.modules, "jax", None)  # as if JAX were not installed
    with pytest.raises(xpnet.DeviceError, match=r"^cannot use jax:cpu: JAX is not installed; "
                                                r"pip install 'xpnet\[jax\]'"):
        xpnet.device("jax:cpu")


def test_jax_sends_float64_as_float64_and_hands_back_writable_copies():
    import jax

    dev = xpnet.device("jax:cpu")
    x = dev.send(torch.arange(3.0, dtype=torch.float64))
    assert jax.config.jax_enable_x64 and x.dtype == np.float64  # x64 turned on, never float32
    host = xpnet.to_numpy(x)
    host[0] = 7.0  # a copy: JAX's own buffer is read-only
    assert float(xpnet.to_numpy(x)[0]) == 0.0
    assert xpnet.device("torch:cpu").send(x).dtype == torch.float64


def test_jax_generator_splits_its_key_at_each_draw():
    dev = xpnet.device("jax:cpu")
    first, again = xpnet.Generator(dev, seed=5), xpnet.Generator(dev, seed=5)
    u = first.random((3, 4), "float32")
    assert array_device_of(u) == dev.array_device and u.dtype == np.float32
    np.testing.assert_array_equal(xpnet.to_numpy(u), xpnet.to_numpy(again.random((3, 4), "float32")))
    assert not np.array_equal(xpnet.to_numpy(first.random((3, 4), "float32")), xpnet.to_numpy(u))
    idx = xpnet.to_numpy(first.integers(10, 1000))
    assert idx.min() >= 0 and idx.max() < 10 and len(set(idx)) == 10
    assert sorted(xpnet.to_numpy(first.permutation(50))) == list(range(50))
    # seeds wider than 32 bits still give distinct streams (jax.random.key would drop the top)
    low, wide = (xpnet.to_numpy(xpnet.Generator(dev, seed=s).random((4,))) for s in (0, 2**40))
    assert not np.array_equal(low, wide)


@pytest.mark.parametrize("spec", ["cpu", "torch:cpu", "torch:meta", "array_api_strict:device1",
                                  "jax:cpu"])
def test_reseed_restarts_at_the_stream_of_the_seed_and_words(spec):
    """What a trainer's per-step streams rely on: the words alone pick the stream, whatever was
    drawn before; other words, or another seed, give another stream."""
    dev = xpnet.device(spec)
    if spec == "torch:meta":  # shapes only: the draw lands on meta, from the host's numbers
        rng = xpnet.Generator(dev, seed=5)
        rng.reseed(1, 2)
        assert rng.random((3,)).device.type == "meta"
        return
    first, other = xpnet.Generator(dev, seed=5), xpnet.Generator(dev, seed=6)

    def draw(rng, *words):
        rng.reseed(*words)
        return xpnet.to_numpy(rng.random((8,), "float32"))

    fresh = xpnet.to_numpy(xpnet.Generator(dev, seed=5).random((8,), "float32"))
    first.random((5,))  # drawn before: forgotten by reseed
    np.testing.assert_array_equal(draw(first), fresh)
    at_step = draw(first, 3, 7, 0, 0)
    np.testing.assert_array_equal(draw(first, 3, 7, 0, 0), at_step)
    for changed in (draw(first, 3, 8, 0, 0), draw(first, 3, 7, 1, 0), draw(other, 3, 7, 0, 0)):
        assert not np.array_equal(changed, at_step)


def test_device_of_refuses_a_non_array():
    with pytest.raises(xpnet.DeviceError, match="list is not an array"):
        xpnet.device_of([1.0, 2.0])


# --- device contexts: entering "the device of these arrays" --------------------------------


class Recorder:
    """A device context factory that records what was entered and left."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def __call__(self, where: object) -> "Recorder.Context":
        return Recorder.Context(self, where)

    class Context:
        def __init__(self, recorder: "Recorder", where: object) -> None:
            self.recorder, self.where = recorder, where

        def __enter__(self) -> None:
            self.recorder.events.append(("enter", self.where))

        def __exit__(self, *exc: object) -> None:
            self.recorder.events.append(("exit", self.where))


@pytest.fixture
def strict_recorder(monkeypatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setitem(backend_module.DEVICE_CONTEXTS, "array_api_strict", recorder)
    return recorder


def test_cupy_devices_are_their_own_context():
    marker = object()
    assert backend_module.DEVICE_CONTEXTS["cupy"](marker) is marker


def test_device_enters_the_registered_context(strict_recorder):
    dev = xpnet.device("array_api_strict:device1")
    with dev:
        with dev:  # re-entrant
            assert strict_recorder.events == [("enter", dev.array_device)] * 2
    assert [e for e, _ in strict_recorder.events] == ["enter", "enter", "exit", "exit"]
    with xpnet.device("cpu"), xpnet.device("torch:cpu"):  # unregistered: nothing entered
        pass
    assert len(strict_recorder.events) == 4


def test_on_device_of_enters_the_first_registered_array(strict_recorder):
    x = xpnet.device("array_api_strict:device1").send(np.ones(2))
    y = xpnet.device("array_api_strict:device2").send(np.ones(2))
    strict_recorder.events.clear()  # send entered the device too
    with backend_module.on_device_of(np.ones(2), 1.0, None, x, y):
        pass
    assert strict_recorder.events == [("enter", x.device), ("exit", x.device)]


@pytest.mark.parametrize("arrays", [(), (np.ones(2),), (1.0, None), (torch.ones(2),)])
def test_on_device_of_is_a_no_op_without_a_registered_backend(arrays):
    context = backend_module.on_device_of(*arrays)
    with context:
        pass
    assert context is backend_module.on_device_of()


def test_on_input_device_runs_the_method_on_its_input_device(strict_recorder):
    seen = []

    class Layer:
        @backend_module.on_input_device
        def forward(self, x, scale=1.0):
            """Doc kept."""
            seen.append(list(strict_recorder.events))
            return x * scale

    x = xpnet.device("array_api_strict:device1").send(np.ones(2))
    strict_recorder.events.clear()  # send entered the device too
    assert xpnet.to_numpy(Layer().forward(x, scale=2.0)).tolist() == [2.0, 2.0]
    assert xpnet.to_numpy(Layer().forward(x=x)).tolist() == [1.0, 1.0]
    assert seen == [[("enter", x.device)], [("enter", x.device), ("exit", x.device), ("enter", x.device)]]
    assert Layer.forward.__doc__ == "Doc kept."
    assert Layer().forward(np.ones(2)).tolist() == [1.0, 1.0] and len(strict_recorder.events) == 4


def test_on_input_device_costs_well_under_a_microsecond_on_numpy():
    class Layer:
        def plain(self, x):
            return x

        @backend_module.on_input_device
        def wrapped(self, x):
            return x

    layer, x, calls = Layer(), np.ones(2), 20_000

    def per_call(method) -> float:  # the fastest of several runs: the cost without the noise
        return min(timeit.repeat(lambda: method(x), number=calls, repeat=7)) / calls

    overhead = per_call(layer.wrapped) - per_call(layer.plain)
    assert overhead < 1e-6, f"on_input_device adds {overhead * 1e9:.0f} ns a call on NumPy"


def test_send_casts_inside_the_target_device(strict_recorder, monkeypatch):
    """CuPy's astype allocates on the current GPU: the cast must happen inside the device."""
    source = xpnet.device("array_api_strict:device2").send(np.arange(3.0))
    target = xpnet.device("array_api_strict:device1")
    inside = []
    real_astype = array_api_strict.astype

    def astype(x, dtype, **kwargs):
        inside.append(strict_recorder.events[-1])
        return real_astype(x, dtype, **kwargs)

    monkeypatch.setattr(array_api_strict, "astype", astype)
    moved = target.send(source, "float32")
    assert inside == [("enter", target.array_device)]
    assert moved.device == target.array_device and moved.dtype == array_api_strict.float32


# --- cuda_status on fakes of the cupy module (no GPU here) ---------------------------------


class FakeCupy(types.ModuleType):
    """What cuda_status and Generator touch of cupy; ``fail`` names a library to break."""

    def __init__(self, driver: int = 12090, built: int = 12090, devices: int = 2,
                 fail: str | None = None) -> None:
        super().__init__("cupy")
        self.__version__ = "14.2.0"
        self.current = [0]  # the current-device stack, as cupy.cuda.Device keeps it
        self.calls: list[tuple[str, int]] = []  # (what ran, the device current then)

        def count() -> int:
            if not devices:
                raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
            return devices

        def library(name: str, run):
            def call(*args, **kwargs):
                self.calls.append((name, self.current[-1]))
                if fail == name:
                    raise ImportError(f"lib{name}.so.12: cannot open shared object file: "
                                      "No such file or directory\nsecond line")
                return run(*args, **kwargs)
            return call

        cupy = self

        class Device:
            def __init__(self, index: int) -> None:
                self.id = index

            def __enter__(self):
                cupy.current.append(self.id)
                return self

            def __exit__(self, *exc: object) -> None:
                cupy.current.pop()

        runtime = types.SimpleNamespace(runtimeGetVersion=lambda: built,
                                        driverGetVersion=lambda: driver, getDeviceCount=count)
        self.cuda = types.SimpleNamespace(runtime=runtime, Device=Device, get_current_stream=lambda:
                                          types.SimpleNamespace(synchronize=lambda: None))
        self.arange = library("nvrtc", np.arange)
        self.ones = np.ones
        self.matmul = library("cublas", np.matmul)
        self.argsort = library("argsort", np.argsort)

        class Generator:  # cupy.random.Generator's methods xpnet uses, on NumPy's
            def __init__(self, seed: int | None) -> None:
                self.rng = np.random.default_rng(seed)

            def random(self, size, dtype=np.float64):
                cupy.calls.append(("random", cupy.current[-1]))
                return self.rng.random(size).astype(dtype)

            def standard_normal(self, size, dtype=np.float64):
                cupy.calls.append(("standard_normal", cupy.current[-1]))
                return self.rng.standard_normal(size).astype(dtype)

            def integers(self, low, high, size, dtype):
                cupy.calls.append(("integers", cupy.current[-1]))
                return self.rng.integers(low, high, size=size).astype(dtype)

        def philox(seed, *, size):  # an int or a SeedSequence, as CuPy's BitGenerator takes
            self.calls.append((f"Philox4x3210 size {size}", self.current[-1]))
            if not isinstance(seed, np.random.SeedSequence):
                seed = np.random.SeedSequence(seed)
            return int(seed.generate_state(1)[0])

        self.random = types.SimpleNamespace(Philox4x3210=philox,
                                            Generator=library("curand", Generator))


@pytest.fixture
def fake_cupy(monkeypatch):
    """Install a FakeCupy built by the returned function as ``cupy``; cuda_status re-probes."""
    def install(**kwargs) -> FakeCupy:
        fake = FakeCupy(**kwargs)
        monkeypatch.setitem(sys.modules, "cupy", fake)
        xpnet.cuda.cuda_status.cache_clear()
        xpnet.cuda.gpu_problem.cache_clear()
        return fake

    yield install
    xpnet.cuda.cuda_status.cache_clear()
    xpnet.cuda.gpu_problem.cache_clear()


def _one_line_status() -> tuple[int, str]:
    count, reason = xpnet.cuda_status()
    assert "\n" not in reason and (count == 0) == bool(reason)
    return count, reason


def test_cuda_status_counts_without_touching_a_gpu_and_the_probe_runs_on_the_gpu_used(fake_cupy):
    """Issue 19, defect 2: the count is getDeviceCount alone; the kernel, matmul and draw run
    on the GPU that will be used (here GPU 1), never on GPU 0."""
    fake = fake_cupy(devices=2)
    assert _one_line_status() == (2, "")
    assert fake.calls == []
    assert xpnet.cuda.gpu_problem(1) == ""
    assert fake.calls == [("nvrtc", 1), ("cublas", 1), ("Philox4x3210 size 4", 1), ("curand", 1),
                          ("random", 1)]


def test_cuda_status_without_a_driver(fake_cupy):
    fake_cupy(driver=0)
    _, reason = _one_line_status()
    assert "no NVIDIA driver" in reason and "CUDA 12.0 or newer" in reason


@pytest.mark.parametrize("driver, built, fix", [
    (11080, 12090, "update the NVIDIA driver"),
    (12020, 13000, "pip install 'xpnet[cuda12]' for this driver"),
])
def test_cuda_status_names_a_driver_too_old_for_the_wheel(fake_cupy, driver, built, fix):
    fake_cupy(driver=driver, built=built)
    _, reason = _one_line_status()
    assert f"driver supports CUDA {driver // 1000}." in reason
    assert f"built for CUDA {built // 1000}." in reason and fix in reason


def test_cuda_status_with_a_driver_but_no_device(fake_cupy):
    fake_cupy(devices=0)
    _, reason = _one_line_status()
    assert "no CUDA device is visible (cudaErrorNoDevice" in reason and "CUDA_VISIBLE_DEVICES" in reason


@pytest.mark.parametrize("library, named", [("nvrtc", "NVRTC"), ("cublas", "cuBLAS"), ("curand", "cuRAND")])
def test_cuda_status_names_the_missing_library_and_the_fix(fake_cupy, library, named):
    fake_cupy(fail=library)
    assert _one_line_status() == (2, "")
    reason = xpnet.cuda.gpu_problem(0)
    assert "\n" not in reason and "GPU 0" in reason
    assert named in reason and f"lib{library}.so.12" in reason
    assert "pip install 'xpnet[cuda12]'" in reason and "cupy-cuda12x[ctk]" in reason


def test_cuda_status_adds_an_old_driver_to_a_failing_probe(fake_cupy):
    fake_cupy(driver=12020, built=12090, fail="cublas")
    reason = xpnet.cuda.gpu_problem(0)
    assert "cuBLAS" in reason and "driver supports CUDA 12.2, older than the 12.9" in reason


def test_auto_falls_back_naming_the_missing_library(fake_cupy):
    fake_cupy(fail="curand")
    dev = xpnet.device("auto")
    assert dev.name == "cpu" and "cuRAND" in dev.fallback_reason


def test_cupy_generator_draws_on_its_gpu_without_randint(fake_cupy):
    """Generator state and every draw on the device's GPU (not the current one): CuPy refuses
    draws from a generator of another GPU; integers through the Generator API (no host sync)."""
    fake = fake_cupy()
    dev = backend_module.Device("cuda:1", "cupy", np, fake.cuda.Device(1), 1)
    rng = xpnet.Generator(dev, seed=3)
    rng.random((2, 2), "float32"), rng.normal((3,), "float64"), rng.integers(10, 5), rng.permutation(4)
    assert fake.calls == [(f"Philox4x3210 size {xpnet.rng.CUPY_GENERATOR_STATES}", 1), ("curand", 1),
                          ("random", 1), ("standard_normal", 1), ("integers", 1), ("random", 1),
                          ("argsort", 1)]
    assert fake.current == [0]
