"""Convolution, Pooling, im2col and col2im against direct loop references in plain NumPy.

The references below compute each output (and each gradient) by walking the windows one
at a time, the definition itself; the layers must agree on every backend and dtype, for
stride 1 and 2, padding 0 to 2, square and non-square windows, overlapping or not.
"""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import device as array_device_of

import xpnet
from xpnet.conv import Convolution, Pooling, col2im, im2col

# (filter_h, filter_w, stride, pad): overlapping (stride < filter) and disjoint windows
# stride 1, square windows, pad < window and filters <= channels take backward's correlation path
GEOMETRIES = [(3, 3, 1, 0), (3, 2, 2, 1), (2, 2, 2, 0), (1, 1, 1, 2), (2, 3, 1, 2), (3, 3, 3, 1),
              (3, 3, 1, 1), (3, 3, 1, 2), (5, 5, 1, 2)]
# pooling needs pad < window, so that no window holds only padding
# stride = window (tiling windows) has its own backward: (2, 2, 2, 0), (3, 3, 3, 1), (2, 2, 2, 1)
POOL_GEOMETRIES = [(3, 3, 1, 0), (3, 2, 2, 1), (2, 2, 2, 0), (3, 3, 1, 2), (3, 3, 3, 1),
                   (2, 2, 2, 1)]
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def _padded(x: np.ndarray, pad: int, value: float = 0.0) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=value)


def _windows(x: np.ndarray, fh: int, fw: int, stride: int, pad: int, value: float = 0.0):
    """Yield ``(i, j, window, (row slice, column slice))`` for every output position, by loops."""
    img = _padded(x, pad, value)
    out_h = (img.shape[2] - fh) // stride + 1
    out_w = (img.shape[3] - fw) // stride + 1
    for i in range(out_h):
        for j in range(out_w):
            rows, cols = slice(i * stride, i * stride + fh), slice(j * stride, j * stride + fw)
            yield i, j, img[:, :, rows, cols], (rows, cols)


def conv_reference(x, W, b, stride, pad, dout):
    """Output and gradients of a convolution, one window at a time."""
    fn, _, fh, fw = W.shape
    out_h = (x.shape[2] + 2 * pad - fh) // stride + 1
    out_w = (x.shape[3] + 2 * pad - fw) // stride + 1
    out = np.zeros((x.shape[0], fn, out_h, out_w))
    dimg = np.zeros_like(_padded(x, pad))
    dW = np.zeros_like(W)
    for i, j, window, (rows, cols) in _windows(x, fh, fw, stride, pad):
        for f in range(fn):
            out[:, f, i, j] = np.sum(window * W[f], axis=(1, 2, 3)) + b[f]
            g = dout[:, f, i, j][:, None, None, None]
            dW[f] += np.sum(window * g, axis=0)
            dimg[:, :, rows, cols] += W[f] * g
    dx = dimg[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return out, dx, dW, dout.sum(axis=(0, 2, 3))


def pool_reference(x, ph, pw, stride, pad, dout):
    """Max pooling with -inf padding; each window's gradient goes to its first maximum."""
    out_h = (x.shape[2] + 2 * pad - ph) // stride + 1
    out_w = (x.shape[3] + 2 * pad - pw) // stride + 1
    out = np.zeros((x.shape[0], x.shape[1], out_h, out_w))
    dimg = np.zeros_like(_padded(x, pad))
    for i, j, window, (rows, cols) in _windows(x, ph, pw, stride, pad, -np.inf):
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                flat = window[n, c].reshape(-1)
                k = int(np.argmax(flat))  # NumPy's argmax: the first maximum
                out[n, c, i, j] = flat[k]
                dimg[n, c, rows.start + k // pw, cols.start + k % pw] += dout[n, c, i, j]
    return out, dimg[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]


def _assert_close(actual, expected, dtype, like):
    assert array_device_of(actual) == array_device_of(like)
    assert actual.dtype == like.dtype
    np.testing.assert_allclose(xpnet.to_numpy(actual), expected, rtol=TOLERANCE[dtype],
                               atol=TOLERANCE[dtype] * np.max(np.abs(expected)))


@pytest.mark.parametrize("filters", [4, 2])
@pytest.mark.parametrize("fh, fw, stride, pad", GEOMETRIES)
def test_convolution_matches_the_loop_reference(backend, dtype, fh, fw, stride, pad, filters):
    rng = np.random.default_rng(1)
    x, W = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((filters, 3, fh, fw))
    b = rng.standard_normal(filters)
    layer = Convolution(backend.send(W, dtype), backend.send(b, dtype), stride=stride, pad=pad)
    xd = backend.send(x, dtype)
    out = layer.forward(xd)
    dout = rng.standard_normal(tuple(out.shape))
    dx = layer.backward(backend.send(dout, dtype))
    ref_out, ref_dx, ref_dW, ref_db = conv_reference(x, W, b, stride, pad, dout)
    _assert_close(out, ref_out, dtype, xd)
    _assert_close(dx, ref_dx, dtype, xd)
    _assert_close(layer.dW, ref_dW, dtype, xd)
    _assert_close(layer.db, ref_db, dtype, xd)


@pytest.mark.parametrize("ph, pw, stride, pad", POOL_GEOMETRIES)
def test_pooling_matches_the_loop_reference(backend, dtype, ph, pw, stride, pad):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6))
    layer = Pooling(ph, pw, stride=stride, pad=pad)
    xd = backend.send(x, dtype)
    out = layer.forward(xd)
    dout = rng.standard_normal(tuple(out.shape))
    dx = layer.backward(backend.send(dout, dtype))
    ref_out, ref_dx = pool_reference(x, ph, pw, stride, pad, dout)
    _assert_close(out, ref_out, dtype, xd)
    _assert_close(dx, ref_dx, dtype, xd)


