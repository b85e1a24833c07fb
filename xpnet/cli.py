"""The ``xpnet`` command: ``xpnet check`` (and, as they land, ``train`` and ``evaluate``)."""

from __future__ import annotations

import argparse
import sys

from .errors import XPNetError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="check every layer's gradients and its agreement with NumPy float64 on a device")
    check.add_argument("--device", default="cpu", help="device spec, e.g. cpu, cuda, torch:cpu (default cpu)")
    check.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    check.set_defaults(run=run_check)
    return parser


def run_check(args: argparse.Namespace) -> int:
    from .backend import device
    from .selfcheck import format_table, run_checks

    dev = device(args.device)
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)
    print(f"xpnet check on {dev.name} ({dev.backend}), against NumPy float64")
    rows = run_checks(dev, dtypes)
    print(format_table(rows))
    failed = sum(not row.passed for row in rows)
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except XPNetError as exc:
        print(f"xpnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
