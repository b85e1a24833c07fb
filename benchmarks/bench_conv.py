"""Convolution and max pooling: xpnet against PyTorch's conv2d / max_pool2d on the same shapes.

    python benchmarks/bench_conv.py [--device cpu] [--windows 7] [--json PATH] [--quick]

For each shape, times forward and forward+backward of ``xpnet.conv.Convolution`` (and
``Pooling``) against ``torch.nn.functional.conv2d`` (and ``max_pool2d``) with autograd,
float32, as the median ms over timing windows that alternate between the two
implementations, so machine noise hits both alike; each window follows 0.2 s of idle time
(OpenBLAS's and PyTorch's worker threads spin after a call and slow the other library on a
2-core machine). Ratios below 1 mean xpnet is faster. On a GPU, torch runs on the same GPU
as xpnet with TF32 off (CuPy computes in FP32), and every clock is read after that GPU has
finished.

The ``gemm`` column times, alone, the three matrix products the layer's forward+backward
reduces to (``W @ cols``, ``dout @ cols.T``, ``W.T @ dout``, on random arrays of the same
shapes): the bound of any convolution built on im2col with this library's matrix product.
Its ratio to torch's fwd+bwd says what that bound allows.

A second table times the whole training step (gather a batch of 100, forward, backward,
Adam) of the book's SimpleConvNet and DeepConvNet against the same networks in PyTorch
(``torch.nn`` layers, ``torch.optim.Adam``, dropout as the network has it).

Where JAX is installed, the same layer's forward+backward also runs on JAX (``jax:cpu``, or
JAX's GPU N beside GPU N): eagerly, and as one ``jax.jit`` program that builds the layer
inside the traced function (columns ``f+b jax`` and ``f+b jit``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

import xpnet
from xpnet.conv import Convolution, Pooling

# harness.py sits beside this script: importable however it is loaded
# (run as a script, or by path through importlib as the tests do)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402
    Impl, blas_summary, device_sync, environment, interleaved, jax_device_for, jax_sync, torch_device_for,
    torch_full_fp32, torch_sync)

# (name, N, C, H, W, filters, filter size, stride, pad): the book's ch.7 layer first
SHAPES = [
    ("SimpleConvNet conv1, batch 100", 100, 1, 28, 28, 30, 5, 1, 0),
    ("3x3 pad 1, 16->32 channels", 64, 16, 14, 14, 32, 3, 1, 1),
    ("5x5 stride 2 pad 2, 3->16", 64, 3, 32, 32, 16, 5, 2, 2),
    # DeepConvNet's six convolutions at batch 100 (the book's ch. 8 network)
    ("DeepConvNet conv1, 1->16", 100, 1, 28, 28, 16, 3, 1, 1),
    ("DeepConvNet conv2, 16->16", 100, 16, 28, 28, 16, 3, 1, 1),
    ("DeepConvNet conv3, 16->32", 100, 16, 14, 14, 32, 3, 1, 1),
    ("DeepConvNet conv4, 32->32 pad 2", 100, 32, 14, 14, 32, 3, 1, 2),
    ("DeepConvNet conv5, 32->64", 100, 32, 8, 8, 64, 3, 1, 1),
    ("DeepConvNet conv6, 64->64", 100, 64, 8, 8, 64, 3, 1, 1),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="xpnet device (default cpu); torch runs on "
                        "the same device (cuda:N for cuda:N and torch:cuda:N)")
    parser.add_argument("--windows", type=int, help="timing windows (default 7, --quick 1)")
    parser.add_argument("--repeats", type=int, help="calls per window (default 5, --quick 1)")
    parser.add_argument("--gap-s", type=float, default=0.2, help="idle seconds before each "
                        "window, so the other library's threads stop spinning (0.2)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: one window of one call, numbers not meaningful")
    parser.add_argument("--json", metavar="PATH")
    return parser.parse_args(argv)


def torch_device(dev: xpnet.Device, torch: Any) -> Any:
    """The torch device to compare with ``dev`` (the same GPU), set to compute in full FP32."""
    where = torch_device_for(dev, torch)
    if where is None:
        raise SystemExit(f"xpnet runs on {dev.name}, but this PyTorch sees no CUDA GPU: "
                         "install a CUDA build of PyTorch to compare")
    torch_full_fp32(torch, where)
    return where


def shape_impls(dev: xpnet.Device, torch: Any, where: Any, rng: np.random.Generator,
                shape: tuple) -> list[Impl]:
    """The six contenders for one shape: xpnet and torch, forward, fwd+bwd, conv+pool fwd+bwd."""
    F = torch.nn.functional
    _, n, c, h, w, filters, size, stride, pad = shape
    x_host = rng.standard_normal((n, c, h, w)).astype(np.float32)
    W_host = (rng.standard_normal((filters, c, size, size)) * 0.1).astype(np.float32)
    b_host = np.zeros(filters, np.float32)
    x, W, b = dev.send(x_host), dev.send(W_host), dev.send(b_host)
    with dev:  # on CuPy, the layers' outputs and gradients are allocated on the current GPU
        conv, pool = Convolution(W, b, stride, pad), Pooling(2, 2, stride=2)
        out_shape = conv.forward(x).shape
        pooled_shape = pool.forward(conv.forward(x)).shape
    dout = dev.send(rng.standard_normal(tuple(out_shape)).astype(np.float32))
    dpool = dev.send(rng.standard_normal(tuple(pooled_shape)).astype(np.float32))

    tx = torch.tensor(x_host, device=where, requires_grad=True)
    tW = torch.tensor(W_host, device=where, requires_grad=True)
    tb = torch.tensor(b_host, device=where, requires_grad=True)
    tdout = torch.tensor(xpnet.to_numpy(dout), device=where)
    tdpool = torch.tensor(xpnet.to_numpy(dpool), device=where)

    def xp_forward() -> None:
        with dev:
            conv.forward(x)

    def xp_step() -> None:
        with dev:
            conv.forward(x)
            conv.backward(dout)

    def xp_pool_step() -> None:
        with dev:
            pool.forward(conv.forward(x))
            conv.backward(pool.backward(dpool))

    def torch_forward() -> None:
        with torch.no_grad():
            F.conv2d(tx, tW, tb, stride=stride, padding=pad)

    def torch_step() -> None:
        torch.autograd.backward(F.conv2d(tx, tW, tb, stride=stride, padding=pad), tdout)

    def torch_pool_step() -> None:
        out = F.max_pool2d(F.conv2d(tx, tW, tb, stride=stride, padding=pad), 2, 2)
        torch.autograd.backward(out, tdpool)

    xp_sync, t_sync = device_sync(dev), torch_sync(torch, where)
    return [gemm_impl(dev, rng, filters, c * size * size,
                      out_shape[0] * out_shape[2] * out_shape[3]),
            Impl("xpnet forward", xp_forward, xp_sync),
            Impl("torch forward", torch_forward, t_sync),
            Impl("xpnet fwd+bwd", xp_step, xp_sync),
            Impl("torch fwd+bwd", torch_step, t_sync),
            Impl("xpnet conv+pool fwd+bwd", xp_pool_step, xp_sync),
            Impl("torch conv+pool fwd+bwd", torch_pool_step, t_sync),
            *jax_impls(dev, (x_host, W_host, b_host, xpnet.to_numpy(dout)), stride, pad)]


def gemm_impl(dev: xpnet.Device, rng: np.random.Generator, filters: int, window: int,
              positions: int) -> Impl:
    """The im2col bound: the layer's three matrix products alone, with ``dev``'s library."""
    W, cols, dout = (dev.send(rng.standard_normal(shape).astype(np.float32))
                     for shape in ((filters, window), (window, positions), (filters, positions)))
    xp = dev.xp

    def products() -> None:
        with dev:
            W @ cols
            dout @ xp.matrix_transpose(cols)
            xp.matrix_transpose(W) @ dout

    return Impl("gemm fwd+bwd", products, device_sync(dev))


def jax_impls(dev: xpnet.Device, host: tuple[np.ndarray, ...], stride: int, pad: int) -> list[Impl]:
    """The convolution's forward+backward on JAX beside ``dev``, eager and jitted; none
    without JAX."""
    where = jax_device_for(dev)
    if where is None:
        return []
    import jax

    x, W, b, dout = (where.send(a) for a in host)
    conv = Convolution(W, b, stride, pad)

    def eager() -> None:
        conv.forward(x)
        conv.backward(dout)

    def forward_backward(x: Any, W: Any, b: Any, dout: Any) -> tuple:
        layer = Convolution(W, b, stride, pad)  # made in the trace: no tracer outlives it
        layer.forward(x)
        return layer.backward(dout), layer.dW, layer.db

    compiled = jax.jit(forward_backward)
    last: list[Any] = []

    def jitted() -> None:
        last[:] = compiled(x, W, b, dout)

    return [Impl("jax fwd+bwd", eager, jax_sync(lambda: conv.dW)),
            Impl("jax jit fwd+bwd", jitted, jax_sync(lambda: last))]


STEP_BATCH = 100
STEP_IMAGES = 10_000  # synthetic MNIST-shaped images the batches are drawn from
NETWORK_NAMES = ("SimpleConvNet", "DeepConvNet")


def xpnet_network_impl(dev: xpnet.Device, name: str, images: np.ndarray,
                       labels: np.ndarray) -> Impl:
    """One training step of xpnet's network ``name``: gather, gradient, Adam."""
    xp = dev.xp
    x, t = dev.send(images), dev.send(labels, "int64")
    with dev:
        net = getattr(xpnet, name)(device=dev, dtype="float32", seed=0)
        generator = xpnet.Generator(dev, seed=0)
    optimizer = xpnet.Adam(lr=0.001)

    def step() -> None:
        with dev:
            batch = generator.integers(STEP_IMAGES, STEP_BATCH)
            x_batch, t_batch = xp.take(x, batch, axis=0), xp.take(t, batch, axis=0)
            optimizer.update(net.params, net.gradient(x_batch, t_batch))

    return Impl(f"xpnet {name}", step, device_sync(dev))


