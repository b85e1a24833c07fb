"""Under ``mpiexec -n N``: examples/custom_layer.py's network (its own NoisyCentering layer,
Dropout and batch statistics) trained data-parallel by the Trainer, in float64. Rank 0 saves
the parameters and running statistics to ``OUT`` for tests/test_custom_layer.py to compare with
one process.

    mpiexec -n 2 python tests/mpi_programs/custom_layer.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))

import xpnet  # noqa: E402
from custom_layer import build_network  # noqa: E402
from xpnet.distributed import init  # noqa: E402

SHAPE, CLASSES, SAMPLES, BATCH, ITERATIONS = (1, 6, 6), 3, 40, 8, 8


def data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((SAMPLES, *SHAPE)), rng.integers(0, CLASSES, SAMPLES)


def train(comm: xpnet.distributed.Communicator | None = None) -> xpnet.Trainer:
    """ITERATIONS steps (an epoch is 5) of the example network, as the test runs it too."""
    net = build_network(SHAPE, CLASSES, filters=2, hidden=6, dtype="float64", seed=3)
    trainer = xpnet.Trainer(net, xpnet.Adam(lr=0.01), data(0), data(1), batch_size=BATCH, seed=5,
                            comm=comm)
    trainer.fit(iterations=ITERATIONS)
    return trainer


def main() -> None:
    comm = init()
    trainer = train(comm)
    if comm.is_root:
        net = trainer.network
        np.savez(sys.argv[1], **{f"params/{k}": xpnet.to_numpy(v) for k, v in net.params.items()},
                 **{f"buffers/{k}": v for k, v in net.state_dict().items()},
                 losses=np.array(trainer.loss_history))


if __name__ == "__main__":
    main()
