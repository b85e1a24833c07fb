"""The book's chapter-6 overfitting experiment (overfit_dropout.py), with and without Dropout.

A 7-layer network (six hidden layers of 100 ReLU units) trained on only 300 MNIST images
with SGD (lr 0.01, batches of 100) for 301 epochs memorises them: train accuracy reaches
100% while test accuracy stalls far below. With Dropout (ratio 0.2, as in the book) the
network memorises more slowly and the gap between train and test accuracy stays smaller
for most of the run; the table printed at the end shows both runs side by side.

    python examples/overfit_dropout.py [--epochs 301] [--device SPEC] [--seed N]

xpnet's Dropout is inverted dropout (kept units scaled by 1/(1 - ratio) in training,
identity at inference), so the scores at test time need no rescaling.
"""

import argparse

import xpnet
from xpnet.datasets import load_mnist
from xpnet.optim import make_optimizer
from xpnet.training import Trainer


def run(use_dropout: bool, train, test, args) -> list:
    """Train one network and return its per-epoch records (train and test accuracy)."""
    network = xpnet.MultiLayerNetExtend(784, [100] * 6, 10, use_dropout=use_dropout,
                                        dropout_ratio=0.2, device=args.device, seed=args.seed)
    trainer = Trainer(network, make_optimizer("sgd", lr=0.01), train, test, batch_size=100,
                      seed=args.seed)
    print(f"training {'with' if use_dropout else 'without'} dropout...", flush=True)
    trainer.fit(epochs=args.epochs)
    return trainer.history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=301, help="epochs of 3 mini-batches (book: 301)")
    parser.add_argument("--device", default="cpu", help="device spec (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, masks and batch order")
    args = parser.parse_args()

    (x_train, t_train), test = load_mnist()
    train = (x_train[:300], t_train[:300])  # few samples: what makes the network overfit
    plain, dropout = run(False, train, test, args), run(True, train, test, args)
    print("\n       |   without dropout    |     with dropout\n"
          "epoch  |  train  test   gap   |  train  test   gap")
    for a, b in zip(plain, dropout):
        if a.epoch % 50 == 1 or a.epoch == args.epochs:
            print(f"{a.epoch:>5}  |  {a.train_acc:.3f} {a.test_acc:.3f} {a.train_acc - a.test_acc:6.3f} "
                  f"|  {b.train_acc:.3f} {b.test_acc:.3f} {b.train_acc - b.test_acc:6.3f}")


if __name__ == "__main__":
    main()
