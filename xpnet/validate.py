"""Argument checks, written once: every size, rate, fraction, name and dtype xpnet accepts.

Each check returns the value converted (``int``, ``float`` or the canonical name) or raises
:class:`~xpnet.errors.ConfigError` naming the argument, the rule and the value given. One rule
everywhere: integers are Python or NumPy integers (``numbers.Integral``), numbers are any real
(``numbers.Real``, NumPy scalars included), and ``bool`` is neither, though Python counts it
as an integer: ``stride=True`` is a mistake, not 1.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError

__all__ = ["check_size", "check_count", "check_positive", "check_nonnegative", "check_fraction",
           "check_choice", "check_dtype", "dtype_name", "check_has_values", "DTYPES"]

DTYPES = ("float32", "float64")


def _integer(name: str, value: Any, minimum: int, rule: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")
    return int(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _number(name: str, value: Any, above_zero: bool, rule: str) -> float:
    if not _is_number(value) or value < 0 or (above_zero and value == 0):
        raise ConfigError(f"{name} must be {rule}, got {value!r}")
    return float(value)


def check_size(name: str, value: Any) -> int:
    """``value`` as a positive ``int`` (a size, a count of steps, a stride)."""
    return _integer(name, value, 1, "a positive integer")


def check_count(name: str, value: Any) -> int:
    """``value`` as an ``int`` that is zero or positive (a padding)."""
    return _integer(name, value, 0, "a non-negative integer")


def check_positive(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` above zero (a learning rate, an epsilon)."""
    return _number(name, value, True, "a positive number")


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` that is zero or positive (a weight decay)."""
    return _number(name, value, False, "zero or a positive number")


def check_fraction(name: str, value: Any, *, zero: bool = True, one: bool = False) -> float:
    """``value`` as a ``float`` between 0 and 1; ``zero`` and ``one`` say whether each end is allowed."""
    low, high = ("<=" if zero else "<"), ("<=" if one else "<")
    if not _is_number(value) or value < 0 or value > 1 or (value == 0 and not zero) \
            or (value == 1 and not one):
        raise ConfigError(f"{name} must satisfy 0 {low} {name} {high} 1, got {value!r}")
    return float(value)


def check_choice(what: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else ``unknown <what> 'x'; choose ...``."""
    choices = list(choices)
    if value not in choices:
        listed = (f"{choices[0]} or {choices[1]}" if len(choices) == 2
                  else f"one of {', '.join(choices)}")
        raise ConfigError(f"unknown {what} {value!r}; choose {listed}")
    return value


def dtype_name(dtype: Any) -> str:
    """The name of any library's dtype (``"float32"``, ``"int64"``...), from a name, a class
    (``numpy.float32``), an ``np.dtype``, ``torch.float32`` or ``array_api_strict.float32``."""
    return getattr(dtype, "__name__", None) or str(dtype).rsplit(".", 1)[-1]


def check_dtype(dtype: Any) -> str:
    """The name of a supported parameter dtype, from a name or any library's dtype object."""
    name = dtype_name(dtype)
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose {' or '.join(DTYPES)}")
    return name


def check_has_values(device: Any, purpose: str, error: type[Exception] = ConfigError) -> None:
    """Raise ``error`` when ``device`` (an :class:`xpnet.Device`) holds no values, only shapes
    (``torch:meta``, which exists to find host syncs in tests): ``purpose`` cannot be done there."""
    if device.name == "torch:meta":
        raise error(f"torch:meta holds shapes but no values, so {purpose} cannot be done there; "
                    "use torch:cpu or torch:cuda")
