"""xpnet.validate: one rule for every argument check, and the layers and networks that use it."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.validate import (check_choice, check_count, check_dtype, check_fraction,
                            check_nonnegative, check_positive, check_size)


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(2), np.uint8(5)])
def test_sizes_accept_python_and_numpy_integers(value):
    result = check_size("n", value)
    assert result == int(value) and type(result) is int


@pytest.mark.parametrize("value", [0, -1, True, False, 1.0, np.float64(2.0), "3", None])
def test_sizes_refuse_the_rest_naming_the_argument(value):
    with pytest.raises(xpnet.ConfigError, match=r"^n must be a positive integer, got "):
        check_size("n", value)


def test_count_allows_zero_but_not_negatives_or_bools():
    assert check_count("pad", 0) == 0 and check_count("pad", np.int16(2)) == 2
    for bad in (-1, True, 0.5):
        with pytest.raises(xpnet.ConfigError, match="pad must be a non-negative integer"):
            check_count("pad", bad)


@pytest.mark.parametrize("value", [0.1, 3, np.float32(0.5), np.int64(2)])
def test_positive_numbers(value):
    result = check_positive("lr", value)
    assert result == pytest.approx(float(value)) and type(result) is float


@pytest.mark.parametrize("value", [0, -0.1, float("nan"), float("inf"), True, "0.1", None])
def test_positive_refuses_zero_non_finite_bools_and_strings(value):
    with pytest.raises(xpnet.ConfigError, match="lr must be a positive number"):
        check_positive("lr", value)


def test_nonnegative_allows_zero():
    assert check_nonnegative("decay", 0) == 0.0
    for bad in (-1e-9, float("nan"), False):
        with pytest.raises(xpnet.ConfigError, match="decay must be zero or a positive number"):
            check_nonnegative("decay", bad)


@pytest.mark.parametrize("zero, one, accepted, refused", [
    (True, False, [0, 0.5, np.float64(0.99)], [1, -0.1, 1.5, float("nan"), True]),
    (False, False, [0.5], [0, 1]),
    (True, True, [0, 1, 0.3], [1.01, -0.01]),
])
def test_fractions_and_their_ends(zero, one, accepted, refused):
    for value in accepted:
        assert check_fraction("r", value, zero=zero, one=one) == float(value)
    for value in refused:
        with pytest.raises(xpnet.ConfigError, match=r"r must satisfy 0 <=? r <=? 1"):
            check_fraction("r", value, zero=zero, one=one)


def test_choices_list_the_valid_names():
    assert check_choice("optimizer", "sgd", ["sgd", "adam"]) == "sgd"
    with pytest.raises(xpnet.ConfigError, match="unknown optimizer 'x'; choose sgd or adam$"):
        check_choice("optimizer", "x", ["sgd", "adam"])
    with pytest.raises(xpnet.ConfigError, match="choose one of a, b, c$"):
        check_choice("thing", "x", ["a", "b", "c"])


@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float64"), "float64"])
def test_dtypes_by_name_or_object(dtype):
    assert check_dtype(dtype) in ("float32", "float64")


def test_unsupported_dtype():
    with pytest.raises(xpnet.ConfigError, match="unknown dtype 'int32'; choose float32 or float64"):
        check_dtype("int32")


def test_layers_and_networks_share_the_rule():
    """NumPy integers are accepted everywhere, and the validated value is what the layer keeps."""
    W, b = np.zeros((2, 1, 3, 3)), np.zeros(2)
    conv = xpnet.Convolution(W, b, stride=np.int64(2), pad=np.int32(1))
    assert (conv.stride, conv.pad) == (2, 1) and type(conv.stride) is int
    pool = xpnet.Pooling(np.int64(2), 2, stride=np.int64(2))
    assert type(pool.pool_h) is int and type(pool.stride) is int
    net = xpnet.SimpleConvNet((1, 8, 8), conv_param={"filter_num": np.int64(2), "filter_size": 3,
                                                      "stride": np.int64(1), "pad": np.int64(1)},
                              hidden_size=4, output_size=2)
    assert net.layers["Conv1"].stride == 1 and type(net.config["conv_param"]["stride"]) is int
    with pytest.raises(xpnet.ConfigError, match="stride must be a positive integer, got True"):
        xpnet.Convolution(W, b, stride=True)
    with pytest.raises(xpnet.ConfigError, match="hidden_size must be a positive integer"):
        xpnet.TwoLayerNet(4, np.float64(3), 2)