def torch_network(torch: Any, name: str) -> Any:
    """The book's network ``name`` in ``torch.nn`` layers, the same shapes as xpnet's."""
    nn = torch.nn
    if name == "SimpleConvNet":  # conv(30, 5x5) relu pool(2) affine(100) relu affine(10)
        return nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(30 * 12 * 12, 100), nn.ReLU(), nn.Linear(100, 10))
    layers, channels = [], 1
    for filters, pad, pooled in ((16, 1, False), (16, 1, True), (32, 1, False), (32, 2, True),
                                 (64, 1, False), (64, 1, True)):
        layers += [nn.Conv2d(channels, filters, 3, padding=pad), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if pooled else []
        channels = filters
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, 50), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(50, 10), nn.Dropout(0.5))


def torch_network_impl(torch: Any, where: Any, name: str, images: np.ndarray,
                       labels: np.ndarray) -> Impl:
    x = torch.as_tensor(images, device=where)
    t = torch.as_tensor(labels, device=where)
    torch.manual_seed(0)
    model = torch_network(torch, name).to(where).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    generator = torch.Generator(device=where).manual_seed(0)

    def step() -> None:
        batch = torch.randint(STEP_IMAGES, (STEP_BATCH,), device=where, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x[batch]), t[batch]).backward()
        optimizer.step()

    return Impl(f"torch {name}", step, torch_sync(torch, where))


