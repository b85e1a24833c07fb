"""``mpiexec -n N xpnet train``: data-parallel training whose results do not depend on N.

Each job is the real command under the venv's ``mpiexec`` (MPICH), compared with the same
command in one process: parameters after K steps in float64 (BatchNorm's global statistics
included), the printed accuracies (evaluation combined as counts over uneven shares), resume
on another number of processes, and errors that stop every rank without a hang.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpnet.cli import main

pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'xpnet[mpi]' "
                    "(the test extra has it)")

JOB_TIMEOUT_S = 90
# 600 images, global batch 60, 10 steps an epoch; float64 so only summation order differs
BASE = ["--device", "cpu", "--dtype", "float64", "--train-limit", "600", "--batch-size", "60",
        "--hidden", "16", "--optimizer", "adam", "-q"]
MODELS = {"mlp": [], "mlp-bn": ["--model", "mlp-bn", "--hidden", "16", "12"],
          "convnet": ["--model", "convnet", "--hidden", "8"]}


def mpiexec(ranks: int, *argv: str) -> subprocess.CompletedProcess:
    """``mpiexec -n ranks xpnet train argv`` with a timeout that turns a hang into a failure."""
    launcher = Path(sys.executable).parent / "mpiexec"
    env = {**os.environ, "MPIEXEC_TIMEOUT": str(JOB_TIMEOUT_S), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    command = [str(launcher), "-n", str(ranks), sys.executable, "-m", "xpnet", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=JOB_TIMEOUT_S + 30)


def params_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k.startswith(("params/", "buffers/", "optimizer/"))}


def assert_same_model(one: Path, many: Path) -> None:
    a, b = params_of(one), params_of(many)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-9, atol=1e-12, err_msg=key)


pytestmark = pytest.mark.usefixtures("isolated_mnist")


@pytest.mark.parametrize("model", MODELS)
def test_two_processes_end_with_the_one_process_parameters(model, tmp_path, capsys):
    argv = [*BASE, *MODELS[model], "--iters", "15"]
    assert main(["train", *argv, "--save", str(tmp_path / "one.npz")]) == 0
    one_out = capsys.readouterr().out.splitlines()
    job = mpiexec(2, "train", *argv, "--save", str(tmp_path / "two.npz"))
    assert job.returncode == 0, job.stderr
    assert_same_model(tmp_path / "one.npz", tmp_path / "two.npz")
    out = job.stdout.splitlines()
    # rank 0 alone prints: the device line (naming the job) and the final line, once each
    assert out[0] == ("xpnet: training on cpu (numpy), float64, 2 processes (data-parallel, "
                      "gradients by MPI on the packed buffer itself)")
    assert len(out) == 2 and out[1].split(" (")[0] == one_out[-1].split(" (")[0]


def test_three_processes_uneven_evaluation_shares_and_the_log(tmp_path, capsys):
    """10,000 test and 600 train images over 3 ranks: counts, not means, give exact accuracies."""
    argv = [*BASE, "--iters", "20"]
    assert main(["train", *argv, "--log", str(tmp_path / "one.jsonl")]) == 0
    capsys.readouterr()
    job = mpiexec(3, "train", *argv, "--log", str(tmp_path / "three.jsonl"))
    assert job.returncode == 0, job.stderr
    one = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    three = [json.loads(line) for line in (tmp_path / "three.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in three] == [1, 2]  # rank 0 alone wrote the log
    for a, b in zip(one, three):
        assert (a["train_acc"], a["test_acc"]) == (b["train_acc"], b["test_acc"])
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-9)


def test_resume_on_another_number_of_processes(tmp_path, capsys):
    argv = [*BASE, *MODELS["mlp-bn"]]
    assert main(["train", *argv, "--iters", "20", "--save", str(tmp_path / "straight.npz")]) == 0
    job = mpiexec(2, "train", *argv, "--iters", "10", "--save", str(tmp_path / "half.npz"))
    assert job.returncode == 0, job.stderr
    assert main(["train", "--device", "cpu", "-q", "--resume", str(tmp_path / "half.npz"),
                 "--iters", "20", "--save", str(tmp_path / "resumed.npz")]) == 0
    capsys.readouterr()
    assert_same_model(tmp_path / "straight.npz", tmp_path / "resumed.npz")


def test_a_batch_the_processes_cannot_split_is_one_line_on_every_rank():
    job = mpiexec(2, "train", *BASE, "--batch-size", "61", "--iters", "5")
    assert job.returncode == 2, job.stderr
    lines = job.stderr.strip().splitlines()  # rank 0 alone speaks
    assert lines == ["xpnet train: error: batch size 61 is not divisible by the 2 processes; use a "
                     "multiple of 2 (it is the global batch)"]


def test_a_setup_error_on_one_rank_stops_every_rank(tmp_path):
    """Rank 1 alone cannot read its data: both ranks stop with its error, none waits."""
    launcher = Path(sys.executable).parent / "mpiexec"
    env = {**os.environ, "MPIEXEC_TIMEOUT": str(JOB_TIMEOUT_S), "OMP_NUM_THREADS": "1"}
    rank = [sys.executable, "-m", "xpnet", "train", *BASE, "--iters", "5"]
    command = [str(launcher), "-n", "1", *rank, ":", "-n", "1", *rank,
               "--data-dir", str(tmp_path / "missing")]
    job = subprocess.run(command, env=env, capture_output=True, text=True,
                         timeout=JOB_TIMEOUT_S + 30)
    assert job.returncode == 2, job.stderr
    lines = job.stderr.strip().splitlines()  # rank 0 alone speaks, naming the rank that failed
    assert len(lines) == 1 and lines[0].startswith("xpnet train: error: rank 1: "), lines
    assert str(tmp_path / "missing") in lines[0]
