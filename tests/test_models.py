"""TwoLayerNet: the book's API and training loop on every backend, and no host sync in a step."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import device as array_device_of

import xpnet
from helpers import blobs


def test_book_training_loop_learns_on_every_backend(backend):
    x_host, t_host = blobs(240)
    net = xpnet.TwoLayerNet(8, 16, 3, weight_init_std=0.1, device=backend, seed=0)
    x, t = backend.send(x_host, "float32"), backend.send(t_host, "int64")
    first_loss = float(xpnet.to_numpy(net.loss(x, t)))
    rng = np.random.default_rng(0)
    for _ in range(150):  # the book's loop, verbatim but for the data
        batch_mask = backend.send(rng.choice(x_host.shape[0], 32))
        x_batch, t_batch = backend.xp.take(x, batch_mask, axis=0), backend.xp.take(t, batch_mask, axis=0)
        grad = net.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= 0.1 * grad[key]
    assert float(xpnet.to_numpy(net.loss(x, t))) < first_loss / 5
    assert net.accuracy(x, t) > 0.95
    for value in net.params.values():
        assert array_device_of(value) == backend.array_device and value.dtype == backend.dtype("float32")


def test_same_seed_same_weights_on_every_backend(backend):
    ours = xpnet.TwoLayerNet(5, 4, 3, device=backend, dtype="float64", seed=11)
    numpy_net = xpnet.TwoLayerNet(5, 4, 3, dtype="float64", seed=11)
    for key, value in numpy_net.params.items():
        np.testing.assert_array_equal(xpnet.to_numpy(ours.params[key]), value)


def test_numerical_gradient_matches_gradient_book_api():
    x, t = blobs(10)
    net = xpnet.TwoLayerNet(8, 5, 3, weight_init_std=0.5, dtype="float64", seed=2)
    before = {k: v.copy() for k, v in net.params.items()}
    numerical, analytic = net.numerical_gradient(x, t), net.gradient(x, t)
    for key in net.params:
        # the book's check, relative to the gradient's scale (h = 1e-4 leaves ~1e-9 truncation)
        assert np.mean(np.abs(numerical[key] - analytic[key])) < 1e-8 * np.max(np.abs(analytic[key]))
        np.testing.assert_array_equal(net.params[key], before[key])


def test_accuracy_with_integer_and_one_hot_labels_in_chunks():
    x, t = blobs(50)
    net = xpnet.TwoLayerNet(8, 5, 3, weight_init_std=0.5, seed=3)
    expected = np.mean(np.argmax(net.predict(x.astype(np.float32)), axis=1) == t)
    x32 = x.astype(np.float32)
    assert net.accuracy(x32, t) == pytest.approx(expected)
    assert net.accuracy(x32, np.eye(3, dtype=np.float32)[t], batch_size=7) == pytest.approx(expected)
    assert int(net.count_correct(x32, t, batch_size=16)) == round(expected * 50)


def test_assigned_params_replace_the_weights():
    net = xpnet.TwoLayerNet(4, 3, 2, seed=0)
    x = np.ones((1, 4), np.float32)
    net.params["b2"] = np.array([0.0, 100.0], np.float32)  # a rebinding, not an in-place update
    assert int(np.argmax(net.predict(x))) == 1


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_sizes_must_be_positive_integers(bad):
    with pytest.raises(xpnet.ConfigError, match="hidden_size must be a positive integer"):
        xpnet.TwoLayerNet(4, bad, 2)


def test_dtype_must_be_a_float():
    with pytest.raises(xpnet.ConfigError, match="choose float32 or float64"):
        xpnet.TwoLayerNet(4, 3, 2, dtype="int32")
