"""Training-step benchmark: xpnet against the book's NumPy code, PyTorch and the GEMM floor.

For each configuration (batch size, hidden size) of the 784-H-10 network it times one
training step (draw a batch, forward, backward, SGD update) of:

- ``xpnet f32`` / ``xpnet f64``: ``xpnet.TwoLayerNet`` on ``--device``, batches drawn and
  gathered on the device (``Generator.integers`` + ``xp.take``), ``xpnet.optim.SGD``;
- ``book``: the book's chapter-5 code in plain NumPy, copied in book_reference.py (float64
  parameters, float32 images, one-hot float64 labels, ``np.random.choice``, the full backward
  including the first layer's ``dx``, its ``softmax`` and ``cross_entropy_error``);
- ``torch``: PyTorch eager on the same device (two ``nn.Linear``, ReLU, ``F.cross_entropy``,
  ``torch.optim.SGD``), float32, when torch is installed;
- ``jax f32`` / ``jax jit f32``: ``xpnet f32``'s code on JAX (``jax:cpu``, or JAX's GPU N for
  GPU N) when JAX is installed: eager, one dispatched operation at a time, and with the
  gradient and update compiled into one ``jax.jit`` program (``xpnet.compiled``, as
  ``xpnet train --jit``; the batch is drawn and gathered eagerly, as there);
- ``plain``: the same step written out by hand in plain NumPy (CuPy on a GPU), float32, with
  the fewest library calls and no framework: what eager, one-call-per-operation code costs,
  so ``xpnet f32 / plain`` is xpnet's own overhead;
- ``bound``: the step's matrix products alone (forward 2; backward dW2, dx2, dW1), float32,
  at the same shapes and layouts, with NumPy on the CPU (CuPy or torch on a GPU): the floor.

The implementations are interleaved window by window (A B C D E, B C D E A, ...), so
machine noise hits all alike; each number is the median ms per step over the windows.
A second table times the SimpleConvNet step (batch 100, the book's network) the same ways.
It then times one evaluation of train and test accuracy (70,000 samples), and with
``--book-run`` the book's whole run (10000 iterations on real MNIST, accuracy every epoch)
both ways: the book's code and ``examples/train_mnist.py``. On a GPU, torch runs on the
same GPU as xpnet with TF32 off, and every clock is read after that GPU has finished.

    python benchmarks/bench_train.py [--device SPEC] [--json PATH] [--quick] [--book-run]
                                     [--threads N]

Data are synthetic, MNIST-shaped (uniform [0, 1) features, labels 0..9), except for
``--book-run``. See docs/performance.md for results and how to read them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import runpy
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="xpnet device spec (default cpu); "
                        "PyTorch runs on the same device (cuda:N for cuda:N and torch:cuda:N)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="a smoke run (a few seconds): "
                        "short windows, numbers not meaningful")
    parser.add_argument("--book-run", action="store_true",
                        help="also time the book's whole run on real MNIST, both ways")
    parser.add_argument("--threads", type=int, help="CPU threads for BLAS and PyTorch "
                        "(default: the libraries' defaults, usually one per core)")
    parser.add_argument("--windows", type=int, help="timing windows per implementation "
                        "(default 15, --quick 2)")
    parser.add_argument("--window-s", type=float, help="seconds per window (default 0.2)")
    parser.add_argument("--gap-s", type=float, default=0.2, help="idle seconds before each "
                        "window, so the previous library's BLAS threads stop spinning (0.2)")
    return parser.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.threads:  # BLAS reads these once, when it loads
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread settings)

import xpnet  # noqa: E402

# harness.py and book_reference.py sit beside this script: importable however it is loaded
# (run as a script, or by path through importlib as the tests do)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_reference import (  # noqa: E402
    BookTwoLayerNet, book_one_hot, train_neuralnet, train_step)
from harness import (  # noqa: E402
    Impl, blas_summary, device_sync, environment, fmt, interleaved, jax_device_for, jax_sync, load_average,
    no_sync, ratio, table, torch_device_for, torch_full_fp32, torch_sync)

CONFIGS = [(100, 50), (100, 1000), (1000, 50), (1000, 1000)]  # (batch size, hidden size)
INPUT, CLASSES, LR = 784, 10, 0.1
N_TRAIN, N_TEST = 60000, 10000
EVAL_BATCH = 10000
# (batch, hidden) -> (max xpnet f32 / torch f32, max xpnet f32 / GEMM bound) on the 2-core CPU
TARGETS = {(100, 50): (0.6, 2.0), (1000, 1000): (0.95, 1.2)}
JIT_TARGET = 0.5  # max jax jit f32 / jax f32, at every size
CONVNET_BATCH, CONVNET_HIDDEN = 100, 100


# --- the implementations: each is a step() and a sync() --------------------------------------

class Data:
    """Synthetic MNIST-shaped data on the host, and its copies on each device, made once."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x_train = rng.random((N_TRAIN, INPUT), dtype=np.float32)
        self.x_test = rng.random((N_TEST, INPUT), dtype=np.float32)
        self.t_train = rng.integers(0, CLASSES, N_TRAIN)
        self.t_test = rng.integers(0, CLASSES, N_TEST)
        self.book = {"t_train": book_one_hot(self.t_train), "t_test": book_one_hot(self.t_test)}
        self._sent: dict[tuple[str, str], tuple] = {}

    def on(self, dev: xpnet.Device, dtype: str) -> tuple:
        key = (dev.name, dtype)
        if key not in self._sent:
            self._sent[key] = (dev.send(self.x_train, dtype), dev.send(self.t_train, "int64"),
                               dev.send(self.x_test, dtype), dev.send(self.t_test, "int64"))
        return self._sent[key]


