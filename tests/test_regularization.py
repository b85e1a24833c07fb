"""Dropout and BatchNormalization: both modes, on every backend, against their definitions.

Their gradient checks and NumPy-float64 parity run in tests/test_parity.py (cases from
xpnet.device_check); here: what each mode computes, the running statistics, seeding, and errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import device as array_device_of

import xpnet
from xpnet import BatchNormalization, Dropout, check_layer


def _host(x) -> np.ndarray:
    return xpnet.to_numpy(x).astype(np.float64)


def test_dropout_training_keeps_the_expected_value_and_inference_is_the_identity(backend, dtype):
    x = backend.send(np.full((200, 50), 3.0), dtype)
    layer = Dropout(0.3, rng=xpnet.Generator(backend, seed=0))
    out = layer.forward(x, train_flg=True)
    assert array_device_of(out) == backend.array_device and out.dtype == x.dtype
    values = _host(out)
    kept = values != 0
    # inverted dropout: the kept inputs are scaled so the mean output equals the input
    np.testing.assert_allclose(values[kept], 3.0 / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.02  # 10000 draws: 0.02 is over 4 standard deviations
    assert abs(values.mean() - 3.0) < 0.1
    assert layer.forward(x, train_flg=False) is x


def test_dropout_backward_uses_the_forward_mask(backend):
    x = backend.send(np.random.default_rng(0).standard_normal((20, 10)), "float64")
    layer = Dropout(0.5, rng=xpnet.Generator(backend, seed=1))
    kept = _host(layer.forward(x)) != 0
    dx = _host(layer.backward(backend.send(np.ones((20, 10)), "float64")))
    np.testing.assert_array_equal(dx, np.where(kept, 2.0, 0.0))
    layer.forward(x, train_flg=False)
    np.testing.assert_array_equal(_host(layer.backward(x)), _host(x))  # inference: identity


def test_dropout_masks_are_reproducible_from_a_seed_and_fresh_without_one(backend):
    x = backend.send(np.ones((30, 30)), "float32")
    first = _host(Dropout(0.5, rng=xpnet.Generator(backend, seed=4)).forward(x))
    again = _host(Dropout(0.5, rng=xpnet.Generator(backend, seed=4)).forward(x))
    np.testing.assert_array_equal(first, again)
    layer = Dropout(0.5)  # no generator: one on the input's device, drawing new masks each call
    assert not np.array_equal(_host(layer.forward(x)), _host(layer.forward(x)))
    assert array_device_of(layer.mask) == backend.array_device


def test_dropout_fixed_mask_makes_the_gradient_checkable(backend):
    rng = np.random.default_rng(2)
    mask = backend.send(rng.random((4, 6)) >= 0.5)
    layer = Dropout(0.5, fixed_mask=mask)
    x = backend.send(rng.standard_normal((4, 6)), "float64")
    np.testing.assert_array_equal(_host(layer.forward(x)), _host(layer.forward(x)))
    check_layer(layer, x)
    # a fresh mask per call is not a function, but check_layer restarts the layer's random
    # streams before every evaluation (and puts its own generator back)
    drawing = Dropout(0.5, rng=xpnet.Generator(backend, seed=0))
    own = drawing.rng
    check_layer(drawing, x)
    assert drawing.rng is own


def test_dropout_rejects_bad_ratios_and_masks():
    for ratio in (-0.1, 1.0, "half"):
        with pytest.raises(xpnet.ConfigError, match="dropout_ratio"):
            Dropout(ratio)
    with pytest.raises(xpnet.ShapeError, match="fixed_mask"):
        Dropout(0.5, fixed_mask=np.ones((2, 2), dtype=bool)).forward(np.ones((3, 2)))


def _book_batchnorm_backward(x, gamma, dout, eps):
    """The book's step-by-step backward (ch. 6 source), for 2-D input."""
    mu = x.mean(axis=0)
    xc = x - mu
    std = np.sqrt(np.mean(xc**2, axis=0) + eps)
    xn = xc / std
    n = x.shape[0]
    dxn = gamma * dout
    dxc = dxn / std
    dstd = -np.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc += (2.0 / n) * xc * dvar
    dmu = np.sum(dxc, axis=0)
    return dxc - dmu / n, np.sum(xn * dout, axis=0), dout.sum(axis=0)


