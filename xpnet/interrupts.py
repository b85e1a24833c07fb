"""Ctrl-C in the ``xpnet`` command: one line on stderr and exit status 130, from the first instant.

Python turns Ctrl-C into a ``KeyboardInterrupt`` wherever the interpreter is. During the
imports that come before :func:`xpnet.cli.main` can catch it (NumPy's, among others, last
long enough to be hit) that would be a traceback. So when this process is the ``xpnet`` command (its
console script, or ``python -m xpnet``), importing the package installs, before any other
import, :func:`quiet_until_main`'s handler, which ends the process with the one line at once;
``main`` puts Python's own handler back once it can catch the interrupt itself. Imported as a
library, xpnet leaves signals alone. Under a launcher only rank 0 prints the line, and
:func:`end_job` ends every rank: one that merely exited would leave the others waiting in
``MPI_Init`` or a collective for ever.

This module imports nothing heavy: it runs before NumPy is loaded.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType
from typing import Any

__all__ = ["LAUNCHER_SIZE_VARIABLES", "started_as_command", "quiet_until_main", "restore",
           "is_rank_zero", "launched_processes", "end_job", "end_interrupted"]

# Set by launchers in each process they start: MPICH/Hydra and Intel MPI, Open MPI, MVAPICH;
# and the rank's number
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")

# How long a rank other than 0 leaves rank 0 to end an interrupted job: Python handles a
# signal between two bytecodes, so a BLAS call in progress in rank 0 delays it.
RANK_ZERO_GRACE_S = 0.3
ABORT_RELAY_S = 0.05

_postponed = False  # Ctrl-C came during the imports of a launched rank


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


def launched_processes() -> int:
    """The number of processes a launcher says it started with this one (1 without one)."""
    sizes = [os.environ.get(name, "") for name in LAUNCHER_SIZE_VARIABLES]
    return max([int(size) for size in sizes if size.isdigit()] or [1])


def _mpi_world() -> Any:
    """``MPI.COMM_WORLD`` when a launcher started several processes (initialising MPI if this
    rank had not: the others may wait for it in ``MPI_Init``); else None."""
    if launched_processes() <= 1:
        return None
    try:
        from mpi4py import MPI
    except Exception:  # noqa: BLE001 - no MPI to end the job with: exiting is all that is left
        return None
    return MPI.COMM_WORLD


def _abort(world: Any, code: int) -> None:
    # MPI_Abort ends the ranks wherever they wait, but MPICH adds a line of its own on
    # stderr: xpnet has said what happened, so that line goes to /dev/null
    sys.stdout.flush()
    sys.stderr.flush()
    # the launcher relays the ranks' output through pipes and stops relaying once the abort
    # reaches it: a moment for the line just written to get through (seen lost 1 in ~60 tries)
    time.sleep(ABORT_RELAY_S)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    world.Abort(code)


def end_job(code: int) -> None:
    """End every rank of this process's job with exit status ``code``, through MPI_Abort;
    return at once without a launcher (or without mpi4py)."""
    world = _mpi_world()
    if world is not None:
        _abort(world, code)


def end_interrupted(line: str) -> None:
    """Print ``line`` once for the whole job and end every rank with status 130; without a
    launcher, print it and return.

    Rank 0 speaks and ends the job. Another rank first waits a moment: rank 0 may be blocked
    in a collective, waiting for this rank, where Ctrl-C cannot reach Python; then this rank
    speaks and ends the job itself.
    """
    world = _mpi_world()
    if world is not None and not is_rank_zero():
        time.sleep(RANK_ZERO_GRACE_S)
    sys.stderr.write(line)
    sys.stderr.flush()
    if world is not None:
        _abort(world, 130)


def _interrupted_line() -> bytes:
    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1].isalpha() else ""
    return f"xpnet{' ' + command if command else ''}: interrupted\n".encode()


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    if launched_processes() > 1:
        # the other ranks must be ended through MPI, which may be half imported right now:
        # main() raises the KeyboardInterrupt as soon as it starts
        global _postponed
        _postponed = True
        return
    os.write(2, _interrupted_line())
    os._exit(130)  # no stack to unwind yet: nothing is open, nothing is half written


def quiet_until_main() -> None:
    """Make Ctrl-C end the ``xpnet`` command quietly until :func:`restore`; a no-op when xpnet
    is imported as a library."""
    if started_as_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_quietly)


def restore() -> None:
    """Python's own Ctrl-C handling (a ``KeyboardInterrupt``) again, if :func:`quiet_until_main`
    replaced it; raise the ``KeyboardInterrupt`` it postponed, if any."""
    if signal.getsignal(signal.SIGINT) is _exit_quietly:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if _postponed:
        raise KeyboardInterrupt
