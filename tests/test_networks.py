"""The networks of chapters 6 and 7: structure, init, weight decay, modes, state, build_model.

Their gradient checks and parity with NumPy float64 on every backend run in
tests/test_parity.py (network cases in xpnet.device_check); here: what each network is made
of, that it learns, and that it rebuilds from its config.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from array_api_compat import device as array_device_of

import xpnet
from helpers import blobs
from xpnet import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, build_model
from xpnet.registry import from_config


def _host(x) -> np.ndarray:
    return xpnet.to_numpy(x).astype(np.float64)


def test_multilayer_net_has_the_books_layers_and_parameters():
    net = MultiLayerNet(6, [5, 4, 3], 2, seed=0)
    assert list(net.layers) == ["Affine1", "Activation_function1", "Affine2", "Activation_function2",
                                "Affine3", "Activation_function3", "Affine4"]
    shapes = {key: tuple(value.shape) for key, value in net.params.items()}
    assert shapes == {"W1": (6, 5), "b1": (5,), "W2": (5, 4), "b2": (4,), "W3": (4, 3), "b3": (3,),
                      "W4": (3, 2), "b4": (2,)}
    assert isinstance(net.layers["Activation_function1"], xpnet.ReLU)
    assert net.layers["Affine1"].input_grad is False and net.layers["Affine2"].input_grad is True
    assert not net.has_train_mode and net.input_shape == (6,)


@pytest.mark.parametrize("init, expected_std", [("relu", np.sqrt(2 / 2000)), ("he", np.sqrt(2 / 2000)),
                                                ("sigmoid", np.sqrt(1 / 2000)),
                                                ("xavier", np.sqrt(1 / 2000)), (0.05, 0.05)])
def test_weight_init_scales_by_fan_in(init, expected_std):
    net = MultiLayerNet(2000, [300], 300, weight_init_std=init, seed=1)
    assert abs(np.std(net.params["W1"]) / expected_std - 1) < 0.01  # 600000 draws
    # the second layer has fan-in 300
    second = expected_std if isinstance(init, float) else expected_std * np.sqrt(2000 / 300)
    assert abs(np.std(net.params["W2"]) / second - 1) < 0.02
    np.testing.assert_array_equal(net.params["b1"], 0)


def test_same_seed_same_weights_on_every_backend(backend):
    for build in (lambda dev: MultiLayerNet(5, [4, 3], 2, device=dev, dtype="float64", seed=9),
                  lambda dev: SimpleConvNet((1, 6, 6), {"filter_num": 2, "filter_size": 3}, 4, 2,
                                            device=dev, dtype="float64", seed=9)):
        ours, reference = build(backend), build("cpu")
        for key, value in reference.params.items():
            assert array_device_of(ours.params[key]) == backend.array_device
            np.testing.assert_array_equal(_host(ours.params[key]), value)


def test_weight_decay_adds_half_lambda_sum_of_squares_and_lambda_w(backend):
    x_host, t_host = blobs(20)
    x, t = backend.send(x_host, "float64"), backend.send(t_host, "int64")
    plain = MultiLayerNet(8, [6, 5], 3, device=backend, dtype="float64", seed=2)
    decayed = MultiLayerNet(8, [6, 5], 3, weight_decay_lambda=0.3, device=backend, dtype="float64",
                            seed=2)
    penalty = 0.5 * 0.3 * sum(np.sum(_host(plain.params[k]) ** 2) for k in ("W1", "W2", "W3"))
    np.testing.assert_allclose(_host(decayed.loss(x, t)), _host(plain.loss(x, t)) + penalty, rtol=1e-12)
    grads, plain_grads = decayed.gradient(x, t), plain.gradient(x, t)
    for key, value in plain.params.items():
        extra = 0.3 * _host(value) if key.startswith("W") else 0.0
        np.testing.assert_allclose(_host(grads[key]), _host(plain_grads[key]) + extra, rtol=1e-12,
                                   atol=1e-15)


def test_extend_network_layers_modes_and_dropout_seeding(backend):
    net = MultiLayerNetExtend(5, [4, 4], 3, use_dropout=True, dropout_ratio=0.5, use_batchnorm=True,
                              device=backend, dtype="float64", seed=3)
    assert list(net.layers)[:4] == ["Affine1", "BatchNorm1", "Activation_function1", "Dropout1"]
    assert {"gamma1", "beta1", "gamma2", "beta2"} <= set(net.params) and net.has_train_mode
    x = backend.send(np.random.default_rng(0).standard_normal((10, 5)), "float64")
    t = backend.send(np.arange(10) % 3, "int64")
    # inference is deterministic; training draws new masks, the same ones for the same seed
    np.testing.assert_array_equal(_host(net.predict(x)), _host(net.predict(x)))
    twin = MultiLayerNetExtend(5, [4, 4], 3, use_dropout=True, use_batchnorm=True, device=backend,
                               dtype="float64", seed=3)
    first, again = _host(net.loss(x, t)), _host(net.loss(x, t))
    assert first != again
    assert _host(twin.loss(x, t)) == first
    assert MultiLayerNetExtend(5, [4], 3, use_dropout=True, dropout_ratio=0.2).config["dropout_ratio"] == 0.2
    # the book's spelling is still accepted (old checkpoints' configs hold it)
    assert MultiLayerNetExtend(5, [4], 3, use_dropout=True, dropout_ration=0.3).config["dropout_ratio"] == 0.3


def test_state_dict_carries_the_running_statistics(backend):
    x_host, t_host = blobs(30)
    x, t = backend.send(x_host, "float32"), backend.send(t_host, "int64")
    net = build_model("mlp-bn", input_shape=(8,), hidden=[6, 5], output_size=3, device=backend, seed=4)
    net.gradient(x, t)  # a training step moves the running statistics
    state = net.state_dict()
    assert set(state) == {"BatchNorm1.running_mean", "BatchNorm1.running_var",
                          "BatchNorm2.running_mean", "BatchNorm2.running_var"}
    assert all(type(value) is np.ndarray for value in state.values())
    assert not np.allclose(state["BatchNorm1.running_mean"], 0)
    fresh = from_config(net.config, device=backend, dtype="float32")
    fresh.params.update(net.params)
    assert not np.allclose(_host(fresh.predict(x)), _host(net.predict(x)))
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(_host(fresh.predict(x)), _host(net.predict(x)))
    assert array_device_of(fresh.layers["BatchNorm1"].running_var) == backend.array_device
    with pytest.raises(xpnet.ConfigError, match="another architecture"):
        fresh.load_state_dict({"BatchNorm1.running_mean": state["BatchNorm1.running_mean"]})
    with pytest.raises(xpnet.ShapeError, match="BatchNorm2.running_var"):
        fresh.load_state_dict({**state, "BatchNorm2.running_var": np.ones(7)})
    assert MultiLayerNet(3, [2], 2).state_dict() == {}


@pytest.mark.parametrize("build", [
    lambda: MultiLayerNet(8, [7, 6], 3, activation="sigmoid", weight_init_std="sigmoid",
                          weight_decay_lambda=0.01, seed=5),
    lambda: MultiLayerNetExtend(8, [7, 6], 3, use_dropout=True, dropout_ratio=0.1,
                                use_batchnorm=True, seed=5),
    lambda: SimpleConvNet((2, 5, 4), {"filter_num": 3, "filter_size": 2, "pad": 1}, 6, 3,
                          weight_init_std="he", seed=5),
    lambda: DeepConvNet((1, 8, 8), [{"filter_num": 2}] * 6, hidden_size=5, output_size=3, seed=5),
], ids=["MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet", "DeepConvNet"])
def test_config_survives_json_and_rebuilds_the_same_network(build):
    net = build()
    config = json.loads(json.dumps(net.config))
    rebuilt = from_config(config, seed=5)
    assert type(rebuilt) is type(net) and rebuilt.config == net.config
    x = np.random.default_rng(0).standard_normal((4, *net.input_shape)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.predict(x), net.predict(x))


@pytest.mark.parametrize("build", [
    lambda dev: MultiLayerNet(8, [16, 16], 3, device=dev, seed=6),
    lambda dev: MultiLayerNetExtend(8, [16, 16], 3, use_batchnorm=True, use_dropout=True,
                                    dropout_ratio=0.1, device=dev, seed=6),
    lambda dev: SimpleConvNet((1, 4, 2), {"filter_num": 4, "filter_size": 2, "pad": 1}, 16, 3,
                              weight_init_std="he", device=dev, seed=6),
], ids=["MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet"])
def test_each_network_learns_separable_blobs(backend, build):
    x_host, t_host = blobs(120)
    net = build(backend)
    x = backend.send(x_host.reshape((-1, *net.input_shape)), "float32")
    t = backend.send(t_host, "int64")
    first = float(xpnet.to_numpy(net.loss(x, t)))
    for _ in range(60):
        grads = net.gradient(x, t)
        for key in net.params:
            net.params[key] = net.params[key] - 0.1 * grads[key]
    assert float(xpnet.to_numpy(net.loss(x, t))) < first / 3
    correct = net.count_correct(x, t, batch_size=50)
    assert correct.ndim == 0 and array_device_of(correct) == backend.array_device
    assert net.accuracy(x, t) > 0.95


def test_simple_conv_net_has_the_books_architecture():
    net = SimpleConvNet(seed=0)
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert tuple(net.params["W1"].shape) == (30, 1, 5, 5)
    assert tuple(net.params["W2"].shape) == (30 * 12 * 12, 100)  # 28 - 5 + 1 = 24, pooled to 12
    assert tuple(net.params["W3"].shape) == (100, 10)
    assert net.input_shape == (1, 28, 28) and net.layers["Conv1"].input_grad is False
    assert abs(np.std(net.params["W2"]) - 0.01) < 1e-4
    scores = net.predict(np.zeros((2, 1, 28, 28), dtype=np.float32))
    assert scores.shape == (2, 10) and scores.dtype == np.float32


def test_deep_conv_net_has_the_books_architecture():
    net = DeepConvNet(seed=0)
    assert list(net.layers) == [
        "Conv1", "Relu1", "Conv2", "Relu2", "Pool1", "Conv3", "Relu3", "Conv4", "Relu4", "Pool2",
        "Conv5", "Relu5", "Conv6", "Relu6", "Pool3", "Affine1", "Relu7", "Dropout1", "Affine2",
        "Dropout2"]
    filters = [(16, 1), (16, 16), (32, 16), (32, 32), (64, 32), (64, 64)]
    for i, (out_channels, in_channels) in enumerate(filters, start=1):
        assert tuple(net.params[f"W{i}"].shape) == (out_channels, in_channels, 3, 3)
        assert net.layers[f"Conv{i}"].pad == (2 if i == 4 else 1)
        fan_in = in_channels * 9
        assert abs(np.std(net.params[f"W{i}"]) - np.sqrt(2 / fan_in)) < 0.2 * np.sqrt(2 / fan_in)
    # 28 -> 28 -> pool 14 -> 14 -> 16 (pad 2) -> pool 8 -> 8 -> 8 -> pool 4
    assert tuple(net.params["W7"].shape) == (64 * 4 * 4, 50)
    assert tuple(net.params["W8"].shape) == (50, 10)
    assert net.layers["Conv1"].input_grad is False and net.has_train_mode
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    scores = net.predict(x)
    assert scores.shape == (3, 10) and scores.dtype == np.float32
    # inference is deterministic; training draws dropout masks
    np.testing.assert_array_equal(net.predict(x), scores)
    assert not np.array_equal(xpnet.to_numpy(net.predict(x, train_flg=True)), scores)


def test_deep_conv_net_without_dropout_trains_as_it_predicts():
    net = DeepConvNet((1, 8, 8), [{"filter_num": 2}] * 6, hidden_size=5, output_size=3,
                      dropout_ratio=0, seed=1)
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(net.predict(x, train_flg=True), net.predict(x))
    with pytest.raises(xpnet.ConfigError, match="6 convolutions"):
        DeepConvNet(conv_params=[None] * 5)
    with pytest.raises(xpnet.ConfigError, match="Pool3 cannot take samples of shape"):
        DeepConvNet((1, 2, 2))


def test_build_model_picks_the_network_and_its_init():
    common = {"input_shape": (1, 28, 28), "output_size": 10, "seed": 0}
    book = build_model("mlp", hidden=[50], **common)
    assert type(book) is xpnet.TwoLayerNet and book.config["weight_init_std"] == 0.01
    deep = build_model("mlp", hidden=[50, 40], **common)
    assert type(deep) is MultiLayerNet and deep.config["weight_init_std"] == "relu"
    assert deep.input_shape == (784,)
    sigmoid = build_model("mlp", hidden=[50], activation="sigmoid", **common)
    assert type(sigmoid) is MultiLayerNet and sigmoid.config["weight_init_std"] == "sigmoid"
    decayed = build_model("mlp", hidden=[50], weight_decay=0.1, **common)
    assert type(decayed) is MultiLayerNet and decayed.weight_decay_lambda == 0.1
    bn = build_model("mlp-bn", hidden=[50], dtype="float64", **common)
    assert type(bn) is MultiLayerNetExtend and "BatchNorm1" in bn.layers and bn.dtype == "float64"
    conv = build_model("convnet", hidden=[64], **common)
    assert type(conv) is SimpleConvNet and conv.config["hidden_size"] == 64
    assert conv.input_shape == (1, 28, 28)


def test_bad_arguments_raise_config_errors_naming_the_fix():
    common = {"input_shape": (1, 28, 28), "output_size": 10}
    with pytest.raises(xpnet.ConfigError, match="mlp, mlp-bn, convnet"):
        build_model("resnet", hidden=[10], **common)
    with pytest.raises(xpnet.ConfigError, match="one hidden size"):
        build_model("convnet", hidden=[10, 10], **common)
    with pytest.raises(xpnet.ConfigError, match="choose relu or sigmoid"):
        MultiLayerNet(4, [3], 2, activation="tanh")
    with pytest.raises(xpnet.ConfigError, match="hidden_size_list"):
        MultiLayerNet(4, [3, 0], 2)
    with pytest.raises(xpnet.ConfigError, match="weight_init_std"):
        MultiLayerNet(4, [3], 2, weight_init_std="lecun")
    with pytest.raises(xpnet.ConfigError, match="weight_decay_lambda"):
        MultiLayerNet(4, [3], 2, weight_decay_lambda=-1)
    with pytest.raises(xpnet.ConfigError, match="dropout_ratio"):
        MultiLayerNetExtend(4, [3], 2, use_dropout=True, dropout_ratio=1.5)
    with pytest.raises(xpnet.ConfigError, match="unknown conv_param"):
        SimpleConvNet(conv_param={"filters": 3})
    with pytest.raises(xpnet.ConfigError, match="stride"):
        SimpleConvNet(conv_param={"stride": 0})
    with pytest.raises(xpnet.ConfigError, match="pad"):
        SimpleConvNet(conv_param={"pad": -1})
    with pytest.raises(xpnet.ConfigError, match="2x2 pooling"):
        SimpleConvNet((1, 5, 5), {"filter_size": 5})
    with pytest.raises(xpnet.ConfigError, match="channels, height, width"):
        SimpleConvNet((28, 28))
