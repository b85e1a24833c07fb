"""The ``xpnet`` command: ``xpnet check``, ``xpnet train``, ``xpnet evaluate``, ``xpnet predict`` and
``xpnet export``."""

from __future__ import annotations

import argparse
import os
import sys

from . import distributed
from .commands import check, evaluate, export, predict, train
from .errors import XPNetError, first_line
from .interrupts import end_interrupted, end_job, is_rank_zero
from .interrupts import restore as _restore_sigint

__all__ = ["main", "build_parser"]

# the subcommands in the order --help lists them; each module adds its own (xpnet.commands)
SUBCOMMANDS = (check, train, evaluate, predict, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpnet", description=__doc__.replace("``", ""))
    subcommands = parser.add_subparsers(dest="command", required=True)
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _restore_sigint()  # from here Ctrl-C is a KeyboardInterrupt, caught below
        return args.run(args)
    except XPNetError as exc:
        return _fail(args.command, str(exc), shared=isinstance(exc, distributed.SharedError))
    except MemoryError as exc:
        return _fail(args.command, _out_of_memory(args, exc))
    except RuntimeError as exc:  # a device's allocator: torch, JAX (CuPy's is a MemoryError)
        if not _is_out_of_memory(exc):
            raise
        return _fail(args.command, _out_of_memory(args, exc))
    except BrokenPipeError:  # the reader went away (xpnet check | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes at exit
        return 1
    except KeyboardInterrupt:
        # the checkpoint of the last finished epoch (train --save) is intact: resume from it
        end_interrupted(f"xpnet {args.command}: interrupted\n")
        return 130


def _fail(command: str, message: str, shared: bool = False) -> int:
    """One line on stderr and exit status 2; an error every rank shares is rank 0's to say."""
    if shared and not is_rank_zero():
        return 2
    sys.stderr.write(f"xpnet {command}: error: {message}\n")
    if not shared:  # this rank alone failed: the others would wait for it for ever
        end_job(2)
    return 2


def _is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(sign in text for sign in ("OutOfMemory", "out of memory", "RESOURCE_EXHAUSTED",
                                         "can't allocate memory"))


def _out_of_memory(args: argparse.Namespace, exc: BaseException) -> str:
    """The one line for ``exc``, with the fix the subcommand names (``out_of_memory_fix``)."""
    fix = getattr(args, "out_of_memory_fix", "use a device with more memory")
    return f"out of memory ({first_line(exc)}); {fix}"


if __name__ == "__main__":
    sys.exit(main())
