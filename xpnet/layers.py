"""The book's layers (chapter 5), each with ``forward`` and ``backward``, on any array namespace.

Every layer finds ``xp`` from its input arrays, creates nothing on a device of its own
choosing, and never writes into an argument. ``forward`` and ``backward`` run on their
inputs' device (``@on_input_device``: CuPy's current GPU, so a layer fed arrays on ``cuda:1``
computes there without ``with dev:``; nothing on other backends). What a network relies on
is the :class:`Layer` protocol below. The maths of each layer, and the defect of the book's
code it fixes, are in docs/layers.md.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .backend import Array, namespace_of, on_device_of, on_input_device
from .errors import ConfigError, ShapeError
from .functions import as_one_hot, log_softmax, sigmoid

__all__ = ["Layer", "array_names", "call_forward", "register_layer", "registered_name", "layer_class", "last_layer_of", "LAYERS",
           "AddLayer", "MulLayer", "ReLU", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss",
           "MSELoss"]


class Layer(Protocol):
    """What :class:`~xpnet.Sequential`, the :class:`~xpnet.Trainer`, the compiled step, export and
    the gradient checks rely on; layers subclass it for the defaults. A layer of your own that
    fills in these attributes gets everything the built-in ones get (docs/layers.md, "Writing
    your own layer and network").

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
    - ``kept_names``: arrays ``forward`` leaves for the caller and ``gradient`` keeps (a loss
      layer's ``loss``, Dropout's ``mask``).
    - ``random_streams``: attributes holding an :class:`~xpnet.Generator` the layer draws from
      (Dropout's ``rng``). A network gives each one a generator seeded from its ``seed``; a
      :class:`~xpnet.Trainer` gives each its own generator, restarted before every step at the
      stream of ``(seed, epoch, step, layer)`` (:meth:`~xpnet.Generator.reseed`), so a run
      resumed anywhere repeats the uninterrupted run.
    - ``batch_statistics``: ``forward`` reduces over the batch. A data-parallel trainer sets
      ``replicas`` (its communicator) on such layers and on those with ``random_streams``;
      reduce with :meth:`batch_mean` and draw per-sample numbers with :meth:`draw_for_batch`,
      and the results do not depend on the number of processes.
    - ``has_train_mode``: ``forward`` takes ``train_flg`` (Dropout, BatchNormalization).
    - ``prefix``: how a network names the layer, numbered per prefix (``"Relu"`` gives
      ``Relu1``, ``Relu2``...); empty means the class's name.
    - ``input_grad`` (optional): ``False`` skips the input's gradient; a network sets it on
      its first layer, whose input is data.
    - ``build(input_shape, init)``: called by :class:`~xpnet.Sequential` with one sample's
      shape; creates the parameters not given (from ``init``, a :class:`~xpnet.init.Initializer`)
      and returns the output's shape. The default keeps the shape and creates nothing.
    - ``settings()``: the JSON-able constructor arguments that rebuild the layer (what a
      checkpoint records); by default the constructor's arguments read back from attributes
      of the same names, as scikit-learn's ``get_params``.

    Together these name every array a layer holds: the compiled step and export save and
    restore exactly those (:func:`array_names`), so a layer must keep no other array attribute.
    """

    param_names: tuple[str, ...] = ()
    saved_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()
    kept_names: tuple[str, ...] = ()
    random_streams: tuple[str, ...] = ()
    batch_statistics: bool = False
    has_train_mode: bool = False
    prefix: str = ""
    replicas: Any = None  # the communicator of a data-parallel trainer; None in one process

    def forward(self, *args: Any, **kwargs: Any) -> Any: ...

    def backward(self, dout: Any) -> Any: ...

    def build(self, input_shape: tuple[int, ...], init: Any) -> tuple[int, ...]:
        """Create the parameters for samples of ``input_shape``; return the output's shape."""
        return tuple(input_shape)

    def settings(self) -> dict[str, Any]:
        """The JSON-able constructor arguments that rebuild this layer (without its arrays)."""
        found = {}
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if hasattr(self, name) and _is_json(getattr(self, name)):
                found[name] = getattr(self, name)
        return found

    def batch_mean(self, a: Array, axes: tuple[int, ...]) -> Array:
        """The mean of ``a`` over ``axes`` (kept as size-1 axes), over the global batch when
        ``replicas`` hold equal shares of it."""
        xp = namespace_of(a)
        if self.replicas is None:
            return xp.mean(a, axis=axes, keepdims=True)
        count = math.prod(a.shape[axis] for axis in axes) * self.replicas.size
        return self.replicas.allreduce_sum(xp.sum(a, axis=axes, keepdims=True)) / count

    def draw_for_batch(self, draw: Callable[[tuple[int, ...]], Array],
                       shape: tuple[int, ...]) -> Array:
        """``draw(shape)``, numbers for a batch of ``shape``; with ``replicas``, the global
        batch's draw and this rank's rows of it, so a sample gets the same numbers whatever
        the number of processes (every rank's stream is the same)."""
        if self.replicas is None or self.replicas.size == 1:
            return draw(tuple(shape))
        rows = shape[0]
        full = draw((rows * self.replicas.size, *shape[1:]))
        start = self.replicas.rank * rows
        return full[start:start + rows, ...]


def array_names(layer: Any) -> tuple[str, ...]:
    """Every attribute of ``layer`` that may hold an array: its parameters and their
    gradients, saved, state and kept arrays, and its random streams."""
    params = tuple(getattr(layer, "param_names", ()))
    return (*params, *("d" + name for name in params), *getattr(layer, "saved_names", ()),
            *getattr(layer, "state_names", ()), *getattr(layer, "kept_names", ()),
            *getattr(layer, "random_streams", ()))


def call_forward(layer: Any, x: Any, train_flg: bool) -> Any:
    """``layer.forward(x)``, with ``train_flg`` for a layer that has a training mode."""
    return layer.forward(x, train_flg) if layer.has_train_mode else layer.forward(x)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# registered name -> layer class: what a checkpoint's layer list is rebuilt from
LAYERS: dict[str, type] = {}

L = TypeVar("L", bound=type)


def register_layer(cls: L | None = None, *, name: str | None = None) -> Any:
    """Make a layer class known by ``name`` (default: the class's name), so that checkpoints of
    networks holding it load: ``@xpnet.register_layer`` over the class, or
    ``xpnet.register_layer(MyLayer)``. Registering another class under a taken name is an error."""
    def register(layer_class: L) -> L:
        key = name or layer_class.__name__
        if LAYERS.get(key, layer_class) is not layer_class:
            raise ConfigError(f"layer name {key!r} is taken by {LAYERS[key].__module__}."
                              f"{LAYERS[key].__qualname__}; register with another name=")
        LAYERS[key] = layer_class
        return layer_class
    return register if cls is None else register(cls)


def registered_name(layer: Any) -> str:
    """The name ``layer``'s class is registered under (its class name when it is not registered:
    then a checkpoint naming it is refused on loading, saying how to register it)."""
    cls = type(layer)
    return next((name for name, known in LAYERS.items() if known is cls), cls.__name__)


def layer_class(name: str) -> type:
    """The class registered as ``name``, or a :class:`ConfigError` saying how to register it."""
    if name not in LAYERS:
        raise ConfigError(f"unknown layer {name!r}: import the module that defines it and "
                          f"register its class with @xpnet.register_layer (or "
                          f"xpnet.register_layer({name})) before loading")
    return LAYERS[name]


def last_layer_of(network: Any) -> Any:
    """``network``'s loss layer, where a trainer reads each batch's loss: the book names it
    ``lastLayer`` in TwoLayerNet and ``last_layer`` in MultiLayerNet."""
    layer = getattr(network, "lastLayer", None) or getattr(network, "last_layer", None)
    if layer is None:
        raise ConfigError(f"{type(network).__name__} has no lastLayer (its loss layer, e.g. "
                          "SoftmaxWithLoss), where each batch's loss is read")
    return layer


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
    prefix = "Relu"  # the book's layer names

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
        # by 0/1 has no branches; NumPy's `where` on a random mask is far slower
        # (docs/performance.md).
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

    ``Affine(W, b)`` is the book's layer; ``Affine(units=M)`` is one for
    :class:`~xpnet.Sequential`, which creates ``W`` (D, M) from the incoming shape with
    standard deviation ``weight_init_std`` (``'he'``, ``'xavier'``... or a number, see
    :func:`xpnet.init.weight_std`) and ``b`` zeros.
    """

    param_names: tuple[str, ...] = ("W", "b")
    saved_names: tuple[str, ...] = ("x",)
    prefix = "Affine"

    def __init__(self, W: Array | None = None, b: Array | None = None, *, input_grad: bool = True,
                 units: int | None = None, weight_init_std: str | float = "he") -> None:
        if W is None and units is None:
            raise ConfigError("Affine needs its weights (Affine(W, b)) or its output size "
                              "(Affine(units=M)) for a network to create them")
        self.W = W
        self.b = b
        self.units = units if W is None else W.shape[1]
        self.weight_init_std = weight_init_std
        self.input_grad = input_grad
        self.x = None
        self.original_x_shape: tuple[int, ...] | None = None
        self.dW = None
        self.db = None

    def build(self, input_shape: tuple[int, ...], init: Any) -> tuple[int, ...]:
        fan_in = math.prod(input_shape)
        if self.W is None:
            self.W = init.normal((fan_in, self.units), init.std(self.weight_init_std, fan_in))
            self.b = init.zeros((self.units,))
        elif self.W.shape[0] != fan_in:
            raise ShapeError(f"Affine has W of shape {tuple(self.W.shape)} but its input has "
                             f"{fan_in} features per sample {tuple(input_shape)}")
        return (self.units,)

    def settings(self) -> dict[str, Any]:
        return {"units": self.units, "weight_init_std": self.weight_init_std}

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

    saved_names: tuple[str, ...] = ("y", "t", "_t_one_hot")
    kept_names: tuple[str, ...] = ("loss",)  # trainers read it after the step

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
    kept_names: tuple[str, ...] = ("loss",)

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


for _builtin in (AddLayer, MulLayer, ReLU, Sigmoid, Affine, SoftmaxWithLoss, MSELoss):
    register_layer(_builtin)
