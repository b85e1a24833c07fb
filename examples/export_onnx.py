"""Export a trained network to ONNX, then classify images with onnxruntime alone.

The first half is xpnet: train the book's 784-50-10 TwoLayerNet for 1000 iterations (or load
a checkpoint of ``xpnet train --save``) and write it with ``xpnet.export_onnx``. The second
half is what an app does with the file: NumPy and onnxruntime, no xpnet, no ndonnx.

    pip install -e ".[onnx]"
    python examples/export_onnx.py [--checkpoint run.npz] [--output mnist.onnx]

Without ``--output`` the model goes to a temporary folder, removed at the end.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

import xpnet
from xpnet.datasets import load_mnist


def trained_network(x_train: np.ndarray, t_train: np.ndarray) -> xpnet.TwoLayerNet:
    """The book's chapter-5 loop, shortened: about 92% test accuracy in a few seconds."""
    network = xpnet.TwoLayerNet(784, 50, 10, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(1000):
        batch = rng.integers(len(x_train), size=100)
        grad = network.gradient(x_train[batch], t_train[batch])
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= 0.1 * grad[key]
    return network


def classify(model: Path, images: np.ndarray) -> np.ndarray:
    """The digit in each image, by onnxruntime: all an app needs besides the .onnx file."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = session.get_inputs()[0]  # "x": (N, 784) for fully connected networks, (N, 1, 28, 28) for convnets
    scores, = session.run(["scores"], {x.name: images.reshape(-1, *x.shape[1:])})
    return np.argmax(scores, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="export this checkpoint instead of training")
    parser.add_argument("--output", help="the .onnx file to keep (default: a temporary file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run(args.checkpoint, Path(args.output or Path(scratch) / "mnist.onnx"))


def run(checkpoint: str | None, output: Path) -> None:
    """Export (a checkpoint's network, or a freshly trained one) to ``output``, then classify."""
    (x_train, t_train), (x_test, t_test) = load_mnist()
    if checkpoint:
        network, _, _ = xpnet.load_checkpoint(checkpoint)
    else:
        network = trained_network(x_train, t_train)
    path = xpnet.export_onnx(network, output)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")

    digits = classify(path, x_test)
    print(f"onnxruntime: test acc {np.mean(digits == t_test):.4f}; first ten digits {digits[:10]}, "
          f"labels {t_test[:10]}")
    print(f"xpnet:       test acc {network.accuracy(x_test.reshape(-1, *network.input_shape), t_test):.4f}")


if __name__ == "__main__":
    main()
