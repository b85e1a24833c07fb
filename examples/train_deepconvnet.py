"""The book's chapter-8 run (deep_convnet.py, train_deepnet.py): DeepConvNet on MNIST with Adam.

Six 3x3 convolutions (16, 16, 32, 32, 64, 64 filters) with ReLU and three 2x2 poolings, then
affine(50) - relu - dropout - affine(10) - dropout - softmax; Adam with lr 0.001, mini-batches
of 100. The book trains 20 epochs and reports 99.38% test accuracy.

    python examples/train_deepconvnet.py [--epochs 20] [--device SPEC] [--seed N] [--save PATH]

The loop is xpnet's Trainer, as ``xpnet train --model deepconvnet`` runs it; ``--save`` writes
a checkpoint after every epoch that ``xpnet evaluate --checkpoint`` reads.
"""

import argparse

import xpnet
from xpnet.checkpoint import save_checkpoint
from xpnet.datasets import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set (book: 20)")
    parser.add_argument("--device", default="cpu", help="device spec (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights and the batch order")
    parser.add_argument("--save", metavar="PATH", help="write a checkpoint after every epoch")
    args = parser.parse_args()

    dev = xpnet.device(args.device)
    train, test = load_mnist(flatten=False)
    network = xpnet.DeepConvNet(device=dev, seed=args.seed)
    trainer = xpnet.Trainer(network, xpnet.Adam(lr=0.001), train, test, batch_size=100,
                            seed=args.seed)

    def report(record: xpnet.EpochRecord) -> None:
        print(f"epoch {record.epoch:>2} | loss {record.loss:.4f} | train acc, test acc | "
              f"{record.train_acc:.4f}, {record.test_acc:.4f} | {record.seconds:.0f} s", flush=True)
        if args.save:
            save_checkpoint(args.save, network, trainer.optimizer, epoch=record.epoch,
                            iteration=trainer.iteration, seed=args.seed)

    print(f"training DeepConvNet on {dev.name} ({dev.backend}) for {args.epochs} epochs", flush=True)
    trainer.fit(epochs=args.epochs, on_epoch=report)
    print(f"final test accuracy: {trainer.history[-1].test_acc:.4f}")


if __name__ == "__main__":
    main()
