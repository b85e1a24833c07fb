"""The book's plain functions, numerically stable and written against any array namespace.

Each runs on its inputs' device (``@on_input_device``: CuPy's current GPU; nothing elsewhere).
"""

from __future__ import annotations

import array_api_extra as xpx

from .backend import Array, namespace_of, on_input_device

__all__ = ["sigmoid", "softmax", "log_softmax", "cross_entropy_error", "as_one_hot"]


@on_input_device
def sigmoid(x: Array) -> Array:
    """``1 / (1 + exp(-x))``, computed as ``(tanh(x/2) + 1) / 2``, which cannot overflow."""
    xp = namespace_of(x)
    return 0.5 * (xp.tanh(0.5 * x) + 1.0)


@on_input_device
def log_softmax(x: Array) -> Array:
    """``log(softmax(x))`` over the last axis, with the row maximum subtracted so exp cannot overflow."""
    xp = namespace_of(x)
    shifted = x - xp.max(x, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


@on_input_device
def softmax(x: Array) -> Array:
    """Softmax over the last axis (the book's ``softmax``, without its overflow)."""
    xp = namespace_of(x)
    return xp.exp(log_softmax(x))


@on_input_device
def as_one_hot(t: Array, like: Array) -> Array:
    """Labels ``t`` as one-hot rows shaped and typed like ``like``; one-hot input passes through.

    Integer labels have one dimension less than ``like``; one-hot labels have its shape.
    """
    if t.ndim == like.ndim:
        return t
    # passing xp spares one_hot its own namespace look-up (1 to 20 us a call)
    return xpx.one_hot(t, like.shape[-1], dtype=like.dtype, xp=namespace_of(t))


@on_input_device
def cross_entropy_error(y: Array, t: Array) -> Array:
    """Mean cross entropy of probabilities ``y`` against labels ``t`` (one-hot or integer), 0-d.

    Where the book adds 1e-7 inside the log (biasing every term), this clamps ``y`` at the
    dtype's smallest normal number, which changes nothing but exact zeros. Prefer
    :class:`~xpnet.layers.SoftmaxWithLoss`, which never leaves log space.
    """
    xp = namespace_of(y, t)
    if y.ndim == 1:  # one sample, as in the book
        y = xp.reshape(y, (1, -1))
        t = xp.reshape(t, (1, -1) if t.ndim == 1 else (1,))
    log_y = xp.log(xp.maximum(y, xp.finfo(y.dtype).smallest_normal))
    return -xp.sum(as_one_hot(t, y) * log_y) / y.shape[0]
