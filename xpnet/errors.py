"""Exceptions xpnet raises for bad input: each message names the problem and the fix."""


class XPNetError(Exception):
    """Base class of every error xpnet raises on purpose."""


class DeviceError(XPNetError, ValueError):
    """An unknown device spec, or a device that exists in name but cannot be used here."""


class BackendMismatchError(XPNetError, TypeError):
    """Arrays of two libraries or two devices met in one operation."""


class ShapeError(XPNetError, ValueError):
    """An array whose shape or dtype does not fit the layer or network it was given to."""


class DataError(XPNetError, ValueError):
    """A missing, truncated or corrupt data file."""


class GradientCheckError(XPNetError, AssertionError):
    """Backward disagrees with the numerical gradient, or broke one of the layer rules."""


class ConfigError(XPNetError, ValueError):
    """An argument out of range: a non-positive size or rate, an unknown name."""


class DistributedError(XPNetError, RuntimeError):
    """Ranks disagree on what they communicate, or MPI cannot be used as asked."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its class's name when it has none): what a one-line
    report of a foreign exception shows."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