def test_pooling_routes_a_tie_to_the_first_maximum_only(backend):
    # every 2x2 window holds four equal values: the gradient must not be copied four times
    x = np.repeat(np.repeat(np.arange(4.0).reshape(1, 1, 2, 2), 2, axis=2), 2, axis=3)
    layer = Pooling(2, 2, stride=2)
    out = layer.forward(backend.send(x, "float64"))
    dx = xpnet.to_numpy(layer.backward(backend.send(np.full((1, 1, 2, 2), 5.0), "float64")))
    np.testing.assert_array_equal(xpnet.to_numpy(out), np.arange(4.0).reshape(1, 1, 2, 2))
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 5.0  # the top-left element of each window
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_pooling_pads_with_minus_infinity_not_zero(backend):
    # the book pads with 0, which would make every border window of negative inputs output 0
    x = -1.0 - np.arange(16.0).reshape(1, 1, 4, 4)
    out = Pooling(2, 2, stride=2, pad=1).forward(backend.send(x, "float64"))
    ref, _ = pool_reference(x, 2, 2, 2, 1, np.zeros((1, 1, 3, 3)))
    np.testing.assert_array_equal(xpnet.to_numpy(out), ref)
    assert np.all(xpnet.to_numpy(out) < 0)


@pytest.mark.parametrize("fh, fw, stride, pad", GEOMETRIES)
def test_im2col_rows_are_the_windows(backend, fh, fw, stride, pad):
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 6))
    col = xpnet.to_numpy(im2col(backend.send(x, "float64"), fh, fw, stride, pad))
    windows = list(_windows(x, fh, fw, stride, pad))
    out_h, out_w = windows[-1][0] + 1, windows[-1][1] + 1
    assert col.shape == (2 * out_h * out_w, 3 * fh * fw)
    for i, j, window, _ in windows:
        for n in range(2):
            np.testing.assert_array_equal(col[(n * out_h + i) * out_w + j], window[n].reshape(-1))


