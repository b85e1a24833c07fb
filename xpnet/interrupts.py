"""Ctrl-C in the ``xpnet`` command: one line on stderr and exit status 130, from the first instant.

Python turns Ctrl-C into a ``KeyboardInterrupt`` wherever the interpreter is. During the
imports that come before :func:`xpnet.cli.main` can catch it (NumPy alone takes a tenth of a
second) that would be a traceback. So when this process is the ``xpnet`` command (its
console script, or ``python -m xpnet``), importing the package installs, before any other
import, :func:`quiet_until_main`'s handler, which ends the process with the one line at once;
``main`` puts Python's own handler back once it can catch the interrupt itself. Imported as a
library, xpnet leaves signals alone. Under a launcher only rank 0 prints the line.

This module imports nothing heavy: it runs before NumPy is loaded.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

__all__ = ["started_as_command", "quiet_until_main", "restore", "is_rank_zero"]

# a rank's number, as launchers tell it: MPICH/Hydra and Intel MPI, PMIx, Open MPI, MVAPICH
_RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def started_as_command() -> bool:
    """Whether this process is the ``xpnet`` command rather than a program importing xpnet."""
    argv = getattr(sys, "orig_argv", None) or sys.argv
    for option, value in zip(argv, argv[1:]):
        if option == "-m":  # python -m xpnet: the package is imported before __main__ runs
            return value == "xpnet"
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return name in ("xpnet", "xpnet.exe", "xpnet-script.py")


def is_rank_zero() -> bool:
    """True unless a launcher says this process is another rank than 0."""
    return all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)


def _interrupted_line() -> bytes:
    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1].isalpha() else ""
    return f"xpnet{' ' + command if command else ''}: interrupted\n".encode()


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    if is_rank_zero():
        os.write(2, _interrupted_line())
    os._exit(130)  # no stack to unwind yet: nothing is open, nothing is half written


def quiet_until_main() -> None:
    """Make Ctrl-C end the ``xpnet`` command quietly until :func:`restore`; a no-op when xpnet
    is imported as a library."""
    if started_as_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_quietly)


def restore() -> None:
    """Python's own Ctrl-C handling (a ``KeyboardInterrupt``) again, if :func:`quiet_until_main`
    replaced it."""
    if signal.getsignal(signal.SIGINT) is _exit_quietly:
        signal.signal(signal.SIGINT, signal.default_int_handler)
