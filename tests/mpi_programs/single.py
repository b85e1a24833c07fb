"""Without a launcher: init() is a one-process job, even with mpi4py installed.

Prints a JSON object of what it saw for tests/test_distributed.py.

    python tests/mpi_programs/single.py
"""

from __future__ import annotations

import json
import sys

import numpy as np

from xpnet.distributed import init

comm = init()
grads = {"W": np.ones((2, 3))}
print(json.dumps({
    "mpi4py_loaded": "mpi4py.MPI" in sys.modules,
    "rank": comm.rank, "size": comm.size, "local_rank": comm.local_rank,
    "is_root": comm.is_root, "init_idempotent": init() is comm,
    "hook_installed": sys.excepthook is not sys.__excepthook__,
    "mean_is_identity": comm.mean_gradients(grads)["W"] is grads["W"],
    "sum_is_identity": comm.allreduce_sum(7) == 7,
}))