def bench_networks(dev: xpnet.Device, torch: Any, where: Any, windows: int, repeats: int,
                   gap_s: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    images = rng.random((STEP_IMAGES, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, STEP_IMAGES)
    rows = []
    for name in NETWORK_NAMES:
        impls = [xpnet_network_impl(dev, name, images, labels),
                 torch_network_impl(torch, where, name, images, labels)]
        times = {impl: t["ms"] for impl, t in
                 interleaved(impls, windows, gap_s, iterations=repeats).items()}
        rows.append({"network": name, "batch": STEP_BATCH, "ms": times,
                     "ratio": times[f"xpnet {name}"] / times[f"torch {name}"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    windows = args.windows or (1 if args.quick else 7)
    repeats = args.repeats or (1 if args.quick else 5)

    import torch

    dev = xpnet.device(args.device)
    where = torch_device(dev, torch)  # before any timing: the TF32 flags are process-wide
    env = environment(dev, torch)
    print(f"# {env['cpu']}, {env['cores']} cores, load {env['load_average_at_start'][0]:.2f}; "
          f"xpnet on {dev.name}{', ' + env['gpu'] if 'gpu' in env else ''}, torch "
          f"{torch.__version__} on {where} ({torch.get_num_threads()} threads); numpy "
          f"{np.__version__} ({env['numpy_blas']}, {env['numpy_blas_threads']} threads); BLAS "
          f"kernels: {blas_summary(env['blas_kernels'])}; OPENBLAS_CORETYPE "
          f"{env['openblas_coretype'] or 'unset'}")

    rng = np.random.default_rng(0)
    rows = []
    for shape in SHAPES:
        name, n, c, h, w, filters, size, stride, pad = shape
        detail = interleaved(shape_impls(dev, torch, where, rng, shape), windows, args.gap_s,
                             iterations=repeats)
        times = {impl: t["ms"] for impl, t in detail.items()}
        rows.append({"shape": name, "input": [n, c, h, w], "filters": [filters, c, size, size],
                     "stride": stride, "pad": pad, "ms": times,
                     "ratio forward": times["xpnet forward"] / times["torch forward"],
                     "ratio gemm / torch fwd+bwd": times["gemm fwd+bwd"] / times["torch fwd+bwd"],
                     "ratio fwd+bwd": times["xpnet fwd+bwd"] / times["torch fwd+bwd"],
                     "ratio conv+pool fwd+bwd":
                         times["xpnet conv+pool fwd+bwd"] / times["torch conv+pool fwd+bwd"]})

    with_jax = "jax fwd+bwd" in rows[0]["ms"]
    header = f"{'shape':34} {'fwd xpnet':>10} {'fwd torch':>10} {'ratio':>6} " \
             f"{'f+b xpnet':>10} {'f+b torch':>10} {'ratio':>6} {'gemm':>7} {'ratio':>6} " \
             f"{'+pool ratio':>11}" \
             + (f" {'f+b jax':>10} {'f+b jit':>10}" if with_jax else "")
    print(header)
    for row in rows:
        t = row["ms"]
        print(f"{row['shape']:34} {t['xpnet forward']:10.2f} {t['torch forward']:10.2f} "
              f"{row['ratio forward']:6.2f} {t['xpnet fwd+bwd']:10.2f} {t['torch fwd+bwd']:10.2f} "
              f"{row['ratio fwd+bwd']:6.2f} {t['gemm fwd+bwd']:7.2f} "
              f"{row['ratio gemm / torch fwd+bwd']:6.2f} {row['ratio conv+pool fwd+bwd']:11.2f}"
              + (f" {t['jax fwd+bwd']:10.2f} {t['jax jit fwd+bwd']:10.2f}" if with_jax else ""))
    print("(ms per call, median of interleaved windows; ratio = xpnet / torch, below 1 is faster;"
          " gemm ratio = gemm / torch f+b)")

    networks = bench_networks(dev, torch, where, windows, repeats, args.gap_s)
    print(f"\ntraining step, batch {STEP_BATCH}, Adam: {'network':14} {'xpnet':>8} {'torch':>8} "
          f"{'ratio':>6}")
    for row in networks:
        t = row["ms"]
        print(f"{'':34}{row['network']:14} {t['xpnet ' + row['network']]:8.2f} "
              f"{t['torch ' + row['network']]:8.2f} {row['ratio']:6.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev.name, "torch_threads": torch.get_num_threads(),
                       "environment": env, "rows": rows, "networks": networks}, f, indent=2)


if __name__ == "__main__":
    main()
