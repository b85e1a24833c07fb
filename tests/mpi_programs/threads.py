"""Under ``mpiexec -n N``: each rank's thread pools after :func:`xpnet.threads.share_cores`.

Writes ``OUT/rank<r>.json`` for each rank: the threads share_cores returned, and the
``num_threads`` of every pool threadpoolctl sees (NumPy's BLAS, OpenMP) and PyTorch's.

    mpiexec -n 2 python tests/mpi_programs/threads.py OUT
"""

import json
import sys
from pathlib import Path

import numpy  # noqa: F401 - its BLAS is one of the pools to limit
import torch
from threadpoolctl import threadpool_info

from xpnet.distributed import init
from xpnet.threads import share_cores

comm = init()
threads = share_cores(comm.local_size)
pools = [pool["num_threads"] for pool in threadpool_info()]
report = {"threads": threads, "pools": pools, "torch": torch.get_num_threads()}
(Path(sys.argv[1]) / f"rank{comm.rank}.json").write_text(json.dumps(report))
