"""``cupy.linalg``: NumPy's, on the current GPU (xpnet uses none of it; array-api-compat imports it)."""

import numpy

from . import _module_function

__all__ = [name for name in numpy.linalg.__all__ if callable(getattr(numpy.linalg, name))]
globals().update({name: _module_function(name, getattr(numpy.linalg, name)) for name in __all__})
