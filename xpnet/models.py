"""Networks with the book's API: ``params``, ``layers``, ``predict``, ``loss``, ``accuracy``, ``gradient``.

:class:`Sequential` builds a network from layers in order; the book's networks are built with
it. ``params`` is the source of truth: every call reads it, so the book's update
``network.params[key] -= lr * grad[key]`` works whether the backend updates in place or
rebinds the dict entry, and assigning a new array to ``params[key]`` replaces the weight.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .backend import Array, Device, namespace_of, to_numpy
from .backend import device as resolve_device
from .conv import Convolution, Pooling, conv_output_size
from .errors import ConfigError, ShapeError
from .gradcheck import numerical_param_gradients
from .init import Initializer
from .layers import (Affine, Layer, ReLU, Sigmoid, SoftmaxWithLoss, call_forward, layer_class,
                     registered_name)
from .regularization import BatchNormalization, Dropout
from .validate import check_choice, check_count, check_dtype, check_nonnegative, check_size

__all__ = ["Sequential", "LayerNet", "TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend",
           "SimpleConvNet", "DeepConvNet", "ACTIVATIONS"]

LayerEntry = Layer | tuple[str, Layer]


class Sequential:
    """A network of ``layers`` applied in order, then ``last_layer`` (SoftmaxWithLoss by default).

    >>> net = Sequential(Convolution(filter_num=8, filter_size=3, pad=1), ReLU(),
    ...                  Pooling(2, 2, stride=2), Affine(units=10), input_shape=(1, 28, 28), seed=0)

    Each layer's ``build(input_shape, init)`` gets the shape of one sample reaching it and
    creates its parameters (Keras's ``build``: sizes are inferred, not repeated), on ``device``
    in ``dtype``, drawn in layer order from a NumPy generator seeded with ``seed`` (the same
    weights on every backend). Layers are called in the order given (Chainer's and torch's
    ``Sequential``) and named by their ``prefix`` numbered per prefix (``Affine1``, ``Relu1``,
    ``Affine2``), or by a prefix given with the layer as a ``(prefix, layer)`` pair (torch's
    named entries). Parameters are named as the book does: each parameter name numbered over
    the layers that have one (``W1``, ``b1`` of the first layer with ``W``; ``gamma1``,
    ``beta1`` of the first BatchNorm). The first layer does not compute its input's gradient.
    Layers with random streams get generators seeded from ``seed`` (drawn after every weight).

    The book's API: ``params``, ``layers``, ``lastLayer``, ``predict``, ``loss``, ``accuracy``,
    ``gradient``, ``numerical_gradient``, plus ``count_correct``, ``state_dict`` /
    ``load_state_dict`` (the layers' ``state_names``), ``param_slots`` (params key -> (layer
    name, attribute)), ``input_shape``, ``output_shape``, ``device``, ``dtype`` and ``config``:
    the layer list (each layer's registered name and ``settings()``) that :meth:`from_config`
    and checkpoints rebuild it from (a layer class of your own must be registered,
    :func:`xpnet.register_layer`). Weight decay adds ``0.5 * lambda * sum(W**2)`` over the
    weights (keys ``W1``, ``W2``...) to the loss and ``lambda * W`` to their gradients.
    """

    name = "sequential"

    def __init__(self, *layers: LayerEntry, input_shape: Sequence[int],
                 last_layer: Layer | None = None, weight_decay_lambda: float = 0.0,
                 device: str | Device = "cpu", dtype: str = "float32",
                 seed: int | None = None) -> None:
        if not layers:
            raise ConfigError("Sequential needs at least one layer")
        self.device = resolve_device(device)
        self.dtype = check_dtype(dtype)
        self.weight_decay_lambda = check_nonnegative("weight_decay_lambda", weight_decay_lambda)
        self.input_shape = tuple(check_size("input_shape entry", d) for d in input_shape)
        self.lastLayer = last_layer if last_layer is not None else SoftmaxWithLoss()
        self.params: dict[str, Array] = {}
        self.param_slots: dict[str, tuple[str, str]] = {}
        self.layers: OrderedDict[str, Layer] = OrderedDict()
        init = Initializer(self.device, self.dtype, seed)
        listed, counts, shape = [], {}, self.input_shape
        for entry in layers:
            prefix, layer = entry if isinstance(entry, tuple) else ("", entry)
            if any(layer is other for other in self.layers.values()):
                raise ConfigError(f"{type(layer).__name__} object given twice: each layer holds its "
                                  "own state, so give a new one for each place")
            prefix = prefix or getattr(layer, "prefix", "") or type(layer).__name__
            counts[prefix] = counts.get(prefix, 0) + 1
            name = f"{prefix}{counts[prefix]}"
            if not self.layers and hasattr(layer, "input_grad"):
                layer.input_grad = False  # the input is data: its gradient would be wasted work
            try:
                shape = tuple(layer.build(shape, init))
            except ShapeError as exc:
                raise ConfigError(f"{name} cannot take samples of shape {shape}: {exc}") from None
            self.layers[name] = layer
            for attribute in layer.param_names:
                number = sum(attribute in other.param_names for other in self.layers.values())
                self.params[f"{attribute}{number}"] = getattr(layer, attribute)
                self.param_slots[f"{attribute}{number}"] = (name, attribute)
            listed.append({"layer": registered_name(layer), "prefix": prefix,
                           "settings": layer.settings()})
        for layer in self.layers.values():
            for stream in layer.random_streams:
                if getattr(layer, stream) is None:
                    setattr(layer, stream, init.streams())
        self.output_shape = shape
        self.has_train_mode = any(layer.has_train_mode for layer in self.layers.values())
        self.config: dict[str, Any] = {
            "model": self.name, "input_shape": list(self.input_shape), "layers": listed,
            "last_layer": {"layer": registered_name(self.lastLayer),
                           "settings": self.lastLayer.settings()},
            "weight_decay_lambda": self.weight_decay_lambda}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, device: str | Device = "cpu",
                    dtype: str = "float32", seed: int | None = None) -> Sequential:
        """The network ``config`` describes (as :attr:`config` holds it), with new weights.

        Each layer class is looked up by its registered name; an unregistered one raises a
        :class:`ConfigError` naming it and saying how to register it."""
        try:
            layers = [(entry["prefix"], layer_class(entry["layer"])(**entry["settings"]))
                      for entry in config["layers"]]
            last = config["last_layer"]
            last_layer = layer_class(last["layer"])(**last["settings"])
            input_shape = config["input_shape"]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"a Sequential config needs input_shape, layers and last_layer "
                              f"as Sequential.config holds them ({type(exc).__name__}: {exc})") from None
        return cls(*layers, input_shape=input_shape, last_layer=last_layer,
                   weight_decay_lambda=config.get("weight_decay_lambda", 0.0), device=device,
                   dtype=dtype, seed=seed)

    def predict(self, x: Array, train_flg: bool = False) -> Array:
        """Class scores (before softmax); ``train_flg`` switches Dropout and BatchNorm to training."""
        self.bind_params()
        with self.device:
            for layer in self.layers.values():
                x = call_forward(layer, x, train_flg)
        return x

    def loss(self, x: Array, t: Array, train_flg: bool = True) -> Array:
        """Cross-entropy plus weight decay, a 0-d array on the device, in training mode by default
        (the mode :meth:`gradient` differentiates)."""
        y = self.predict(x, train_flg)
        with self.device:
            loss = self.lastLayer.forward(y, t)
            if self.weight_decay_lambda:
                xp = namespace_of(loss)
                for key in self._weight_keys():
                    W = self.params[key]
                    loss = loss + 0.5 * self.weight_decay_lambda * xp.sum(W * W)
        return loss

    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Gradients of :meth:`loss` (training mode) by backpropagation, keyed like ``params``.

        Once backward is done, each layer drops what its forward saved for backward (its
        ``saved_names``: the batch, masks, activations), as PyTorch frees saved tensors after
        ``backward()``; ``lastLayer.loss`` stays. Holding the last batch into the next step
        costs its memory, and on Linux it made glibc hand heap memory back and fault it in
        again each step (docs/performance.md).
        """
        self.loss(x, t, train_flg=True)
        with self.device:
            dout = self.lastLayer.backward(1)
            for layer in reversed(self.layers.values()):
                dout = layer.backward(dout)
            grads = {key: getattr(self.layers[layer], "d" + attribute)
                     for key, (layer, attribute) in self.param_slots.items()}
            for layer in (*self.layers.values(), self.lastLayer):
                for name in layer.saved_names:
                    setattr(layer, name, None)
            if self.weight_decay_lambda:
                for key in self._weight_keys():
                    grads[key] = grads[key] + self.weight_decay_lambda * self.params[key]
        return grads

    def bind_params(self) -> None:
        """Give each layer its parameters from ``params`` (every call does this first)."""
        for key, (layer, attribute) in self.param_slots.items():
            setattr(self.layers[layer], attribute, self.params[key])

    def count_correct(self, x: Array, t: Array, batch_size: int | None = None) -> Array:
        """Number of correct predictions as a 0-d array, evaluating ``batch_size`` rows at a time."""
        n = x.shape[0]
        step = n if batch_size is None else check_size("batch_size", batch_size)
        xp = namespace_of(x, t)
        correct = None
        with self.device:
            for start in range(0, n, step):
                stop = min(start + step, n)  # out-of-bounds slice stops are not in the standard
                y = xp.argmax(self.predict(x[start:stop, ...]), axis=1)
                labels = t[start:stop, ...]
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
        return numerical_param_gradients(self, x, t)

    def _weight_keys(self) -> list[str]:
        return [key for key, (_, attribute) in self.param_slots.items() if attribute == "W"]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Non-parameter state (BatchNorm's running statistics) as host arrays, keyed
        ``"<layer>.<name>"``: the part of a trained model that ``params`` does not hold."""
        return {f"{name}.{attribute}": to_numpy(getattr(layer, attribute))
                for name, layer in self.layers.items()
                for attribute in layer.state_names}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Put back what :meth:`state_dict` returned (host or device arrays) on this network's device."""
        expected = {f"{name}.{attribute}": tuple(getattr(layer, attribute).shape)
                    for name, layer in self.layers.items() for attribute in layer.state_names}
        if set(state) != set(expected):
            raise ConfigError(f"state for {type(self).__name__} must have keys {sorted(expected)}, "
                              f"got {sorted(state)}; was it saved from another architecture?")
        for key, value in state.items():
            if tuple(value.shape) != expected[key]:
                raise ShapeError(f"state {key!r} has shape {tuple(value.shape)}, this network needs "
                                 f"{expected[key]}")
            name, attribute = key.rsplit(".", 1)
            setattr(self.layers[name], attribute, self.device.send(value, self.dtype))


LayerNet = Sequential  # the name of the networks' base before Sequential


class _BookNetwork(Sequential):
    """A network of the book, rebuilt from its constructor's arguments (its ``config``)."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, device: str | Device = "cpu",
                    dtype: str = "float32", seed: int | None = None) -> Sequential:
        kwargs = {key: value for key, value in config.items() if key != "model"}
        return cls(**kwargs, device=device, dtype=dtype, seed=seed)


class TwoLayerNet(_BookNetwork):
    """The book's 2-layer network: Affine1 -> Relu1 -> Affine2, then SoftmaxWithLoss.

    Parameters are created on ``device`` in ``dtype``, from a NumPy generator seeded with
    ``seed``, so the same seed gives the same initial weights on every backend. ``predict``,
    ``loss``, ``gradient``, ``accuracy`` and ``numerical_gradient`` are :class:`Sequential`'s.
    """

    name = "two-layer"

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float = 0.01, *, device: str | Device = "cpu",
                 dtype: str = "float32", seed: int | None = None) -> None:
        input_size = check_size("input_size", input_size)
        hidden_size = check_size("hidden_size", hidden_size)
        output_size = check_size("output_size", output_size)
        super().__init__(Affine(units=hidden_size, weight_init_std=weight_init_std), ReLU(),
                         Affine(units=output_size, weight_init_std=weight_init_std),
                         input_shape=(input_size,), device=device, dtype=dtype, seed=seed)
        self.config = {"model": self.name, "input_size": input_size, "hidden_size": hidden_size,
                       "output_size": output_size, "weight_init_std": weight_init_std}


ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "sigmoid": Sigmoid}


def _hidden_layers(sizes: list[int], activation: str, weight_init_std: str | float,
                   dropout_ratio: float | None, use_batchnorm: bool) -> list[LayerEntry]:
    """The book's MultiLayerNet(Extend) layers: ``Affine [BatchNorm] Activation_function
    [Dropout]`` per hidden size, then the output Affine."""
    layers: list[LayerEntry] = []
    for size in sizes[1:-1]:
        layers.append(Affine(units=size, weight_init_std=weight_init_std))
        if use_batchnorm:
            layers.append(BatchNormalization())
        layers.append(("Activation_function", ACTIVATIONS[activation]()))
        if dropout_ratio is not None:
            layers.append(Dropout(dropout_ratio))
    layers.append(Affine(units=sizes[-1], weight_init_std=weight_init_std))
    return layers


def _mlp_sizes(input_size: int, hidden_size_list: Sequence[int], output_size: int,
               activation: str) -> list[int]:
    check_choice("activation", activation, ACTIVATIONS)
    return [check_size("input_size", input_size),
            *(check_size("hidden_size_list entry", h) for h in hidden_size_list),
            check_size("output_size", output_size)]


class MultiLayerNet(_BookNetwork):
    """The book's fully connected network of any depth (ch. 6), with weight decay.

    ``Affine1 Activation_function1 ... Affine{n+1}`` then SoftmaxWithLoss; params
    ``W1, b1, ..., W{n+1}, b{n+1}``. ``activation`` is ``'relu'`` or ``'sigmoid'``;
    ``weight_init_std`` is ``'relu'``/``'he'``, ``'sigmoid'``/``'xavier'`` or a number (see
    :mod:`xpnet.init`). Weights come from a NumPy generator seeded with ``seed``, the same on
    every backend.
    """

    name = "mlp"

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: str | float = "relu",
                 weight_decay_lambda: float = 0, *, device: str | Device = "cpu",
                 dtype: str = "float32", seed: int | None = None) -> None:
        sizes = _mlp_sizes(input_size, hidden_size_list, output_size, activation)
        super().__init__(*_hidden_layers(sizes, activation, weight_init_std, None, False),
                         input_shape=(sizes[0],), weight_decay_lambda=weight_decay_lambda,
                         device=device, dtype=dtype, seed=seed)
        self.config = _mlp_config(self, sizes, activation, weight_init_std)


def _mlp_config(net: Sequential, sizes: list[int], activation: str,
                weight_init_std: str | float) -> dict[str, Any]:
    return {"model": net.name, "input_size": sizes[0], "hidden_size_list": sizes[1:-1],
            "output_size": sizes[-1], "activation": activation, "weight_init_std": weight_init_std,
            "weight_decay_lambda": net.weight_decay_lambda}


class MultiLayerNetExtend(_BookNetwork):
    """:class:`MultiLayerNet` with optional BatchNorm and Dropout (the book's ch. 6 extension).

    Layers: ``Affine1 [BatchNorm1] Activation_function1 [Dropout1] ... Affine{n+1}`` then
    SoftmaxWithLoss; params ``W1, b1, [gamma1, beta1], ...``. Dropout masks come from an
    :class:`~xpnet.Generator` on ``device`` seeded from ``seed``. The book's keyword
    ``dropout_ration`` is accepted for ``dropout_ratio`` (and read from old checkpoints).
    """

    name = "mlp-extend"

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: str | float = "relu",
                 weight_decay_lambda: float = 0, use_dropout: bool = False,
                 dropout_ratio: float = 0.5, use_batchnorm: bool = False, *,
                 dropout_ration: float | None = None, device: str | Device = "cpu",
                 dtype: str = "float32", seed: int | None = None) -> None:
        ratio = dropout_ratio if dropout_ration is None else dropout_ration
        sizes = _mlp_sizes(input_size, hidden_size_list, output_size, activation)
        layers = _hidden_layers(sizes, activation, weight_init_std,
                                ratio if use_dropout else None, use_batchnorm)
        super().__init__(*layers, input_shape=(sizes[0],), weight_decay_lambda=weight_decay_lambda,
                         device=device, dtype=dtype, seed=seed)
        self.config = {**_mlp_config(self, sizes, activation, weight_init_std),
                       "use_dropout": bool(use_dropout), "dropout_ratio": ratio,
                       "use_batchnorm": bool(use_batchnorm)}


_DEFAULT_CONV_PARAM = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}


def _image_shape(input_dim: Sequence[int]) -> tuple[int, int, int]:
    if len(input_dim) != 3:
        raise ConfigError(f"input_dim must be (channels, height, width), got {input_dim!r}")
    channels, height, width = (check_size("input_dim entry", d) for d in input_dim)
    return channels, height, width


def _conv_param(conv_param: Mapping[str, int] | None, defaults: Mapping[str, int]) -> dict[str, int]:
    """One convolution's ``filter_num``, ``filter_size``, ``pad``, ``stride``, checked, missing
    keys from ``defaults``."""
    unknown = set(conv_param or {}) - set(defaults)
    if unknown:
        raise ConfigError(f"unknown conv_param keys {sorted(unknown)}; it takes "
                          f"{', '.join(defaults)}")
    given = {**defaults, **(conv_param or {})}
    return {"filter_num": check_size("filter_num", given["filter_num"]),
            "filter_size": check_size("filter_size", given["filter_size"]),
            "pad": check_count("pad", given["pad"]),
            "stride": check_size("stride", given["stride"])}


def _convolution(conv: Mapping[str, int], weight_init_std: str | float) -> Convolution:
    return Convolution(filter_num=conv["filter_num"], filter_size=conv["filter_size"],
                       stride=conv["stride"], pad=conv["pad"], weight_init_std=weight_init_std)


class SimpleConvNet(_BookNetwork):
    """The book's convolutional network (ch. 7): conv - relu - pool - affine - relu - affine - softmax.

    ``conv_param`` holds ``filter_num``, ``filter_size``, ``pad`` and ``stride`` (missing keys
    take the book's 30, 5, 0, 1); pooling is 2x2 with stride 2. Params ``W1, b1`` (the
    filters), ``W2, b2``, ``W3, b3``. ``weight_init_std`` is the book's 0.01, or ``'he'`` etc.
    """

    name = "convnet"
    # a CPU keeps the windows of 100 images in its caches, not of 2000 (docs/performance.md)
    eval_batch_size = 100

    def __init__(self, input_dim: Sequence[int] = (1, 28, 28),
                 conv_param: Mapping[str, int] | None = None, hidden_size: int = 100,
                 output_size: int = 10, weight_init_std: str | float = 0.01, *,
                 weight_decay_lambda: float = 0, device: str | Device = "cpu",
                 dtype: str = "float32", seed: int | None = None) -> None:
        channels, height, width = _image_shape(input_dim)
        conv = _conv_param(conv_param, _DEFAULT_CONV_PARAM)
        filter_size = conv["filter_size"]
        hidden_size = check_size("hidden_size", hidden_size)
        output_size = check_size("output_size", output_size)
        conv_h = conv_output_size(height, filter_size, conv["stride"], conv["pad"])
        conv_w = conv_output_size(width, filter_size, conv["stride"], conv["pad"])
        if min(conv_h, conv_w) < 2:
            raise ConfigError(f"a {filter_size}x{filter_size} filter with stride {conv['stride']} and "
                              f"pad {conv['pad']} leaves {conv_h}x{conv_w} outputs of a {height}x{width} "
                              "image; the 2x2 pooling needs at least 2x2")
        super().__init__(_convolution(conv, weight_init_std), ReLU(), Pooling(2, 2, stride=2),
                         Affine(units=hidden_size, weight_init_std=weight_init_std), ReLU(),
                         Affine(units=output_size, weight_init_std=weight_init_std),
                         input_shape=(channels, height, width),
                         weight_decay_lambda=weight_decay_lambda, device=device, dtype=dtype,
                         seed=seed)
        self.config = {"model": self.name, "input_dim": [channels, height, width],
                       "conv_param": conv, "hidden_size": hidden_size, "output_size": output_size,
                       "weight_init_std": weight_init_std,
                       "weight_decay_lambda": self.weight_decay_lambda}


# the book's deep_convnet.py: six 3x3 convolutions, the fourth padded by 2
_DEEP_CONV_PARAMS = tuple({"filter_num": n, "filter_size": 3, "pad": pad, "stride": 1}
                          for n, pad in ((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)))


class _AffineAfterStreams(Affine):
    """DeepConvNet's first Affine: its networks seeded the Dropout masks' generator just before
    drawing this layer's weights, so the same seed keeps giving the same weights."""

    def build(self, input_shape: tuple[int, ...], init: Any) -> tuple[int, ...]:
        init.streams()
        return super().build(input_shape, init)


class DeepConvNet(_BookNetwork):
    """The book's last network (ch. 8), about 99.4% on MNIST.

    ``Conv1 Relu1 Conv2 Relu2 Pool1 Conv3 Relu3 Conv4 Relu4 Pool2 Conv5 Relu5 Conv6 Relu6 Pool3
    Affine1 Relu7 Dropout1 Affine2 Dropout2`` then SoftmaxWithLoss: the book's layers in its
    order, pooling 2x2 with stride 2. ``conv_params`` is six dicts like SimpleConvNet's
    ``conv_param`` (missing keys or ``None``: the book's 16, 16, 32, 32, 64, 64 filters of 3x3,
    pad 1 but 2 for the fourth). Params ``W1..W6`` (filters), ``W7``, ``W8`` (affine), ``b1..b8``,
    with He scales ``sqrt(2 / fan_in)``; the book takes the first layer's fan-in as 1x3x3 whatever
    the input's channels, here it is the real one. ``dropout_ratio=0`` makes both Dropout layers
    the identity (for checks).
    """

    name = "deepconvnet"
    eval_batch_size = 100  # as SimpleConvNet's (docs/performance.md)

    def __init__(self, input_dim: Sequence[int] = (1, 28, 28),
                 conv_params: Sequence[Mapping[str, int] | None] | None = None,
                 hidden_size: int = 50, output_size: int = 10, dropout_ratio: float = 0.5, *,
                 device: str | Device = "cpu", dtype: str = "float32",
                 seed: int | None = None) -> None:
        channels, height, width = _image_shape(input_dim)
        given = list(conv_params) if conv_params is not None else [None] * 6
        if len(given) != 6:
            raise ConfigError(f"conv_params must hold 6 convolutions' settings, got {len(given)}")
        convs = [_conv_param(c, default) for c, default in zip(given, _DEEP_CONV_PARAMS)]
        hidden_size = check_size("hidden_size", hidden_size)
        output_size = check_size("output_size", output_size)
        layers: list[LayerEntry] = []
        for i, conv in enumerate(convs, start=1):
            layers += [_convolution(conv, "he"), ReLU()]
            if i % 2 == 0:
                layers.append(Pooling(2, 2, stride=2))
        layers += [_AffineAfterStreams(units=hidden_size, weight_init_std="he"), ReLU(),
                   Dropout(dropout_ratio), Affine(units=output_size, weight_init_std="he"),
                   Dropout(dropout_ratio)]
        super().__init__(*layers, input_shape=(channels, height, width), device=device,
                         dtype=dtype, seed=seed)
        self.config = {"model": self.name, "input_dim": [channels, height, width],
                       "conv_params": convs, "hidden_size": hidden_size,
                       "output_size": output_size, "dropout_ratio": dropout_ratio}
