"""Networks by name: what checkpoints record, and what ``xpnet train --model`` builds.

Two tables, one home. :data:`NETWORKS` maps a network class's ``name`` (the ``"model"`` key
of its ``config``, written into every checkpoint) to the class, for :func:`from_config`
(a :class:`~xpnet.Sequential`'s config lists its layers; their classes are found by the names
:func:`xpnet.register_layer` gave them).
:data:`MODELS` maps each ``--model`` choice to the function that builds it from the trainer's
settings; its docstring's first line is the choice's help. A new network is one line in
each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .backend import Device
from .errors import ConfigError
from .models import (ACTIVATIONS, DeepConvNet, MultiLayerNet, MultiLayerNetExtend, Sequential,
                     SimpleConvNet, TwoLayerNet)
from .validate import check_choice

__all__ = ["NETWORKS", "MODELS", "MODEL_NAMES", "MODEL_DEFAULTS", "ACTIVATION_NAMES", "from_config",
           "build_model", "model_help"]

NETWORKS: dict[str, type[Sequential]] = {
    cls.name: cls for cls in (Sequential, TwoLayerNet, MultiLayerNet, MultiLayerNetExtend,
                              SimpleConvNet, DeepConvNet)}
# the hidden activations a fully connected --model takes (xpnet train --activation)
ACTIVATION_NAMES = tuple(ACTIVATIONS)


def from_config(config: dict[str, Any], *, device: str | Device = "cpu", dtype: str = "float32",
                seed: int | None = None) -> Sequential:
    """Rebuild the network a ``config`` dict describes (as saved in a checkpoint): a network
    of the book from its constructor's arguments, a :class:`~xpnet.Sequential` from its layer
    list (its layers' classes registered with :func:`xpnet.register_layer`)."""
    name = config.get("model")
    if name not in NETWORKS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(NETWORKS)}")
    return NETWORKS[name].from_config(config, device=device, dtype=dtype, seed=seed)


def _mlp(input_shape: tuple[int, ...], hidden: list[int], output_size: int, activation: str,
         weight_decay: float, **placement: Any) -> Sequential:
    """fully connected: the book's TwoLayerNet for one ReLU layer without decay, else MultiLayerNet"""
    # TwoLayerNet's std 0.01 init reaches ~97% on MNIST with one layer; deeper or sigmoid
    # networks need He or Xavier init (MultiLayerNet) to train at all
    input_size = math.prod(input_shape)
    if len(hidden) == 1 and activation == "relu" and not weight_decay:
        return TwoLayerNet(input_size, hidden[0], output_size, **placement)
    return MultiLayerNet(input_size, hidden, output_size, activation, activation, weight_decay,
                         **placement)


def _mlp_bn(input_shape: tuple[int, ...], hidden: list[int], output_size: int, activation: str,
            weight_decay: float, **placement: Any) -> Sequential:
    """fully connected with BatchNorm after every hidden Affine (MultiLayerNetExtend)"""
    return MultiLayerNetExtend(math.prod(input_shape), hidden, output_size, activation, activation,
                               weight_decay, use_batchnorm=True, **placement)


def _convnet(input_shape: tuple[int, ...], hidden: list[int], output_size: int, activation: str,
             weight_decay: float, **placement: Any) -> Sequential:
    """the book's SimpleConvNet: conv-relu-pool, then one ReLU hidden layer"""
    if len(hidden) != 1 or activation != "relu":
        raise ConfigError(f"convnet has one ReLU hidden layer: give one hidden size and "
                          f"activation 'relu', got hidden={hidden} activation={activation!r}")
    return SimpleConvNet(tuple(input_shape), hidden_size=hidden[0], output_size=output_size,
                         weight_decay_lambda=weight_decay, **placement)


def _deepconvnet(input_shape: tuple[int, ...], hidden: list[int], output_size: int,
                 activation: str, weight_decay: float, **placement: Any) -> Sequential:
    """the book's DeepConvNet (ch. 8): six 3x3 convolutions, dropout, one ReLU hidden layer"""
    if len(hidden) != 1 or activation != "relu" or weight_decay:
        raise ConfigError(f"deepconvnet has one ReLU hidden layer and no weight decay: give one "
                          f"hidden size, got hidden={hidden} activation={activation!r} "
                          f"weight_decay={weight_decay}")
    return DeepConvNet(tuple(input_shape), hidden_size=hidden[0], output_size=output_size,
                       **placement)


# --model choice -> builder (input_shape, hidden, output_size, activation, weight_decay, placement)
MODELS: dict[str, Callable[..., Sequential]] = {"mlp": _mlp, "mlp-bn": _mlp_bn, "convnet": _convnet,
                                              "deepconvnet": _deepconvnet}
MODEL_NAMES = tuple(MODELS)
# --model choice -> defaults of its own, over xpnet train's
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"deepconvnet": {"hidden": (50,)}}


def model_help() -> str:
    """One line per ``--model`` choice, for ``xpnet train --help``."""
    return "; ".join(f"{name}: {build.__doc__}" for name, build in MODELS.items())


def build_model(name: str, *, input_shape: Sequence[int], hidden: Sequence[int], output_size: int,
                activation: str = "relu", weight_decay: float = 0.0, device: str | Device = "cpu",
                dtype: str = "float32", seed: int | None = None) -> Sequential:
    """The network ``--model name`` trains (see :data:`MODELS`); ``input_shape`` is one sample's
    shape (fully connected networks take its product)."""
    build = MODELS[check_choice("model", name, MODELS)]
    return build(tuple(input_shape), list(hidden), output_size, activation, weight_decay,
                 device=device, dtype=dtype, seed=seed)
