"""Dropout and Batch Normalization (book ch. 6), with a training and an inference mode.

Both layers take ``forward(x, train_flg=True)`` and say so with ``has_train_mode = True``,
which is how a network knows to pass the flag. Like every xpnet layer they find ``xp``
from their inputs, create arrays on the input's device and never write into an argument.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as array_device_of

from .backend import Array, device_of, namespace_of, on_input_device
from .errors import ShapeError
from .layers import Layer, register_layer
from .rng import Generator
from .validate import check_fraction, check_positive

__all__ = ["Dropout", "BatchNormalization", "generator_for"]


def generator_for(x: Array, seed: int | None = None) -> Generator:
    """A :class:`~xpnet.Generator` that draws on the device ``x`` lives on."""
    return Generator(device_of(x), seed)


class Dropout(Layer):
    """Zero each input with probability ``dropout_ratio`` in training; identity in inference.

    This is *inverted* dropout: training scales the kept inputs by ``1 / (1 - ratio)``, so
    inference needs no scaling. The book scales at inference instead (``x * (1 - ratio)``);
    both make the inference output the expected training output, but this way predicting
    costs nothing and a network's output scale does not depend on the mode it is read in.

    The mask is drawn on the input's device from ``rng`` (an :class:`~xpnet.Generator`;
    a fresh unseeded one on the input's device when ``None``). Setting ``fixed_mask`` (a
    boolean array shaped like the input, True = keep) makes every training forward use
    that mask instead: gradient checks and cross-backend comparisons need the same mask
    in every call.
    """

    saved_names: tuple[str, ...] = ("_factor",)
    kept_names: tuple[str, ...] = ("mask",)  # the mask stays: it is small and documented
    random_streams: tuple[str, ...] = ("rng",)
    has_train_mode = True

    def __init__(self, dropout_ratio: float = 0.5, *, rng: Generator | None = None,
                 fixed_mask: Array | None = None) -> None:
        self.dropout_ratio = check_fraction("dropout_ratio", dropout_ratio)
        self.rng = rng
        self.fixed_mask = fixed_mask
        self.mask = None  # the mask of the last training forward; None after inference
        self._factor = None

    @on_input_device
    def forward(self, x: Array, train_flg: bool = True) -> Array:
        if not train_flg:
            self.mask = None
            return x
        if self.fixed_mask is not None:
            mask = self.fixed_mask
            if tuple(mask.shape) != tuple(x.shape):
                raise ShapeError(f"Dropout.fixed_mask has shape {tuple(mask.shape)} but the input "
                                 f"has shape {tuple(x.shape)}; set a mask shaped like the input")
        else:
            if self.rng is None:
                self.rng = generator_for(x)
            # P(u >= ratio) = 1 - ratio exactly for u uniform in [0, 1)
            uniform = self.draw_for_batch(lambda shape: self.rng.random(shape, x.dtype), x.shape)
            mask = uniform >= self.dropout_ratio
        xp = namespace_of(x, mask)
        self.mask = mask
        # a 0 / (1 / (1 - ratio)) factor: multiplying has no branches (NumPy's where is slower)
        self._factor = xp.astype(mask, x.dtype) * (1.0 / (1.0 - self.dropout_ratio))
        return x * self._factor

    def settings(self) -> dict[str, Any]:
        return {"dropout_ratio": self.dropout_ratio}

    @on_input_device
    def backward(self, dout: Array) -> Array:
        if self.mask is None:  # inference: the identity
            return dout
        return dout * self._factor


class BatchNormalization(Layer):
    """``out = gamma * (x - mean) / sqrt(var + eps) + beta``, with batch statistics in training.

    Input (N, D) is normalised per feature over the batch; input (N, C, H, W) per channel
    over N, H and W (what a convolutional network wants: one ``gamma``, ``beta`` per
    channel, shape (C,)). The book reshapes 4-D input to (N, C*H*W), which normalises
    each pixel separately and needs C*H*W parameters.

    Inference (``train_flg=False``) uses ``running_mean`` and ``running_var``, which each
    training forward moves towards the batch statistics:
    ``running = momentum * running + (1 - momentum) * batch``. They are rebound, never
    written in place, and stay on the device in their own dtype. They start at 0 and 1
    (the book starts the variance at 0, so inference before training divides by ``sqrt(eps)``).
    ``eps`` is the book's ``10e-7``.

    It declares ``batch_statistics``: ``replicas`` (set by a data-parallel
    :class:`~xpnet.Trainer`) makes training use the statistics of the global batch, summed
    over the ranks' equal shares, in forward and backward (:meth:`~xpnet.Layer.batch_mean`):
    the results, running statistics included, are those of one process on the whole batch.

    ``BatchNormalization()`` without ``gamma`` and ``beta`` is one for
    :class:`~xpnet.Sequential`, which creates them (ones and zeros, per feature or channel of
    the incoming shape) with the running statistics.
    """

    param_names: tuple[str, ...] = ("gamma", "beta")
    state_names: tuple[str, ...] = ("running_mean", "running_var")
    saved_names: tuple[str, ...] = ("xn", "std")
    has_train_mode = True
    batch_statistics = True
    prefix = "BatchNorm"

    def __init__(self, gamma: Array | None = None, beta: Array | None = None,
                 momentum: float = 0.9, running_mean: Array | None = None,
                 running_var: Array | None = None, eps: float = 1e-6) -> None:
        self.gamma = gamma
        self.beta = beta
        self.momentum = check_fraction("momentum", momentum, one=True)
        self.eps = check_positive("eps", eps)
        self.running_mean = running_mean
        self.running_var = running_var
        self.train_flg = True
        self.xn = None  # normalised input
        self.std = None
        self.axes: tuple[int, ...] = (0,)
        self.dgamma = None
        self.dbeta = None

    def build(self, input_shape: tuple[int, ...], init: Any) -> tuple[int, ...]:
        if len(input_shape) not in (1, 3):
            raise ShapeError(f"BatchNormalization takes samples (D,) or (C, H, W), got "
                             f"{tuple(input_shape)}")
        features = (input_shape[0],)
        if self.gamma is None:
            self.gamma, self.beta = init.ones(features), init.zeros(features)
        if self.running_mean is None:
            self.running_mean, self.running_var = init.zeros(features), init.ones(features)
        return tuple(input_shape)

    def settings(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "eps": self.eps}

    @on_input_device
    def forward(self, x: Array, train_flg: bool = True) -> Array:
        xp = namespace_of(x, self.gamma, self.beta)
        _check_batchnorm_input(x, self.gamma)
        channels = x.shape[1]
        self.axes = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, channels) if x.ndim == 2 else (1, channels, 1, 1)  # broadcasts over axes
        if self.running_mean is None:
            self.running_mean = xp.zeros(channels, dtype=x.dtype, device=array_device_of(x))
            self.running_var = xp.ones(channels, dtype=x.dtype, device=array_device_of(x))
        if train_flg:
            mu = self.batch_mean(x, self.axes)
            xc = x - mu
            var = self.batch_mean(xc * xc, self.axes)
            self.std = xp.sqrt(var + self.eps)
            self.xn = xc / self.std
            self.running_mean = self._moved(self.running_mean, xp.reshape(mu, (channels,)))
            self.running_var = self._moved(self.running_var, xp.reshape(var, (channels,)))
        else:
            self.std = xp.sqrt(xp.reshape(self.running_var, shape) + self.eps)
            self.xn = (x - xp.reshape(self.running_mean, shape)) / self.std
        self.train_flg = train_flg
        return xp.reshape(self.gamma, shape) * self.xn + xp.reshape(self.beta, shape)

    def _moved(self, running: Array, batch: Array) -> Array:
        xp = namespace_of(running, batch)
        # in the running statistic's dtype: a float64 gradient check must not promote them
        return self.momentum * running + (1.0 - self.momentum) * xp.astype(batch, running.dtype)

    @on_input_device
    def backward(self, dout: Array) -> Array:
        xp = namespace_of(dout)
        self.dbeta = xp.sum(dout, axis=self.axes)
        self.dgamma = xp.sum(dout * self.xn, axis=self.axes)
        shape = (1, dout.shape[1]) if dout.ndim == 2 else (1, dout.shape[1], 1, 1)
        dxn = dout * xp.reshape(self.gamma, shape)
        if not self.train_flg:  # the statistics are constants
            return dxn / self.std
        # the batch mean and variance depend on x too; this is the book's chain, collected
        mean_dxn = self.batch_mean(dxn, self.axes)
        mean_dxn_xn = self.batch_mean(dxn * self.xn, self.axes)
        return (dxn - mean_dxn - self.xn * mean_dxn_xn) / self.std


def _check_batchnorm_input(x: Array, gamma: Array) -> None:
    if x.ndim not in (2, 4) or tuple(gamma.shape) != (x.shape[1],):
        raise ShapeError(f"BatchNormalization got input of shape {tuple(x.shape)} with gamma of "
                         f"shape {tuple(gamma.shape)}; it takes (N, D) or (N, C, H, W) "
                         "input with gamma and beta of shape (D,) or (C,)")


register_layer(Dropout)
register_layer(BatchNormalization)
