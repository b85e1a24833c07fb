"""The benchmark's implementations compute what they claim to, so its ratios compare like with like."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import xpnet

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(bench):
    return bench.Data()


def test_plain_numpy_step_trains_the_same_network_as_xpnet(bench, data):
    dev = xpnet.device("cpu")
    ours = bench.xpnet_impl(dev, "float32", data, 32, 20)
    plain = bench.plain_impl(dev, data, 32, 20)
    for key in ours.params:
        np.testing.assert_array_equal(plain.params[key], ours.params[key])

    for _ in range(5):
        ours.step()
        plain.step()

    for key, value in ours.params.items():
        moved = np.max(np.abs(value - bench.xpnet.TwoLayerNet(
            bench.INPUT, 20, bench.CLASSES, dtype="float32", seed=0).params[key]))
        assert moved > 0, f"{key} did not train"
        np.testing.assert_allclose(plain.params[key], value, rtol=1e-4, atol=1e-6)


def test_every_implementation_steps_and_the_bound_counts_the_steps_products(bench, data):
    dev = xpnet.device("cpu")
    impls = [bench.xpnet_impl(dev, "float64", data, 8, 6), bench.book_impl(data, 8, 6),
             bench.plain_impl(dev, data, 8, 6), bench.bound_impl(dev, 8, 6)]
    for impl in impls:
        impl.step()
        impl.sync()
    # x@W1 and x.T@dh (784 x 6 each way), h@W2, h.T@d, d@W2.T (6 x 10 each)
    assert bench.step_flops(8, 6) == 2 * 8 * (2 * 784 * 6 + 3 * 6 * 10)
