"""Every line of xpnet that runs only for CuPy, run on tests/fake_cupy's CuPy stand-in (no GPU).

The stand-in (tests/fake_cupy/README.md) models CuPy 14's devices, runtime and NCCL, each rule
citing the CuPy source line it mirrors. Here it carries the commands a GPU user runs
(``xpnet check``, ``xpnet train`` on ``cuda:1`` and ``auto``, ``mpiexec -n 2 xpnet train
--device cuda`` over NCCL, a CUDA-aware MPI and host copies, export, checkpoints across
devices) and the tests of issue 19's defects, each failing before its fix:

1. a device object in a cache key (CuPy's ``Device`` is unhashable);
2. the probe on GPU 0 in every process (EXCLUSIVE_PROCESS nodes, ``cuda:1`` beside a busy GPU 0);
3. the GPU extras without NCCL, and the transport unsaid;
4. the NCCL wheel named for CUDA 12 on CUDA 13;
5. CUDA-aware MPI detected through MPI 4.1's info key alone;
6. JAX float32 matrix products in TF32 (checked in the traced programs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import xpnet
import xpnet.distributed
from xpnet import transports
from xpnet.cli import main
from xpnet.packing import structure_key

ROOT = Path(__file__).parent.parent
JOB_TIMEOUT_S = 60
# 600 images, global batch 60: float64, so one process and two agree but for summation order
TRAIN = ["train", "--dtype", "float64", "--train-limit", "600", "--batch-size", "60",
         "--hidden", "16", "--iters", "10", "-q"]


@pytest.fixture
def exclusive_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every fake GPU in EXCLUSIVE_PROCESS compute mode; the folder says who holds which."""
    folder = tmp_path / "exclusive"
    folder.mkdir()
    monkeypatch.setenv("XPNET_FAKE_EXCLUSIVE_DIR", str(folder))
    return folder


def holders(folder: Path) -> dict[int, int]:
    """GPU -> the process id holding its context."""
    return {int(path.name[3:]): int(path.read_text()) for path in folder.glob("gpu*")}


# --- the stand-in models what it claims -------------------------------------------------


def test_stand_in_devices_are_new_unhashable_and_current_per_thread(cupy_stand_in):
    cupy = cupy_stand_in
    x = cupy.ones(3)
    assert x.device == x.device and x.device is not x.device  # core.pyx:1984, memory.pyx:468
    with pytest.raises(TypeError, match="unhashable"):
        {x.device}
    with cupy.cuda.Device(1):
        y = cupy.zeros(3)  # allocates on the current GPU
        import threading

        seen = []
        thread = threading.Thread(target=lambda: seen.append(cupy.cuda.runtime.getDevice()))
        thread.start()
        thread.join()
    assert (x.device.id, y.device.id, seen) == (0, 1, [0])
    with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)"):
        x + y
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(x)
    import array_api_compat.cupy as xp

    with cupy.cuda.Device(1):
        z = xp.zeros(2, device=cupy.cuda.Device(0))  # array-api-compat drops device=
    assert z.device.id == 1 and xp.asarray(z, device=cupy.cuda.Device(0)).device.id == 0


def test_a_generator_on_cuda_1_reseeds_and_draws_there(cupy_stand_in):
    """A trainer's per-step reseed makes a Philox bit generator on the generator's GPU, not the
    current one (CuPy refuses a draw from another GPU's states), and the words pick the stream."""
    rng = xpnet.Generator(xpnet.device("cuda:1"), seed=3)
    rng.reseed(0, 4, 1, 0)
    first = rng.random((6,))
    rng.random((2,))
    rng.reseed(0, 4, 1, 0)
    again = rng.random((6,))
    rng.reseed(0, 5, 1, 0)
    other = rng.random((6,))
    assert first.device.id == 1 and cupy_stand_in.cuda.runtime.getDevice() == 0
    assert rng._source.bit_generator.device_id == 1
    host = xpnet.to_numpy
    assert np.array_equal(host(first), host(again)) and not np.array_equal(host(first), host(other))