def xpnet_impl(dev: xpnet.Device, dtype: str, data: Data, batch: int, hidden: int, *,
               jit: bool = False, convnet: bool = False, label: str = "xpnet") -> Impl:
    """``TwoLayerNet`` (``SimpleConvNet`` with ``convnet``) trained by SGD on ``dev``; with
    ``jit`` the gradient and update run as one compiled program (JAX only)."""
    from xpnet.compiled import compile_step
    from xpnet.optim import SGD

    xp = dev.xp
    x, t, _, _ = data.on(dev, dtype)
    with dev:  # on CuPy, where the weights and the generator's state are allocated
        if convnet:
            net = xpnet.SimpleConvNet(hidden_size=hidden, device=dev, dtype=dtype, seed=0)
            x = xp.reshape(x, (-1, *net.input_shape))  # a view: no copy of the images
        else:
            net = xpnet.TwoLayerNet(INPUT, hidden, CLASSES, device=dev, dtype=dtype, seed=0)
        generator = xpnet.Generator(dev, seed=0)
    optimizer = SGD(lr=LR)
    update = compile_step(net, optimizer) if jit else (
        lambda x_batch, t_batch: optimizer.update(net.params, net.gradient(x_batch, t_batch)))

    def step() -> None:
        with dev:
            batch_mask = generator.integers(N_TRAIN, batch)
            update(xp.take(x, batch_mask, axis=0), xp.take(t, batch_mask, axis=0))

    sync = jax_sync(lambda: net.params) if dev.backend == "jax" else device_sync(dev)
    name = f"{label}{' jit' if jit else ''} {dtype.replace('float', 'f')}"
    return Impl(name, step, sync, net.params)


def jax_impls(dev: xpnet.Device, data: Data, batch: int, hidden: int,
              convnet: bool = False) -> list[Impl]:
    """``jax f32`` and ``jax jit f32`` on JAX's device beside ``dev``; none without JAX."""
    where = jax_device_for(dev)
    if where is None:
        return []
    return [xpnet_impl(where, "float32", data, batch, hidden, jit=jit, convnet=convnet,
                       label="jax") for jit in (False, True)]


def book_impl(data: Data, batch: int, hidden: int) -> Impl:
    np.random.seed(0)
    network = BookTwoLayerNet(input_size=INPUT, hidden_size=hidden, output_size=CLASSES)
    x_train, t_train = data.x_train, data.book["t_train"]

    return Impl("book", lambda: train_step(network, x_train, t_train, batch, LR), no_sync)


