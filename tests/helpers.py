"""What several test files share: data and launchers (fixtures stay in conftest.py).

Tests import from here (``from helpers import blobs``), never from conftest: pytest puts the
tests folder on ``sys.path`` for both, but conftest is pytest's, loaded once per session.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

MPI_PROGRAMS = Path(__file__).parent / "mpi_programs"


def blobs(n: int, seed: int = 0, features: int = 8, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of ``classes`` well separated Gaussian clusters, float64 features and int
    labels on the host. The centres are fixed, so sets drawn with other seeds (a test set) come
    from the same clusters."""
    centres = 3.0 * np.random.default_rng(1234).standard_normal((classes, features))
    rng = np.random.default_rng(seed)
    t = rng.integers(0, classes, n)
    return centres[t] + rng.standard_normal((n, features)), t


def idx_bytes(array: np.ndarray, *, type_byte: int = 0x08) -> bytes:
    """``array`` in MNIST's IDX format (``type_byte`` 0x08: unsigned bytes)."""
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """``array`` written to ``path`` as an IDX file, gzipped if ``gz``."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def mpiexec(ranks: int, *argv: str, timeout_s: int = 90) -> subprocess.CompletedProcess:
    """``mpiexec -n ranks python argv`` (the venv's MPICH), one BLAS thread per rank. Two
    timeouts turn a hang into a failure: ``MPIEXEC_TIMEOUT`` makes mpiexec kill the job, and
    ``subprocess.run``'s stops the test if mpiexec itself hangs."""
    launcher = Path(sys.executable).parent / "mpiexec"
    env = {**os.environ, "MPIEXEC_TIMEOUT": str(timeout_s), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [str(launcher), "-n", str(ranks), sys.executable, *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s + 30)
