"""Under ``mpiexec -n N``: every collective of xpnet.distributed on each CPU backend.

Each rank writes what it saw to ``OUT/rank<r>.json``; tests/test_distributed.py judges it.
One launch covers all backends, since each mpiexec start costs a second or two.

    mpiexec -n 2 python tests/mpi_programs/collectives.py OUT
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

import xpnet
from xpnet.distributed import DistributedError, init

BACKENDS = ["cpu", "torch:cpu", "array_api_strict:CPU_DEVICE", "array_api_strict:device1"]
SIZES = (6, 5, 3)  # a small TwoLayerNet


def batch(rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank ``rank``'s mini-batch: every rank can rebuild every other rank's."""
    rng = np.random.default_rng(1000 + rank)
    return rng.random((4, SIZES[0])), rng.integers(0, SIZES[2], 4)


def reference_mean(size: int) -> dict[str, np.ndarray]:
    """The mean over ranks of their gradients, computed here alone in NumPy float64."""
    net = xpnet.TwoLayerNet(*SIZES, dtype="float64", seed=0)
    per_rank = [net.gradient(*batch(rank)) for rank in range(size)]
    mean = {key: np.mean([grads[key] for grads in per_rank], axis=0) for key in per_rank[0]}
    mean["W2_f32"] = mean["W2"]
    return mean


def placed(arrays: dict, dev: xpnet.Device, dtypes: dict[str, str]) -> bool:
    return all(xpnet.device_of(value) == dev
               and str(value.dtype).endswith(dtypes.get(key, "float64"))
               for key, value in arrays.items())


def mismatch(comm, grads: dict, case: str) -> str | None:
    """Make one rank's dict differ as ``case`` says; the error message every rank got."""
    xp = xpnet.namespace_of(grads["W1"])
    grads = dict(grads)
    if case == "extra key" and comm.rank == comm.size - 1:
        grads["W3"] = grads["W2"]
    elif case == "shape" and comm.rank == 1:
        grads["b1"] = grads["b1"][:4]
    elif case == "dtype" and comm.rank == 0:
        grads["b2"] = xp.astype(grads["b2"], xp.float32)
    try:
        if case == "broadcast":
            if comm.rank == 0:
                del grads["b2"]
            comm.broadcast_params(grads)
        else:
            comm.mean_gradients(grads)
    except DistributedError as exc:
        return str(exc)
    return None


def check_backend(comm, spec: str) -> dict:
    try:
        dev = xpnet.device(spec)
    except xpnet.DeviceError as exc:
        return {"skipped": str(exc)}
    to_numpy = xpnet.to_numpy
    seen = {}

    net = xpnet.TwoLayerNet(*SIZES, device=dev, dtype="float64", seed=comm.rank)
    seen["broadcast_returns_params"] = comm.broadcast_params(net.params) is net.params
    root = xpnet.TwoLayerNet(*SIZES, dtype="float64", seed=0).params
    seen["broadcast_max_diff"] = max(float(np.max(np.abs(to_numpy(net.params[key]) - root[key])))
                                     for key in root)
    seen["broadcast_placed"] = placed(net.params, dev, {})

    x, t = batch(comm.rank)
    grads = net.gradient(dev.send(x, "float64"), dev.send(t))
    grads["W2_f32"] = dev.xp.astype(grads["W2"], dev.dtype("float32"))  # a second dtype buffer
    before = {key: np.array(to_numpy(value)) for key, value in grads.items()}
    mean = comm.mean_gradients(grads)
    expected = reference_mean(comm.size)
    seen["mean_keys"] = list(mean)
    seen["mean_rel_err"] = {key: float(np.max(np.abs(to_numpy(mean[key]) - expected[key]))
                                       / np.max(np.abs(expected[key])))
                            for key in expected}
    seen["mean_placed"] = placed(mean, dev, {"W2_f32": "float32"})
    seen["grads_untouched"] = all(np.array_equal(to_numpy(grads[key]), before[key])
                                  for key in grads)
    again = comm.mean_gradients(grads)  # the cached layout gives the same answer
    seen["mean_repeatable"] = all(np.array_equal(to_numpy(again[key]), to_numpy(mean[key]))
                                  for key in mean)

    count = dev.xp.asarray(comm.rank + 1, dtype=dev.dtype("int64"), device=dev.array_device)
    total = comm.allreduce_sum(count)
    seen["sum_count"] = int(to_numpy(total))
    seen["sum_count_placed"] = placed({"c": total}, dev, {"c": "int64"})
    vector = dev.send(np.array([comm.rank, 0.5]), "float64")
    seen["sum_vector"] = to_numpy(comm.allreduce_sum(vector)).tolist()

    for case in ("extra key", "shape", "dtype", "broadcast"):
        seen[f"mismatch {case}"] = mismatch(comm, grads, case)
    after = comm.mean_gradients(grads)  # the ranks are still in step after the errors
    seen["usable_after_errors"] = all(np.array_equal(to_numpy(after[key]), to_numpy(mean[key]))
                                      for key in mean)
    return seen


def main() -> None:
    out = Path(sys.argv[1])
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # each path is logged once
    comm = init()
    seen = {"rank": comm.rank, "size": comm.size, "local_rank": comm.local_rank,
            "is_root": comm.is_root, "init_idempotent": init() is comm,
            "hook_installed": sys.excepthook is not sys.__excepthook__,
            "shards": comm.allgather_object(comm.shard(10)),
            "bcast_object": comm.bcast_object({"seed": comm.rank}, root=comm.size - 1),
            "sum_int": comm.allreduce_sum(comm.rank + 1),
            "sum_float": comm.allreduce_sum(0.25)}
    comm.barrier()
    for spec in BACKENDS:
        seen[spec] = check_backend(comm, spec)
    (out / f"rank{comm.rank}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main()
