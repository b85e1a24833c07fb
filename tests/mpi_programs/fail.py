"""Under ``mpiexec -n N``: the last rank raises while the others wait in a barrier.

Without init()'s except hook the job would hang; with it, the whole job ends at once.
``xpnet`` raises an XPNetError (printed as one line), ``plain`` a ValueError (a traceback).

    mpiexec -n 2 python tests/mpi_programs/fail.py xpnet|plain
"""

from __future__ import annotations

import sys
import time

from xpnet.distributed import init
from xpnet.errors import ConfigError

comm = init()
if comm.rank == comm.size - 1:
    time.sleep(0.2)  # the others are in the barrier by now
    if sys.argv[1] == "xpnet":
        raise ConfigError("rank-local failure: the data file is truncated")
    raise ValueError("rank-local failure in plain Python")
comm.barrier()
