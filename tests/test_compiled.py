"""Tests of xpnet.compiled: the jitted training step ends where the eager one does (JAX, float64),
leaks no tracer, draws Dropout masks from keys passed in, donates its state and compiles once;
backends without a compiler refuse ``jit`` in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import xpnet
from helpers import blobs
from xpnet.compiled import compile_step
from xpnet.errors import ConfigError
from xpnet.optim import make_optimizer
from xpnet.training import Trainer

jax = pytest.importorskip("jax")

FEATURES, CLASSES = 12, 3


def mlp(dev, dtype):
    return xpnet.MultiLayerNet(FEATURES, [10, 8], CLASSES, weight_decay_lambda=0.01, device=dev,
                               dtype=dtype, seed=1)


def mlp_bn(dev, dtype):
    return xpnet.MultiLayerNetExtend(FEATURES, [10, 8], CLASSES, use_batchnorm=True, device=dev,
                                     dtype=dtype, seed=1)


def mlp_dropout(dev, dtype):
    return xpnet.MultiLayerNetExtend(FEATURES, [10, 8], CLASSES, use_batchnorm=True,
                                     use_dropout=True, dropout_ratio=0.3, device=dev, dtype=dtype,
                                     seed=1)


def convnet(dev, dtype):
    return xpnet.SimpleConvNet((1, 6, 6), {"filter_num": 3, "filter_size": 3, "pad": 1},
                               hidden_size=8, output_size=CLASSES, weight_init_std="he",
                               device=dev, dtype=dtype, seed=1)


def trained(build, jit, optimizer="adam", epochs=2):
    net = build("jax:cpu", "float64")
    shape = (-1, *net.input_shape)
    (x, t), (x_test, t_test) = blobs(80, features=36 if build is convnet else FEATURES), \
        blobs(20, seed=1, features=36 if build is convnet else FEATURES)
    trainer = Trainer(net, make_optimizer(optimizer, lr=0.01), (x.reshape(shape), t),
                      (x_test.reshape(shape), t_test), batch_size=20, seed=3, jit=jit)
    trainer.fit(epochs=epochs)
    return trainer


def host(arrays):
    return {key: xpnet.to_numpy(value) for key, value in arrays.items()}


@pytest.mark.parametrize("build, optimizer", [(mlp, "adam"), (mlp_bn, "momentum"),
                                              (mlp_dropout, "adam"), (convnet, "adam")],
                         ids=["mlp", "mlp-bn", "mlp-bn-dropout", "convnet"])
def test_jitted_training_ends_with_the_eager_parameters(build, optimizer):
    eager = trained(build, False, optimizer)
    with jax.checking_leaks():  # a tracer left on a layer, the optimizer or a generator raises
        compiled = trained(build, True, optimizer)
    assert compiled._update.compilations == 1  # one program for every step of every epoch
    assert compiled.optimizer.step_count == eager.optimizer.step_count == 8
    # atol: a bias before BatchNorm has no gradient, only rounding noise (1e-12)
    expected = host(eager.network.params)
    for key, value in compiled.network.params.items():
        assert value.dtype == np.float64, key
        np.testing.assert_allclose(xpnet.to_numpy(value), expected[key], rtol=1e-9, atol=1e-9,
                                   err_msg=key)
    for key, value in eager.network.state_dict().items():  # BatchNorm's running statistics
        np.testing.assert_allclose(compiled.network.state_dict()[key], value, rtol=1e-9, atol=1e-9)
    for slot, values in eager.optimizer.state.items():
        for key, value in values.items():
            np.testing.assert_allclose(xpnet.to_numpy(compiled.optimizer.state[slot][key]),
                                       xpnet.to_numpy(value), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(compiled.loss_history, eager.loss_history, rtol=1e-9)
    assert compiled.history[-1].test_acc == eager.history[-1].test_acc


def test_state_is_donated_and_nothing_traced_stays_behind():
    net = mlp_dropout("jax:cpu", "float32")
    optimizer = make_optimizer("adam")
    step = compile_step(net, optimizer)
    x, t = (net.device.send(a, dtype) for a, dtype in zip(blobs(10, features=FEATURES),
                                                          ("float32", "int64")))
    with jax.checking_leaks():
        before = net.params["W1"]
        dropout = net.layers["Dropout1"]
        key_before = np.array(jax.random.key_data(dropout.rng.key))
        loss = step(x, t)
        assert before.is_deleted()  # donated: its buffer became the new W1
        assert not np.array_equal(jax.random.key_data(dropout.rng.key), key_before)
        assert net.lastLayer.loss is loss and loss.shape == ()
        for layer in (*net.layers.values(), net.lastLayer):
            for value in vars(layer).values():
                assert not isinstance(value, jax.core.Tracer)
        assert net.layers["Affine1"].W is net.params["W1"]  # the layers see the new parameters
        step(x, t)
    assert step.compilations == 1 and optimizer.step_count == 2
    optimizer.lr = 0.01  # hyper-parameters are compiled in: a new value, a new program
    step(x, t)
    assert step.compilations == 2


@pytest.mark.parametrize("spec", ["cpu", "torch:cpu", "array_api_strict"])
def test_backends_without_a_compiler_refuse_jit(spec):
    net = xpnet.TwoLayerNet(FEATURES, 5, CLASSES, device=spec)
    with pytest.raises(ConfigError, match=r"^--jit compiles the training step with JAX, but "
                                          rf"{spec}\S* \(\w+\) runs eagerly; use --device jax:cpu"):
        Trainer(net, make_optimizer("sgd"), blobs(20, features=FEATURES),
                blobs(10, features=FEATURES), batch_size=10, jit=True)


class TwoRanks:
    """Just enough of a Communicator of two processes for the trainer's checks."""

    size, rank = 2, 0

    def agree(self, failure):
        if failure is not None:
            raise failure


