"""Draw the tutorial's figures (docs/tutorial.md) into docs/figures/.

    python docs/scripts/make_figures.py [--output DIR]

Every number drawn is computed here by xpnet: the graphs' values are what ``MulLayer`` and
``AddLayer`` return forward and backward; the learning curves are the book's chapter-5 run
(784-50-10, SGD at 0.1, batches of 100, 10,000 iterations, seed 0); the filters and the
misclassified digits come from a ``SimpleConvNet`` trained for two epochs (Adam, batches of
100, seed 0). About three minutes on a 2-core CPU, most of it the convnet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import xpnet  # noqa: E402
from xpnet.datasets import load_mnist  # noqa: E402

FIGURES = ("apple_graph.png", "apple_orange_graph.png", "learning_curves.png",
           "convnet_filters.png", "misclassified.png")
OUTPUT = Path(__file__).resolve().parents[1] / "figures"
BOOK_ITERS = 10000
CONVNET_ITERS = 1200  # two epochs of batches of 100
ITERS_PER_EPOCH = 600
FORWARD, BACKWARD = "black", "tab:red"


def apple_values() -> tuple[dict[str, float], dict[str, float]]:
    """Forward values and gradients of the book's Figure 5-16 (2 apples, tax 1.1)."""
    mul_apple, mul_tax = xpnet.MulLayer(), xpnet.MulLayer()
    apple_price = mul_apple.forward(100, 2)
    price = mul_tax.forward(apple_price, 1.1)
    dapple_price, dtax = mul_tax.backward(1)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    forward = {"apple": 100, "apple_num": 2, "tax": 1.1, "apple_price": apple_price, "price": price}
    backward = {"apple": dapple, "apple_num": dapple_num, "tax": dtax, "apple_price": dapple_price,
                "price": 1}
    return forward, backward


def apple_orange_values() -> tuple[dict[str, float], dict[str, float]]:
    """Forward values and gradients of the book's Figure 5-17 (apples, oranges, tax)."""
    mul_apple, mul_orange, add_fruit, mul_tax = (xpnet.MulLayer(), xpnet.MulLayer(),
                                                 xpnet.AddLayer(), xpnet.MulLayer())
    apple_price = mul_apple.forward(100, 2)
    orange_price = mul_orange.forward(150, 3)
    all_price = add_fruit.forward(apple_price, orange_price)
    price = mul_tax.forward(all_price, 1.1)
    dall_price, dtax = mul_tax.backward(1)
    dapple_price, dorange_price = add_fruit.backward(dall_price)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    dorange, dorange_num = mul_orange.backward(dorange_price)
    forward = {"apple": 100, "apple_num": 2, "orange": 150, "orange_num": 3, "tax": 1.1,
               "apple_price": apple_price, "orange_price": orange_price, "all_price": all_price,
               "price": price}
    backward = {"apple": dapple, "apple_num": dapple_num, "orange": dorange,
                "orange_num": dorange_num, "tax": dtax, "apple_price": dapple_price,
                "orange_price": dorange_price, "all_price": dall_price, "price": 1}
    return forward, backward


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def draw_graph(path: Path, nodes: dict[str, tuple[float, float, str]],
               edges: list[tuple[str, str, str]], forward: dict[str, float],
               backward: dict[str, float], title: str) -> None:
    """Nodes are ``name: (x, y, operator)``; an edge ``(value, source, target)`` carries
    ``forward[value]`` above it (black) and ``backward[value]`` below it (red)."""
    fig, ax = plt.subplots(figsize=(9, 1.2 + 1.3 * len({y for _, y, _ in nodes.values()})))
    for x, y, op in nodes.values():
        if op:
            ax.add_patch(plt.Circle((x, y), 0.28, fill=False, lw=1.5))
            ax.text(x, y, op, ha="center", va="center", fontsize=16)
    for value, source, target in edges:
        (x0, y0, op0), (x1, y1, op1) = nodes[source], nodes[target]
        start = (x0 + (0.28 if op0 else 0.0), y0)
        end = (x1 - (0.28 if op1 else 0.0), y1)
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "lw": 1.2})
        # numbers a third of the way along: edges that meet at a node stay apart there
        lx, ly = start[0] + (end[0] - start[0]) / 3, start[1] + (end[1] - start[1]) / 3
        ax.text(lx, ly + 0.1, _number(forward[value]), ha="center", va="bottom", color=FORWARD,
                fontsize=11)
        ax.text(lx, ly - 0.1, _number(backward[value]), ha="center", va="top", color=BACKWARD,
                fontsize=11)
    targets = {target for _, _, target in edges}
    for name, (x, y, op) in nodes.items():
        if not op:
            sink = name in targets
            ax.text(x + (0.08 if sink else -0.08), y, name.replace("_", " "),
                    ha="left" if sink else "right", va="center", fontsize=10)
    ax.text(1.0, 0.07, "forward", color=FORWARD, transform=ax.transAxes, ha="right", va="bottom")
    ax.text(1.0, 0.0, "backward", color=BACKWARD, transform=ax.transAxes, ha="right", va="bottom")
    xs = [x for x, _, _ in nodes.values()]
    ys = [y for _, y, _ in nodes.values()]
    ax.set_xlim(min(xs) - 1.4, max(xs) + 1.0)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def apple_graph(path: Path) -> None:
    nodes = {"apple": (0, 1, ""), "apple_num": (0, 0, ""), "tax": (2, -1, ""),
             "mul_apple": (2, 0.5, "×"), "mul_tax": (4, 0, "×"), "price": (6, 0, "")}
    edges = [("apple", "apple", "mul_apple"), ("apple_num", "apple_num", "mul_apple"),
             ("apple_price", "mul_apple", "mul_tax"), ("tax", "tax", "mul_tax"),
             ("price", "mul_tax", "price")]
    draw_graph(path, nodes, edges, *apple_values(), "2 apples at 100, tax 1.1")


