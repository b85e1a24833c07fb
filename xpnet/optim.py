"""The book's optimizers (chapter 6), with its protocol ``optimizer.update(params, grads)``.

Each optimizer updates ``params`` with in-place operators (``params[key] -= ...``): NumPy,
CuPy, PyTorch and array-api-strict update the array itself, and a backend with immutable
arrays (JAX) rebinds the dict entry instead. Networks re-read ``params`` on every call, so
both work. The per-parameter state (velocities, squared-gradient sums) is always rebound,
``v = momentum * v - lr * dW``, never written into: the same code then holds on every
backend, and inside ``jax.jit``, without relying on a store-back after an in-place operator.
Nothing here leaves the device: the state is created lazily with ``xp.zeros_like(param)``,
on the parameter's device and in its dtype, and Adam's bias correction uses its step count,
a Python number, so no update ever waits for the device (no ``float()``, no ``.item()``).

An update is :meth:`Optimizer.step_scalars` (what depends on the step count, computed on
the host) then :meth:`Optimizer.apply`; a compiled step (:mod:`xpnet.compiled`) counts on
the host and passes those scalars into one compiled program as arguments.

>>> from xpnet.optim import make_optimizer
>>> optimizer = make_optimizer("momentum", lr=0.1)
>>> # optimizer.update(network.params, network.gradient(x_batch, t_batch))
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from .backend import Array, Device, namespace_of, on_device_of, to_numpy
from .backend import device as resolve_device
from .errors import ConfigError
from .validate import check_fraction, check_positive

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam",
           "OPTIMIZERS", "make_optimizer"]

# Added to the denominator of the adaptive methods, as in the book (1e-7).
EPSILON = 1e-7


class Optimizer:
    """Base class: ``update(params, grads)``, a step counter, and per-parameter state slots.

    A subclass names its state in ``slots`` (e.g. ``("v",)``); ``self.state[slot][key]`` is
    then the array for parameter ``key``, created on first use by :meth:`_slot`.
    """

    name: str = ""
    slots: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = check_positive("lr", lr)
        self.step_count = 0  # updates done: Adam's t, and a record for checkpoints
        self.state: dict[str, dict[str, Array]] = {slot: {} for slot in self.slots}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k != "optimizer")
        return f"{type(self).__name__}({options})"

    @property
    def config(self) -> dict[str, Any]:
        """The name and hyper-parameters: ``make_optimizer(**config)`` builds an equal one."""
        return {"optimizer": self.name, "lr": self.lr}

    def update(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Move every parameter in ``params`` one step against its gradient in ``grads``,
        on the parameters' device (CuPy's current GPU: the state is created there)."""
        self.step_count += 1
        self.apply(params, grads, self.step_scalars(self.step_count))

    def step_scalars(self, step: int) -> dict[str, float]:
        """The numbers update ``step`` (from 1) computes once for all parameters from its count
        (Adam's bias-corrected rate); none by default."""
        return {}

    def apply(self, params: dict[str, Array], grads: dict[str, Array],
              scalars: dict[str, Any]) -> None:
        """One update with ``scalars`` from :meth:`step_scalars` (Python floats, or 0-d arrays
        in a compiled step), leaving ``step_count`` alone."""
        with on_device_of(*params.values()):
            for key in params:
                self._update_one(params, key, grads[key], scalars)

    def init_state(self, params: dict[str, Array]) -> None:
        """Create every state slot of ``params`` now (zeros), instead of at the first update."""
        for slot in self.slots:
            for key, param in params.items():
                self._slot(slot, key, param)

    def _update_one(self, params: dict[str, Array], key: str, grad: Array,
                    scalars: dict[str, Any]) -> None:
        raise NotImplementedError

    def _slot(self, slot: str, key: str, like: Array) -> Array:
        """The ``slot`` state of parameter ``key``: zeros like the parameter on first use."""
        values = self.state[slot]
        if key not in values:
            values[key] = namespace_of(like).zeros_like(like)
        return values[key]

    def state_dict(self) -> dict[str, Any]:
        """``{"step": int, "slots": {slot: {param key: host NumPy array}}}`` (a host sync)."""
        return {"step": self.step_count,
                "slots": {slot: {key: np.array(to_numpy(value)) for key, value in values.items()}
                          for slot, values in self.state.items()}}

    def load_state_dict(self, state: dict[str, Any], device: str | Device = "cpu",
                        dtype: Any = None) -> None:
        """Restore :meth:`state_dict`'s output (host arrays), each sent to ``device`` (as ``dtype``)."""
        dev = resolve_device(device)
        unknown = set(state.get("slots", {})) - set(self.slots)
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no state {', '.join(sorted(unknown))}; "
                              f"its state is {', '.join(self.slots) or 'empty'}: this state comes "
                              "from another optimizer")
        self.step_count = int(state.get("step", 0))
        # copies: the caller's arrays stay theirs (a compiled step donates the state)
        self.state = {slot: {key: dev.send(np.array(value), dtype)
                             for key, value in state.get("slots", {}).get(slot, {}).items()}
                      for slot in self.slots}


