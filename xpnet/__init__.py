"""xpnet: the layers of *Deep Learning from Scratch*, written once, run on any array backend.

>>> import xpnet
>>> net = xpnet.TwoLayerNet(784, 50, 10, device="cpu", seed=0)

The modules come in tiers; a module imports only from its own tier and the tiers before it
(tests/test_tiers.py reads this list and checks every import):

1. core: errors, interrupts, cuda, validate, backend, rng, functions, init, download, datasets,
   imageio
2. layers and networks: layers, conv, regularization, gradcheck, models, registry
3. training: optim, packing, transports, distributed, compiled, training, checkpoint, export,
   plotting
4. commands: device_check, outputs, threads, commands, commands.common, commands.check,
   commands.train, commands.evaluate, commands.predict, commands.export, cli, __main__
"""

# first: Ctrl-C during the imports below ends the xpnet command in one line, not a traceback
from .interrupts import quiet_until_main as _quiet_until_main

_quiet_until_main()

from .backend import Device, cuda_status, device, device_of, namespace_of, to_numpy
from .errors import (BackendMismatchError, ConfigError, DataError, DeviceError, GradientCheckError,
                     ShapeError, XPNetError)
from .functions import cross_entropy_error, log_softmax, sigmoid, softmax
from .gradcheck import check_layer, check_network, numerical_gradient
from .layers import (Affine, AddLayer, Layer, MSELoss, MulLayer, ReLU, Relu, Sigmoid, SoftmaxWithLoss,
                     register_layer)
from .conv import Convolution, Pooling, col2im, im2col
from .models import (DeepConvNet, LayerNet, MultiLayerNet, MultiLayerNetExtend, Sequential,
                     SimpleConvNet, TwoLayerNet)
from .registry import build_model, from_config
from .rng import Generator
from .optim import SGD, AdaGrad, Adam, Momentum, Nesterov, OPTIMIZERS, RMSprop, make_optimizer
from .training import EpochRecord, Trainer, TrainingError
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .regularization import BatchNormalization, Dropout
from .export import export_onnx

__version__ = "0.1.0"

__all__ = [
    "Device", "device", "device_of", "namespace_of", "to_numpy", "cuda_status", "Generator",
    "XPNetError", "DeviceError", "BackendMismatchError", "ShapeError", "DataError",
    "GradientCheckError", "ConfigError",
    "sigmoid", "softmax", "log_softmax", "cross_entropy_error",
    "Layer", "register_layer", "Sequential", "AddLayer", "MulLayer", "ReLU", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "MSELoss",
    "TwoLayerNet", "numerical_gradient", "check_layer", "check_network",
    "Convolution", "Pooling", "im2col", "col2im", "Dropout", "BatchNormalization",
    "LayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet", "DeepConvNet", "build_model", "from_config",
    "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "OPTIMIZERS", "make_optimizer",
    "Trainer", "EpochRecord", "TrainingError", "save_checkpoint", "load_checkpoint", "CheckpointError",
    "export_onnx",
]
