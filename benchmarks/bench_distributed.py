"""Communication overhead of ``Communicator.mean_gradients`` against one raw MPI Allreduce.

For the gradients of the 784-50-10 and 784-1000-10 ``TwoLayerNet`` (float32: 159,040 and
3,180,040 bytes) it times, on ``--ranks`` processes with one BLAS thread each:

- ``raw``: one ``MPI.COMM_WORLD.Allreduce`` (in place, SUM) of a buffer of the same bytes,
  the same buffer every call: the floor for any implementation;
- ``check``: the 16-byte Allreduce in which ``mean_gradients`` compares the ranks' manifests;
- ``packed``: the mean written by hand in NumPy: copy the arrays into one reused buffer,
  Allreduce it, divide into new arrays. The floor for a mean that packs and returns arrays
  that the next call does not overwrite: two passes over the bytes more than ``raw``;
- ``mean_gradients``: ``xpnet.distributed``'s, manifest check included.

The four are interleaved window by window (A B C D, D C B A, ...), so machine noise hits all
alike. A window's time is its slowest rank's (a collective ends when the last rank is done);
each figure is the median over the windows, in microseconds per call.

    python benchmarks/bench_distributed.py [--ranks N] [--windows W] [--quick] [--json PATH]

Started without a launcher, it starts itself again under ``mpiexec -n N`` (the one beside
the Python interpreter, which the mpich wheel installs, else the one on PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

LAUNCHED = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")  # set in each rank
CONFIGS = [(784, 50, 10), (784, 1000, 10)]
TARGET = 1.2  # mean_gradients / raw


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="processes to start (default 2)")
    parser.add_argument("--windows", type=int, help="timing windows per implementation "
                        "(default 21, --quick 3)")
    parser.add_argument("--window-s", type=float, default=0.1, help="seconds per window (0.1)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: numbers not meaningful")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    return parser.parse_args()


def relaunch(args: argparse.Namespace) -> int:
    """Run this script again as ``args.ranks`` MPI processes; return mpiexec's exit code."""
    beside = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(beside) if beside.exists() else shutil.which("mpiexec")
    if mpiexec is None:
        print("error: no mpiexec found; pip install mpi4py mpich (or xpnet[mpi])", file=sys.stderr)
        return 2
    threads = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {**os.environ, **{name: "1" for name in threads}}
    command = [mpiexec, "-n", str(args.ranks), sys.executable, *sys.argv]
    return subprocess.run(command, env=env).returncode


def main(args: argparse.Namespace) -> None:
    from mpi4py import MPI

    from xpnet.distributed import init

    comm = init()
    windows = args.windows or (3 if args.quick else 21)
    window_s = 0.01 if args.quick else args.window_s
    results = [measure(sizes, comm, MPI, windows, window_s) for sizes in CONFIGS]
    if comm.is_root:
        report(results, comm.size, windows, args)


def measure(sizes: tuple[int, int, int], comm, MPI, windows: int, window_s: float) -> dict:
    """The four implementations on one network's gradients: medians in us, and the ratios."""
    import numpy as np

    import xpnet

    world = MPI.COMM_WORLD
    net = xpnet.TwoLayerNet(*sizes, dtype="float32", seed=0)
    rng = np.random.default_rng(comm.rank)
    grads = net.gradient(rng.random((100, sizes[0]), dtype=np.float32),
                         rng.integers(0, sizes[2], 100))
    keys = sorted(grads)
    count = sum(grads[key].size for key in keys)
    raw = np.zeros(count, np.float32)
    packed = np.empty(count, np.float32)
    check = np.zeros(2, np.int64)

    def run_raw() -> None:
        world.Allreduce(MPI.IN_PLACE, raw, op=MPI.SUM)

    def run_check() -> None:
        world.Allreduce(MPI.IN_PLACE, check, op=MPI.MIN)

    def run_packed() -> dict:
        start = 0
        for key in keys:
            packed[start:start + grads[key].size] = grads[key].reshape(-1)
            start += grads[key].size
        world.Allreduce(MPI.IN_PLACE, packed, op=MPI.SUM)
        out, start = {}, 0
        for key in keys:
            out[key] = packed[start:start + grads[key].size].reshape(grads[key].shape) / comm.size
            start += grads[key].size
        return out

    def run_mean() -> dict:
        return comm.mean_gradients(grads)

    impls: dict[str, Callable] = {"raw": run_raw, "check": run_check, "packed": run_packed,
                                  "mean_gradients": run_mean}
    expected, got = run_packed(), run_mean()
    assert all(np.array_equal(got[key], expected[key]) for key in keys), "results differ"
    calls = {name: calls_per_window(world, impl, window_s) for name, impl in impls.items()}
    times: dict[str, list[float]] = {name: [] for name in impls}
    order = list(impls)
    for window in range(windows):
        for name in order if window % 2 == 0 else order[::-1]:
            world.Barrier()
            started = time.perf_counter()
            for _ in range(calls[name]):
                impls[name]()
            elapsed = (time.perf_counter() - started) / calls[name]
            times[name].append(world.allreduce(elapsed, op=MPI.MAX))
    medians = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    return {"network": "-".join(map(str, sizes)), "bytes": count * 4,
            "us": {name: round(value, 1) for name, value in medians.items()},
            "ratio": round(medians["mean_gradients"] / medians["raw"], 2),
            "ratio_to_packed": round(medians["mean_gradients"] / medians["packed"], 2)}


def calls_per_window(world, impl: Callable, window_s: float) -> int:
    """Calls that fill about ``window_s`` seconds, the same number on every rank."""
    from mpi4py import MPI

    world.Barrier()
    started = time.perf_counter()
    for _ in range(3):
        impl()
    each = world.allreduce((time.perf_counter() - started) / 3, op=MPI.MAX)
    return max(3, int(window_s / max(each, 1e-7)))


def report(results: list[dict], ranks: int, windows: int, args: argparse.Namespace) -> None:
    print(f"mean_gradients vs one raw MPI Allreduce of the same bytes: {ranks} ranks, float32, "
          f"median us per call over {windows} interleaved windows (slowest rank); "
          f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'network':<13}{'bytes':>11}{'raw':>10}{'check':>8}{'packed':>10}"
          f"{'mean_gradients':>16}{'ratio':>8}{'vs packed':>11}")
    for row in results:
        us = row["us"]
        print(f"{row['network']:<13}{row['bytes']:>11,}{us['raw']:>10.1f}{us['check']:>8.1f}"
              f"{us['packed']:>10.1f}{us['mean_gradients']:>16.1f}{row['ratio']:>7.2f}x"
              f"{row['ratio_to_packed']:>10.2f}x")
    print(f"target: mean_gradients <= {TARGET}x raw")
    if args.json:
        Path(args.json).write_text(json.dumps({"ranks": ranks, "windows": windows,
                                               "results": results}, indent=2))


if __name__ == "__main__":
    ARGS = parse_args()
    if not any(name in os.environ for name in LAUNCHED):
        sys.exit(relaunch(ARGS))
    main(ARGS)
