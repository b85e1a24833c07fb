"""The book's chapter-7 run (train_convnet.py): SimpleConvNet on MNIST with Adam.

conv(30 filters 5x5) - relu - pool(2x2) - affine(100) - relu - affine(10) - softmax,
Adam with lr 0.001, mini-batches of 100. The book trains 20 epochs and reports about 99%
test accuracy; a few epochs already pass 98.5%.

    python examples/train_convnet.py [--epochs 20] [--device SPEC] [--seed N]

Training runs in xpnet's Trainer (the loop behind ``xpnet train --model convnet``): data
sent to the device once, batches gathered there, no host sync inside a step. Unlike the
book, which scores 1000 samples per epoch, the accuracies are over the whole sets.
"""

import argparse

import xpnet
from xpnet.datasets import load_mnist
from xpnet.optim import make_optimizer
from xpnet.training import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set (book: 20)")
    parser.add_argument("--device", default="cpu", help="device spec (default cpu)")
    parser.add_argument("--batch-size", type=int, default=100, help="mini-batch size (book: 100)")
    parser.add_argument("--eval-batch-size", type=int, default=500,
                        help="images per forward pass when scoring (large batches are slow on a CPU)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights and the batch order")
    args = parser.parse_args()

    dev = xpnet.device(args.device)
    train, test = load_mnist(flatten=False)
    network = xpnet.SimpleConvNet(input_dim=(1, 28, 28),
                                  conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
                                  hidden_size=100, output_size=10, weight_init_std=0.01,
                                  device=dev, seed=args.seed)
    trainer = Trainer(network, make_optimizer("adam", lr=0.001), train, test,
                      batch_size=args.batch_size, seed=args.seed,
                      eval_batch_size=args.eval_batch_size)

    def report(record) -> None:
        print(f"epoch {record.epoch:>2} | loss {record.loss:.4f} | train acc, test acc | "
              f"{record.train_acc:.4f}, {record.test_acc:.4f} | {record.seconds:.0f} s", flush=True)

    print(f"training SimpleConvNet on {dev.name} ({dev.backend}) for {args.epochs} epochs")
    trainer.fit(epochs=args.epochs, on_epoch=report)
    print(f"final test accuracy: {trainer.history[-1].test_acc:.4f}")


if __name__ == "__main__":
    main()
