"""The fast paths of docs/performance.md compute what the plain formulas do, on every backend.

Each optimization replaced an obvious formula with a faster one (a 0/1 multiply for ``where``,
an in-place bias add, a namespace cache, in-place parameter updates, chunked evaluation);
these tests pin each to its reference so a later speed-up cannot change a result.
"""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

import xpnet
from xpnet.backend import namespace_of
from xpnet.registry import build_model
from xpnet.optim import SGD


def _host(x) -> np.ndarray:
    return np.asarray(xpnet.to_numpy(x))


def test_relu_forward_and_backward_equal_the_where_formulas(backend, dtype):
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((6, 7))
    x_host[0, :3] = 0.0  # the kink: blocked, as in the book's x <= 0
    dout_host = rng.standard_normal((6, 7))
    x, dout = backend.send(x_host, dtype), backend.send(dout_host, dtype)
    relu = xpnet.ReLU()

    out = relu.forward(x)
    dx = relu.backward(dout)

    np.testing.assert_array_equal(_host(out), np.where(x_host <= 0, 0.0, _host(x)))
    np.testing.assert_array_equal(_host(dx), np.where(x_host <= 0, 0.0, _host(dout)))
    assert out.dtype == x.dtype and dx.dtype == dout.dtype
    np.testing.assert_array_equal(_host(relu.mask), x_host <= 0)  # the book's mask, kept
    np.testing.assert_array_equal(_host(dout), _host(backend.send(dout_host, dtype)))


def test_affine_bias_add_in_place_neither_accumulates_nor_touches_inputs(backend, dtype):
    rng = np.random.default_rng(1)
    x_host, w_host, b_host = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), \
        rng.standard_normal(3)
    x, W, b = (backend.send(a, dtype) for a in (x_host, w_host, b_host))
    layer = xpnet.Affine(W, b)

    first = layer.forward(x)
    second = layer.forward(x)

    tolerance = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(_host(first), x_host @ w_host + b_host, rtol=tolerance,
                               atol=tolerance)
    np.testing.assert_array_equal(_host(second), _host(first))  # the bias went in once
    for given, original in ((x, x_host), (W, w_host), (b, b_host)):
        np.testing.assert_array_equal(_host(given), _host(backend.send(original, dtype)))


def test_cached_namespace_matches_array_namespace_and_still_checks(backend):
    x = backend.send(np.zeros((2, 3)), "float32")
    y = backend.send(np.ones(3), "float32")
    expected = array_namespace(x)

    assert namespace_of(x) is expected
    assert namespace_of(x) is expected  # from the cache now
    assert namespace_of(x, y) is expected
    other = xpnet.device("torch:cpu" if backend.backend != "torch" else "cpu").send(
        np.zeros(3), "float32")
    with pytest.raises(xpnet.BackendMismatchError, match="different libraries"):
        namespace_of(x, other)


def test_cached_namespace_still_rejects_arrays_on_two_devices():
    one = xpnet.device("array_api_strict:device1").send(np.zeros(3), "float32")
    two = xpnet.device("array_api_strict:device2").send(np.zeros(3), "float32")
    namespace_of(one)
    namespace_of(two)  # both types cached: the device check must still run
    with pytest.raises(xpnet.BackendMismatchError, match="different devices"):
        namespace_of(one, two)


def test_in_place_sgd_equals_the_functional_update(backend, dtype):
    rng = np.random.default_rng(2)
    x = backend.send(rng.random((8, 6)), dtype)
    t = backend.send(rng.integers(0, 4, 8), "int64")
    in_place = xpnet.TwoLayerNet(6, 5, 4, device=backend, dtype=dtype, seed=3)
    functional = xpnet.TwoLayerNet(6, 5, 4, device=backend, dtype=dtype, seed=3)
    optimizer = SGD(lr=0.5)
    original_arrays = {key: id(value) for key, value in in_place.params.items()}

    for _ in range(3):
        optimizer.update(in_place.params, in_place.gradient(x, t))
        grads = functional.gradient(x, t)
        for key in functional.params:
            functional.params[key] = functional.params[key] - 0.5 * grads[key]

    for key in in_place.params:
        np.testing.assert_array_equal(_host(in_place.params[key]), _host(functional.params[key]))
        # the mutable backends update the very arrays the layers hold; JAX's arrays are
        # immutable, so there the dict entry is rebound (and the layers re-read params)
        if backend.backend != "jax":
            assert id(in_place.params[key]) == original_arrays[key]
    np.testing.assert_array_equal(_host(in_place.predict(x)), _host(functional.predict(x)))


@pytest.mark.parametrize("batch_size", [None, 1, 7, 10, 64])
def test_chunked_count_correct_equals_one_pass(backend, batch_size):
    rng = np.random.default_rng(4)
    x_host = rng.random((23, 6))
    t_host = rng.integers(0, 4, 23)
    net = xpnet.TwoLayerNet(6, 5, 4, weight_init_std=1.0, device=backend, dtype="float64", seed=5)
    scores = _host(net.predict(backend.send(x_host, "float64")))
    expected = int(np.sum(np.argmax(scores, axis=1) == t_host))

    got = net.count_correct(backend.send(x_host, "float64"), backend.send(t_host, "int64"),
                            batch_size=batch_size)

    assert int(_host(got)) == expected


@pytest.mark.parametrize("model", ["mlp", "mlp-bn", "convnet"])
def test_gradient_keeps_no_reference_to_the_batch_or_its_activations(model):
    # Holding the last batch into the next step made glibc return and re-fault heap pages
    # every step (docs/performance.md); the gradients must not change for it.
    import gc
    import weakref

    rng = np.random.default_rng(6)
    net = build_model(model, input_shape=(1, 8, 8), hidden=[6], output_size=3, seed=0,
                      dtype="float64")
    x_host = rng.random((5, 1, 8, 8)) if model == "convnet" else rng.random((5, 64))
    t = rng.integers(0, 3, 5)
    x = x_host.copy()
    batch = weakref.ref(x)

    grads = {key: np.array(value) for key, value in net.gradient(x, t).items()}
    loss = net.lastLayer.loss
    del x
    gc.collect()

    assert batch() is None, "the network still holds the batch after gradient()"
    for layer in (*net.layers.values(), net.lastLayer):
        for name in getattr(layer, "saved_names", ()):
            assert getattr(layer, name) is None, f"{type(layer).__name__}.{name} kept"
    assert loss is not None and float(loss) > 0  # the loss stays for trainers to read
    again = net.gradient(x_host, t)
    for key, value in grads.items():
        np.testing.assert_array_equal(np.asarray(again[key]), value)
