"""Gradient checking: backward against central differences, asserted, on any backend.

The numerical side always runs in float64 on the layer's own backend, so a float32 layer
is judged against an accurate reference, not against its own rounding. A check also
asserts the layer rules every backward must keep: it leaves its arguments untouched, and
its outputs and gradients stay on the input's device in the input's dtype.

Pass rule, per element: ``|analytic - numerical| <= rtol * |numerical| + atol * max|numerical|``
(``atol`` is relative to the gradient's scale, so cancellation near zero is judged fairly).
The reported "max rel error" is ``max|analytic - numerical| / max|numerical|``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import array_api_extra as xpx
import numpy as np
from array_api_compat import device as array_device_of

from .backend import Array, device_of, namespace_of, on_input_device, to_numpy
from .errors import GradientCheckError
from .rng import Generator
from .validate import dtype_name

__all__ = ["numerical_gradient", "numerical_param_gradients", "same_draws", "check_layer",
           "check_network", "GradientReport", "TOLERANCES", "KINK_MARGIN"]

# (rtol, atol) by the dtype of the analytic gradient
TOLERANCES: dict[str, tuple[float, float]] = {"float64": (1e-6, 1e-7), "float32": (1e-3, 1e-4)}
# central differences of step h straddle ReLU's kink when |x| < h: move inputs this far from 0
KINK_MARGIN = 1e-2
# float64 step for whole networks: rounding error stays ~1e-10 while kink crossings become rare
NETWORK_STEP = 1e-6


@dataclass(frozen=True)
class GradientReport:
    """One compared gradient: its name, the errors, and the tolerance it passed."""

    name: str
    max_abs_error: float
    max_rel_error: float
    rtol: float
    atol: float


@on_input_device
def numerical_gradient(f: Callable[[Array], Any], x: Array, h: float = 1e-4) -> Array:
    """Central-difference gradient of the scalar function ``f`` at ``x``, shaped like ``x``.

    ``f`` receives the perturbed array (the book's version ignored its argument and relied
    on the parameters being mutated in place); ``x`` itself is never modified. ``f`` may
    return a 0-d array or a Python number.
    """
    xp = namespace_of(x)
    flat = xp.reshape(x, (-1,))
    slopes = []
    for i in range(flat.shape[0]):
        plus = xpx.at(flat, i).set(flat[i] + h, copy=True)
        minus = xpx.at(flat, i).set(flat[i] - h, copy=True)
        f_plus = _to_float(f(xp.reshape(plus, x.shape)))
        f_minus = _to_float(f(xp.reshape(minus, x.shape)))
        slopes.append((f_plus - f_minus) / (2 * h))
    return xp.reshape(xp.asarray(slopes, dtype=x.dtype, device=array_device_of(x)), x.shape)


@on_input_device
def numerical_param_gradients(network: Any, x: Array, t: Array, h: float = 1e-4) -> dict[str, Array]:
    """Central differences of ``network.loss(x, t)`` for every entry of ``network.params``.

    Each parameter in turn is swapped for its perturbed copies in the ``params`` dict (networks
    read ``params`` at every call) and put back, whatever happens. The layers' random streams
    restart from one seed before every evaluation (:func:`same_draws`): the gradient of a
    network that draws random numbers is the gradient at fixed draws.
    """
    grads = {}
    with same_draws(network.layers.values(), network.device) as restart:
        for key, original in list(network.params.items()):

            def loss_at(value: Array, key: str = key, original: Array = original) -> Any:
                network.params[key] = value
                restart()
                try:
                    return network.loss(x, t)
                finally:
                    network.params[key] = original

            grads[key] = numerical_gradient(loss_at, original, h=h)
    return grads


@contextlib.contextmanager
def same_draws(layers: Any, device: Any, seed: int = 0) -> Iterator[Callable[[], None]]:
    """Within it, the returned function gives every random stream of ``layers`` (their
    ``random_streams``) a generator on ``device`` restarted at ``seed``'s stream, so each
    evaluation after a call draws the same numbers; on leaving, the layers' own generators
    are put back."""
    streams = [(layer, name, Generator(device, seed)) for layer in layers
               for name in layer.random_streams]
    originals = [getattr(layer, name) for layer, name, _ in streams]

    def restart() -> None:
        for layer, name, generator in streams:
            generator.reseed()
            setattr(layer, name, generator)

    try:
        yield restart
    finally:
        for (layer, name, _), original in zip(streams, originals):
            setattr(layer, name, original)


@on_input_device
def check_layer(layer: Any, *inputs: Array, dout: Array | None = None,
                forward_kwargs: Mapping[str, Any] | None = None, rtol: float | None = None,
                atol: float | None = None, seed: int = 0) -> list[GradientReport]:
    """Assert that ``layer.backward`` is the derivative of ``layer.forward`` at ``inputs``.

    Checks the gradient of every floating input that ``backward`` returns a gradient for
    (it returns one array, or a tuple for several inputs) and of every parameter named
    in ``layer.param_names``. ``dout`` defaults to seeded normal noise shaped like the
    output. Elements of the first input closer than ``KINK_MARGIN`` to zero are moved away
    from it first, so no difference straddles ReLU's kink (labels and targets stay as given).
    A layer drawing random numbers (``random_streams``) draws the same ones in every
    evaluation (:func:`same_draws`); with float32 inputs, backends that draw float64 numbers
    differently (JAX) need a float64 check. Raises :class:`GradientCheckError`; returns the
    reports when all pass.
    """
    forward_kwargs = dict(forward_kwargs or {})
    xp = namespace_of(*inputs)
    if _is_float(xp, inputs[0]):
        inputs = (_away_from_kink(xp, inputs[0]), *inputs[1:])
    layer_name = type(layer).__name__
    snapshots = [xp.asarray(x, copy=True) for x in inputs]
    with same_draws([layer], device_of(inputs[0]), seed) as restart:
        restart()
        return _check_layer(layer, layer_name, xp, inputs, snapshots, dout, forward_kwargs, rtol,
                            atol, seed, restart)


def _check_layer(layer: Any, layer_name: str, xp: Any, inputs: tuple[Array, ...],
                 snapshots: list[Array], dout: Array | None, forward_kwargs: dict[str, Any],
                 rtol: float | None, atol: float | None, seed: int,
                 restart: Callable[[], None]) -> list[GradientReport]:
    """:func:`check_layer` with the layer's random streams restarted by ``restart`` (the float64
    twin shares them: each evaluation draws the numbers of the analytic pass)."""
    out = layer.forward(*inputs, **forward_kwargs)
    dtype = out.dtype
    if dout is None:
        noise = np.random.default_rng(seed).standard_normal(tuple(out.shape))
        dout = xp.asarray(noise, dtype=dtype, device=array_device_of(out))
    dout_snapshot = xp.asarray(dout, copy=True)
    returned = layer.backward(dout)
    input_grads = returned if isinstance(returned, tuple) else (returned,)

    for i, (x, before) in enumerate(zip(inputs, snapshots)):
        if not bool(xp.all(x == before)):
            raise GradientCheckError(f"{layer_name}: forward/backward modified input {i}")
    if not bool(xp.all(dout == dout_snapshot)):
        raise GradientCheckError(f"{layer_name}.backward modified its dout argument")
    _assert_placed(layer_name, "output", out, inputs[0])

    # float64 twin of the layer: same state, parameters cast, fed float64 inputs
    twin = copy.copy(layer)
    for name in layer.param_names:
        setattr(twin, name, xp.astype(getattr(layer, name), xp.float64))
    inputs64 = [xp.astype(x, xp.float64) if _is_float(xp, x) else x for x in inputs]
    dout64 = xp.astype(dout, xp.float64)

    def weighted_output() -> Any:
        restart()
        for name in layer.random_streams:
            setattr(twin, name, getattr(layer, name))
        return xp.sum(twin.forward(*inputs64, **forward_kwargs) * dout64)

    # label -> (analytic gradient, f of the float64 value, float64 value, original value)
    candidates: dict[str, tuple[Array, Callable[[Array], Any], Array, Array]] = {}
    for i, grad in enumerate(input_grads):
        if grad is None or not _is_float(xp, inputs[i]):
            continue

        def with_input(value: Array, i: int = i) -> Any:
            saved, inputs64[i] = inputs64[i], value
            try:
                return weighted_output()
            finally:
                inputs64[i] = saved

        candidates[f"{layer_name} d(input {i})"] = (grad, with_input, inputs64[i], inputs[i])
    for name in layer.param_names:

        def with_param(value: Array, name: str = name) -> Any:
            saved = getattr(twin, name)
            setattr(twin, name, value)
            try:
                return weighted_output()
            finally:
                setattr(twin, name, saved)

        candidates[f"{layer_name}.d{name}"] = (getattr(layer, "d" + name), with_param,
                                               getattr(twin, name), getattr(layer, name))

    reports = []
    for label, (analytic, f, at, like) in candidates.items():
        _assert_placed(layer_name, label, analytic, like)
        numerical = numerical_gradient(f, at, h=_step(at))
        reports.append(_compare(label, analytic, numerical, rtol, atol))
    return reports


@on_input_device
def check_network(network: Any, x: Array, t: Array, *, rtol: float | None = None,
                  atol: float | None = None) -> list[GradientReport]:
    """Assert that ``network.gradient(x, t)`` matches central differences of ``network.loss``.

    The numerical side runs on float64 copies of the parameters and of ``x`` (networks read
    ``params`` at every call, so swapping the dict's entries swaps the model), with a step
    small enough that no hidden ReLU input crosses its kink, then the original parameters
    are put back. Also asserts that ``gradient`` left ``x``, ``t`` and
    the parameters untouched and that each gradient matches its parameter's device and dtype.
    Layers drawing random numbers draw the same ones in every evaluation (:func:`same_draws`).
    """
    xp = namespace_of(x, t, *network.params.values())
    before = {key: xp.asarray(value, copy=True) for key, value in network.params.items()}
    x_before, t_before = xp.asarray(x, copy=True), xp.asarray(t, copy=True)
    # the numbers numerical_param_gradients draws
    with same_draws(network.layers.values(), network.device) as restart:
        restart()
        analytic = network.gradient(x, t)
    name = type(network).__name__
    for key, value in network.params.items():
        if not bool(xp.all(value == before[key])):
            raise GradientCheckError(f"{name}.gradient modified parameter {key!r}")
    if not (bool(xp.all(x == x_before)) and bool(xp.all(t == t_before))):
        raise GradientCheckError(f"{name}.gradient modified its input data")

    originals = dict(network.params)
    x64 = xp.astype(x, xp.float64) if _is_float(xp, x) else x
    try:
        network.params.update({key: xp.astype(value, xp.float64) for key, value in originals.items()})
        numerical = numerical_param_gradients(network, x64, t, h=NETWORK_STEP)
    finally:
        network.params.update(originals)

    # one loss, one scale: a parameter whose true gradient is 0 (a bias before BatchNorm)
    # is judged against the network's largest gradient, not against its own rounding noise
    network_scale = max(float(np.max(np.abs(to_numpy(n)), initial=0.0)) for n in numerical.values())
    reports = []
    for key, value in originals.items():
        _assert_placed(name, f"gradient {key!r}", analytic[key], value)
        reports.append(_compare(f"{name} {key}", analytic[key], numerical[key], rtol, atol,
                                min_scale=network_scale))
    return reports


def _compare(label: str, analytic: Array, numerical: Array, rtol: float | None,
             atol: float | None, min_scale: float = 0.0) -> GradientReport:
    default_rtol, default_atol = TOLERANCES[dtype_name(analytic.dtype)]
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    a = to_numpy(analytic).astype(np.float64)
    n = to_numpy(numerical).astype(np.float64)
    if a.shape != n.shape:
        raise GradientCheckError(f"gradient check failed for {label}: backward gave shape "
                                 f"{a.shape}, expected {n.shape}")
    error = np.abs(a - n)
    scale = max(float(np.max(np.abs(n), initial=0.0)), min_scale)
    max_abs = float(np.max(error, initial=0.0))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    if not np.all(error <= rtol * np.abs(n) + atol * scale) or not np.all(np.isfinite(a)):
        raise GradientCheckError(
            f"gradient check failed for {label}: max abs error {max_abs:.3e}, max rel error "
            f"{max_rel:.3e}, tolerance rtol={rtol:g} atol={atol:g} (gradient scale {scale:.3e})")
    return GradientReport(label, max_abs, max_rel, rtol, atol)


def _assert_placed(layer_name: str, what: str, array: Array, like: Array) -> None:
    if array_device_of(array) != array_device_of(like) or array.dtype != like.dtype:
        raise GradientCheckError(
            f"{layer_name}: {what} is {array.dtype} on {array_device_of(array)}, expected "
            f"{like.dtype} on {array_device_of(like)} (outputs and gradients stay where inputs are)")


def _is_float(xp: Any, x: Array) -> bool:
    return xp.isdtype(x.dtype, "real floating")


def _away_from_kink(xp: Any, x: Array) -> Array:
    near = xp.abs(x) < KINK_MARGIN
    return xp.where(near, xp.copysign(xp.full_like(x, KINK_MARGIN), x), x)


def _step(x: Array) -> float:
    """Central-difference step: ~cube root of float64 eps balances truncation and rounding."""
    return 1e-5 * max(1.0, float(np.max(np.abs(to_numpy(x)), initial=0.0)))


def _to_float(value: Any) -> float:
    return float(to_numpy(value)) if not isinstance(value, (int, float)) else float(value)
