"""Communication overhead of ``Communicator.mean_gradients`` against one raw MPI Allreduce.

For the gradients of the 784-50-10 and 784-1000-10 ``TwoLayerNet`` (float32: 159,040 and
3,180,040 bytes) it times, on ``--ranks`` processes with one BLAS thread each:

- ``raw``: one ``MPI.COMM_WORLD.Allreduce`` (in place, SUM) of a buffer of the same bytes,
  the same buffer every call: the floor for any implementation;
- ``check``: the 16-byte Allreduce in which ``mean_gradients`` compares the ranks' manifests;
- ``packed``: the mean written by hand in NumPy: copy the arrays into one reused buffer,
  Allreduce it, divide into new arrays. The floor for a mean that packs and returns arrays
  that the next call does not overwrite: two passes over the bytes more than ``raw``;
- ``unpacked``: one out-of-place Allreduce per array into outputs kept from call to call,
  divided in place: no packing and no allocation, results overwritten by the next call. The
  floor of any mean that leaves its inputs untouched (it cannot reduce in their memory);
- ``mean_gradients``: ``xpnet.distributed``'s, manifest check included.

With ``--throughput`` it measures instead training samples per second of the data-parallel
``Trainer`` on ``--ranks`` processes with one BLAS thread each, against one process with as many
threads, for the 784-50-10 and 784-1000-10 MLPs and SimpleConvNet: the two runs alternate, three
rounds each, and each figure is a median.

The four are interleaved window by window (A B C D, D C B A, ...), so machine noise hits all
alike. A window's time is its slowest rank's (a collective ends when the last rank is done);
each figure is the median over the windows, in microseconds per call.

    python benchmarks/bench_distributed.py [--ranks N] [--windows W] [--quick] [--json PATH]
    python benchmarks/bench_distributed.py --throughput [--ranks N] [--quick]

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
    parser.add_argument("--throughput", action="store_true",
                        help="training samples/s on N processes against one process")
    parser.add_argument("--throughput-worker", action="store_true", help=argparse.SUPPRESS)
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

    outputs = {key: np.empty_like(grads[key]) for key in keys}

    def run_unpacked() -> dict:
        for key in keys:
            world.Allreduce(grads[key], outputs[key], op=MPI.SUM)
            outputs[key] *= 1.0 / comm.size
        return outputs

    def run_mean() -> dict:
        return comm.mean_gradients(grads)

    impls: dict[str, Callable] = {"raw": run_raw, "check": run_check, "packed": run_packed,
                                  "unpacked": run_unpacked, "mean_gradients": run_mean}
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
            "unpacked_ratio": round(medians["unpacked"] / medians["raw"], 2),
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
    print(f"{'network':<13}{'bytes':>11}{'raw':>10}{'check':>8}{'packed':>10}{'unpacked':>10}"
          f"{'mean_gradients':>16}{'ratio':>8}{'vs packed':>11}{'unpacked/raw':>14}")
    for row in results:
        us = row["us"]
        print(f"{row['network']:<13}{row['bytes']:>11,}{us['raw']:>10.1f}{us['check']:>8.1f}"
              f"{us['packed']:>10.1f}{us['unpacked']:>10.1f}{us['mean_gradients']:>16.1f}"
              f"{row['ratio']:>7.2f}x{row['ratio_to_packed']:>10.2f}x{row['unpacked_ratio']:>13.2f}x")
    print(f"target: mean_gradients <= {TARGET}x raw (unpacked/raw is the floor of any mean that "
          "leaves its inputs untouched)")
    if args.json:
        Path(args.json).write_text(json.dumps({"ranks": ranks, "windows": windows,
                                               "results": results}, indent=2))


# (model, global batch, hidden size) of the throughput table
TRAINING = [("mlp", 100, 50), ("mlp", 1000, 1000), ("convnet", 100, 100)]


def throughput_worker(args: argparse.Namespace) -> None:
    """Median seconds per training step of each TRAINING case on this job (one or N processes);
    rank 0 prints them as one JSON line."""
    import numpy as np

    import xpnet
    from xpnet.distributed import init

    comm = init()
    windows, steps = (3, 2) if args.quick else (9, 10)
    seconds = {}
    for model, batch, hidden in TRAINING:
        network = xpnet.build_model(model, input_shape=(1, 28, 28), hidden=[hidden],
                                    output_size=10, seed=0)
        rng = np.random.default_rng(0)  # the same data on every rank: it is one data set
        data = (rng.random((batch * steps, 784), dtype=np.float32), rng.integers(0, 10, batch * steps))
        trainer = xpnet.Trainer(network, xpnet.SGD(lr=0.01), data, (data[0][:10], data[1][:10]),
                                batch_size=batch, comm=comm)
        xp, mine = trainer.device.xp, comm.rank * trainer.share
        order = trainer.batch_order(0)
        times = []
        for window in range(windows + 1):  # the first window warms up
            comm.barrier()
            started = time.perf_counter()
            for i in range(steps):
                rows = order[i * batch + mine:i * batch + mine + trainer.share]
                trainer.step(xp.take(trainer.x_train, rows, axis=0),
                             xp.take(trainer.t_train, rows, axis=0))
            elapsed = (time.perf_counter() - started) / steps
            slowest = comm.allgather_object(elapsed)
            if window:
                times.append(max(slowest))
        seconds[f"{model} {batch}/{hidden}"] = statistics.median(times)
    if comm.is_root:
        print(json.dumps(seconds), flush=True)


def throughput(args: argparse.Namespace) -> None:
    """Alternate one process with N threads and N processes with one thread each."""
    threads = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    beside = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(beside) if beside.exists() else shutil.which("mpiexec")
    worker = [sys.executable, __file__, "--throughput-worker"] + (["--quick"] if args.quick else [])
    runs = {"one process": ([], str(args.ranks)), f"{args.ranks} processes": (
        [mpiexec, "-n", str(args.ranks)], "1")}
    seconds: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(1 if args.quick else 3):
        for name, (launcher, per_process) in runs.items():
            env = {**os.environ, **{variable: per_process for variable in threads}}
            done = subprocess.run([*launcher, *worker], env=env, capture_output=True, text=True,
                                  check=True)
            seconds[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"training samples/s, global batch as shown, float32, {args.ranks} cores' worth of "
          f"threads either way; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    names = list(runs)
    print(f"{'case':<22}" + "".join(f"{name:>16}" for name in names) + f"{'speed-up':>10}")
    for case in seconds[names[0]][0]:
        rates = [None] * len(names)
        for i, name in enumerate(names):
            step = statistics.median(run[case] for run in seconds[name])
            rates[i] = int(case.split()[1].split("/")[0]) / step
        print(f"{case:<22}" + "".join(f"{rate:>16,.0f}" for rate in rates)
              + f"{rates[1] / rates[0]:>9.2f}x")


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.throughput_worker:
        throughput_worker(ARGS)
    elif ARGS.throughput:
        throughput(ARGS)
    elif not any(name in os.environ for name in LAUNCHED):
        sys.exit(relaunch(ARGS))
    else:
        main(ARGS)
