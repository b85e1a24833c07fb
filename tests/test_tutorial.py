"""The tutorial (docs/tutorial.md) runs as printed, and its figure script draws what it says.

Every ```python block runs, in order, in one namespace, as a reader pasting them into one
session would; a ```text block right after a python block is the output that block must print.
A block that asks for ``xpnet.device("cuda")`` runs on ``"cpu"`` where CuPy finds no usable
GPU (``xpnet.cuda_status()``), so the same text is tested on every machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import numpy as np
import pytest

import xpnet

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
FIGURES_SCRIPT = ROOT / "docs" / "scripts" / "make_figures.py"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def tutorial_blocks() -> list[tuple[str, str | None]]:
    """``(python code, expected output or None)`` for each python block, in page order."""
    fences = [(m.group(1), m.group(2)) for m in FENCE.finditer(TUTORIAL.read_text())]
    blocks = []
    for i, (lang, body) in enumerate(fences):
        if lang == "python":
            follows = fences[i + 1] if i + 1 < len(fences) else None
            blocks.append((body, follows[1] if follows and follows[0] == "text" else None))
    return blocks


def on_this_machine(code: str) -> str:
    if xpnet.cuda_status()[0] == 0:
        return code.replace('xpnet.device("cuda")', 'xpnet.device("cpu")')
    return code


def test_tutorial_has_the_chapter():
    blocks = tutorial_blocks()
    code = "\n".join(body for body, _ in blocks)
    for name in ("MulLayer", "AddLayer", "ReLU", "Sigmoid", "Affine", "SoftmaxWithLoss",
                 "numerical_gradient", 'xpnet.device("cuda")', "torch:cpu", "jax:cpu"):
        assert name in code, name
    assert sum(expected is not None for _, expected in blocks) >= 8


def test_every_tutorial_block_runs_and_prints_what_the_page_shows():
    namespace: dict = {"__name__": "tutorial"}
    for number, (code, expected) in enumerate(tutorial_blocks(), 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(on_this_machine(code), f"{TUTORIAL}:block {number}", "exec"), namespace)
        if expected is not None:
            assert out.getvalue().strip() == expected.strip(), f"block {number}"


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("make_figures", FIGURES_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tutorial_shows_the_figures_the_script_makes(figures):
    shown = set(re.findall(r"\]\(figures/([\w.-]+\.png)\)", TUTORIAL.read_text()))
    assert shown == set(figures.FIGURES)
    for name in shown:
        assert (ROOT / "docs" / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_graph_numbers_are_the_layers_results(figures):
    forward, backward = figures.apple_orange_values()
    assert forward["price"] == pytest.approx(715.0)
    assert backward["apple"] == pytest.approx(2.2) and backward["orange_num"] == pytest.approx(165.0)
    assert backward["tax"] == pytest.approx(650.0)


def test_figure_script_draws_every_figure(figures, tmp_path):
    """The cheap versions of every figure: short training runs, the same drawing code."""
    figures.make_all(tmp_path, iters=30, convnet_iters=3, train_limit=500)
    for name in figures.FIGURES:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_misclassified_grid_picks_wrong_answers(figures):
    labels = np.array([3, 1, 4, 1, 5])
    predicted = np.array([3, 7, 4, 2, 5])
    assert figures.misclassified_indices(predicted, labels, limit=10).tolist() == [1, 3]