class SGD(Optimizer):
    """Stochastic gradient descent: ``W -= lr * dW``."""

    name = "sgd"

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)

    def _update_one(self, params: dict[str, Array], key: str, grad: Array,
                    scalars: dict[str, Any]) -> None:
        params[key] -= self.lr * grad


class Momentum(Optimizer):
    """``v = momentum * v - lr * dW; W += v``."""

    name = "momentum"
    slots = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = check_fraction("momentum", momentum)

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "momentum": self.momentum}

    def _velocity(self, params: dict[str, Array], key: str, grad: Array) -> Array:
        """``v = momentum * v - lr * dW`` for parameter ``key``, stored and returned."""
        v = self.momentum * self._slot("v", key, params[key]) - self.lr * grad
        self.state["v"][key] = v
        return v

    def _update_one(self, params: dict[str, Array], key: str, grad: Array,
                    scalars: dict[str, Any]) -> None:
        params[key] += self._velocity(params, key, grad)


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, in the book's form (which updates at the look-ahead point)::

        v = momentum * v - lr * dW
        W += momentum * momentum * v - (1 + momentum) * lr * dW
    """

    name = "nesterov"

    def _update_one(self, params: dict[str, Array], key: str, grad: Array,
                    scalars: dict[str, Any]) -> None:
        v = self._velocity(params, key, grad)
        params[key] += self.momentum * self.momentum * v
        params[key] -= (1.0 + self.momentum) * self.lr * grad


class AdaGrad(Optimizer):
    """``h += dW * dW; W -= lr * dW / (sqrt(h) + 1e-7)``: each weight's rate shrinks with its history."""

    name = "adagrad"
    slots = ("h",)

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)

    def _update_one(self, params: dict[str, Array], key: str, grad: Array,
                    scalars: dict[str, Any]) -> None:
        xp = namespace_of(grad)
        h = self.state["h"][key] = self._slot("h", key, params[key]) + grad * grad
        params[key] -= self.lr * grad / (xp.sqrt(h) + EPSILON)


class RMSprop(Optimizer):
    """AdaGrad with a decaying history: ``h = decay_rate * h + (1 - decay_rate) * dW * dW``."""

    name = "rmsprop"
    slots = ("h",)

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = check_fraction("decay_rate", decay_rate, zero=False)

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "decay_rate": self.decay_rate}

    def _update_one(self, params: dict[str, Array], key: str, grad: Array,
                    scalars: dict[str, Any]) -> None:
        xp = namespace_of(grad)
        h = self._slot("h", key, params[key])
        h = self.state["h"][key] = self.decay_rate * h + (1.0 - self.decay_rate) * grad * grad
        params[key] -= self.lr * grad / (xp.sqrt(h) + EPSILON)


class Adam(Optimizer):
    """Adam, in the book's form: moving averages ``m``, ``v`` and a bias-corrected step size.

    ``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` with ``t`` the step count (a Python
    int, so computing it needs nothing from the device), then
    ``m += (1 - beta1) * (dW - m)``, ``v += (1 - beta2) * (dW**2 - v)``,
    ``W -= lr_t * m / (sqrt(v) + 1e-7)``.
    """

    name = "adam"
    slots = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        super().__init__(lr)
        self.beta1 = check_fraction("beta1", beta1)
        self.beta2 = check_fraction("beta2", beta2)

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "beta1": self.beta1, "beta2": self.beta2}

    def step_scalars(self, step: int) -> dict[str, float]:
        return {"lr_t": self.lr * math.sqrt(1.0 - self.beta2 ** step) / (1.0 - self.beta1 ** step)}

    def _update_one(self, params: dict[str, Array], key: str, grad: Array,
                    scalars: dict[str, Any]) -> None:
        xp = namespace_of(grad)
        m = self._slot("m", key, params[key])
        v = self._slot("v", key, params[key])
        m = self.state["m"][key] = m + (1.0 - self.beta1) * (grad - m)
        v = self.state["v"][key] = v + (1.0 - self.beta2) * (grad * grad - v)
        params[key] -= scalars["lr_t"] * m / (xp.sqrt(v) + EPSILON)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)
}


def make_optimizer(optimizer: str, lr: float | None = None, **options: Any) -> Optimizer:
    """The optimizer registered as ``optimizer`` (case-insensitive), with ``lr`` and ``options``.

    ``lr=None`` keeps the optimizer's default (the book's). An unknown name or option raises
    :class:`ConfigError` listing the valid ones.
    """
    cls = OPTIMIZERS.get(str(optimizer).lower())
    if cls is None:
        raise ConfigError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if lr is not None:
        options["lr"] = lr
    try:
        return cls(**options)
    except TypeError:
        valid = list(inspect.signature(cls).parameters)
        raise ConfigError(f"{cls.__name__} takes the options {', '.join(valid)}; got "
                          f"{', '.join(sorted(options))}") from None
