"""The whole training step (forward, backward, optimizer update) compiled into one program.

:func:`compile_step` turns a network and an optimizer into a :class:`CompiledStep`: called
with a mini-batch it does what ``optimizer.update(network.params, network.gradient(x, t))``
does, as one ``jax.jit`` program. No layer knows: the step traces the same imperative layer
code that runs eagerly, with JAX tracers in place of arrays.

What makes that sound is that every array the step changes goes in as an argument and comes
out as a result, and nothing traced stays behind:

- the state goes in and comes out, donated (its buffers are reused for the results): the
  parameters, the optimizer's slots, the layers' ``state_names`` (BatchNorm's running
  statistics) and the ``jax.random`` keys of the generators in the layers' ``random_streams``
  (Dropout's masks are drawn from a key passed in, not frozen into the program as constants);
- what depends on the step count (Adam's bias-corrected rate) is computed on the host by
  :meth:`~xpnet.optim.Optimizer.step_scalars` and passed in, so one program serves every step;
- while tracing, each layer, the optimizer and the generators are bound to tracers; before
  the traced function returns, every array a layer names (:func:`~xpnet.layers.array_names`:
  parameters, gradients, saved, state and kept arrays, random streams) and each generator's
  key are put back as they were, and the results are then bound to them, concrete.

Donation means the arrays held before a step are deleted by it: read ``network.params``
after the step, never an array taken from it before. Hyper-parameters (learning rate,
momentum, dropout ratio, weight decay) are compiled in as constants; a change of the
optimizer's ``config`` compiles a new program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backend import Array, Device
from .errors import ConfigError
from .layers import array_names, last_layer_of
from .optim import Optimizer
from .rng import Generator

__all__ = ["COMPILERS", "CompiledStep", "compile_step", "check_compilable"]

# backend -> the compiler of its functions, given the function and the positions of the
# arguments it may donate. Only JAX compiles array code written against the standard.
COMPILERS: dict[str, Callable[[Callable[..., Any], tuple[int, ...]], Callable[..., Any]]] = {}


def _jax_jit(function: Callable[..., Any], donate: tuple[int, ...]) -> Callable[..., Any]:
    import jax

    return jax.jit(function, donate_argnums=donate)


COMPILERS["jax"] = _jax_jit


def check_compilable(device: Device) -> None:
    """A :class:`ConfigError` (one line) when ``device``'s backend has no compiler."""
    if device.backend not in COMPILERS:
        raise ConfigError(f"--jit compiles the training step with JAX, but {device.name} "
                          f"({device.backend}) runs eagerly; use --device jax:cpu or jax:cuda, "
                          "or leave out --jit")


class CompiledStep:
    """``step(x, t)``: one compiled gradient and update of ``network`` by ``optimizer``.

    Returns the mini-batch's loss (a 0-d array on the device, also left in the network's loss
    layer as ``loss``, as an eager step leaves it) and counts the update in
    ``optimizer.step_count``. ``network`` follows the :class:`~xpnet.Sequential`
    protocol: ``params``, ``layers``, a loss layer ``lastLayer`` (or ``last_layer``),
    ``gradient`` and ``bind_params``.
    """

    def __init__(self, network: Any, optimizer: Optimizer) -> None:
        self.network = network
        self.optimizer = optimizer
        self.device: Device = network.device
        check_compilable(self.device)
        self._last_layer = last_layer_of(network)
        self._compiled: dict[tuple, Callable[..., Any]] = {}  # optimizer config -> program
        self.compilations = 0  # programs traced so far (a test checks each is reused)

    def __call__(self, x: Array, t: Array) -> Array:
        network, optimizer = self.network, self.optimizer
        layers = list(network.layers.values())
        for layer in layers:  # an unseeded stream would make its generator while tracing
            for name in layer.random_streams:
                if getattr(layer, name) is None:
                    setattr(layer, name, Generator(self.device))
        optimizer.init_state(network.params)
        generators = _generators(layers)
        state = _state(network, optimizer, layers, generators)
        config = tuple(sorted(optimizer.config.items()))
        program = self._compiled.get(config)
        if program is None:
            def step(state: tuple, scalars: dict[str, Any], x: Array, t: Array) -> tuple:
                return self._step(state, scalars, x, t)

            # a new function each time: jax.jit's cache would reuse a trace of self._step,
            # with the old hyper-parameters in it
            program = self._compiled[config] = COMPILERS[self.device.backend](step, (0,))
        scalars = optimizer.step_scalars(optimizer.step_count + 1)
        params, slots, buffers, keys, loss = program(state, scalars, x, t)
        optimizer.step_count += 1
        _bind(network, optimizer, layers, generators, (params, slots, buffers, keys))
        network.bind_params()  # the layers held the donated parameters
        self._last_layer.loss = loss
        return loss

    def _step(self, state: tuple, scalars: dict[str, Any], x: Array, t: Array) -> tuple:
        """The traced function: binds the state to the objects, runs the eager code, and
        puts every attribute back before returning the new state."""
        self.compilations += 1
        network, optimizer = self.network, self.optimizer
        layers = list(network.layers.values())
        generators = _generators(layers)
        with _restored([*layers, self._last_layer], generators, network.params, optimizer.state):
            _bind(network, optimizer, layers, generators, state)
            optimizer.apply(network.params, network.gradient(x, t), scalars)
            return (*_state(network, optimizer, layers, generators), self._last_layer.loss)


