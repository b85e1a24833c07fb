"""Each rank's share of its machine's cores, so that ranks started together do not fight.

NumPy's BLAS (OpenBLAS, MKL) and PyTorch start one thread per core in every process. Under
a launcher, N ranks on one machine then run N threads per core, which wait for each other
at every matrix product, and a run takes many times as long as in one process
(docs/performance.md). :func:`share_cores` gives each rank ``cores // ranks on this machine``
threads (at least one): threadpoolctl limits the BLAS and OpenMP pools of the libraries
loaded, and ``torch.set_num_threads`` PyTorch's own. A user who set ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS`` has chosen: nothing is changed then.
"""

from __future__ import annotations

import os
import sys

__all__ = ["THREAD_VARIABLES", "available_cores", "share_cores"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def share_cores(ranks_here: int) -> int | None:
    """Limit this process's thread pools to its share of the cores among ``ranks_here``
    processes on this machine; return the threads each gets, or ``None`` where nothing was
    changed (one process, or the user set one of :data:`THREAD_VARIABLES`).

    Call it after the array libraries are imported: threadpoolctl limits loaded libraries.
    """
    if ranks_here <= 1 or any(os.environ.get(name) for name in THREAD_VARIABLES):
        return None
    from threadpoolctl import threadpool_limits

    threads = max(1, available_cores() // ranks_here)
    threadpool_limits(limits=threads)  # for the whole process: it is this run
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads
