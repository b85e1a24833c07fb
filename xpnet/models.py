"""Networks with the book's API: ``params``, ``layers``, ``predict``, ``loss``, ``accuracy``, ``gradient``.

``params`` is the source of truth: every call reads it, so the book's update
``network.params[key] -= lr * grad[key]`` works whether the backend updates in place or
rebinds the dict entry, and assigning a new array to ``params[key]`` replaces the weight.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from .backend import Array, Device, namespace_of, to_numpy
from .backend import device as resolve_device
from .errors import ConfigError
from .gradcheck import numerical_gradient
from .layers import Affine, ReLU, SoftmaxWithLoss

__all__ = ["TwoLayerNet", "MODELS", "from_config", "check_size", "check_dtype"]


def check_size(name: str, value: Any) -> int:
    """``value`` as a positive int, or a :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_dtype(dtype: Any) -> str:
    """The name of a supported parameter dtype ("float32" or "float64")."""
    name = str(dtype).rsplit(".", 1)[-1]
    if name not in ("float32", "float64"):
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return name


class TwoLayerNet:
    """The book's 2-layer network: Affine1 -> Relu1 -> Affine2, then SoftmaxWithLoss.

    Parameters are created on ``device`` in ``dtype``, from a NumPy generator seeded with
    ``seed``, so the same seed gives the same initial weights on every backend.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float = 0.01, *, device: str | Device = "cpu",
                 dtype: str = "float32", seed: int | None = None) -> None:
        input_size = check_size("input_size", input_size)
        hidden_size = check_size("hidden_size", hidden_size)
        output_size = check_size("output_size", output_size)
        self.device = resolve_device(device)
        self.dtype = check_dtype(dtype)
        # what from_config needs to rebuild this architecture (weights come from a checkpoint)
        self.input_shape = (input_size,)  # one sample's shape; the trainer reshapes data to it
        self.config = {"model": "two-layer", "input_size": input_size, "hidden_size": hidden_size,
                       "output_size": output_size, "weight_init_std": weight_init_std}
        rng = np.random.default_rng(seed)
        send = self.device.send
        self.params: dict[str, Array] = {
            "W1": send(weight_init_std * rng.standard_normal((input_size, hidden_size)), self.dtype),
            "b1": send(np.zeros(hidden_size), self.dtype),
            "W2": send(weight_init_std * rng.standard_normal((hidden_size, output_size)), self.dtype),
            "b2": send(np.zeros(output_size), self.dtype),
        }
        self.layers: OrderedDict[str, Any] = OrderedDict()
        # the input is data, not a parameter: its gradient would be wasted work
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"], input_grad=False)
        self.layers["Relu1"] = ReLU()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()
        # params key -> (layer name, attribute) it feeds
        self._slots = {"W1": ("Affine1", "W"), "b1": ("Affine1", "b"),
                       "W2": ("Affine2", "W"), "b2": ("Affine2", "b")}

    def _load_params(self) -> None:
        for key, (layer, attribute) in self._slots.items():
            setattr(self.layers[layer], attribute, self.params[key])

    def predict(self, x: Array) -> Array:
        """Class scores (before softmax) for a batch ``x`` of shape (N, input_size)."""
        self._load_params()
        with self.device:
            for layer in self.layers.values():
                x = layer.forward(x)
        return x

    def loss(self, x: Array, t: Array) -> Array:
        """Mean cross-entropy loss as a 0-d array on the device (no host sync)."""
        y = self.predict(x)
        with self.device:
            return self.lastLayer.forward(y, t)

    def count_correct(self, x: Array, t: Array, batch_size: int | None = None) -> Array:
        """Number of correct predictions as a 0-d array, evaluating ``batch_size`` rows at a time."""
        n = x.shape[0]
        step = n if batch_size is None else check_size("batch_size", batch_size)
        xp = namespace_of(x, t)
        correct = None
        with self.device:
            for start in range(0, n, step):
                y = xp.argmax(self.predict(x[start:start + step, ...]), axis=1)
                labels = t[start:start + step, ...]
                if labels.ndim != 1:
                    labels = xp.argmax(labels, axis=1)
                hits = xp.count_nonzero(y == labels)
                correct = hits if correct is None else correct + hits
        return correct

    def accuracy(self, x: Array, t: Array, batch_size: int | None = None) -> float:
        """Fraction of correct predictions, as a Python float (one host sync, like the book)."""
        return float(to_numpy(self.count_correct(x, t, batch_size))) / x.shape[0]

    def numerical_gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Central-difference gradients of ``loss`` for every parameter (slow; for checking)."""
        grads = {}
        for key, original in list(self.params.items()):

            def loss_at(value: Array, key: str = key, original: Array = original) -> Array:
                self.params[key] = value
                try:
                    return self.loss(x, t)
                finally:
                    self.params[key] = original

            grads[key] = numerical_gradient(loss_at, original)
        return grads

    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Gradients of ``loss`` by backpropagation: ``{'W1': ..., 'b1': ..., 'W2': ..., 'b2': ...}``."""
        self.loss(x, t)
        with self.device:
            dout = self.lastLayer.backward(1)
            for layer in reversed(self.layers.values()):
                dout = layer.backward(dout)
        return {key: getattr(self.layers[layer], "d" + attribute)
                for key, (layer, attribute) in self._slots.items()}


# config["model"] -> network class; each class takes its config's other keys as arguments
MODELS: dict[str, type] = {"two-layer": TwoLayerNet}


def from_config(config: dict[str, Any], *, device: str | Device = "cpu", dtype: str = "float32",
                seed: int | None = None) -> Any:
    """Rebuild the network a ``config`` dict describes (as saved in a checkpoint)."""
    kwargs = dict(config)
    name = kwargs.pop("model", None)
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name](**kwargs, device=device, dtype=dtype, seed=seed)
