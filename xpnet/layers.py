"""The book's layers (chapter 5), each with ``forward`` and ``backward``, on any array namespace.

Every layer finds ``xp`` from its input arrays, creates nothing on a device of its own
choosing, and never writes into an argument. ``forward`` and ``backward`` run on their
inputs' device (``@on_input_device``: CuPy's current GPU, so a layer fed arrays on ``cuda:1``
computes there without ``with dev:``; nothing on other backends). What a network relies on
is the :class:`Layer` protocol below. The maths of each layer, and the defect of the book's
code it fixes, are in docs/layers.md.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from .backend import Array, namespace_of, on_device_of, on_input_device
from .errors import ShapeError
from .functions import as_one_hot, log_softmax, sigmoid

__all__ = ["Layer", "AddLayer", "MulLayer", "ReLU", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss",
           "MSELoss"]


class Layer(Protocol):
    """What :class:`~xpnet.models.LayerNet` and the gradient checks rely on; layers subclass it
    for the defaults.

    - ``forward(x)`` returns the output; ``forward(x, train_flg)`` when ``has_train_mode``.
    - ``backward(dout)`` returns the gradient of the input (``None`` when the layer was told
      not to compute it) and leaves the gradient of each parameter ``W`` in ``dW``.
    - ``param_names``: attributes holding parameters (``("W", "b")``); a network assigns
      them from its ``params`` before each forward.
    - ``saved_names``: what ``forward`` keeps for ``backward`` (inputs, masks, outputs); a
      network's ``gradient`` sets them to ``None`` once backward is done, so no batch is held
      into the next step.
    - ``state_names``: non-parameter state a trained model needs (BatchNorm's running
      statistics); networks save and load it with ``state_dict``.
    - ``has_train_mode``: ``forward`` takes ``train_flg`` (Dropout, BatchNormalization).
    """

    param_names: tuple[str, ...] = ()
    saved_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()
    has_train_mode: bool = False

    def forward(self, *args: Any, **kwargs: Any) -> Any: ...

    def backward(self, dout: Any) -> Any: ...


class AddLayer(Layer):
    """``out = x + y``; the gradient passes to both inputs unchanged."""

    @on_input_device
    def forward(self, x: Any, y: Any) -> Any:
        return x + y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        return dout, dout


class MulLayer(Layer):
    """``out = x * y``; each input's gradient is ``dout`` times the other input."""

    saved_names: tuple[str, ...] = ("x", "y")

    def __init__(self) -> None:
        self.x = None
        self.y = None

    @on_input_device
    def forward(self, x: Any, y: Any) -> Any:
        self.x, self.y = x, y
        return x * y

    @on_input_device
    def backward(self, dout: Any) -> tuple[Any, Any]:
        return dout * self.y, dout * self.x


class ReLU(Layer):
    """``out = max(x, 0)``; the gradient is blocked where ``x <= 0`` (the book's rule, kink included)."""

    saved_names: tuple[str, ...] = ("mask",)

    def __init__(self) -> None:
        self.mask = None

    @on_input_device
    def forward(self, x: Array) -> Array:
        xp = namespace_of(x)
        self.mask = x <= 0
        return xp.maximum(x, 0.0)

    @on_input_device
    def backward(self, dout: Array) -> Array:
        # A new array: the book's `dout[mask] = 0` corrupted the caller's gradient. Multiplying
        # by 0/1 has no branches; NumPy's `where` on a random mask is about 20x slower.
        xp = namespace_of(dout)
        return dout * xp.astype(~self.mask, dout.dtype)


Relu = ReLU  # the book's spelling


class Sigmoid(Layer):
    """``out = 1 / (1 + exp(-x))``; ``dx = dout * out * (1 - out)``."""

    saved_names: tuple[str, ...] = ("out",)

    def __init__(self) -> None:
        self.out = None

    @on_input_device
    def forward(self, x: Array) -> Array:
        self.out = sigmoid(x)
        return self.out

    @on_input_device
    def backward(self, dout: Array) -> Array:
        return dout * (1.0 - self.out) * self.out