def apple_orange_graph(path: Path) -> None:
    nodes = {"apple": (0, 3, ""), "apple_num": (0, 2, ""), "orange": (0, 1, ""),
             "orange_num": (0, 0, ""), "tax": (4, -0.6, ""),
             "mul_apple": (2, 2.5, "×"), "mul_orange": (2, 0.5, "×"), "add_fruit": (4, 1.5, "+"),
             "mul_tax": (6, 0.5, "×"), "price": (8, 0.5, "")}
    edges = [("apple", "apple", "mul_apple"), ("apple_num", "apple_num", "mul_apple"),
             ("orange", "orange", "mul_orange"), ("orange_num", "orange_num", "mul_orange"),
             ("apple_price", "mul_apple", "add_fruit"), ("orange_price", "mul_orange", "add_fruit"),
             ("all_price", "add_fruit", "mul_tax"), ("tax", "tax", "mul_tax"),
             ("price", "mul_tax", "price")]
    draw_graph(path, nodes, edges, *apple_orange_values(), "2 apples at 100, 3 oranges at 150, tax 1.1")


def learning_curves(path: Path, iters: int = BOOK_ITERS) -> None:
    """The book's chapter-5 run on the CPU: loss per iteration, accuracies per epoch."""
    (x_train, t_train), (x_test, t_test) = load_mnist(one_hot_label=True)
    network = xpnet.TwoLayerNet(784, 50, 10, seed=0)
    rng = np.random.default_rng(0)
    losses, epochs, train_acc, test_acc = [], [], [], []
    for i in range(iters):
        batch = rng.integers(len(x_train), size=100)
        grad = network.gradient(x_train[batch], t_train[batch])
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= 0.1 * grad[key]
        losses.append(float(network.lastLayer.loss))
        if i % ITERS_PER_EPOCH == 0 or i == iters - 1:
            epochs.append(i)
            train_acc.append(network.accuracy(x_train, t_train))
            test_acc.append(network.accuracy(x_test, t_test))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(losses, lw=0.5)
    left.set(xlabel="iteration", ylabel="loss", title="training loss (batch of 100)")
    right.plot(epochs, train_acc, "o-", label="train")
    right.plot(epochs, test_acc, "s--", label="test")
    right.set(xlabel="iteration", ylabel="accuracy", ylim=(0, 1),
              title=f"accuracy: test {test_acc[-1]:.4f} after {iters} iterations")
    right.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def trained_convnet(iters: int, train_limit: int | None = None) -> tuple[np.ndarray, xpnet.SimpleConvNet]:
    """``(first-layer filters before training, the network after iters Adam steps)``."""
    (x_train, t_train), _ = load_mnist(flatten=False)
    x_train, t_train = x_train[:train_limit], t_train[:train_limit]
    network = xpnet.SimpleConvNet(seed=0)
    before = np.array(network.params["W1"], copy=True)
    optimizer, rng = xpnet.Adam(), np.random.default_rng(0)
    for _ in range(iters):
        batch = rng.integers(len(x_train), size=100)
        optimizer.update(network.params, network.gradient(x_train[batch], t_train[batch]))
    return before, network


def convnet_filters(path: Path, before: np.ndarray, after: np.ndarray) -> None:
    """The book's Figure 7-24: each 5x5 filter as a grey image, min to max of that filter."""
    fig, axes = plt.subplots(6, 10, figsize=(10, 6.4))
    for row, (filters, label) in enumerate(((before, "before"), (after, "after"))):
        for i, w in enumerate(filters[:, 0]):
            ax = axes[3 * row + i // 10, i % 10]
            ax.imshow(w, cmap="gray_r", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[3 * row, 0].set_ylabel(label, fontsize=12)
    fig.suptitle("SimpleConvNet's 30 first-layer filters: before training (top), after (bottom)")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def misclassified_indices(predicted: np.ndarray, labels: np.ndarray, limit: int) -> np.ndarray:
    return np.flatnonzero(predicted != labels)[:limit]


def misclassified(path: Path, network: xpnet.SimpleConvNet, limit: int = 20) -> None:
    """The book's Figure 8-5: test digits the network gets wrong, its answer and the label."""
    _, (x_test, t_test) = load_mnist(flatten=False)
    predicted = np.concatenate([np.argmax(network.predict(x_test[i:i + 1000]), axis=1)
                                for i in range(0, len(x_test), 1000)])
    wrong = misclassified_indices(predicted, t_test, limit)
    accuracy = np.mean(predicted == t_test)
    fig, axes = plt.subplots(2, 10, figsize=(10, 2.8))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(x_test[i, 0], cmap="gray", interpolation="nearest")
        ax.set_title(f"{predicted[i]} ({t_test[i]})", color="tab:red", fontsize=11)
    fig.suptitle(f"the first {len(wrong)} misclassified test digits: prediction (label); "
                 f"test accuracy {accuracy:.4f}", fontsize=11)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def make_all(output: Path, iters: int = BOOK_ITERS, convnet_iters: int = CONVNET_ITERS,
             train_limit: int | None = None) -> None:
    output.mkdir(parents=True, exist_ok=True)
    apple_graph(output / "apple_graph.png")
    apple_orange_graph(output / "apple_orange_graph.png")
    learning_curves(output / "learning_curves.png", iters)
    before, network = trained_convnet(convnet_iters, train_limit)
    convnet_filters(output / "convnet_filters.png", before, np.asarray(network.params["W1"]))
    misclassified(output / "misclassified.png", network)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"folder (default {OUTPUT})")
    make_all(parser.parse_args().output)


if __name__ == "__main__":
    main()
