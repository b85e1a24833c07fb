"""xpnet: the layers of *Deep Learning from Scratch*, written once, run on any array backend.

>>> import xpnet
>>> net = xpnet.TwoLayerNet(784, 50, 10, device="cpu", seed=0)
"""

from .backend import Device, cuda_status, device, namespace_of, to_numpy
from .errors import (BackendMismatchError, ConfigError, DataError, DeviceError, GradientCheckError,
                     ShapeError, XPNetError)
from .functions import cross_entropy_error, log_softmax, sigmoid, softmax
from .gradcheck import check_layer, check_network, numerical_gradient
from .layers import Affine, AddLayer, MSELoss, MulLayer, ReLU, Relu, Sigmoid, SoftmaxWithLoss
from .models import TwoLayerNet
from .random import Generator

__version__ = "0.1.0"

__all__ = [
    "Device", "device", "namespace_of", "to_numpy", "cuda_status", "Generator",
    "XPNetError", "DeviceError", "BackendMismatchError", "ShapeError", "DataError",
    "GradientCheckError", "ConfigError",
    "sigmoid", "softmax", "log_softmax", "cross_entropy_error",
    "AddLayer", "MulLayer", "ReLU", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "MSELoss",
    "TwoLayerNet", "numerical_gradient", "check_layer", "check_network",
]
