"""benchmarks/gpu_report.sh without a GPU, and the BLAS kernel every benchmark records."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parent.parent


def test_gpu_report_says_in_one_line_that_there_is_no_gpu(tmp_path):
    # a PATH without nvidia-smi: the machine CI runs on, or any without an NVIDIA driver
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "grep", "dirname", "realpath"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    job = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_report.sh"), str(tmp_path / "r.md")],
                         env={**os.environ, "PATH": str(bin_dir)}, capture_output=True, text=True,
                         timeout=30)
    assert job.returncode == 0, job.stderr
    assert job.stdout.splitlines() == ["gpu_report: no NVIDIA GPU on this machine (nvidia-smi lists "
                                       "none); nothing to measure"]
    assert not (tmp_path / "r.md").exists()


def test_benchmarks_record_the_blas_kernel(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import harness

    np.ones((2, 2)) @ np.ones((2, 2))  # NumPy's BLAS is loaded
    kernels = harness.blas_kernels()
    assert kernels and {"internal_api", "version", "architecture", "num_threads"} <= set(kernels[0])
    numpy_blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    assert any(k["internal_api"] in numpy_blas for k in kernels)  # scipy-openblas -> openblas
    summary = harness.blas_summary(kernels)
    assert f"{kernels[0]['internal_api']} {kernels[0]['version']} (" in summary and "kernel" in summary
    env = harness.environment(harness.xpnet.device("cpu"), None)
    assert env["blas_kernels"] == kernels
    assert env["openblas_coretype"] == os.environ.get("OPENBLAS_CORETYPE")
