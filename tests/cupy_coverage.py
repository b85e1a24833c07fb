"""How many of xpnet's CuPy-only lines the tests run: ``python tests/cupy_coverage.py [ROOT]``.

A line is CuPy-only when it lies in a branch on CuPy, CUDA or NCCL (an ``if``/``elif`` whose
condition names ``cupy``, ``cuda`` or ``nccl``) or in a function or class so named
(``_cupy_device``, ``gpu_problem``, ``NcclTransport``...): found by reading the source, so
the same rule applies to any version of xpnet. The test files below run under coverage.py
(subprocesses and ``mpiexec`` ranks included, through ``patch = subprocess``), and the script
prints executed / total and each CuPy-only line that did not run. ``ROOT`` is a checkout of
xpnet (default: this one); docs/backends.md gives the figures for main and this branch.
Needs ``pip install coverage`` (the ``dev`` extra).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# the tests that reach GPU code paths; test_cupy_stand_in.py runs only where it exists
TEST_FILES = ("tests/test_backend.py", "tests/test_cupy_semantics.py", "tests/test_device_check.py",
              "tests/test_distributed.py", "tests/test_cupy_stand_in.py")
GPU_WORDS = re.compile(r"cupy|cuda|nccl", re.IGNORECASE)


def cupy_only_lines(path: Path) -> set[int]:
    """The first line of each statement in a CuPy/CUDA/NCCL branch, function or class."""
    source = path.read_text()
    tree = ast.parse(source)
    marked: set[int] = set()

    def statements(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            for inner in ast.walk(node):
                if isinstance(inner, ast.stmt):
                    marked.add(inner.lineno)

    for node in ast.walk(tree):
        if isinstance(node, ast.If) and GPU_WORDS.search(ast.get_source_segment(source, node.test)):
            statements(node.body)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and GPU_WORDS.search(node.name):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            statements(body)
    return marked


def main(root: Path) -> int:
    import coverage

    with tempfile.TemporaryDirectory() as folder:
        rcfile = Path(folder) / "coveragerc"
        data = Path(folder) / "coverage"
        rcfile.write_text(f"[run]\nsource = {root / 'xpnet'}\nparallel = true\n"
                          f"data_file = {data}\npatch = subprocess\n")
        tests = [name for name in TEST_FILES if (root / name).exists()]
        env = {**os.environ, "PYTHONPATH": str(root), "COVERAGE_RCFILE": str(rcfile)}
        subprocess.run([sys.executable, "-m", "coverage", "run", "--rcfile", str(rcfile), "-m",
                        "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=root, env=env,
                       check=False)
        measured = coverage.Coverage(data_file=str(data), config_file=str(rcfile))
        measured.combine()
        measured.load()
        executed = total = 0
        missing: list[str] = []
        for path in sorted((root / "xpnet").rglob("*.py")):  # xpnet/commands/ too
            _, statements, _, not_run, _ = measured.analysis2(str(path))
            lines = cupy_only_lines(path) & set(statements)
            total += len(lines)
            executed += len(lines - set(not_run))
            name = path.relative_to(root / "xpnet")
            missing += [f"{name}:{line}" for line in sorted(lines & set(not_run))]
    print(f"CuPy-only lines executed: {executed} / {total} ({', '.join(tests)})")
    print("not run:", " ".join(missing) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).parent.parent))