def plain_impl(dev: xpnet.Device, data: Data, batch: int, hidden: int) -> Impl | None:
    """The step with nothing but library calls: xpnet's maths (integer labels, stable
    softmax, fused gradient, no dx for the input) in NumPy, or CuPy on a CuPy device.

    It starts from xpnet f32's weights and draws the same batches on NumPy (seed 0), so the
    two train the same network.
    """
    if dev.backend not in ("numpy", "cupy"):
        return None
    lib = dev.xp_library
    x, t, _, _ = data.on(dev, "float32")
    with dev:  # cupy.array(copy=True), arange and the generator allocate on the current GPU
        start = xpnet.TwoLayerNet(INPUT, hidden, CLASSES, device=dev, dtype="float32",
                                  seed=0).params
        params = {key: lib.array(value, copy=True) for key, value in start.items()}
        rng = lib.random.default_rng(0)
        classes = lib.arange(CLASSES)
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]

    def step() -> None:
        with dev:
            batch_mask = rng.integers(0, N_TRAIN, batch)
            x_batch, t_batch = lib.take(x, batch_mask, axis=0), lib.take(t, batch_mask, axis=0)
            a = x_batch @ W1
            a += b1
            off = a <= 0
            h = lib.maximum(a, 0.0)
            s = h @ W2
            s += b2
            shifted = s - lib.max(s, axis=1, keepdims=True)
            e = lib.exp(shifted)
            total = lib.sum(e, axis=1, keepdims=True)
            one_hot = (t_batch[:, None] == classes).astype(lib.float32)
            # the loss, unused here, as every implementation's forward computes it
            loss = (lib.sum(lib.log(total)) - lib.sum(one_hot * shifted)) / batch  # noqa: F841
            d = (e / total - one_hot) * (1.0 / batch)
            dW2, db2 = h.T @ d, lib.sum(d, axis=0)
            dh = (d @ W2.T) * (~off).astype(lib.float32)
            dW1, db1 = x_batch.T @ dh, lib.sum(dh, axis=0)
            for param, grad in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2)):
                param -= LR * grad

    return Impl("plain f32", step, device_sync(dev), params)


def torch_model(torch: Any, where: Any, hidden: int) -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(INPUT, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, CLASSES)).to(where)


