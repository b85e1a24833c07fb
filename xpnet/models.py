"""Networks with the book's API: ``params``, ``layers``, ``predict``, ``loss``, ``accuracy``, ``gradient``.

``params`` is the source of truth: every call reads it, so the book's update
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
from .init import normal_weight, ones, weight_std, zeros
from .layers import Affine, Layer, ReLU, Sigmoid, SoftmaxWithLoss
from .regularization import BatchNormalization, Dropout
from .rng import Generator
from .validate import check_choice, check_count, check_dtype, check_nonnegative, check_size

__all__ = ["LayerNet", "TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet",
           "DeepConvNet"]


class LayerNet:
    """What every network here shares: a chain of layers, the book's API, weight decay, train mode.

    A subclass names itself in ``name`` (its checkpoints' ``config["model"]``), builds
    ``params``, ``layers`` (ordered, first to last, each a :class:`~xpnet.layers.Layer`),
    ``lastLayer``, ``_slots`` (params key -> (layer name, attribute) it feeds), ``config``
    (its constructor's arguments) and ``input_shape``, and sets ``weight_decay_lambda``.
    Layers with ``has_train_mode`` (Dropout, BatchNormalization) get ``train_flg``; a network
    holding one sets ``has_train_mode = True``. Layers' ``state_names`` travel through
    :meth:`state_dict` / :meth:`load_state_dict`.
    Weight decay adds ``0.5 * lambda * sum(W**2)`` over the weights (keys ``W1``, ``W2``...)
    to the loss and ``lambda * W`` to their gradients.
    """

    name: str = ""
    has_train_mode = False
    weight_decay_lambda = 0.0
    device: Device
    dtype: str
    config: dict[str, Any]
    input_shape: tuple[int, ...]
    params: dict[str, Array]
    layers: OrderedDict[str, Layer]
    lastLayer: Layer
    _slots: dict[str, tuple[str, str]]

    def predict(self, x: Array, train_flg: bool = False) -> Array:
        """Class scores (before softmax); ``train_flg`` switches Dropout and BatchNorm to training."""
        self._load_params()
        with self.device:
            for layer in self.layers.values():
                x = layer.forward(x, train_flg) if layer.has_train_mode else layer.forward(x)
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
        again each step: steps up to twice as slow (docs/performance.md).
        """
        self.loss(x, t, train_flg=True)
        with self.device:
            dout = self.lastLayer.backward(1)
            for layer in reversed(self.layers.values()):
                dout = layer.backward(dout)
            grads = {key: getattr(self.layers[layer], "d" + attribute)
                     for key, (layer, attribute) in self._slots.items()}
            for layer in (*self.layers.values(), self.lastLayer):
                for name in layer.saved_names:
                    setattr(layer, name, None)
            if self.weight_decay_lambda:
                for key in self._weight_keys():
                    grads[key] = grads[key] + self.weight_decay_lambda * self.params[key]
        return grads

    def _load_params(self) -> None:
        for key, (layer, attribute) in self._slots.items():
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
        return [key for key, (_, attribute) in self._slots.items() if attribute == "W"]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Non-parameter state (BatchNorm's running statistics) as host arrays, keyed
        ``"<layer>.<name>"``: the part of a trained model that ``params`` does not hold."""
        return {f"{name}.{attribute}": to_numpy(getattr(layer, attribute))
                for name, layer in self.layers.items()
                for attribute in layer.state_names}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Put back what :meth:`state_dict` returned (host or device arrays) on this network's device."""
        expected = self.state_dict()
        if set(state) != set(expected):
            raise ConfigError(f"state for {type(self).__name__} must have keys {sorted(expected)}, "
                              f"got {sorted(state)}; was it saved from another architecture?")
        for key, value in state.items():
            if tuple(value.shape) != expected[key].shape:
                raise ShapeError(f"state {key!r} has shape {tuple(value.shape)}, this network needs "
                                 f"{expected[key].shape}")
            name, attribute = key.rsplit(".", 1)
            setattr(self.layers[name], attribute, self.device.send(value, self.dtype))


class TwoLayerNet(LayerNet):
    """The book's 2-layer network: Affine1 -> Relu1 -> Affine2, then SoftmaxWithLoss.

    Parameters are created on ``device`` in ``dtype``, from a NumPy generator seeded with
    ``seed``, so the same seed gives the same initial weights on every backend. ``predict``,
    ``loss``, ``gradient``, ``accuracy`` and ``numerical_gradient`` are :class:`LayerNet`'s.
    """

    name = "two-layer"

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
        self.config = {"model": self.name, "input_size": input_size, "hidden_size": hidden_size,
                       "output_size": output_size, "weight_init_std": weight_init_std}
        rng = np.random.default_rng(seed)
        dev, dt = self.device, self.dtype
        self.params: dict[str, Array] = {
            "W1": normal_weight((input_size, hidden_size), weight_init_std, rng, dev, dt),
            "b1": zeros((hidden_size,), dev, dt),
            "W2": normal_weight((hidden_size, output_size), weight_init_std, rng, dev, dt),
            "b2": zeros((output_size,), dev, dt),
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


_ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "sigmoid": Sigmoid}


class MultiLayerNet(LayerNet):
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
        self._build(input_size=input_size, hidden_size_list=hidden_size_list,
                    output_size=output_size, activation=activation,
                    weight_init_std=weight_init_std, weight_decay_lambda=weight_decay_lambda,
                    dropout_ratio=None, use_batchnorm=False, device=device, dtype=dtype, seed=seed)

    def _build(self, *, input_size: int, hidden_size_list: Sequence[int], output_size: int,
               activation: str, weight_init_std: str | float, weight_decay_lambda: float,
               dropout_ratio: float | None, use_batchnorm: bool, device: str | Device,
               dtype: str, seed: int | None) -> None:
        """The layers, with a BatchNorm after each hidden Affine if ``use_batchnorm`` and a
        Dropout after each activation unless ``dropout_ratio`` is None."""
        sizes = [check_size("input_size", input_size),
                 *(check_size("hidden_size_list entry", h) for h in hidden_size_list),
                 check_size("output_size", output_size)]
        check_choice("activation", activation, _ACTIVATIONS)
        self.device = resolve_device(device)
        self.dtype = check_dtype(dtype)
        self.weight_decay_lambda = check_nonnegative("weight_decay_lambda", weight_decay_lambda)
        self.has_train_mode = dropout_ratio is not None or use_batchnorm
        self.input_shape = (sizes[0],)
        self.config = {"model": self.name, "input_size": sizes[0], "hidden_size_list": sizes[1:-1],
                       "output_size": sizes[-1], "activation": activation,
                       "weight_init_std": weight_init_std,
                       "weight_decay_lambda": self.weight_decay_lambda}
        rng = np.random.default_rng(seed)
        dev, dt = self.device, self.dtype
        self.params = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            std = weight_std(weight_init_std, fan_in)
            self.params[f"W{i}"] = normal_weight((fan_in, fan_out), std, rng, dev, dt)
            self.params[f"b{i}"] = zeros((fan_out,), dev, dt)
        masks = Generator(dev, int(rng.integers(2**31))) if dropout_ratio is not None else None
        self.layers = OrderedDict()
        self._slots = {}
        last = len(sizes) - 1
        for i in range(1, last + 1):
            # the input is data, not a parameter: its gradient would be wasted work
            self.layers[f"Affine{i}"] = Affine(self.params[f"W{i}"], self.params[f"b{i}"],
                                               input_grad=i > 1)
            self._slots[f"W{i}"] = (f"Affine{i}", "W")
            self._slots[f"b{i}"] = (f"Affine{i}", "b")
            if i == last:
                break
            if use_batchnorm:
                self.params[f"gamma{i}"] = ones((sizes[i],), dev, dt)
                self.params[f"beta{i}"] = zeros((sizes[i],), dev, dt)
                self.layers[f"BatchNorm{i}"] = BatchNormalization(
                    self.params[f"gamma{i}"], self.params[f"beta{i}"],
                    running_mean=zeros((sizes[i],), dev, dt), running_var=ones((sizes[i],), dev, dt))
                self._slots[f"gamma{i}"] = (f"BatchNorm{i}", "gamma")
                self._slots[f"beta{i}"] = (f"BatchNorm{i}", "beta")
            self.layers[f"Activation_function{i}"] = _ACTIVATIONS[activation]()
            if dropout_ratio is not None:
                self.layers[f"Dropout{i}"] = Dropout(dropout_ratio, rng=masks)
        self.lastLayer = SoftmaxWithLoss()


class MultiLayerNetExtend(MultiLayerNet):
    """:class:`MultiLayerNet` with optional BatchNorm and Dropout (the book's ch. 6 extension).

    Layers: ``Affine1 [BatchNorm1] Activation_function1 [Dropout1] ... Affine{n+1}`` then
    SoftmaxWithLoss; params ``W1, b1, [gamma1, beta1], ...``. Dropout masks come from an
    :class:`~xpnet.Generator` on ``device`` seeded from ``seed``. ``dropout_ration`` is the
    book's spelling; ``dropout_ratio`` is accepted too.
    """

    name = "mlp-extend"

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: str | float = "relu",
                 weight_decay_lambda: float = 0, use_dropout: bool = False,
                 dropout_ration: float = 0.5, use_batchnorm: bool = False, *,
                 dropout_ratio: float | None = None, device: str | Device = "cpu",
                 dtype: str = "float32", seed: int | None = None) -> None:
        ratio = dropout_ration if dropout_ratio is None else dropout_ratio
        self._build(input_size=input_size, hidden_size_list=hidden_size_list,
                    output_size=output_size, activation=activation,
                    weight_init_std=weight_init_std, weight_decay_lambda=weight_decay_lambda,
                    dropout_ratio=ratio if use_dropout else None, use_batchnorm=use_batchnorm,
                    device=device, dtype=dtype, seed=seed)
        self.config.update({"use_dropout": bool(use_dropout), "dropout_ration": ratio,
                            "use_batchnorm": bool(use_batchnorm)})


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


class SimpleConvNet(LayerNet):
    """The book's convolutional network (ch. 7): conv - relu - pool - affine - relu - affine - softmax.

    ``conv_param`` holds ``filter_num``, ``filter_size``, ``pad`` and ``stride`` (missing keys
    take the book's 30, 5, 0, 1); pooling is 2x2 with stride 2. Params ``W1, b1`` (the
    filters), ``W2, b2``, ``W3, b3``. ``weight_init_std`` is the book's 0.01, or ``'he'`` etc.
    """

    name = "convnet"
    # a CPU keeps the windows of 100 images in its caches: 2000 at a time scored 1.5-2x slower
    eval_batch_size = 100

    def __init__(self, input_dim: Sequence[int] = (1, 28, 28),
                 conv_param: Mapping[str, int] | None = None, hidden_size: int = 100,
                 output_size: int = 10, weight_init_std: str | float = 0.01, *,
                 weight_decay_lambda: float = 0, device: str | Device = "cpu",
                 dtype: str = "float32", seed: int | None = None) -> None:
        channels, height, width = _image_shape(input_dim)
        conv = _conv_param(conv_param, _DEFAULT_CONV_PARAM)
        filter_num, filter_size = conv["filter_num"], conv["filter_size"]
        hidden_size = check_size("hidden_size", hidden_size)
        output_size = check_size("output_size", output_size)
        conv_h = conv_output_size(height, filter_size, conv["stride"], conv["pad"])
        conv_w = conv_output_size(width, filter_size, conv["stride"], conv["pad"])
        if min(conv_h, conv_w) < 2:
            raise ConfigError(f"a {filter_size}x{filter_size} filter with stride {conv['stride']} and "
                              f"pad {conv['pad']} leaves {conv_h}x{conv_w} outputs of a {height}x{width} "
                              "image; the 2x2 pooling needs at least 2x2")
        pool_size = filter_num * (conv_h // 2) * (conv_w // 2)

        self.device = resolve_device(device)
        self.dtype = check_dtype(dtype)
        self.weight_decay_lambda = check_nonnegative("weight_decay_lambda", weight_decay_lambda)
        self.input_shape = (channels, height, width)
        self.config = {"model": self.name, "input_dim": [channels, height, width],
                       "conv_param": conv, "hidden_size": hidden_size, "output_size": output_size,
                       "weight_init_std": weight_init_std,
                       "weight_decay_lambda": self.weight_decay_lambda}
        rng = np.random.default_rng(seed)
        dev, dt = self.device, self.dtype
        fan_in_conv = channels * filter_size * filter_size
        self.params = {
            "W1": normal_weight((filter_num, channels, filter_size, filter_size),
                                weight_std(weight_init_std, fan_in_conv), rng, dev, dt),
            "b1": zeros((filter_num,), dev, dt),
            "W2": normal_weight((pool_size, hidden_size), weight_std(weight_init_std, pool_size),
                                rng, dev, dt),
            "b2": zeros((hidden_size,), dev, dt),
            "W3": normal_weight((hidden_size, output_size), weight_std(weight_init_std, hidden_size),
                                rng, dev, dt),
            "b3": zeros((output_size,), dev, dt),
        }
        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(self.params["W1"], self.params["b1"], conv["stride"],
                                           conv["pad"], input_grad=False)
        self.layers["Relu1"] = ReLU()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self.layers["Relu2"] = ReLU()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"])
        self.lastLayer = SoftmaxWithLoss()
        self._slots = {"W1": ("Conv1", "W"), "b1": ("Conv1", "b"), "W2": ("Affine1", "W"),
                       "b2": ("Affine1", "b"), "W3": ("Affine2", "W"), "b3": ("Affine2", "b")}


# the book's deep_convnet.py: six 3x3 convolutions, the fourth padded by 2
_DEEP_CONV_PARAMS = tuple({"filter_num": n, "filter_size": 3, "pad": pad, "stride": 1}
                          for n, pad in ((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)))


class DeepConvNet(LayerNet):
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
    eval_batch_size = 100  # as SimpleConvNet's: 2000 at a time scored 2.5x slower on a CPU
    has_train_mode = True

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
        self.device = resolve_device(device)
        self.dtype = check_dtype(dtype)
        self.input_shape = (channels, height, width)
        self.config = {"model": self.name, "input_dim": [channels, height, width],
                       "conv_params": convs, "hidden_size": hidden_size,
                       "output_size": output_size, "dropout_ratio": dropout_ratio}
        rng = np.random.default_rng(seed)
        dev, dt = self.device, self.dtype
        self.params, self.layers, self._slots = {}, OrderedDict(), {}
        for i, conv in enumerate(convs, start=1):
            size = conv["filter_size"]
            self.params[f"W{i}"] = normal_weight((conv["filter_num"], channels, size, size),
                                                 weight_std("he", channels * size * size), rng, dev, dt)
            self.params[f"b{i}"] = zeros((conv["filter_num"],), dev, dt)
            self.layers[f"Conv{i}"] = Convolution(self.params[f"W{i}"], self.params[f"b{i}"],
                                                  conv["stride"], conv["pad"], input_grad=i > 1)
            self.layers[f"Relu{i}"] = ReLU()
            self._slots[f"W{i}"], self._slots[f"b{i}"] = (f"Conv{i}", "W"), (f"Conv{i}", "b")
            channels = conv["filter_num"]
            height = conv_output_size(height, size, conv["stride"], conv["pad"])
            width = conv_output_size(width, size, conv["stride"], conv["pad"])
            if i % 2 == 0:
                self.layers[f"Pool{i // 2}"] = Pooling(pool_h=2, pool_w=2, stride=2)
                height, width = conv_output_size(height, 2, 2), conv_output_size(width, 2, 2)
            if min(height, width) < 1:
                raise ConfigError(f"DeepConvNet's layers shrink a {input_dim[1]}x{input_dim[2]} "
                                  f"image to nothing by convolution {i}; use larger images")
        masks = Generator(dev, int(rng.integers(2**31)))
        for i, (fan_in, fan_out) in enumerate(((channels * height * width, hidden_size),
                                               (hidden_size, output_size)), start=7):
            self.params[f"W{i}"] = normal_weight((fan_in, fan_out), weight_std("he", fan_in), rng,
                                                 dev, dt)
            self.params[f"b{i}"] = zeros((fan_out,), dev, dt)
            self.layers[f"Affine{i - 6}"] = Affine(self.params[f"W{i}"], self.params[f"b{i}"])
            self._slots[f"W{i}"], self._slots[f"b{i}"] = (f"Affine{i - 6}", "W"), (f"Affine{i - 6}", "b")
            if i == 7:
                self.layers["Relu7"] = ReLU()
            self.layers[f"Dropout{i - 6}"] = Dropout(dropout_ratio, rng=masks)
        self.lastLayer = SoftmaxWithLoss()
