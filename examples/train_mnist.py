"""The book's chapter-5 training loop (train_neuralnet.py), written out on xpnet arrays.

A 784-50-10 TwoLayerNet, 10000 iterations of plain SGD (lr 0.1) on mini-batches of 100
drawn with replacement, as the book's ``np.random.choice`` does, and train/test accuracy
printed once per epoch (600 iterations). The book reports about 97% test accuracy.

    python examples/train_mnist.py [--device SPEC] [--seed N]

Unlike the book, the data is sent to the device once, the batches are drawn and gathered
there (``Generator.integers`` + ``xp.take``), and the loss of every iteration stays a 0-d
device array: the loop waits for the device only to print the accuracies. The loss recorded
is the one ``gradient`` computed, before the update, instead of a second forward pass after it.
"""

import argparse

import numpy as np

import xpnet
from xpnet.datasets import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="device spec (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights and the batches")
    args = parser.parse_args()

    dev = xpnet.device(args.device)
    xp = dev.xp
    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=True)
    x_train, t_train = dev.send(x_train, "float32"), dev.send(t_train, "float32")
    x_test, t_test = dev.send(x_test, "float32"), dev.send(t_test, "float32")
    network = xpnet.TwoLayerNet(input_size=784, hidden_size=50, output_size=10,
                                device=dev, seed=args.seed)
    generator = xpnet.Generator(dev, seed=args.seed)

    iters_num = 10000
    train_size = x_train.shape[0]
    batch_size = 100
    learning_rate = 0.1

    train_loss_list = []  # 0-d device arrays: reading them now would wait for the device
    train_acc_list = []
    test_acc_list = []
    iter_per_epoch = max(train_size // batch_size, 1)

    print(f"training on {dev.name} ({dev.backend})")
    for i in range(iters_num):
        batch_mask = generator.integers(train_size, batch_size)
        x_batch = xp.take(x_train, batch_mask, axis=0)
        t_batch = xp.take(t_train, batch_mask, axis=0)

        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]

        # the batch's loss from gradient's own forward pass: the book runs a second forward
        # pass after the update to get it, a fifth of each iteration's work
        train_loss_list.append(network.lastLayer.loss)

        if i % iter_per_epoch == 0:
            train_acc = network.accuracy(x_train, t_train, batch_size=10000)
            test_acc = network.accuracy(x_test, t_test, batch_size=10000)
            train_acc_list.append(train_acc)
            test_acc_list.append(test_acc)
            print(f"train acc, test acc | {train_acc:.4f}, {test_acc:.4f}")

    final_test_acc = network.accuracy(x_test, t_test, batch_size=10000)
    last_epoch_loss = np.mean(xpnet.to_numpy(xp.stack(train_loss_list[-iter_per_epoch:])))
    print(f"after {iters_num} iterations: test acc {final_test_acc:.4f}, "
          f"mean loss of the last {iter_per_epoch} iterations {last_epoch_loss:.4f}")


if __name__ == "__main__":
    main()