@pytest.mark.parametrize("jit, message", [
    (True, r"data-parallel training does not take JAX arrays yet \(.*\) nor --jit \(it compiles "
           r"a one-process step\); train JAX on one process, with or without --jit, or use cpu, "
           r"cuda or torch without --jit on 2 processes$"),
    (False, r"data-parallel training does not take JAX arrays yet \(.*\); train JAX on one "
            r"process, with or without --jit, or use cpu, cuda or torch on 2 processes$")])
def test_jax_refuses_several_processes(jit, message):
    net = xpnet.TwoLayerNet(FEATURES, 5, CLASSES, device="jax:cpu")
    with pytest.raises(ConfigError, match=f"^{message}"):
        Trainer(net, make_optimizer("sgd"), blobs(20, features=FEATURES),
                blobs(10, features=FEATURES), batch_size=10, jit=jit, comm=TwoRanks())


def test_float64_on_jax_is_float64_and_float32_leaves_x64_off():
    """In a fresh process: float32 work keeps JAX's 32-bit defaults; a float64 network turns
    jax_enable_x64 on and really computes in float64."""
    script = """
import jax, numpy as np, xpnet
from xpnet.optim import make_optimizer
dev = xpnet.device("jax:cpu")
x, t = dev.send(np.ones((4, 3)), "float32"), dev.send(np.array([0, 1, 0, 1]))
net = xpnet.TwoLayerNet(3, 4, 2, device=dev, seed=0)
make_optimizer("adam").update(net.params, net.gradient(x, t))
print(jax.config.jax_enable_x64, net.params["W1"].dtype, t.dtype)
net = xpnet.TwoLayerNet(3, 4, 2, device=dev, dtype="float64", seed=0)
x = dev.send(np.ones((4, 3)) / 3, "float64")
grads = net.gradient(x, t)
print(jax.config.jax_enable_x64, net.params["W1"].dtype, grads["W1"].dtype, net.loss(x, t).dtype,
      float(np.float64(xpnet.to_numpy(x)[0, 0]) - 1 / 3))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["False float32 int32", "True float64 float64 float64 0.0"]
