"""Convolution and max pooling: xpnet against PyTorch's conv2d / max_pool2d on the same shapes.

    python benchmarks/bench_conv.py [--device cpu] [--windows 7] [--json PATH]

For each shape, times forward and forward+backward of ``xpnet.conv.Convolution`` (and
``Pooling``) against ``torch.nn.functional.conv2d`` (and ``max_pool2d``) with autograd,
float32, as the median ms over timing windows that alternate between the two
implementations, so machine noise hits both alike; each window follows 0.2 s of idle time
(OpenBLAS's and PyTorch's worker threads spin after a call and slow the other library on a
2-core machine). Ratios below 1 mean xpnet is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import xpnet
from xpnet.conv import Convolution, Pooling

# (name, N, C, H, W, filters, filter size, stride, pad): the book's ch.7 layer first
SHAPES = [
    ("SimpleConvNet conv1, batch 100", 100, 1, 28, 28, 30, 5, 1, 0),
    ("3x3 pad 1, 16->32 channels", 64, 16, 14, 14, 32, 3, 1, 1),
    ("5x5 stride 2 pad 2, 3->16", 64, 3, 32, 32, 16, 5, 2, 2),
]


def _timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) * 1e3 / repeats


def _interleaved(contenders: dict[str, callable], windows: int, repeats: int) -> dict[str, float]:
    for fn in contenders.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(windows):
        for name, fn in contenders.items():
            # let the other library's spinning worker threads go idle, then one untimed call
            time.sleep(0.2)
            fn()
            samples[name].append(_timed(fn, repeats))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="xpnet device (default cpu); torch runs on "
                        "the matching torch device")
    parser.add_argument("--windows", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    dev = xpnet.device(args.device)
    torch_device = "cuda" if dev.backend == "cupy" else "cpu"
    sync = (lambda: dev.xp_library.cuda.get_current_stream().synchronize()) if dev.backend == "cupy" \
        else (lambda: None)
    torch_sync = torch.cuda.synchronize if torch_device == "cuda" else (lambda: None)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; xpnet on {dev.name}, torch {torch.__version__} on "
          f"{torch_device} ({torch.get_num_threads()} threads); numpy {np.__version__}")

    rng = np.random.default_rng(0)
    rows = []
    for name, n, c, h, w, filters, size, stride, pad in SHAPES:
        x_host = rng.standard_normal((n, c, h, w)).astype(np.float32)
        W_host = (rng.standard_normal((filters, c, size, size)) * 0.1).astype(np.float32)
        b_host = np.zeros(filters, np.float32)
        x, W, b = dev.send(x_host), dev.send(W_host), dev.send(b_host)
        conv, pool = Convolution(W, b, stride, pad), Pooling(2, 2, stride=2)
        out_shape = conv.forward(x).shape
        dout = dev.send(rng.standard_normal(tuple(out_shape)).astype(np.float32))
        pooled_shape = pool.forward(conv.forward(x)).shape
        dpool = dev.send(rng.standard_normal(tuple(pooled_shape)).astype(np.float32))

        tx = torch.tensor(x_host, device=torch_device, requires_grad=True)
        tW = torch.tensor(W_host, device=torch_device, requires_grad=True)
        tb = torch.tensor(b_host, device=torch_device, requires_grad=True)
        tdout = torch.tensor(xpnet.to_numpy(dout), device=torch_device)
        tdpool = torch.tensor(xpnet.to_numpy(dpool), device=torch_device)

        def xp_forward():
            conv.forward(x)
            sync()

        def xp_step():
            conv.forward(x)
            conv.backward(dout)
            sync()

        def xp_pool_step():
            pool.forward(conv.forward(x))
            conv.backward(pool.backward(dpool))
            sync()

        def torch_forward():
            with torch.no_grad():
                F.conv2d(tx, tW, tb, stride=stride, padding=pad)
            torch_sync()

        def torch_step():
            torch.autograd.backward(F.conv2d(tx, tW, tb, stride=stride, padding=pad), tdout)
            torch_sync()

        def torch_pool_step():
            out = F.max_pool2d(F.conv2d(tx, tW, tb, stride=stride, padding=pad), 2, 2)
            torch.autograd.backward(out, tdpool)
            torch_sync()

        times = _interleaved({"xpnet forward": xp_forward, "torch forward": torch_forward,
                              "xpnet fwd+bwd": xp_step, "torch fwd+bwd": torch_step,
                              "xpnet conv+pool fwd+bwd": xp_pool_step,
                              "torch conv+pool fwd+bwd": torch_pool_step},
                             args.windows, args.repeats)
        row = {"shape": name, "input": [n, c, h, w], "filters": [filters, c, size, size],
               "stride": stride, "pad": pad, "ms": times,
               "ratio forward": times["xpnet forward"] / times["torch forward"],
               "ratio fwd+bwd": times["xpnet fwd+bwd"] / times["torch fwd+bwd"],
               "ratio conv+pool fwd+bwd": times["xpnet conv+pool fwd+bwd"] / times["torch conv+pool fwd+bwd"]}
        rows.append(row)

    header = f"{'shape':34} {'fwd xpnet':>10} {'fwd torch':>10} {'ratio':>6} " \
             f"{'f+b xpnet':>10} {'f+b torch':>10} {'ratio':>6} {'+pool ratio':>11}"
    print(header)
    for row in rows:
        t = row["ms"]
        print(f"{row['shape']:34} {t['xpnet forward']:10.2f} {t['torch forward']:10.2f} "
              f"{row['ratio forward']:6.2f} {t['xpnet fwd+bwd']:10.2f} {t['torch fwd+bwd']:10.2f} "
              f"{row['ratio fwd+bwd']:6.2f} {row['ratio conv+pool fwd+bwd']:11.2f}")
    print("(ms per call, median of interleaved windows; ratio = xpnet / torch, below 1 is faster)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev.name, "torch_threads": torch.get_num_threads(), "rows": rows}, f,
                      indent=2)


if __name__ == "__main__":
    main()
