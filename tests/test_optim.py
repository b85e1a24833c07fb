"""Tests of xpnet.optim: each optimizer's update against steps computed by hand, parity of every
backend with NumPy float64, state kept on the parameter's device, checkpointable state."""

from __future__ import annotations

import math

import numpy as np
import pytest
from array_api_compat import device as array_device_of

import xpnet
from xpnet.errors import ConfigError
from xpnet.optim import (OPTIMIZERS, SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop,
                         make_optimizer)

EPS = 1e-7  # the book's epsilon in AdaGrad, RMSprop and Adam

# One parameter vector and two gradients, chosen so the hand arithmetic stays short:
# g1**2 + g2**2 == [1, 1], and |g1| == [0.6, 0.8].
W0 = [1.0, -2.0]
G1 = [0.6, -0.8]
G2 = [0.8, 0.6]


def two_steps(optimizer) -> tuple[np.ndarray, np.ndarray]:
    params = {"W": np.array(W0)}
    optimizer.update(params, {"W": np.array(G1)})
    first = params["W"].copy()
    optimizer.update(params, {"W": np.array(G2)})
    return first, params["W"]


def assert_steps(optimizer, expected_first, expected_second) -> None:
    first, second = two_steps(optimizer)
    np.testing.assert_allclose(first, expected_first, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(second, expected_second, rtol=1e-12, atol=1e-15)


def test_sgd_by_hand():
    # W -= 0.1 * g
    assert_steps(SGD(lr=0.1), [0.94, -1.92], [0.86, -1.98])


def test_momentum_by_hand():
    # v1 = -0.1 g1 = [-0.06, 0.08]; v2 = 0.9 v1 - 0.1 g2 = [-0.134, 0.012]
    optimizer = Momentum(lr=0.1, momentum=0.9)
    assert_steps(optimizer, [0.94, -1.92], [0.806, -1.908])
    np.testing.assert_allclose(optimizer.state["v"]["W"], [-0.134, 0.012], rtol=1e-12)


def test_nesterov_by_hand():
    # W += 0.81 v - 0.19 g with v as in Momentum:
    # step 1: [1 - 0.0486 - 0.114, -2 + 0.0648 + 0.152]
    # step 2: [0.8374 - 0.10854 - 0.152, -1.7832 + 0.00972 - 0.114]
    assert_steps(Nesterov(lr=0.1, momentum=0.9), [0.8374, -1.7832], [0.57686, -1.88748])


def test_adagrad_by_hand():
    # h1 = g1**2 = [0.36, 0.64], sqrt = [0.6, 0.8]; h2 = h1 + g2**2 = [1, 1]
    first = [1 - 0.06 / (0.6 + EPS), -2 + 0.08 / (0.8 + EPS)]
    second = [first[0] - 0.08 / (1 + EPS), first[1] - 0.06 / (1 + EPS)]
    optimizer = AdaGrad(lr=0.1)
    assert_steps(optimizer, first, second)
    np.testing.assert_allclose(optimizer.state["h"]["W"], [1.0, 1.0], rtol=1e-12)


def test_rmsprop_by_hand():
    # h1 = 0.01 g1**2 = [0.0036, 0.0064], sqrt = [0.06, 0.08]
    # h2 = 0.99 h1 + 0.01 g2**2 = [0.003564 + 0.0064, 0.006336 + 0.0036]
    first = [1 - 0.06 / (0.06 + EPS), -2 + 0.08 / (0.08 + EPS)]
    h2 = [0.009964, 0.009936]
    second = [first[0] - 0.08 / (math.sqrt(h2[0]) + EPS), first[1] - 0.06 / (math.sqrt(h2[1]) + EPS)]
    optimizer = RMSprop(lr=0.1, decay_rate=0.99)
    assert_steps(optimizer, first, second)
    np.testing.assert_allclose(optimizer.state["h"]["W"], h2, rtol=1e-12)


def test_adam_by_hand():
    # t = 1: lr_t = 0.001 sqrt(0.001) / 0.1; m1 = 0.1 g1 = [0.06, -0.08];
    #        v1 = 0.001 g1**2 = [0.00036, 0.00064]: a step of about lr * sign(g1)
    lr1 = 0.001 * math.sqrt(0.001) / 0.1
    first = [1 - lr1 * 0.06 / (math.sqrt(0.00036) + EPS), -2 + lr1 * 0.08 / (math.sqrt(0.00064) + EPS)]
    # t = 2: lr_t = 0.001 sqrt(1 - 0.999**2) / (1 - 0.9**2); m2 = 0.9 m1 + 0.1 g2 = [0.134, -0.012];
    #        v2 = 0.999 v1 + 0.001 g2**2 = [0.00035964 + 0.00064, 0.00063936 + 0.00036]
    lr2 = 0.001 * math.sqrt(0.001999) / 0.19
    second = [first[0] - lr2 * 0.134 / (math.sqrt(0.00099964) + EPS),
              first[1] + lr2 * 0.012 / (math.sqrt(0.00099936) + EPS)]
    optimizer = Adam()
    assert_steps(optimizer, first, second)
    assert abs(first[0] - 0.999) < 1e-6 and abs(first[1] + 1.999) < 1e-6  # Adam's first step
    assert optimizer.step_count == 2
    np.testing.assert_allclose(optimizer.state["m"]["W"], [0.134, -0.012], rtol=1e-12)


def test_book_defaults():
    assert SGD().lr == 0.01
    assert (Momentum().lr, Momentum().momentum) == (0.01, 0.9)
    assert (Nesterov().lr, Nesterov().momentum) == (0.01, 0.9)
    assert AdaGrad().lr == 0.01
    assert (RMSprop().lr, RMSprop().decay_rate) == (0.01, 0.99)
    assert (Adam().lr, Adam().beta1, Adam().beta2) == (0.001, 0.9, 0.999)


def _run_on(dev: xpnet.Device, dtype: str, name: str, steps: int = 3):
    rng = np.random.default_rng(7)
    host_params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    host_grads = [{k: rng.standard_normal(v.shape) for k, v in host_params.items()}
                  for _ in range(steps)]
    params = {k: dev.send(v, dtype) for k, v in host_params.items()}
    optimizer = make_optimizer(name, lr=0.05)
    with dev:
        for grads in host_grads:
            optimizer.update(params, {k: dev.send(v, dtype) for k, v in grads.items()})
    return params, optimizer


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_backend_matches_numpy_float64(backend, dtype, name):
    params, optimizer = _run_on(backend, dtype, name)
    reference, reference_optimizer = _run_on(xpnet.device("cpu"), "float64", name)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    expected_dtype = backend.dtype(dtype)
    arrays = list(params.items()) + [(f"{slot}/{key}", value)
                                     for slot, values in optimizer.state.items()
                                     for key, value in values.items()]
    assert len(arrays) == 2 + 2 * len(optimizer.slots)
    for key, value in arrays:
        assert xpnet.namespace_of(value) is backend.xp, key
        assert array_device_of(value) == backend.array_device, key
        assert value.dtype == expected_dtype, key
    for key, value in params.items():
        np.testing.assert_allclose(xpnet.to_numpy(value), reference[key], rtol=rtol, atol=rtol)
    for slot, values in optimizer.state.items():
        for key, value in values.items():
            np.testing.assert_allclose(xpnet.to_numpy(value), reference_optimizer.state[slot][key],
                                       rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip_across_devices(name):
    """State saved from torch:cpu and loaded on NumPy continues exactly like the original."""
    torch_dev, cpu = xpnet.device("torch:cpu"), xpnet.device("cpu")
    params, optimizer = _run_on(torch_dev, "float64", name, steps=2)
    state = optimizer.state_dict()
    assert state["step"] == 2
    assert all(isinstance(v, np.ndarray) for values in state["slots"].values() for v in values.values())
    restored = make_optimizer(**optimizer.config)
    restored.load_state_dict(state, cpu)
    host_params = {k: xpnet.to_numpy(v).copy() for k, v in params.items()}
    grads = {k: np.full(v.shape, 0.5) for k, v in host_params.items()}
    restored.update(host_params, grads)
    optimizer.update(params, {k: torch_dev.send(v) for k, v in grads.items()})
    for key in params:
        np.testing.assert_array_equal(host_params[key], xpnet.to_numpy(params[key]))
    assert restored.step_count == 3


def test_load_state_dict_puts_state_on_the_device_in_the_dtype():
    optimizer = Momentum()
    optimizer.load_state_dict({"step": 4, "slots": {"v": {"W": np.ones(3)}}}, "torch:cpu", "float32")
    v = optimizer.state["v"]["W"]
    assert str(v.dtype) == "torch.float32" and v.device.type == "cpu"
    assert optimizer.step_count == 4
    with pytest.raises(ConfigError, match="another optimizer"):
        optimizer.load_state_dict({"step": 1, "slots": {"m": {"W": np.ones(3)}}})


def test_make_optimizer():
    optimizer = make_optimizer("Momentum", lr=0.2, momentum=0.5)
    assert isinstance(optimizer, Momentum) and optimizer.lr == 0.2 and optimizer.momentum == 0.5
    assert make_optimizer("adam").lr == 0.001  # lr None keeps the book's default
    assert make_optimizer(**Adam(lr=0.01, beta1=0.8).config).config == Adam(lr=0.01, beta1=0.8).config
    with pytest.raises(ConfigError, match="unknown optimizer 'adamw'; choose one of sgd, momentum, "
                                          "nesterov, adagrad, rmsprop, adam"):
        make_optimizer("adamw")
    with pytest.raises(ConfigError, match="SGD takes the options lr; got lr, momentum"):
        make_optimizer("sgd", lr=0.1, momentum=0.9)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), True, "0.1", None])
def test_learning_rate_must_be_positive(bad):
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        SGD(lr=bad)


@pytest.mark.parametrize("cls, option, bad", [
    (Momentum, "momentum", 1.0), (Momentum, "momentum", -0.1), (Nesterov, "momentum", 2),
    (RMSprop, "decay_rate", 0.0), (RMSprop, "decay_rate", 1.0), (Adam, "beta1", 1.0),
    (Adam, "beta2", -0.5), (Adam, "beta2", float("nan")),
])
def test_fractions_must_be_in_range(cls, option, bad):
    with pytest.raises(ConfigError, match=f"{option} must satisfy"):
        cls(**{option: bad})


def test_update_keeps_numpy_parameters_in_place():
    """On mutable backends the update writes into the array: layers holding it see the change."""
    for name in OPTIMIZERS:
        params = {"W": np.array(W0)}
        original = params["W"]
        make_optimizer(name).update(params, {"W": np.array(G1)})
        assert params["W"] is original, name
        assert not np.array_equal(original, W0), name
