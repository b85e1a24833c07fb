"""Under ``mpiexec -n N``: K steps of data-parallel training with DistributedOptimizer.

Ranks start from differently seeded weights (broadcast_params makes them equal); at step i
rank r trains on the r-th contiguous share of global batch i. Each rank saves its final
parameters to ``OUT/rank<r>.npz``; tests/test_distributed.py compares them with each other and
with one process trained on the whole global batches.

    mpiexec -n 2 python tests/mpi_programs/train.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import xpnet
from xpnet.distributed import DistributedOptimizer, init

SIZES, STEPS, PER_RANK, LR = (8, 7, 3), 4, 4, 0.5


def data(global_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """STEPS global batches, one after another (the same on every rank, and in the test)."""
    rng = np.random.default_rng(42)
    n = STEPS * global_batch
    return rng.random((n, SIZES[0])), rng.integers(0, SIZES[2], n)


def main() -> None:
    comm = init()
    net = xpnet.TwoLayerNet(*SIZES, dtype="float64", seed=10 + comm.rank)
    comm.broadcast_params(net.params)
    optimizer = DistributedOptimizer(xpnet.Momentum(lr=LR), comm)
    global_batch = PER_RANK * comm.size
    x, t = data(global_batch)
    start, stop = comm.shard(global_batch)
    for step in range(STEPS):
        offset = step * global_batch
        optimizer.update(net.params, net.gradient(x[offset + start:offset + stop],
                                                  t[offset + start:offset + stop]))
    np.savez(Path(sys.argv[1]) / f"rank{comm.rank}.npz", **net.params)


if __name__ == "__main__":
    main()
