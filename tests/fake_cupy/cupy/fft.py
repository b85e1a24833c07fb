"""``cupy.fft``: NumPy's, on the current GPU (xpnet uses none of it; array-api-compat imports it)."""

import numpy

from . import _module_function

__all__ = [name for name in numpy.fft.__all__ if callable(getattr(numpy.fft, name))]
globals().update({name: _module_function(name, getattr(numpy.fft, name)) for name in __all__})
