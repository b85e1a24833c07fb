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
from .validate import check_positive

__all__ = ["INIT_NAMES", "weight_std", "normal_weight", "zeros", "ones"]

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
