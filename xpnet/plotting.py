"""Learning curves as an image file (``xpnet train --plot``); matplotlib is imported only here.

matplotlib is optional (``pip install 'xpnet[plot]'``). The figure is drawn with its
object-oriented API on an Agg canvas, without pyplot, so plotting changes no global state
and needs no display.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, XPNetError

__all__ = ["MissingDependencyError", "require_matplotlib", "plot_history"]


class MissingDependencyError(XPNetError, ImportError):
    """An optional dependency a requested feature needs is not installed."""


def require_matplotlib(path: str | os.PathLike[str] | None = None) -> None:
    """Raise a one-line error unless matplotlib is importable and can write ``path``'s format."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError("plotting needs matplotlib, which is not installed: "
                                     "pip install 'xpnet[plot]'") from None
    if path is not None:
        suffix = Path(path).suffix.lstrip(".").lower()
        formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
        if suffix not in formats:
            raise ConfigError(f"cannot plot to {path}: the file name must end in an image "
                              f"extension such as .png (one of {', '.join(sorted(formats))})")


def plot_history(history: Sequence[Any], path: str | os.PathLike[str], *,
                 loss_history: Sequence[float] | None = None) -> Path:
    """Draw loss (left) and train/test accuracy (right) against training progress to ``path``.

    ``history`` is a sequence of :class:`~xpnet.training.EpochRecord`; ``loss_history``,
    if given, holds the mini-batch losses of the iterations that end at
    ``history[-1].iterations`` and is drawn faintly behind the epoch means.
    """
    require_matplotlib(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path).expanduser()
    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, acc_axes = figure.subplots(1, 2)
    if loss_history and history:
        last = history[-1].iterations
        first = last - len(loss_history) + 1
        loss_axes.plot(range(first, last + 1), loss_history, linewidth=0.5, alpha=0.4,
                       label="mini-batch")
    loss_axes.plot([r.iterations for r in history], [r.loss for r in history], marker="o",
                   label="epoch mean")
    loss_axes.set(xlabel="iteration", ylabel="loss", title="training loss")
    loss_axes.legend()
    epochs = [r.epoch for r in history]
    acc_axes.plot(epochs, [r.train_acc for r in history], marker="o", label="train acc")
    acc_axes.plot(epochs, [r.test_acc for r in history], marker="s", linestyle="--",
                  label="test acc")
    acc_axes.set(xlabel="epochs", ylabel="accuracy", title="accuracy")
    acc_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(history) == 1:
        # one point: matplotlib would zoom into it (a 0.0002-wide axis); show it on a scale
        # of whole epochs and of accuracy from 0 to 1
        acc_axes.set(xlim=(0, epochs[0] + 1), ylim=(0, 1.02))
    acc_axes.legend(loc="lower right")
    try:
        figure.savefig(path)
    except OSError as exc:
        raise ConfigError(f"cannot write plot {path}: {exc}") from None
    return path
