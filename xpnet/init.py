"""Weight initialisation (book ch. 6): He for ReLU, Xavier for sigmoid, or a fixed scale.

Weights are drawn on the host from a seeded NumPy generator and sent to the device once,
at construction: the same seed gives the same initial weights on every backend, which is
what lets a network's parity be checked against NumPy float64. Initialisation is not in a
training step, so the host is the right place for it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backend import Array, Device
from .errors import ConfigError
from .rng import Generator
from .validate import check_positive

__all__ = ["INIT_NAMES", "weight_std", "normal_weight", "zeros", "ones", "Initializer"]

# name -> gain: std = sqrt(gain / fan_in)
INIT_NAMES: dict[str, float] = {"he": 2.0, "relu": 2.0, "xavier": 1.0, "sigmoid": 1.0}


def weight_std(weight_init_std: str | float, fan_in: int) -> float:
    """The standard deviation a layer with ``fan_in`` inputs gets from ``weight_init_std``.

    ``'he'``/``'relu'`` give ``sqrt(2 / fan_in)`` (He et al., keeps ReLU activations' scale),
    ``'xavier'``/``'sigmoid'`` give ``sqrt(1 / fan_in)`` (the book's simplified Xavier), a
    positive number is used as is.
    """
    if isinstance(weight_init_std, str):
        gain = INIT_NAMES.get(weight_init_std.lower())
        if gain is None:
            raise ConfigError(f"unknown weight_init_std {weight_init_std!r}; use one of "
                              f"{', '.join(INIT_NAMES)} or a positive number")
        return math.sqrt(gain / fan_in)
    return check_positive("weight_init_std", weight_init_std)


def normal_weight(shape: tuple[int, ...], std: float, rng: np.random.Generator, device: Device,
                  dtype: Any) -> Array:
    """``std * N(0, 1)`` of ``shape`` drawn from ``rng`` on the host, then sent to ``device``."""
    return device.send(std * rng.standard_normal(shape), dtype)


def zeros(shape: tuple[int, ...], device: Device, dtype: Any) -> Array:
    """Zeros on ``device`` (biases, BatchNorm's beta and running mean)."""
    return device.send(np.zeros(shape), dtype)


def ones(shape: tuple[int, ...], device: Device, dtype: Any) -> Array:
    """Ones on ``device`` (BatchNorm's gamma and running variance)."""
    return device.send(np.ones(shape), dtype)


class Initializer:
    """What a layer's ``build`` creates its parameters with: arrays on ``device`` in ``dtype``,
    normal weights drawn in build order from one host generator seeded with ``seed`` (the same
    weights on every backend), and the network's random streams.
    """

    def __init__(self, device: Device, dtype: str, seed: int | None) -> None:
        self.device = device
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        self._streams: Generator | None = None

    def std(self, weight_init_std: str | float, fan_in: int) -> float:
        """:func:`weight_std` of a layer with ``fan_in`` inputs."""
        return weight_std(weight_init_std, fan_in)

    def normal(self, shape: tuple[int, ...], std: float) -> Array:
        """``std * N(0, 1)`` of ``shape``, the next draws of the host generator."""
        return normal_weight(shape, std, self.rng, self.device, self.dtype)

    def zeros(self, shape: tuple[int, ...]) -> Array:
        return zeros(shape, self.device, self.dtype)

    def ones(self, shape: tuple[int, ...]) -> Array:
        return ones(shape, self.device, self.dtype)

    def streams(self) -> Generator:
        """The generator a network's random streams start from (a :class:`~xpnet.Trainer`
        replaces them per step): one for the network, seeded by one draw of the host generator
        made at the first call. :class:`~xpnet.Sequential` calls it after every layer is built,
        so adding a Dropout changes no weight."""
        if self._streams is None:
            self._streams = Generator(self.device, int(self.rng.integers(2**31)))
        return self._streams