def torch_impl(torch: Any, where: Any, data: Data, batch: int, hidden: int) -> Impl:
    functional = torch.nn.functional
    x = torch.as_tensor(data.x_train, device=where)
    t = torch.as_tensor(data.t_train, device=where)
    model = torch_model(torch, where, hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    generator = torch.Generator(device=where).manual_seed(0)

    def step() -> None:
        batch_mask = torch.randint(N_TRAIN, (batch,), device=where, generator=generator)
        x_batch, t_batch = x[batch_mask], t[batch_mask]
        optimizer.zero_grad(set_to_none=True)
        functional.cross_entropy(model(x_batch), t_batch).backward()
        optimizer.step()

    return Impl("torch f32", step, torch_sync(torch, where))


def gemm_library(dev: xpnet.Device) -> tuple[str, Callable[[np.ndarray], Any], xpnet.Device]:
    """(name, host array -> array there, device) of the library that times the products alone.

    NumPy on the CPU; on a GPU CuPy where it works, else torch on that GPU.
    """
    if dev.backend == "cupy":
        import cupy

        def to_gpu(host: np.ndarray) -> Any:
            with dev:
                return cupy.asarray(host)

        return "cupy", to_gpu, dev
    if dev.backend == "torch" and dev.array_device.type == "cuda":
        count, _ = xpnet.cuda_status()
        if count > dev.index:
            return gemm_library(xpnet.device(f"cuda:{dev.index}"))
        import torch

        return "torch", lambda host: torch.as_tensor(host, device=dev.array_device), dev
    return "numpy", lambda host: host, xpnet.device("cpu")


def step_flops(batch: int, hidden: int) -> int:
    """FLOPs of the step's products: x@W1, h@W2; dW2 = h.T@d, dx2 = d@W2.T, dW1 = x.T@dh."""
    return 2 * batch * hidden * (2 * INPUT + 3 * CLASSES)


def bound_impl(dev: xpnet.Device, batch: int, hidden: int) -> Impl:
    name, send, where = gemm_library(dev)
    rng = np.random.default_rng(1)
    shapes = [(batch, INPUT), (INPUT, hidden), (batch, hidden), (hidden, CLASSES),
              (batch, CLASSES), (batch, hidden)]
    x, W1, h, W2, d, dh = (send(rng.standard_normal(shape, dtype=np.float32)) for shape in shapes)

    def step() -> None:
        with where:  # CuPy's current GPU; nothing elsewhere
            x @ W1        # forward, Affine1
            h @ W2        # forward, Affine2
            h.T @ d       # dW2
            d @ W2.T      # dx2
            x.T @ dh      # dW1 (no dx1: the input needs no gradient)

    return Impl(f"bound ({name})", step, device_sync(where))


def jax_bound_impl(dev: xpnet.Device, batch: int, hidden: int) -> Impl | None:
    """The step's five products alone, as one ``jax.jit`` program on JAX's device beside
    ``dev``: no compiled step can take less, which sets the floor of ``jit/jax``."""
    where = jax_device_for(dev)
    if where is None:
        return None
    import jax

    rng = np.random.default_rng(1)
    shapes = [(batch, INPUT), (INPUT, hidden), (batch, hidden), (hidden, CLASSES),
              (batch, CLASSES), (batch, hidden)]
    arrays = [where.send(rng.standard_normal(shape, dtype=np.float32)) for shape in shapes]
    products = jax.jit(lambda x, W1, h, W2, d, dh: (x @ W1, h @ W2, h.T @ d, d @ W2.T, x.T @ dh))
    last: list[Any] = []

    def step() -> None:
        last[:] = products(*arrays)

    return Impl("jax bound", step, jax_sync(lambda: last))


# --- the three parts ---------------------------------------------------------------------------

def bench_steps(dev: xpnet.Device, torch: Any, data: Data, windows: int, window_s: float,
                gap_s: float, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """The training step of every implementation, for each (batch, hidden) in CONFIGS."""
    rows = []
    torch_where = torch_device_for(dev, torch) if torch is not None else None
    for batch, hidden in CONFIGS:
        impls = [xpnet_impl(dev, "float32", data, batch, hidden),
                 xpnet_impl(dev, "float64", data, batch, hidden),
                 book_impl(data, batch, hidden)]
        if torch_where is not None:
            impls.append(torch_impl(torch, torch_where, data, batch, hidden))
        impls += jax_impls(dev, data, batch, hidden)
        jax_bound = jax_bound_impl(dev, batch, hidden)
        if jax_bound is not None:
            impls.append(jax_bound)
        plain = plain_impl(dev, data, batch, hidden)
        if plain is not None:
            impls.append(plain)
        impls.append(bound_impl(dev, batch, hidden))
        times = interleaved(impls, windows, gap_s, window_s=window_s)
        ms = {name.split(" (")[0]: t["ms"] for name, t in times.items()}
        bound = ms["bound"]
        row = {"batch": batch, "hidden": hidden, "ms": ms, "detail": times,
               "bound_gflops": step_flops(batch, hidden) / (bound * 1e-3) / 1e9,
               "xpnet_f32/book": ratio(ms["xpnet f32"], ms["book"]),
               "xpnet_f64/book": ratio(ms["xpnet f64"], ms["book"]),
               "xpnet_f32/torch": ratio(ms["xpnet f32"], ms.get("torch f32")),
               "xpnet_f32/plain": ratio(ms["xpnet f32"], ms.get("plain f32")),
               "plain_f32/bound": ratio(ms.get("plain f32"), bound),
               "xpnet_f32/bound": ratio(ms["xpnet f32"], bound),
               "jax_jit_f32/jax_f32": ratio(ms.get("jax jit f32"), ms.get("jax f32")),
               "jax_bound/jax_f32": ratio(ms.get("jax bound"), ms.get("jax f32")),
               "jax_jit_f32/xpnet_f32": ratio(ms.get("jax jit f32"), ms["xpnet f32"])}
        rows.append(row)
        say(f"  batch {batch:4d} hidden {hidden:4d}: " + ", ".join(
            f"{name} {fmt(value)} ms" for name, value in ms.items()))
    return rows


def bench_convnet_step(dev: xpnet.Device, data: Data, windows: int, window_s: float,
                       gap_s: float, say: Callable[[str], None]) -> dict[str, Any]:
    """The SimpleConvNet training step: xpnet f32 on ``dev``, and on JAX eager and jitted."""
    impls = [xpnet_impl(dev, "float32", data, CONVNET_BATCH, CONVNET_HIDDEN, convnet=True),
             *jax_impls(dev, data, CONVNET_BATCH, CONVNET_HIDDEN, convnet=True)]
    times = interleaved(impls, windows, gap_s, window_s=window_s)
    ms = {name: t["ms"] for name, t in times.items()}
    say(f"  SimpleConvNet, batch {CONVNET_BATCH}: " + ", ".join(
        f"{name} {fmt(value)} ms" for name, value in ms.items()))
    return {"batch": CONVNET_BATCH, "hidden": CONVNET_HIDDEN, "ms": ms, "detail": times,
            "jax_jit_f32/jax_f32": ratio(ms.get("jax jit f32"), ms.get("jax f32")),
            "jax_jit_f32/xpnet_f32": ratio(ms.get("jax jit f32"), ms["xpnet f32"])}


def xpnet_eval_impl(dev: xpnet.Device, dtype: str, data: Data, hidden: int) -> Impl:
    """Train and test accuracy of an untrained ``TwoLayerNet``, in batches of EVAL_BATCH."""
    x, t, x_test, t_test = data.on(dev, dtype)
    with dev:
        net = xpnet.TwoLayerNet(INPUT, hidden, CLASSES, device=dev, dtype=dtype, seed=0)

    def evaluate() -> tuple[float, float]:
        with dev:  # on CuPy, accuracy's kernels allocate on the current GPU
            return (net.accuracy(x, t, batch_size=EVAL_BATCH),
                    net.accuracy(x_test, t_test, batch_size=EVAL_BATCH))

    return Impl(f"xpnet {dtype.replace('float', 'f')}", evaluate, device_sync(dev))


def bench_eval(dev: xpnet.Device, torch: Any, data: Data, quick: bool, gap_s: float,
               say: Callable[[str], None]) -> list[dict[str, Any]]:
    """One evaluation of train + test accuracy (70,000 samples), as the book does every epoch."""
    rows = []
    torch_where = torch_device_for(dev, torch) if torch is not None else None
    windows = 1 if quick else 3
    for hidden in [50] if quick else [50, 1000]:
        impls = [xpnet_eval_impl(dev, dtype, data, hidden) for dtype in ("float32", "float64")]
        np.random.seed(0)
        book = BookTwoLayerNet(INPUT, hidden, CLASSES)
        impls.append(Impl("book", lambda book=book: (
            book.accuracy(data.x_train, data.book["t_train"]),
            book.accuracy(data.x_test, data.book["t_test"])), no_sync))
        if torch_where is not None:
            model = torch_model(torch, torch_where, hidden)
            tensors = [torch.as_tensor(a, device=torch_where) for a in
                       (data.x_train, data.t_train, data.x_test, data.t_test)]

            def torch_eval(model=model, tensors=tensors) -> tuple[float, float]:
                with torch.inference_mode():
                    return tuple(
                        sum(int((model(x[i:i + EVAL_BATCH]).argmax(1) == t[i:i + EVAL_BATCH]).sum())
                            for i in range(0, x.shape[0], EVAL_BATCH)) / x.shape[0]
                        for x, t in (tensors[:2], tensors[2:]))

            impls.append(Impl("torch f32", torch_eval, torch_sync(torch, torch_where)))
        # windows of ~0.5 s: the fast evaluations run several times per window
        times = interleaved(impls, windows, gap_s, window_s=0.0 if quick else 0.5)
        ms = {name: t["ms"] for name, t in times.items()}
        rows.append({"hidden": hidden, "ms": ms, "detail": times,
                     "xpnet_f32/book": ratio(ms["xpnet f32"], ms["book"]),
                     "xpnet_f32/torch": ratio(ms["xpnet f32"], ms.get("torch f32"))})
        say(f"  evaluation, hidden {hidden:4d}: " + ", ".join(
            f"{name} {fmt(value)} ms" for name, value in ms.items()))
    return rows


def book_run_xpnet(spec: str, seed: int) -> float:
    """examples/train_mnist.py, run in this process; returns the final test accuracy it printed."""
    script = Path(__file__).resolve().parent.parent / "examples" / "train_mnist.py"
    saved = sys.argv
    sys.argv = [str(script), "--device", spec, "--seed", str(seed)]
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved
    last = output.getvalue().strip().splitlines()[-1]
    return float(last.split("test acc")[1].split(",")[0])


def bench_book_run(spec: str, repeats: int, say: Callable[[str], None]) -> dict[str, Any]:
    """The whole book run both ways, alternated ``repeats`` times; medians of the wall times."""
    seconds: dict[str, list[float]] = {"book": [], "xpnet": []}
    accuracy = {}
    for r in range(repeats):
        np.random.seed(r)
        for name, run in (("book", train_neuralnet), ("xpnet", partial(book_run_xpnet, spec, r))):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                accuracy[name] = run()
            seconds[name].append(time.perf_counter() - start)
            say(f"  book run {r + 1}/{repeats}, {name}: {seconds[name][-1]:.2f} s, "
                f"test accuracy {accuracy[name]:.4f}")
    median = {name: statistics.median(s) for name, s in seconds.items()}
    return {"seconds": median, "all_seconds": seconds, "final_test_accuracy": accuracy,
            "speedup": median["book"] / median["xpnet"]}


# --- report ----------------------------------------------------------------------------------

def report(env: dict[str, Any], steps: list[dict], convnet: dict, evals: list[dict],
           book_run: dict | None, quick: bool, say: Callable[[str], None]) -> None:
    say("")
    say("Training step, ms per step (median over interleaved windows); ratios < 1: xpnet faster")
    names = list(steps[0]["ms"])
    header = ["batch", "hidden", *names, "bound GFLOP/s", "f32/book", "f64/book", "f32/torch",
              "f32/plain", "plain/bound", "f32/bound", "jit/jax", "jit/f32"]
    lines = [header]
    for row in steps:
        lines.append([str(row["batch"]), str(row["hidden"]), *(fmt(row["ms"][n]) for n in names),
                      f"{row['bound_gflops']:.0f}", fmt(row["xpnet_f32/book"]),
                      fmt(row["xpnet_f64/book"]), fmt(row["xpnet_f32/torch"]),
                      fmt(row["xpnet_f32/plain"]), fmt(row["plain_f32/bound"]),
                      fmt(row["xpnet_f32/bound"]), fmt(row["jax_jit_f32/jax_f32"]),
                      fmt(row["jax_jit_f32/xpnet_f32"])])
    table(lines, say)
    say("(jit/jax: jax jit f32 / jax f32; jit/f32: jax jit f32 / xpnet f32)")
    say("")
    say(f"SimpleConvNet training step, batch {convnet['batch']}, ms per step")
    names = list(convnet["ms"])
    table([[*names, "jit/jax", "jit/f32"],
           [*(fmt(convnet["ms"][n]) for n in names), fmt(convnet["jax_jit_f32/jax_f32"]),
            fmt(convnet["jax_jit_f32/xpnet_f32"])]], say)
    say("")
    say(f"Evaluation of train + test accuracy ({N_TRAIN + N_TEST} samples; xpnet and torch in "
        f"batches of {EVAL_BATCH}, the book all at once), ms")
    names = list(evals[0]["ms"])
    lines = [["hidden", *names, "f32/book", "f32/torch"]]
    for row in evals:
        lines.append([str(row["hidden"]), *(fmt(row["ms"][n]) for n in names),
                      fmt(row["xpnet_f32/book"]), fmt(row["xpnet_f32/torch"])])
    table(lines, say)
    say("")
    say("Targets (2-core CPU)" + (": a quick run cannot tell" if quick else ":"))
    for row in steps:
        target = TARGETS.get((row["batch"], row["hidden"]))
        if target:
            for label, key, limit in (("xpnet f32 / torch f32", "xpnet_f32/torch", target[0]),
                                      ("xpnet f32 / GEMM bound", "xpnet_f32/bound", target[1])):
                value = row[key]
                verdict = "-" if value is None or quick else (
                    "ok" if value <= limit else "MISSED")
                plain = row["plain_f32/bound"] if key == "xpnet_f32/bound" else None
                say(f"  batch {row['batch']}, hidden {row['hidden']}: {label} = {fmt(value)} "
                    f"(<= {limit}) {verdict}"
                    + (f" (hand-written NumPy: {fmt(plain)})" if plain is not None else ""))
    for row in [*steps, convnet]:
        value = row["jax_jit_f32/jax_f32"]
        if value is not None:
            verdict = "-" if quick else ("ok" if value <= JIT_TARGET else "MISSED")
            where = (f"batch {row['batch']}, hidden {row['hidden']}" if row is not convnet
                     else f"SimpleConvNet, batch {row['batch']}")
            floor = row.get("jax_bound/jax_f32")
            say(f"  {where}: jax jit f32 / jax f32 = {fmt(value)} (<= {JIT_TARGET}) {verdict}"
                + (f"; its products alone (jax bound / jax f32): {fmt(floor)}" if floor else ""))
    if book_run:
        s = book_run["seconds"]
        verdict = "-" if quick else ("ok" if book_run["speedup"] >= 3 else "MISSED")
        say(f"  book's whole run: book {s['book']:.2f} s, xpnet (examples/train_mnist.py) "
            f"{s['xpnet']:.2f} s, {book_run['speedup']:.2f}x faster (>= 3) {verdict}")
    say(f"Load average at start {env['load_average_at_start']}, at end "
        f"{load_average()}: timings are only comparable within one run.")


def main() -> None:
    args = ARGS
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and args.threads:
        torch.set_num_threads(args.threads)
    dev = xpnet.device(args.device)
    if torch is not None:  # its torch column and GPU bound compute in FP32, as CuPy does
        torch_full_fp32(torch, torch_device_for(dev, torch))
    windows = args.windows or (2 if args.quick else 15)
    window_s = args.window_s or (0.02 if args.quick else 0.2)
    started = time.perf_counter()
    env = environment(dev, torch)

    def say(line: str) -> None:
        print(line, flush=True)

    say(f"xpnet training-step benchmark on {env['device']} "
        f"({'quick smoke run, numbers not meaningful' if args.quick else 'full run'})")
    for key in ("cpu", "cores", "gpu", "platform", "python", "numpy", "numpy_blas",
                "numpy_blas_threads", "torch", "torch_threads", "jax", "cupy", "thread_env",
                "load_average_at_start", "openblas_coretype"):
        if key in env:
            say(f"  {key}: {env[key]}")
    say(f"  blas kernels: {blas_summary(env['blas_kernels'])}")
    say(f"  {windows} windows of ~{window_s} s per implementation, each after {args.gap_s} s "
        "idle; "
        f"{'PyTorch not installed' if torch is None else 'PyTorch float32 eager'}")
    data = Data()
    gap_s = args.gap_s
    steps = bench_steps(dev, torch, data, windows, window_s, gap_s, say)
    convnet = bench_convnet_step(dev, data, windows, window_s, gap_s, say)
    evals = bench_eval(dev, torch, data, args.quick, gap_s, say)
    book_run = bench_book_run(args.device, 1 if args.quick else 3, say) if args.book_run else None
    report(env, steps, convnet, evals, book_run, args.quick, say)
    say(f"Total {time.perf_counter() - started:.0f} s")
    if args.json:
        result = {"environment": env, "command": " ".join(sys.argv), "windows": windows,
                  "window_s": window_s, "gap_s": gap_s, "steps": steps,
                  "convnet_step": convnet, "evaluation": evals,
                  "book_run": book_run, "targets": {f"{b}x{h}": t for (b, h), t in TARGETS.items()}}
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
