"""Behaviour of the chapter-5 layers beyond parity: the book's rules and its defects, fixed."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import device as array_device_of

import xpnet
from xpnet.functions import cross_entropy_error, log_softmax, sigmoid, softmax


def test_relu_blocks_the_gradient_at_and_below_zero(backend):
    x = backend.send(np.array([[-1.0, 0.0, 2.0]]), "float64")
    relu = xpnet.ReLU()
    np.testing.assert_array_equal(xpnet.to_numpy(relu.forward(x)), [[0.0, 0.0, 2.0]])
    dout = backend.send(np.array([[5.0, 6.0, 7.0]]), "float64")
    np.testing.assert_array_equal(xpnet.to_numpy(relu.backward(dout)), [[0.0, 0.0, 7.0]])
    # the book's backward zeroed the caller's dout in place
    np.testing.assert_array_equal(xpnet.to_numpy(dout), [[5.0, 6.0, 7.0]])
    assert xpnet.Relu is xpnet.ReLU


def test_softmax_with_loss_is_stable_for_huge_scores(backend, dtype):
    x = backend.send(np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 0.0]]), dtype)
    t = backend.send(np.array([0, 1]), "int64")
    layer = xpnet.SoftmaxWithLoss()
    loss = layer.forward(x, t)
    assert loss.ndim == 0 and array_device_of(loss) == backend.array_device
    assert loss.dtype == backend.dtype(dtype)
    assert float(xpnet.to_numpy(loss)) == 0.0
    wrong = layer.forward(x, backend.send(np.array([2, 0]), "int64"))
    np.testing.assert_allclose(float(xpnet.to_numpy(wrong)), 1400.0, rtol=1e-6)
    dx = xpnet.to_numpy(layer.backward())
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(dx, [[0.5, 0, -0.5], [-0.5, 0.5, 0]], atol=1e-6)


def test_integer_and_one_hot_labels_agree(backend):
    rng = np.random.default_rng(0)
    x = backend.send(rng.standard_normal((5, 4)), "float64")
    labels = np.array([3, 0, 1, 1, 2])
    a, b = xpnet.SoftmaxWithLoss(), xpnet.SoftmaxWithLoss()
    loss_int = a.forward(x, backend.send(labels, "int64"))
    loss_hot = b.forward(x, backend.send(np.eye(4)[labels], "float64"))
    np.testing.assert_allclose(xpnet.to_numpy(loss_int), xpnet.to_numpy(loss_hot), rtol=1e-14)
    np.testing.assert_allclose(xpnet.to_numpy(a.backward()), xpnet.to_numpy(b.backward()), rtol=1e-14)


def test_softmax_with_loss_rejects_mismatched_labels():
    with pytest.raises(xpnet.ShapeError, match=r"scores of shape \(4, 3\) and labels of shape \(5,\)"):
        xpnet.SoftmaxWithLoss().forward(np.zeros((4, 3)), np.zeros(5, dtype=np.int64))


def test_functions_match_their_definitions():
    x = np.array([[1.0, 2.0, 3.0], [-50.0, 0.0, 50.0]])
    expected = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(x), expected, rtol=1e-12)
    np.testing.assert_allclose(log_softmax(x), np.log(expected), rtol=1e-12)
    z = np.array([-800.0, -3.0, 0.0, 4.0, 800.0])
    with np.errstate(over="raise"):
        s = sigmoid(z)
    np.testing.assert_allclose(s, [0.0, 1 / (1 + np.exp(3.0)), 0.5, 1 / (1 + np.exp(-4.0)), 1.0],
                               rtol=1e-12, atol=1e-300)


def test_cross_entropy_error_is_unbiased_and_finite():
    y = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    t = np.array([0, 1])
    np.testing.assert_allclose(cross_entropy_error(y, t), np.log(2) / 2, rtol=1e-15)
    assert np.isfinite(cross_entropy_error(y, np.array([2, 2])))
    # one sample as a 1-D vector, one-hot or integer label, as in the book
    np.testing.assert_allclose(cross_entropy_error(np.array([0.25, 0.75]), np.array([0.0, 1.0])),
                               -np.log(0.75), rtol=1e-15)
    np.testing.assert_allclose(cross_entropy_error(np.array([0.25, 0.75]), np.array(0)),
                               -np.log(0.25), rtol=1e-15)


def test_mse_backward_is_the_gradient_of_its_forward():
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    layer = xpnet.MSELoss()
    np.testing.assert_allclose(layer.forward(pred, target), np.mean((pred - target) ** 2))
    np.testing.assert_allclose(layer.backward(), 2 * (pred - target) / pred.size, rtol=1e-15)
    xpnet.check_layer(xpnet.MSELoss(), pred, target)


def test_seed_001_mse_backward_fails_the_gradient_check():
    class SeedMSELoss(xpnet.MSELoss):
        def backward(self, dout=1):
            return dout * self.diff  # seed 001: the 2 / size factor is missing

    rng = np.random.default_rng(1)
    with pytest.raises(xpnet.GradientCheckError, match="SeedMSELoss d\\(input 0\\)"):
        xpnet.check_layer(SeedMSELoss(), rng.standard_normal((3, 4)), rng.standard_normal((3, 4)))


def test_mse_rejects_mismatched_shapes():
    with pytest.raises(xpnet.ShapeError, match=r"\(3, 4\).*\(4, 3\)"):
        xpnet.MSELoss().forward(np.zeros((3, 4)), np.zeros((4, 3)))


def test_affine_names_both_shapes_and_restores_nd_input():
    W, b = np.ones((6, 2)), np.zeros(2)
    with pytest.raises(xpnet.ShapeError, match=r"input of shape \(4, 5\) but W has shape \(6, 2\)"):
        xpnet.Affine(W, b).forward(np.ones((4, 5)))
    layer = xpnet.Affine(W, b)
    layer.forward(np.ones((4, 2, 3)))
    assert layer.backward(np.ones((4, 2))).shape == (4, 2, 3)


def test_affine_refuses_a_dtype_mismatch():
    with pytest.raises(xpnet.ShapeError, match="dtype float64 but W is float32"):
        xpnet.Affine(np.ones((3, 2), np.float32), np.zeros(2, np.float32)).forward(np.ones((1, 3)))


def test_affine_without_input_grad_still_gives_parameter_grads():
    rng = np.random.default_rng(2)
    x, W, b, dout = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2), rng.standard_normal((4, 2))
    layer = xpnet.Affine(W, b, input_grad=False)
    layer.forward(x)
    assert layer.backward(dout) is None
    np.testing.assert_allclose(layer.dW, x.T @ dout)
    np.testing.assert_allclose(layer.db, dout.sum(axis=0))


def test_apple_example_with_python_numbers():
    apple, apple_num, tax = 100, 2, 1.1
    mul_apple, mul_tax = xpnet.MulLayer(), xpnet.MulLayer()
    price = mul_tax.forward(mul_apple.forward(apple, apple_num), tax)
    assert price == pytest.approx(220.0)
    dapple_price, dtax = mul_tax.backward(1)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    assert (dapple, dapple_num, dtax) == (pytest.approx(2.2), pytest.approx(110.0), 200)
    assert xpnet.AddLayer().backward(3.0) == (3.0, 3.0)
