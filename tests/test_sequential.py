"""xpnet.Sequential: the builder of every network; the book's networks keep their weights, names
and checkpoints; a Sequential's checkpoint rebuilds it from its layer list."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))
from make_legacy_fixtures import NETWORKS  # noqa: E402  the recipes the fixtures were made by

LEGACY = np.load(DATA / "legacy_weights.npz")


def _probe(net) -> np.ndarray:
    size = int(np.prod(net.input_shape))
    return np.linspace(-1, 1, 2 * size).reshape(2, *net.input_shape).astype(np.float32)


@pytest.mark.parametrize("name", NETWORKS)
def test_book_networks_keep_the_weights_of_a_seed_bit_for_bit(name):
    net = NETWORKS[name]()
    assert isinstance(net, xpnet.Sequential)
    saved = {key.split("/", 1)[1]: LEGACY[key] for key in LEGACY.files
             if key.startswith(name + "/") and not key.endswith("/predict")}
    assert sorted(net.params) == sorted(saved)
    for key, value in saved.items():
        np.testing.assert_array_equal(net.params[key], value, err_msg=key)


@pytest.mark.parametrize("name", NETWORKS)
def test_checkpoints_written_before_sequential_still_load(name):
    net, optimizer, meta = xpnet.load_checkpoint(DATA / f"legacy_{name}.npz")
    assert net.name == name and optimizer.name == "momentum" and meta["iteration"] == 1
    np.testing.assert_array_equal(net.predict(_probe(net), train_flg=False), LEGACY[f"{name}/predict"])


def test_layer_and_parameter_names_follow_the_book():
    net = xpnet.Sequential(xpnet.Convolution(filter_num=2, filter_size=3, pad=1), xpnet.ReLU(),
                           xpnet.Pooling(2, 2, stride=2), xpnet.Affine(units=5),
                           xpnet.BatchNormalization(), xpnet.ReLU(), xpnet.Dropout(0.2),
                           ("Output", xpnet.Affine(units=3)), input_shape=(1, 6, 6), seed=0)
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "BatchNorm1", "Relu2",
                                "Dropout1", "Output1"]
    assert {k: tuple(v.shape) for k, v in net.params.items()} == {
        "W1": (2, 1, 3, 3), "b1": (2,), "W2": (18, 5), "b2": (5,), "gamma1": (5,), "beta1": (5,),
        "W3": (5, 3), "b3": (3,)}
    assert net.output_shape == (3,) and net.has_train_mode
    assert net.layers["Conv1"].input_grad is False and net.layers["Affine1"].input_grad is True
    assert isinstance(net.layers["Dropout1"].rng, xpnet.Generator)


def test_a_sequential_checkpoint_rebuilds_it_from_its_layer_list(tmp_path):
    net = xpnet.Sequential(xpnet.Affine(units=4, weight_init_std=0.5), xpnet.BatchNormalization(),
                           xpnet.Sigmoid(), xpnet.Affine(units=3), input_shape=(6,),
                           weight_decay_lambda=0.1, dtype="float64", seed=2)
    x, t = np.random.default_rng(0).standard_normal((5, 6)), np.arange(5) % 3
    optimizer = xpnet.Adam()
    optimizer.update(net.params, net.gradient(x, t))
    xpnet.save_checkpoint(tmp_path / "seq.npz", net, optimizer, epoch=1, seed=2, iteration=1)
    loaded, _, _ = xpnet.load_checkpoint(tmp_path / "seq.npz")
    assert type(loaded) is xpnet.Sequential and list(loaded.layers) == list(net.layers)
    assert loaded.config == net.config and loaded.weight_decay_lambda == 0.1
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    np.testing.assert_array_equal(loaded.loss(x, t, train_flg=False), net.loss(x, t, train_flg=False))


def test_a_checkpoint_naming_an_unregistered_layer_is_refused_in_one_line(tmp_path):
    class Doubling(xpnet.Layer):
        def forward(self, x):
            return 2 * x

        def backward(self, dout):
            return 2 * dout

    net = xpnet.Sequential(xpnet.Affine(units=3), Doubling(), input_shape=(4,), seed=0)
    xpnet.save_checkpoint(tmp_path / "own.npz", net, None, epoch=0, seed=0)
    with pytest.raises(xpnet.CheckpointError) as caught:
        xpnet.load_checkpoint(tmp_path / "own.npz")
    message = str(caught.value)
    assert "\n" not in message and "unknown layer 'Doubling'" in message
    assert "@xpnet.register_layer" in message
    xpnet.register_layer(Doubling)
    try:
        loaded, _, _ = xpnet.load_checkpoint(tmp_path / "own.npz")
        assert list(loaded.layers) == ["Affine1", "Doubling1"]
    finally:
        del xpnet.layers.LAYERS["Doubling"]


def test_builder_mistakes_are_one_line_config_errors():
    relu = xpnet.ReLU()
    with pytest.raises(xpnet.ConfigError, match="given twice"):
        xpnet.Sequential(xpnet.Affine(units=3), relu, relu, input_shape=(4,))
    with pytest.raises(xpnet.ConfigError, match="Conv1 cannot take samples of shape \\(4,\\)"):
        xpnet.Sequential(xpnet.Convolution(filter_num=2, filter_size=3), input_shape=(4,))
    with pytest.raises(xpnet.ConfigError, match="Affine needs its weights"):
        xpnet.Affine()
    with pytest.raises(xpnet.ConfigError, match="taken by"):
        xpnet.register_layer(type("Affine", (xpnet.Layer,), {}))
