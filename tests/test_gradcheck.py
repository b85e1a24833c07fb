"""The checkers catch broken backwards: wrong maths, mutated arguments, arrays in the wrong place."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.layers import SoftmaxWithLoss
from xpnet.device_check import CASES, PARITY_RTOL, parity_errors

CASE = {case.name: case for case in CASES}


def _without_batch_mean(self, dout=1):
    return (self.y - self._t_one_hot) * dout  # the classic slip: "/ batch_size" dropped


@pytest.mark.parametrize("case_name", ["SoftmaxWithLoss (labels)", "TwoLayerNet"])
def test_dropping_the_batch_mean_fails_gradient_check_and_parity(monkeypatch, case_name):
    case = CASE[case_name]
    reference = case.run(xpnet.device("cpu"), "float64")
    monkeypatch.setattr(SoftmaxWithLoss, "backward", _without_batch_mean)
    with pytest.raises(xpnet.GradientCheckError, match=r"max abs error .* max rel error .* tolerance rtol="):
        case.gradcheck(xpnet.device("torch:cpu"), "float32")
    errors = parity_errors(reference, case.run(xpnet.device("torch:cpu"), "float32"))
    assert max(rel for _, rel in errors.values()) > 100 * PARITY_RTOL["float32"]


def test_the_failure_names_the_parameter(monkeypatch):
    original = xpnet.Affine.backward

    def wrong_db(self, dout):
        dx = original(self, dout)
        if not self.input_grad:  # only the first layer, whose params are W1 and b1
            self.db = self.db * 1.01
        return dx

    monkeypatch.setattr(xpnet.Affine, "backward", wrong_db)
    with pytest.raises(xpnet.GradientCheckError, match="TwoLayerNet b1"):
        CASE["TwoLayerNet"].gradcheck(xpnet.device("cpu"), "float64")


def test_a_backward_that_writes_into_dout_is_caught():
    class BookReLU(xpnet.ReLU):
        def backward(self, dout):
            dout[self.mask] = 0  # the book's version
            return dout

    x = np.array([[-1.0, 2.0, -3.0]])
    with pytest.raises(xpnet.GradientCheckError, match="modified its dout"):
        xpnet.check_layer(BookReLU(), x)


def test_a_gradient_on_another_device_is_caught():
    device2 = xpnet.device("array_api_strict:device2")

    class Leaky(xpnet.Sigmoid):
        def backward(self, dout):
            return device2.send(super().backward(dout))

    x = xpnet.device("array_api_strict:device1").send(np.array([[0.5, -0.5]]))
    with pytest.raises(xpnet.GradientCheckError, match="device2"):
        xpnet.check_layer(Leaky(), x)


def test_a_gradient_in_another_dtype_is_caught():
    class Upcast(xpnet.Sigmoid):
        def backward(self, dout):
            return super().backward(dout).astype(np.float64)

    with pytest.raises(xpnet.GradientCheckError, match="float64"):
        xpnet.check_layer(Upcast(), np.array([[0.5, -0.5]], dtype=np.float32))


def test_numerical_gradient_passes_the_perturbed_array_and_leaves_x_alone(backend):
    x = backend.send(np.array([[1.0, -2.0], [3.0, 0.5]]), "float64")
    before = xpnet.to_numpy(x).copy()
    xp = backend.xp
    grad = xpnet.numerical_gradient(lambda v: xp.sum(v * v * v), x)
    np.testing.assert_allclose(xpnet.to_numpy(grad), 3 * before**2, rtol=1e-7)
    np.testing.assert_array_equal(xpnet.to_numpy(x), before)


def test_relu_kink_is_stepped_around():
    # an input exactly at the kink would give a numerical slope of 0.5 there
    report = xpnet.check_layer(xpnet.ReLU(), np.array([[0.0, 1e-9, -1e-9, 2.0]]))
    assert report[0].max_abs_error < 1e-9
