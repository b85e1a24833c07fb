"""Writes legacy_weights.npz and legacy_<model>.npz checkpoints with the xpnet of the commit
before the networks were built by xpnet.Sequential (issue 18), for tests/test_sequential.py:

    PYTHONPATH=<old checkout> python tests/data/make_legacy_fixtures.py tests/data

Kept so the fixtures can be remade; tests only read the files.
"""

import sys
from pathlib import Path

import numpy as np

import xpnet

NETWORKS = {
    "two-layer": lambda: xpnet.TwoLayerNet(6, 5, 3, seed=4),
    "mlp": lambda: xpnet.MultiLayerNet(6, [5, 4], 3, "sigmoid", "sigmoid", 0.1, seed=4),
    "mlp-extend": lambda: xpnet.MultiLayerNetExtend(6, [5, 4], 3, use_dropout=True,
                                                    dropout_ration=0.3, use_batchnorm=True,
                                                    seed=4),
    "convnet": lambda: xpnet.SimpleConvNet((2, 6, 6), {"filter_num": 3, "filter_size": 3},
                                           hidden_size=4, output_size=3, seed=4),
    "deepconvnet": lambda: xpnet.DeepConvNet((1, 8, 8), [{"filter_num": 2}] * 6, hidden_size=4,
                                             output_size=3, seed=4),
}


def main(folder: Path) -> None:
    weights = {}
    rng = np.random.default_rng(0)
    for name, build in NETWORKS.items():
        net = build()
        weights.update({f"{name}/{key}": value.copy() for key, value in net.params.items()})
        optimizer = xpnet.Momentum(lr=0.1)
        x = rng.standard_normal((4, *net.input_shape)).astype(np.float32)
        t = np.arange(4) % 3
        optimizer.update(net.params, net.gradient(x, t))  # a trained step: running stats move
        xpnet.save_checkpoint(folder / f"legacy_{name}.npz", net, optimizer, epoch=1, seed=4,
                              iteration=1)
        probe = np.linspace(-1, 1, 2 * np.prod(net.input_shape)).reshape(2, *net.input_shape)
        weights[f"{name}/predict"] = net.predict(probe.astype(np.float32), train_flg=False)
    np.savez(folder / "legacy_weights.npz", **weights)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
