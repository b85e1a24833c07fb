"""The book's gradient check (chapter 5.7) on real MNIST, on any device.

Compares backpropagation with central differences for a 784-50-10 TwoLayerNet on three
training images, printing the mean absolute difference per parameter as the book does, then
runs xpnet's asserting checker, which computes the numerical side in float64.

    python examples/gradient_check.py [--device SPEC] [--dtype float64|float32]
"""

import argparse

import numpy as np

import xpnet
from xpnet.datasets import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    args = parser.parse_args()

    dev = xpnet.device(args.device)
    (x_train, t_train), _ = load_mnist(normalize=True, one_hot_label=True, dtype=args.dtype)
    x_batch, t_batch = dev.send(x_train[:3], args.dtype), dev.send(t_train[:3], args.dtype)
    # the book's 784-50-10 network; the numerical side perturbs all 39,760 weights twice
    network = xpnet.TwoLayerNet(784, 50, 10, device=dev, dtype=args.dtype, seed=0)

    grad_numerical = network.numerical_gradient(x_batch, t_batch)
    grad_backprop = network.gradient(x_batch, t_batch)
    for key in grad_numerical:
        diff = np.mean(np.abs(xpnet.to_numpy(grad_backprop[key]) - xpnet.to_numpy(grad_numerical[key])))
        print(f"{key}: {diff:.3e}")

    for report in xpnet.check_network(network, x_batch, t_batch):
        print(f"{report.name}: max abs error {report.max_abs_error:.2e}, "
              f"max rel error {report.max_rel_error:.2e} (rtol {report.rtol:g}) ok")


if __name__ == "__main__":
    main()