@pytest.mark.parametrize("fh, fw, stride, pad", GEOMETRIES)
def test_col2im_of_im2col_counts_each_pixels_windows(backend, dtype, fh, fw, stride, pad):
    x = np.random.default_rng(4).standard_normal((2, 3, 7, 6))
    xd = backend.send(x, dtype)
    back = col2im(im2col(xd, fh, fw, stride, pad), tuple(x.shape), fh, fw, stride, pad)
    count = np.zeros_like(_padded(x, pad))
    for _, _, _, (rows, cols) in _windows(x, fh, fw, stride, pad):
        count[:, :, rows, cols] += 1
    count = count[:, :, pad:pad + 7, pad:pad + 6]
    if stride < max(fh, fw):  # overlapping windows: some pixel must be counted more than once
        assert count.max() > 1
    _assert_close(back, x * count, dtype, xd)


@pytest.mark.parametrize("filters", [2, 4])  # backward by correlation, and by summed columns
def test_convolution_reuses_last_steps_buffers_and_keeps_no_stale_values(backend, filters):
    """Each step writes its windows into the previous step's arrays where the backend allows;
    every step (other batch sizes in between) must still match the loop reference."""
    rng = np.random.default_rng(6)
    W, b = rng.standard_normal((filters, 3, 3, 3)), rng.standard_normal(filters)
    layer = Convolution(backend.send(W, "float64"), backend.send(b, "float64"), pad=1)
    previous_cols, previous_batch = None, None
    for batch in (2, 2, 3, 2):
        x = rng.standard_normal((batch, 3, 5, 4))
        xd = backend.send(x, "float64")
        out = layer.forward(xd)
        cols = layer.cols
        if backend.xp_library is np and batch == previous_batch:
            assert np.shares_memory(cols, previous_cols)  # the same buffer, refilled
        dout = rng.standard_normal(tuple(out.shape))
        dx = layer.backward(backend.send(dout, "float64"))
        ref_out, ref_dx, ref_dW, _ = conv_reference(x, W, b, 1, 1, dout)
        _assert_close(out, ref_out, "float64", xd)
        _assert_close(dx, ref_dx, "float64", xd)
        _assert_close(layer.dW, ref_dW, "float64", xd)
        previous_cols, previous_batch = cols, batch


def test_first_layer_convolution_skips_the_input_gradient():
    rng = np.random.default_rng(5)
    layer = Convolution(rng.standard_normal((2, 1, 3, 3)), np.zeros(2), input_grad=False)
    out = layer.forward(rng.standard_normal((2, 1, 5, 5)))
    assert layer.backward(np.ones_like(out)) is None
    assert layer.dW.shape == (2, 1, 3, 3) and layer.db.shape == (2,)
    np.testing.assert_allclose(layer.db, [18.0, 18.0])  # 2 images x 3x3 outputs per filter


def test_convolution_errors_name_the_problem_and_the_fix():
    W, b = np.zeros((2, 3, 3, 3)), np.zeros(2)
    with pytest.raises(xpnet.ShapeError, match=r"\(N, 3, H, W\)"):
        Convolution(W, b).forward(np.zeros((1, 1, 5, 5)))
    with pytest.raises(xpnet.ShapeError, match="images"):
        Convolution(W, b).forward(np.zeros((1, 75)))
    with pytest.raises(xpnet.ShapeError, match="does not fit"):
        Convolution(W, b).forward(np.zeros((1, 3, 2, 2)))
    with pytest.raises(xpnet.ShapeError, match="dtype"):
        Convolution(W, b).forward(np.zeros((1, 3, 5, 5), dtype=np.float32))
    with pytest.raises(xpnet.ShapeError, match=r"\(FN, C, FH, FW\)"):
        Convolution(np.zeros((2, 9)), b)
    with pytest.raises(xpnet.ConfigError, match="stride"):
        Convolution(W, b, stride=0)
    with pytest.raises(xpnet.ConfigError, match="pad"):
        Convolution(W, b, pad=-1)
    with pytest.raises(xpnet.ConfigError, match="pool_w"):
        Pooling(2, 0)
    with pytest.raises(xpnet.ConfigError, match="smaller than the 2x3 window"):
        Pooling(2, 3, pad=2)
    with pytest.raises(xpnet.ShapeError, match="col2im got columns"):
        col2im(np.zeros((3, 4)), (1, 1, 4, 4), 2, 2)