def _state(network: Any, optimizer: Optimizer, layers: list[Any],
           generators: list[Generator]) -> tuple:
    """What a step changes: ``(params, optimizer slots, layers' state, generators' keys)``."""
    return (dict(network.params),
            {slot: dict(values) for slot, values in optimizer.state.items()},
            [[getattr(layer, name) for name in layer.state_names] for layer in layers],
            [generator.key for generator in generators])


def _bind(network: Any, optimizer: Optimizer, layers: list[Any], generators: list[Generator],
          state: tuple) -> None:
    """Put :func:`_state`'s ``(params, slots, buffers, keys)`` where the eager code reads them."""
    params, slots, buffers, keys = state
    network.params.update(params)
    for slot, values in slots.items():
        optimizer.state[slot].update(values)
    for layer, values in zip(layers, buffers):
        for name, value in zip(layer.state_names, values):
            setattr(layer, name, value)
    for generator, key in zip(generators, keys):
        generator.key = key


def compile_step(network: Any, optimizer: Optimizer) -> CompiledStep:
    """A :class:`CompiledStep` of ``network`` and ``optimizer``, or a :class:`ConfigError` when
    the network's backend has no compiler."""
    return CompiledStep(network, optimizer)


def _generators(layers: list[Any]) -> list[Generator]:
    """The distinct generators of the layers' random streams, in layer order (one may serve
    several)."""
    found: dict[int, Generator] = {}
    for layer in layers:
        for name in layer.random_streams:
            generator = getattr(layer, name)
            if generator is not None:
                found.setdefault(id(generator), generator)
    return list(found.values())


class _restored:
    """Within it, anything may be bound to tracers; on leaving, every array each layer names
    (:func:`~xpnet.layers.array_names`), each generator's key and each dict's entries (two
    levels deep) are as they were on entering."""

    def __init__(self, layers: list[Any], generators: list[Generator], *dicts: dict[str, Any]) -> None:
        self._attributes = [(layer, {name: getattr(layer, name, None) for name in array_names(layer)})
                            for layer in {id(layer): layer for layer in layers}.values()]
        self._keys = [(generator, generator.key) for generator in generators]
        self._dicts = [(d, {key: dict(value) if isinstance(value, dict) else value
                            for key, value in d.items()}) for d in dicts]

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        for layer, attributes in self._attributes:
            for name, value in attributes.items():
                setattr(layer, name, value)
        for generator, key in self._keys:
            generator.key = key
        for d, entries in self._dicts:
            for key, value in entries.items():
                if isinstance(value, dict):
                    d[key].clear()
                    d[key].update(value)
                else:
                    d[key] = value
            for key in set(d) - set(entries):
                del d[key]