class Affine(Layer):
    """``out = x @ W + b`` for ``x`` of shape (N, D) or (N, d1, d2, ...) with d1*d2*... = D.

    ``backward`` fills ``dW = x.T @ dout`` and ``db = sum(dout, axis=0)`` (undoing the
    broadcast of ``b`` over the batch) and returns ``dx = dout @ W.T`` in ``x``'s shape.
    With ``input_grad=False`` it skips ``dx`` and returns ``None``: a network's first layer
    needs no gradient for its input data, and that product is a third of the layer's cost.
    """

    param_names: tuple[str, ...] = ("W", "b")
    saved_names: tuple[str, ...] = ("x",)

    def __init__(self, W: Array, b: Array, *, input_grad: bool = True) -> None:
        self.W = W
        self.b = b
        self.input_grad = input_grad
        self.x = None
        self.original_x_shape: tuple[int, ...] | None = None
        self.dW = None
        self.db = None

    @on_input_device
    def forward(self, x: Array) -> Array:
        xp = namespace_of(x, self.W, self.b)
        _check_affine_input(x, self.W)
        features = self.W.shape[0]
        self.original_x_shape = tuple(x.shape)
        # -1, not x.shape[0]: the batch size may be unknown (None in an ONNX export's graph)
        self.x = x if x.ndim == 2 else xp.reshape(x, (-1, features))
        out = self.x @ self.W
        out += self.b  # into the fresh product: no second (N, M) array (rebinds where immutable)
        return out

    @on_input_device
    def backward(self, dout: Array) -> Array | None:
        xp = namespace_of(dout)
        self.dW = self.x.T @ dout
        self.db = xp.sum(dout, axis=0)
        if not self.input_grad:
            return None
        dx = dout @ self.W.T
        return dx if len(self.original_x_shape) == 2 else xp.reshape(dx, self.original_x_shape)


def _check_affine_input(x: Array, W: Array) -> None:
    features = W.shape[0]
    if x.ndim < 2 or math.prod(x.shape[1:]) != features:
        raise ShapeError(f"Affine got input of shape {tuple(x.shape)} but W has shape "
                         f"{tuple(W.shape)}: the input needs {features} features per sample, "
                         f"shape (N, {features})")
    check_input_dtype("Affine", x, W)


def check_input_dtype(layer: str, x: Array, W: Array) -> None:
    """A :class:`ShapeError` when input ``x`` and weight ``W`` differ in dtype (no silent promotion)."""
    if x.dtype != W.dtype:
        raise ShapeError(f"{layer} got input of dtype {x.dtype} but W is {W.dtype}; "
                         "cast the input (xp.astype) or build the network with that dtype")


class SoftmaxWithLoss(Layer):
    """Softmax then mean cross entropy against labels ``t`` (one-hot rows or integer classes).

    ``forward`` returns the loss as a 0-d array on the input's device (no host sync).
    ``backward`` returns ``dx = (y - t) * dout / N``, the fused gradient of both steps.
    """

    saved_names: tuple[str, ...] = ("y", "t", "_t_one_hot")  # not ``loss``: trainers read it

    def __init__(self) -> None:
        self.loss = None
        self.y = None  # softmax output
        self.t = None  # labels as given
        self._t_one_hot = None

    @on_input_device
    def forward(self, x: Array, t: Array) -> Array:
        xp = namespace_of(x, t)
        _check_labels(x, t)
        log_y = log_softmax(x)
        self.t = t
        self._t_one_hot = as_one_hot(t, x)
        self.y = xp.exp(log_y)
        self.loss = -xp.sum(self._t_one_hot * log_y) / _batch_size(x)
        return self.loss

    def backward(self, dout: Any = 1) -> Array:
        with on_device_of(self.y):  # dout is usually the number 1: the device comes from y
            return (self.y - self._t_one_hot) * (dout / _batch_size(self.y))


def _check_labels(x: Array, t: Array) -> None:
    if tuple(t.shape) not in (tuple(x.shape), tuple(x.shape[:-1])):
        raise ShapeError(f"SoftmaxWithLoss got scores of shape {tuple(x.shape)} and labels of "
                         f"shape {tuple(t.shape)}; labels must be one-hot {tuple(x.shape)} or "
                         f"integer classes {tuple(x.shape[:-1])}")


class MSELoss(Layer):
    """``loss = mean((pred - target)**2)`` over all elements; ``dpred = dout * 2 (pred - target) / size``.

    The book's (seed 001) backward dropped the ``2 / size`` factor, so it was not the
    gradient of its own forward.
    """

    saved_names: tuple[str, ...] = ("diff",)

    def __init__(self) -> None:
        self.diff = None
        self.loss = None

    @on_input_device
    def forward(self, pred: Array, target: Array) -> Array:
        xp = namespace_of(pred, target)
        if tuple(pred.shape) != tuple(target.shape):
            raise ShapeError(f"MSELoss got predictions of shape {tuple(pred.shape)} and targets of "
                             f"shape {tuple(target.shape)}; they must match")
        self.diff = pred - target
        self.loss = xp.mean(self.diff * self.diff)
        return self.loss

    def backward(self, dout: Any = 1) -> Array:
        with on_device_of(self.diff):  # dout is usually the number 1
            return self.diff * (dout * 2.0 / math.prod(self.diff.shape))


def _batch_size(x: Array) -> int:
    return x.shape[0] if x.ndim > 1 else 1
