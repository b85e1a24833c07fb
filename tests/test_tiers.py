"""The tiers of xpnet/__init__'s docstring: every module is in one, and imports point down.

Each ``from .x import``, ``from . import x``, ``from ..x import`` (in a subpackage's modules, such
as ``commands.train``) and ``import xpnet.x`` anywhere in a module (inside functions and
``TYPE_CHECKING`` blocks too) names a module of its own tier or a tier before it.
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


def module_name(path: Path) -> str:
    """``path``'s module, dotted from the package: ``cli``, ``commands``, ``commands.train``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package but xpnet/__init__ itself, by :func:`module_name`."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))
            if path != PACKAGE / "__init__.py"}


def is_module(parts: list[str]) -> bool:
    return (PACKAGE.joinpath(*parts).with_suffix(".py").is_file()
            or (PACKAGE.joinpath(*parts) / "__init__.py").is_file())


def imported(path: Path, package: tuple[str, ...] = ()) -> set[str]:
    """The xpnet modules ``path``, a module of the subpackage ``package`` (``()``: of xpnet
    itself), imports, dotted as :func:`module_name` names them."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[:len(package) - node.level + 1])
            target = base + (node.module.split(".") if node.module else [])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xpnet."):
            target = node.module.split(".")[1:]
        elif isinstance(node, ast.ImportFrom) and node.module == "xpnet":
            target = []
        elif isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[2] for alias in node.names
                         if alias.name.startswith("xpnet."))
            continue
        else:
            continue
        # from .commands import train: the module commands.train; from .backend import device
        # and from .commands import X (not a module): the module named after from
        submodules = [target + [alias.name] for alias in node.names
                      if is_module(target + [alias.name])]
        names.update(".".join(parts) for parts in submodules or [target] if parts)
    return names


def test_every_module_is_in_a_tier():
    assert set(modules()) - set(tiers()) == set(), \
        "add new modules to a tier in xpnet/__init__'s docstring"
    assert set(tiers()) - set(modules()) == set(), "a tier names a module that does not exist"


def test_imports_point_down():
    tier = tiers()
    upward = [f"{name} (tier {tier[name]}) imports {other} (tier {tier[other]})"
              for name, path in modules().items()
              for other in sorted(imported(path, tuple(name.split(".")[:-1])))
              if tier[other] > tier[name]]
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "layers.py"
    module.write_text("from .commands import run_training\n\ndef f():\n    from . import cli\n")
    assert imported(module) == {"commands", "cli"}


def test_the_check_resolves_the_subpackage(tmp_path):
    module = tmp_path / "common.py"
    module.write_text("from .. import cli\nfrom ..backend import device\nfrom . import train\n"
                      "from .export import run\nfrom ..export import export_onnx\n"
                      "import xpnet.commands.predict\nfrom xpnet.commands import check\n")
    assert imported(module, ("commands",)) == {
        "cli", "backend", "commands.train", "commands.export", "export", "commands.predict",
        "commands.check"}
