"""xpnet.distributed on real processes: the venv's ``mpiexec`` (MPICH from ``pip install mpich``)
runs the programs in tests/mpi_programs/ with 2 and 3 ranks (MPICH oversubscribes two cores).

Every launch has two timeouts: ``MPIEXEC_TIMEOUT`` makes mpiexec kill a hung job, and
``subprocess.run(timeout=...)`` stops the test if mpiexec itself hangs. Each rank runs one
BLAS thread, or the ranks would fight over the cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.distributed import Communicator, DistributedError, DistributedOptimizer

pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'xpnet[mpi]' "
                    "(the test extra has it)")

PROGRAMS = Path(__file__).parent / "mpi_programs"
JOB_TIMEOUT_S = 60  # MPIEXEC_TIMEOUT: longer than any job here takes on two busy cores
RANKS = [2, 3]
CPU_BACKENDS = ["cpu", "torch:cpu", "array_api_strict:CPU_DEVICE", "array_api_strict:device1"]

_spec = importlib.util.spec_from_file_location("mpi_program_train", PROGRAMS / "train.py")
train_program = importlib.util.module_from_spec(_spec)  # its sizes and data, for one process
_spec.loader.exec_module(train_program)


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"  # where the mpich wheel puts it
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpi4py is installed but no mpiexec was found: pip install mpich")
    return found


def launch(program: str, ranks: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPIEXEC_TIMEOUT": str(JOB_TIMEOUT_S), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [_mpiexec(), "-n", str(ranks), sys.executable, str(PROGRAMS / program), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=JOB_TIMEOUT_S + 30)


def succeeded(job: subprocess.CompletedProcess) -> None:
    assert job.returncode == 0, f"mpiexec exited {job.returncode}:\n{job.stdout}\n{job.stderr}"


@pytest.fixture(scope="module", params=RANKS, ids=lambda n: f"{n}ranks")
def collectives_job(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], str]:
    """What each rank of one collectives.py job saw (every backend in one launch), and its log."""
    out = tmp_path_factory.mktemp(f"collectives{request.param}")
    job = launch("collectives.py", request.param, str(out))
    succeeded(job)
    return ([json.loads((out / f"rank{rank}.json").read_text()) for rank in range(request.param)],
            job.stderr)


@pytest.fixture
def collectives(collectives_job: tuple[list[dict], str]) -> list[dict]:
    return collectives_job[0]


def backend_results(collectives: list[dict], spec: str) -> list[dict]:
    results = [seen[spec] for seen in collectives]
    if "skipped" in results[0]:
        pytest.skip(results[0]["skipped"])
    return results


def test_ranks_know_their_place(collectives):
    size = len(collectives)
    for rank, seen in enumerate(collectives):
        assert (seen["rank"], seen["size"], seen["is_root"]) == (rank, size, rank == 0)
        assert seen["local_rank"] == rank  # one machine
        assert seen["init_idempotent"] and seen["hook_installed"]
        assert seen["bcast_object"] == {"seed": size - 1}
        assert seen["sum_int"] == size * (size + 1) // 2
        assert seen["sum_float"] == 0.25 * size
        shards = seen["shards"]
        assert shards[0][0] == 0 and shards[-1][1] == 10
        assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))
        assert max(b - a for a, b in shards) - min(b - a for a, b in shards) <= 1


def test_each_devices_path_is_logged_once_by_rank_0(collectives_job):
    seen, log = collectives_job
    lines = [line for line in log.splitlines() if line.startswith("xpnet.distributed:")]
    size = len(seen)
    expected = {"cpu": "MPI on the packed buffer itself",
                "torch:cpu": "MPI on the packed buffer itself",
                "array_api_strict:CPU_DEVICE": "MPI through a host copy",
                "array_api_strict:device1": "MPI through a host copy"}
    expected = {spec: path for spec, path in expected.items() if "skipped" not in seen[0][spec]}
    assert lines == [f"xpnet.distributed: {size} processes; {spec} arrays travel by {path}"
                     for spec, path in expected.items()], log


@pytest.mark.parametrize("spec", CPU_BACKENDS)
def test_broadcast_makes_differently_seeded_ranks_equal(collectives, spec):
    for seen in backend_results(collectives, spec):
        assert seen["broadcast_returns_params"]
        assert seen["broadcast_max_diff"] == 0.0
        assert seen["broadcast_placed"], "an array changed device or dtype"


@pytest.mark.parametrize("spec", CPU_BACKENDS)
def test_mean_gradients_is_the_mean_of_the_ranks_gradients(collectives, spec):
    for seen in backend_results(collectives, spec):
        assert seen["mean_keys"] == ["W1", "b1", "W2", "b2", "W2_f32"]  # the caller's order
        for key, error in seen["mean_rel_err"].items():
            assert error <= (1e-6 if key.endswith("f32") else 1e-13), key
        assert seen["mean_placed"], "an array changed device or dtype"
        assert seen["grads_untouched"], "mean_gradients wrote into the caller's arrays"
        assert seen["mean_repeatable"]


@pytest.mark.parametrize("spec", CPU_BACKENDS)
def test_allreduce_sum_of_arrays(collectives, spec):
    size = len(collectives)
    for seen in backend_results(collectives, spec):
        assert seen["sum_count"] == size * (size + 1) // 2
        assert seen["sum_count_placed"]
        assert seen["sum_vector"] == [size * (size - 1) / 2, 0.5 * size]


@pytest.mark.parametrize("spec", CPU_BACKENDS)
def test_mismatched_dicts_raise_on_every_rank_naming_the_key(collectives, spec):
    size = len(collectives)
    results = backend_results(collectives, spec)
    expected = {"extra key": ("'W3' is on rank", f"rank {size - 1}"),
                "shape": ("'b1' has shape", "(4,) on rank 1"),
                "dtype": ("'b2' has dtype", "float32 on rank 0"),
                "broadcast": ("broadcast_params: parameter 'b2'", "not on rank 0")}
    for seen in results:
        for case, fragments in expected.items():
            message = seen[f"mismatch {case}"]
            assert message is not None, f"{case}: no error on rank {seen}"
            assert all(fragment in message for fragment in fragments), message
            assert "every rank must pass the same keys" in message
        assert seen["usable_after_errors"]


def one_process_run(global_batch: int) -> dict[str, np.ndarray]:
    net = xpnet.TwoLayerNet(*train_program.SIZES, dtype="float64", seed=10)
    optimizer = xpnet.Momentum(lr=train_program.LR)
    x, t = train_program.data(global_batch)
    for step in range(train_program.STEPS):
        batch = slice(step * global_batch, (step + 1) * global_batch)
        optimizer.update(net.params, net.gradient(x[batch], t[batch]))
    return net.params


@pytest.mark.parametrize("ranks", RANKS)
def test_distributed_optimizer_equals_one_process_on_the_global_batch(ranks, tmp_path):
    succeeded(launch("train.py", ranks, str(tmp_path)))
    replicas = [dict(np.load(tmp_path / f"rank{rank}.npz")) for rank in range(ranks)]
    expected = one_process_run(train_program.PER_RANK * ranks)
    start = xpnet.TwoLayerNet(*train_program.SIZES, dtype="float64", seed=10).params
    for key, value in expected.items():
        assert not np.allclose(value, start[key]), f"{key} did not train"
        for replica in replicas[1:]:
            np.testing.assert_array_equal(replica[key], replicas[0][key],
                                          err_msg=f"replicas drifted apart in {key}")
        np.testing.assert_allclose(replicas[0][key], value, rtol=1e-10, atol=1e-14, err_msg=key)


@pytest.mark.parametrize("kind", ["xpnet", "plain"])
def test_one_failing_rank_ends_the_whole_job_at_once(kind):
    started = time.monotonic()
    job = launch("fail.py", 2, kind)
    elapsed = time.monotonic() - started
    assert job.returncode != 0
    assert elapsed < JOB_TIMEOUT_S / 3, f"the job hung for {elapsed:.0f} s instead of aborting"
    if kind == "xpnet":
        assert "[rank 1] error: rank-local failure: the data file is truncated" in job.stderr
        assert "Traceback" not in job.stderr
    else:
        assert "Traceback" in job.stderr and "ValueError: rank-local failure" in job.stderr


def test_init_without_a_launcher_is_one_process():
    env = {name: value for name, value in os.environ.items()
           if name not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")}
    job = subprocess.run([sys.executable, str(PROGRAMS / "single.py")], capture_output=True,
                         text=True, timeout=60, env=env)
    assert job.returncode == 0, job.stderr
    seen = json.loads(job.stdout)
    assert seen == {"mpi4py_loaded": True, "rank": 0, "size": 1, "local_rank": 0, "is_root": True,
                    "init_idempotent": True, "hook_installed": False, "mean_is_identity": True,
                    "sum_is_identity": True}


def test_init_refuses_to_train_alone_under_another_mpis_launcher():
    # Open MPI's launcher sets this; MPICH ignores it, so MPI sees a job of one process
    env = {**os.environ, "OMPI_COMM_WORLD_SIZE": "3"}
    job = subprocess.run([sys.executable, str(PROGRAMS / "single.py")], capture_output=True,
                         text=True, timeout=60, env=env)
    assert job.returncode != 0
    assert "one of 3 started by an MPI launcher, but MPI sees a job of 1" in job.stderr


def test_init_without_mpi4py_is_one_process_unless_a_launcher_started_many(monkeypatch):
    import xpnet.distributed as distributed

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_world", None)
    comm = distributed.init()
    assert (comm.rank, comm.size, comm.local_rank, comm.is_root) == (0, 1, 0, True)
    assert distributed.init() is comm

    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setenv("PMI_SIZE", "4")
    launcher = r"one of 4 started by an MPI launcher.*xpnet\[mpi\]"
    with pytest.raises(DistributedError, match=launcher):
        distributed.init()


def test_one_process_collectives_return_their_input():
    comm = Communicator(None)
    params = {"W": np.ones((2, 2))}
    assert comm.broadcast_params(params) is params
    assert comm.mean_gradients(params) == params
    assert comm.allreduce_sum(params["W"]) is params["W"]
    assert comm.bcast_object("x") == "x" and comm.allgather_object(3) == [3]
    assert comm.shard(5) == (0, 5)
    comm.barrier()
    with pytest.raises(xpnet.ConfigError, match="root must be a rank from 0 to 0"):
        comm.broadcast_params(params, root=1)


def test_distributed_optimizer_forwards_to_the_wrapped_optimizer():
    inner = xpnet.Adam(lr=0.01)
    optimizer = DistributedOptimizer(inner, Communicator(None))
    params = {"W": np.ones(3)}
    optimizer.update(params, {"W": np.full(3, 0.5)})
    assert inner.step_count == optimizer.step_count == 1
    assert params["W"][0] < 1.0
    optimizer.lr = 0.002  # a schedule sets the wrapped optimizer's rate
    assert inner.lr == 0.002 and optimizer.config == inner.config
    state = optimizer.state_dict()
    fresh = DistributedOptimizer(xpnet.Adam(lr=0.002), Communicator(None))
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.optimizer.state["m"]["W"], inner.state["m"]["W"])
