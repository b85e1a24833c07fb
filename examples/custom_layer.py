"""Your own layer in your own network (docs/layers.md, "Writing your own layer and network").

``NoisyCentering`` centres each feature on the batch mean, scales it by a learned gain and, in
training, adds Gaussian noise: a layer with a parameter, a running statistic, statistics over
the batch and a random stream. Declared in the :class:`xpnet.Layer` attributes, those get
everything the built-in layers get: the parameter's shape inferred by ``xpnet.Sequential``,
checkpoints that load (the class is registered), a Trainer that resumes anywhere, data-parallel
results that do not depend on the number of processes, ``--jit`` on JAX and ONNX export.

    python examples/custom_layer.py [--device cpu] [--epochs 2]

trains ``build_network()`` on MNIST, then saves, reloads and exports it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import xpnet
from xpnet.backend import namespace_of, on_input_device


@xpnet.register_layer  # checkpoints name the class; loading finds it here
class NoisyCentering(xpnet.Layer):
    """``out = gain * (x - mean) + stddev * noise`` in training, ``gain * (x - running_mean)``
    in inference, for input (N, D): ``mean`` is each feature's batch mean, ``noise`` standard
    normal, ``gain`` (D,) is learned."""

    param_names = ("gain",)           # network.params holds it (gain1, gain2...)
    saved_names = ("xc",)             # kept by forward for backward, dropped after gradient()
    state_names = ("running_mean",)   # saved in checkpoints, used in inference
    random_streams = ("rng",)         # reseeded per (seed, epoch, step, layer) by the Trainer
    batch_statistics = True           # reduces over the batch: gets replicas in data-parallel runs
    has_train_mode = True             # forward takes train_flg

    def __init__(self, stddev: float = 0.1, momentum: float = 0.9) -> None:
        self.stddev = stddev          # constructor arguments under their own names: settings()
        self.momentum = momentum      # records them in checkpoints
        self.gain = self.running_mean = self.rng = None
        self.xc = self.dgain = None
        self.train_flg = True

    def build(self, input_shape: tuple[int, ...], init: Any) -> tuple[int, ...]:
        features = (input_shape[0],)
        self.gain = init.ones(features)
        self.running_mean = init.zeros(features)
        return input_shape

    @on_input_device
    def forward(self, x: Any, train_flg: bool = True) -> Any:
        xp = namespace_of(x, self.gain)
        self.train_flg = train_flg
        if not train_flg:
            self.xc = x - self.running_mean
            return self.gain * self.xc
        mean = self.batch_mean(x, (0,))  # the global batch's mean under mpiexec
        self.running_mean = (self.momentum * self.running_mean
                             + (1.0 - self.momentum) * xp.reshape(mean, (-1,)))
        self.xc = x - mean
        # the global batch's noise, this rank's rows: the same numbers on any number of ranks
        noise = self.draw_for_batch(lambda shape: self.rng.normal(shape, x.dtype), x.shape)
        return self.gain * self.xc + self.stddev * noise

    @on_input_device
    def backward(self, dout: Any) -> Any:
        xp = namespace_of(dout)
        self.dgain = xp.sum(dout * self.xc, axis=0)
        dxc = dout * self.gain
        if not self.train_flg:  # the running mean is a constant
            return dxc
        return dxc - self.batch_mean(dxc, (0,))  # the batch mean depends on every row


def build_network(input_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10, *,
                  filters: int = 8, hidden: int = 64, device: str = "cpu",
                  dtype: str = "float32", seed: int = 0) -> xpnet.Sequential:
    """Built-in layers and NoisyCentering: conv - relu - pool - affine - noisy centering - relu
    - dropout - affine. Every size but the layers' own comes from ``input_shape``."""
    return xpnet.Sequential(
        xpnet.Convolution(filter_num=filters, filter_size=3), xpnet.ReLU(),
        xpnet.Pooling(2, 2, stride=2),
        xpnet.Affine(units=hidden), NoisyCentering(stddev=0.1), xpnet.ReLU(), xpnet.Dropout(0.2),
        xpnet.Affine(units=classes),
        input_shape=input_shape, device=device, dtype=dtype, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    from xpnet.datasets import load_mnist

    (x_train, t_train), test = load_mnist()
    network = build_network(device=args.device)
    trainer = xpnet.Trainer(network, xpnet.Adam(), (x_train[:10000], t_train[:10000]), test,
                            batch_size=100)
    for record in trainer.fit(epochs=args.epochs):
        print(f"epoch {record.epoch}: loss {record.loss:.4f}, test accuracy {record.test_acc:.4f}")
    with tempfile.TemporaryDirectory() as folder:
        path = xpnet.save_checkpoint(Path(folder) / "custom.npz", network, trainer.optimizer,
                                     epoch=args.epochs, seed=0, iteration=trainer.iteration)
        loaded, _, _ = xpnet.load_checkpoint(path, device=args.device)
        print("reloaded layers:", " ".join(loaded.layers))
        print("ONNX model:", xpnet.export_onnx(loaded, Path(folder) / "custom.onnx").name)


if __name__ == "__main__":
    main()