def test_batchnorm_training_normalises_each_feature_and_matches_the_books_backward(backend, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 5)) * 4 + 2
    gamma, beta, dout = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal((32, 5))
    layer = BatchNormalization(backend.send(gamma, dtype), backend.send(beta, dtype))
    out = _host(layer.forward(backend.send(x, dtype), train_flg=True))
    normalised = (out - beta) / gamma
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(axis=0), 1, rtol=1e-4)
    dx = layer.backward(backend.send(dout, dtype))
    assert array_device_of(dx) == backend.array_device and dx.dtype == backend.dtype(dtype)
    tolerance = 1e-10 if dtype == "float64" else 1e-4
    for ours, books in zip((dx, layer.dgamma, layer.dbeta),
                           _book_batchnorm_backward(x, gamma, dout, layer.eps)):
        np.testing.assert_allclose(_host(ours), books, rtol=tolerance, atol=tolerance)


def test_batchnorm_normalises_images_per_channel(backend):
    x = np.random.default_rng(4).standard_normal((6, 3, 4, 5)) * np.array([1.0, 5.0, 0.1])[:, None, None]
    layer = BatchNormalization(backend.send(np.ones(3), "float64"), backend.send(np.zeros(3), "float64"))
    out = _host(layer.forward(backend.send(x, "float64")))
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), var / (var + layer.eps), rtol=1e-12)
    assert tuple(layer.running_mean.shape) == (3,)
    np.testing.assert_allclose(_host(layer.running_mean), 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)


def test_batchnorm_running_statistics_follow_the_momentum_and_drive_inference(backend, dtype):
    rng = np.random.default_rng(5)
    layer = BatchNormalization(backend.send(np.full(4, 2.0), dtype), backend.send(np.ones(4), dtype),
                               momentum=0.8)
    batches = [rng.standard_normal((16, 4)) * 3 + 1 for _ in range(3)]
    mean, var = np.zeros(4), np.ones(4)  # the starting statistics
    for batch in batches:
        layer.forward(backend.send(batch, dtype), train_flg=True)
        mean = 0.8 * mean + 0.2 * batch.mean(axis=0)
        var = 0.8 * var + 0.2 * batch.var(axis=0)
    tolerance = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(_host(layer.running_mean), mean, rtol=tolerance)
    np.testing.assert_allclose(_host(layer.running_var), var, rtol=tolerance)
    for stat in (layer.running_mean, layer.running_var):
        assert array_device_of(stat) == backend.array_device and stat.dtype == backend.dtype(dtype)
    x = rng.standard_normal((3, 4))
    out = _host(layer.forward(backend.send(x, dtype), train_flg=False))
    np.testing.assert_allclose(out, 2.0 * (x - mean) / np.sqrt(var + layer.eps) + 1.0,
                               rtol=tolerance * 10, atol=tolerance * 10)
    np.testing.assert_allclose(_host(layer.running_mean), mean, rtol=tolerance)  # inference: unchanged


def test_batchnorm_statistics_keep_their_dtype_under_a_float64_check():
    layer = BatchNormalization(np.ones(3, dtype=np.float32), np.zeros(3, dtype=np.float32))
    layer.forward(np.ones((4, 3), dtype=np.float32))
    check_layer(layer, np.random.default_rng(6).standard_normal((4, 3)).astype(np.float32))
    layer.forward(np.random.default_rng(7).standard_normal((4, 3)))  # float64 input
    assert layer.running_mean.dtype == np.float32 and layer.running_var.dtype == np.float32


def test_batchnorm_rejects_wrong_shapes_and_settings():
    layer = BatchNormalization(np.ones(3), np.zeros(3))
    with pytest.raises(xpnet.ShapeError, match=r"\(N, D\) or \(N, C, H, W\)"):
        layer.forward(np.ones((2, 3, 4)))
    with pytest.raises(xpnet.ShapeError, match="gamma of shape"):
        layer.forward(np.ones((2, 4)))
    with pytest.raises(xpnet.ConfigError, match="momentum"):
        BatchNormalization(np.ones(3), np.zeros(3), momentum=1.5)
    with pytest.raises(xpnet.ConfigError, match="eps"):
        BatchNormalization(np.ones(3), np.zeros(3), eps=0)
