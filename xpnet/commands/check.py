"""``xpnet check``: every layer's gradients and its agreement with NumPy float64 on a device,
as a table printed row by row (the checks: :mod:`xpnet.device_check`)."""

from __future__ import annotations

import argparse

from ..backend import device as resolve_device
from ..device_check import CASES, Case, CheckRow, run_checks

__all__ = ["add_parser", "run", "format_header", "format_row", "format_failures"]

_HEADER = ("check", "layer", "dtype", "max abs error", "max rel error", "tolerance", "result")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``xpnet check`` and its options to the ``xpnet`` parser's subcommands."""
    check = commands.add_parser(
        "check", help="check every layer's gradients and its agreement with NumPy float64 on a device")
    check.add_argument("--device", default="cpu",
                       help="device spec, e.g. cpu, cuda, torch:cpu, jax:cpu (default cpu)")
    check.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``xpnet check`` with the parsed ``args``: exit status 1 when a check failed."""
    dev = resolve_device(args.device, make_current=True)
    dtypes = ("float64", "float32") if args.dtype == "both" else (args.dtype,)
    print(f"xpnet check on {dev.name} ({dev.backend}), against NumPy float64")
    print(format_header(), flush=True)
    rows = run_checks(dev, dtypes, on_row=lambda row: print(format_row(row), flush=True))
    if any(row.message for row in rows):
        print(format_failures(rows))
    failed = sum(not row.passed for row in rows)
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _cells(row: CheckRow) -> tuple[str, ...]:
    return (row.check, row.case, row.dtype, f"{row.max_abs_error:.2e}", f"{row.max_rel_error:.2e}",
            f"{row.tolerance:.0e}", "pass" if row.passed else "FAIL")


def _widths(cases: list[Case]) -> list[int]:
    """Column widths known before any row: rows can be printed as they come, aligned."""
    longest = ("gradient", max((c.name for c in cases), key=len, default=""), "float64",
               "0.00e+00", "0.00e+00", "1e-05", "pass")
    return [max(len(h), len(c)) for h, c in zip(_HEADER, longest)]


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()


def format_header(cases: list[Case] | None = None) -> str:
    """The table's header line, aligned with :func:`format_row`."""
    return _line(_HEADER, _widths(cases or CASES))


def format_row(row: CheckRow, cases: list[Case] | None = None) -> str:
    """One row of the table, aligned with :func:`format_header`."""
    return _line(_cells(row), _widths(cases or CASES))


def format_failures(rows: list[CheckRow]) -> str:
    """One line per failed row, saying why (empty when none failed)."""
    return "\n".join(f"FAIL {r.check} {r.case} {r.dtype}: {r.message}" for r in rows if r.message)