# --- defect 1: no device object in a key -------------------------------------------------


def test_the_layout_key_of_gpu_arrays_is_hashable(cupy_stand_in):
    cupy = cupy_stand_in
    with cupy.cuda.Device(1):
        arrays = {"W": cupy.ones((2, 2)), "b": cupy.zeros(2)}
    key = structure_key(arrays)
    assert hash(key) == hash(structure_key(arrays))  # equal structures, equal keys
    with cupy.cuda.Device(0):
        elsewhere = {"W": cupy.ones((2, 2)), "b": cupy.zeros(2)}
    assert structure_key(elsewhere) != key


# --- defect 2: count without a context, probe the GPU used ---------------------------------


def test_counting_gpus_touches_none_and_a_device_probes_only_its_own(cupy_stand_in):
    assert xpnet.cuda_status() == (2, "")
    assert cupy_stand_in.cuda.runtime.contexts == []
    dev = xpnet.device("cuda:1", make_current=True)
    assert dev.name == "cuda:1" and cupy_stand_in.cuda.runtime.contexts == [1]


def test_check_on_cuda_1_beside_a_gpu_0_held_by_another_process(exclusive_gpus, cupy_stand_in,
                                                                  capsys):
    (exclusive_gpus / "gpu0").write_text("1")  # another process's context, in EXCLUSIVE_PROCESS mode
    assert main(["check", "--device", "cuda:1", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("xpnet check on cuda:1 (cupy)") and "48 passed, 0 failed" in out
    assert holders(exclusive_gpus) == {0: 1, 1: os.getpid()}


def test_a_missing_cuda_library_is_named_for_the_gpu_used(cupy_stand_in, monkeypatch, caplog):
    monkeypatch.setattr(cupy_stand_in, "matmul", lambda *a, **k: (_ for _ in ()).throw(
        ImportError("libcublas.so.12: cannot open shared object file")))
    with pytest.raises(xpnet.DeviceError, match=r"cannot use cuda:1: CuPy sees GPU 1 but a matrix "
                                                r"product failed there: cuBLAS .*libcublas\.so\.12"):
        xpnet.device("cuda:1")
    assert xpnet.device("auto").name == "cpu"  # and auto says so, falling back


# --- the commands on one fake GPU ----------------------------------------------------------


def test_check_on_cuda(cupy_stand_in, capsys):
    assert main(["check", "--device", "cuda", "--dtype", "float64"]) == 0
    assert "48 passed, 0 failed" in capsys.readouterr().out


@pytest.mark.usefixtures("isolated_mnist")
def test_train_on_cuda_1_then_the_checkpoint_on_the_cpu_and_back(cupy_stand_in, tmp_path, capsys):
    saved = tmp_path / "gpu1.npz"
    assert main([*TRAIN, "--device", "cuda:1", "--save", str(saved)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "xpnet: training on cuda:1 (cupy), float64"
    network, _, meta = xpnet.load_checkpoint(saved, device="cpu")
    assert meta["saved_from"] == "cuda:1"
    back, _, _ = xpnet.load_checkpoint(saved, device="cuda:1")
    for key, value in back.params.items():
        assert value.device.id == 1, key
        np.testing.assert_array_equal(value.get(), network.params[key], err_msg=key)
    assert main(["evaluate", "--checkpoint", str(saved), "--device", "cpu"]) == 0
    on_cpu = capsys.readouterr().out.splitlines()[-1]
    assert main(["evaluate", "--checkpoint", str(saved), "--device", "cuda:1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == on_cpu
    trained = re.match(r"final test accuracy: (\S+) ", out[-1])[1]
    assert on_cpu.startswith(f"test acc {trained} (")


@pytest.mark.usefixtures("isolated_mnist")
def test_train_auto_picks_the_gpu(cupy_stand_in, capsys):
    assert main([*TRAIN, "--device", "auto", "--dtype", "float32"]) == 0
    assert capsys.readouterr().out.startswith("xpnet: training on cuda:0 (cupy), float32")


def test_export_of_a_network_on_cuda_1(cupy_stand_in, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from xpnet.export import ONNX_PROVIDER

    import onnxruntime

    net = xpnet.MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, device="cuda:1", seed=0)
    x = np.random.default_rng(0).standard_normal((4, 6)).astype("float32")
    path = xpnet.export_onnx(net, tmp_path / "net.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=[ONNX_PROVIDER])
    on_gpu = net.predict(xpnet.device("cuda:1").send(x), train_flg=False)
    assert on_gpu.device.id == 1
    ran = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(ran, on_gpu.get(), rtol=1e-5, atol=1e-6)


# --- data-parallel on two fake GPUs ---------------------------------------------------------


def mpiexec(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPIEXEC_TIMEOUT": str(JOB_TIMEOUT_S), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).parent / "mpiexec"), "-n", "2", sys.executable, "-m",
               "xpnet", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=JOB_TIMEOUT_S + 30)


def params(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k.startswith(("params/", "optimizer/"))}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The reference: the same training in one process on fake GPU 0."""
    folder = tmp_path_factory.mktemp("one")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent / "fake_cupy"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "XPNET_CACHE_DIR": str(folder), "OMP_NUM_THREADS": "1"}
    env.pop("XPNET_DATA_DIR", None)
    job = subprocess.run([sys.executable, "-m", "xpnet", *TRAIN, "--device", "cuda", "--save",
                          str(folder / "one.npz")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert job.returncode == 0, job.stderr
    return params(folder / "one.npz")


@pytest.mark.usefixtures("isolated_mnist")
@pytest.mark.parametrize("path, settings, transport", [
    ("nccl", {}, "NCCL"),
    ("cuda-aware", {"XPNET_FAKE_NCCL": "0", "XPNET_CUDA_AWARE_MPI": "1"}, "CUDA-aware MPI"),
    ("host", {"XPNET_FAKE_NCCL": "0", "XPNET_FAKE_CUDA": "13000"},
     "MPI through a host copy (CuPy cannot load NCCL (pip install nvidia-nccl-cu13"),
    ("one-gpu", {"XPNET_FAKE_GPUS": "1"},
     "MPI through a host copy (ranks share a GPU, which NCCL does not support"),
])
def test_two_ranks_equal_one_process(path, settings, transport, one_process, monkeypatch,
                                     tmp_path, request):
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    gpus = int(settings.get("XPNET_FAKE_GPUS", 2))
    exclusive = request.getfixturevalue("exclusive_gpus") if gpus == 2 else None
    request.getfixturevalue("cupy_stand_in")  # on PYTHONPATH, with the settings above
    job = mpiexec(*TRAIN, "--device", "cuda", "--save", str(tmp_path / "two.npz"))
    assert job.returncode == 0, job.stderr
    first = job.stdout.splitlines()[0]
    assert first.startswith("xpnet: training on cuda:0 (cupy), float64, 2 processes "
                            f"(data-parallel, gradients by {transport}"), first
    if exclusive is not None:  # each rank on its own GPU alone, in EXCLUSIVE_PROCESS mode
        ranks = holders(exclusive)
        assert sorted(ranks) == [0, 1] and ranks[0] != ranks[1]
    two = params(tmp_path / "two.npz")
    assert sorted(two) == sorted(one_process)
    for key, value in one_process.items():
        np.testing.assert_allclose(two[key], value, rtol=1e-9, atol=1e-12, err_msg=key)


class TwoRanks:
    """Rank 0's view of a two-rank MPI communicator whose other rank is on GPU 1."""

    def __init__(self, cupy) -> None:
        self.cupy = cupy

    def allgather(self, mine):
        (host, _), why = mine
        return [mine, ((host, self.cupy.cuda.runtime.deviceGetPCIBusId(1)), why)]

    def bcast(self, value, root=0):
        return value


def test_nccl_setup_failures_name_their_cause(cupy_stand_in, monkeypatch):
    from cupy.cuda import nccl
    from mpi4py import MPI

    dev = xpnet.device("cuda:0")
    monkeypatch.setattr(nccl, "NcclCommunicator",
                        lambda *args: (_ for _ in ()).throw(RuntimeError("NCCL_ERROR_SYSTEM")))
    with pytest.raises(xpnet.distributed.DistributedError,
                       match=r"NCCL could not start on rank 0 \(NCCL_ERROR_SYSTEM\); run with NCCL_DEBUG"):
        transports._nccl(TwoRanks(cupy_stand_in), MPI, dev, 0, 2)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", None)  # a CuPy built without NCCL
    monkeypatch.delattr(cupy_stand_in.cuda, "nccl")
    transport, reason = transports._nccl(TwoRanks(cupy_stand_in), MPI, dev, 0, 2)
    assert transport is None and reason.startswith("CuPy has no NCCL module (")


def test_nccl_refuses_dtypes_it_cannot_reduce(cupy_stand_in):
    from cupy.cuda import nccl

    transport = transports.NcclTransport(nccl, types.SimpleNamespace(allReduce=print), cupy_stand_in)
    with pytest.raises(xpnet.distributed.DistributedError, match="NCCL cannot reduce bool arrays"):
        transport.allreduce(cupy_stand_in.zeros(2, dtype=bool))


def test_a_cuda_runtime_that_fails_is_one_line(cupy_stand_in, monkeypatch):
    def fail() -> int:
        raise cupy_stand_in.cuda.runtime.CUDARuntimeError(35, "cudaErrorInsufficientDriver",
                                                          "driver too old\nsecond line")
    monkeypatch.setattr(cupy_stand_in.cuda.runtime, "runtimeGetVersion", fail)
    assert xpnet.cuda_status() == (0, "CuPy is installed but CUDA is unusable: "
                                      "cudaErrorInsufficientDriver: driver too old")


# --- defects 3 and 4: NCCL comes with the GPU extras, named for the CUDA in use ---------------


def test_the_gpu_extras_bring_the_nccl_wheel_of_their_cuda():
    text = (ROOT / "pyproject.toml").read_text()
    for major in (12, 13):
        extra = re.search(rf"^cuda{major} = \[(.*?)\]$", text, re.MULTILINE | re.DOTALL)
        assert extra is not None, f"no cuda{major} extra"
        assert f'"cupy-cuda{major}x[ctk]' in extra[1] and f'"nvidia-nccl-cu{major}' in extra[1]


@pytest.mark.parametrize("version, wheel", [("12090", "nvidia-nccl-cu12"), ("13000", "nvidia-nccl-cu13")])
def test_the_nccl_wheel_follows_cupys_cuda(version, wheel, monkeypatch, request):
    monkeypatch.setenv("XPNET_FAKE_CUDA", version)
    request.getfixturevalue("cupy_stand_in")
    assert transports.nccl_wheel() == wheel


# --- defect 5: CUDA-aware MPI, asked the documented ways ----------------------------------------


class FakeComm:
    def __init__(self, kinds: str | None) -> None:
        self.kinds = kinds

    def Get_info(self):
        kinds = self.kinds
        return types.SimpleNamespace(Get=lambda key: kinds if key == "mpi_memory_alloc_kinds"
                                     else None, Free=lambda: None)


def library(answer: int | None):
    if answer is None:
        return types.SimpleNamespace()  # an MPI without the extension
    query = lambda: answer  # noqa: E731
    return types.SimpleNamespace(MPIX_Query_cuda_support=query)


@pytest.mark.parametrize("setting, query, kinds, aware", [
    ("", 1, "mpi,system", True),  # Open MPI 5 built with CUDA: says so in its extension alone
    ("", 0, "mpi,system", False),  # MPICH's wheel answers 0
    ("", None, "mpi,system,cuda:device,cuda:host", True),  # MPI 4.1's info key
    ("", None, None, False),  # older MPIs say nothing
    ("1", 0, None, True),  # the explicit setting wins
    ("0", 1, "cuda", False),
])
def test_cuda_aware_mpi_detection(setting, query, kinds, aware, monkeypatch):
    monkeypatch.setenv(transports.CUDA_AWARE_VARIABLE, setting)
    monkeypatch.setattr(transports, "_mpi_library", lambda: library(query))
    assert transports.cuda_aware(FakeComm(kinds)) is aware


def test_a_bad_cuda_aware_setting_is_one_line(monkeypatch):
    monkeypatch.setenv(transports.CUDA_AWARE_VARIABLE, "yes")
    with pytest.raises(xpnet.ConfigError, match="XPNET_CUDA_AWARE_MPI='yes': use 1 .* or 0"):
        transports.cuda_aware(FakeComm(None))


def test_the_real_mpich_wheel_is_not_cuda_aware(monkeypatch):
    mpi = pytest.importorskip("mpi4py.MPI", reason="mpi4py is not installed")
    monkeypatch.delenv(transports.CUDA_AWARE_VARIABLE, raising=False)
    assert transports._mpi_library() is not None
    if "MPICH" in mpi.Get_library_version():
        assert transports.cuda_aware(mpi.COMM_WORLD) is False


# --- defect 6: float32 means float32 on JAX, inside xpnet's calls only ------------------------


def test_jax_matmuls_run_at_full_precision_in_xpnet_and_only_there():
    jax = pytest.importorskip("jax")
    from xpnet.compiled import COMPILERS

    dev = xpnet.device("jax:cpu")
    net = xpnet.SimpleConvNet((1, 6, 6), {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1},
                              hidden_size=4, output_size=3, device=dev, seed=0)
    x = dev.send(np.random.default_rng(0).standard_normal((2, 1, 6, 6)), "float32")
    t = dev.send(np.array([0, 2]), "int64")
    programs = []

    def recording_jit(function, donate):
        def run(*args):
            programs.append(str(jax.make_jaxpr(function)(*args)))
            return jax.jit(function, donate_argnums=donate)(*args)
        return run

    saved = COMPILERS["jax"]
    COMPILERS["jax"] = recording_jit
    try:
        from xpnet.compiled import compile_step

        compile_step(net, xpnet.SGD(lr=0.1))(x, t)
    finally:
        COMPILERS["jax"] = saved
    eager = str(jax.make_jaxpr(net.loss)(x, t))
    for jaxpr in (*programs, eager):
        products = jaxpr.count("dot_general[")
        assert products >= 3 and jaxpr.count("precision=(Precision.HIGHEST, Precision.HIGHEST)") == products
    assert jax.config.jax_default_matmul_precision is None  # no process-wide switch
    assert "precision" not in str(jax.make_jaxpr(lambda a: a @ a)(x[0, 0]))


# --- the remaining GPU branches that a CPU can reach ------------------------------------------


def test_a_cupy_that_fails_to_import_is_one_line(monkeypatch):
    class Broken:  # a CuPy whose extension modules raise something other than ImportError
        def find_spec(self, name, path=None, target=None):
            if name == "cupy":
                raise RuntimeError("CUDA driver version is insufficient\nsecond line")
            return None

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    xpnet.cuda.cuda_status.cache_clear()
    try:
        count, reason = xpnet.cuda_status()
    finally:
        xpnet.cuda.cuda_status.cache_clear()
    assert count == 0 and reason.startswith(
        "CuPy failed to import (CUDA driver version is insufficient); reinstall it: install CuPy")


def test_torch_cuda_ranks_and_buffers_are_told_apart_without_a_gpu():
    import torch

    from xpnet.commands.common import _rank_gpu
    from xpnet.packing import kind_of

    expected = "torch:cuda:1" if torch.cuda.device_count() > 1 else None
    assert _rank_gpu("torch:cuda", 1) == (expected or (
        "torch:cuda:0" if torch.cuda.is_available() else "torch:cuda"))  # device() says why
    gpu = xpnet.Device("torch:cuda:0", "torch", None, torch.device("cuda", 0), 0)
    assert kind_of(gpu) == "torch-cuda" and kind_of(xpnet.device("torch:cpu")) == "host"
