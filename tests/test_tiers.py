"""The tiers of xpnet/__init__'s docstring: every module is in one, and imports point down.

Each ``from .x import``, ``from . import x`` and ``import xpnet.x`` anywhere in a module (inside
functions and ``TYPE_CHECKING`` blocks too) names a module of its own tier or a tier before it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import xpnet

PACKAGE = Path(xpnet.__file__).parent


def tiers() -> dict[str, int]:
    """module -> tier number, from the docstring's numbered list."""
    found = {}
    # a tier's list may go on over indented lines
    for number, _, modules in re.findall(r"^(\d)\. ([a-z ]+): (.+(?:\n {3}.+)*)$", xpnet.__doc__,
                                         re.M):
        for module in modules.replace("\n", " ").split(","):
            found[module.strip()] = int(number)
    return found


def imported(path: Path) -> set[str]:
    """The xpnet modules ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module] if node.module else [alias.name for alias in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xpnet."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("xpnet."))
    return {name.split(".")[0] for name in names}


def test_every_module_is_in_a_tier():
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules - set(tiers()) == set(), "add new modules to a tier in xpnet/__init__'s docstring"
    assert set(tiers()) - modules == set(), "a tier names a module that does not exist"


def test_imports_point_down():
    tier = tiers()
    upward = [f"{path.stem} (tier {tier[path.stem]}) imports {name} (tier {tier[name]})"
              for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__init__"
              for name in sorted(imported(path)) if tier[name] > tier[path.stem]]
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "layers.py"
    module.write_text("from .commands import run_training\n\ndef f():\n    from . import cli\n")
    assert imported(module) == {"commands", "cli"}
