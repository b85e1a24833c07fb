"""Tests of xpnet.training.Trainer: the step on every backend, no host sync (torch meta), the
batch order, divergence detection, and resuming to the bit."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
from array_api_compat import device as array_device_of

import xpnet
from helpers import blobs as blobs_of
from xpnet.checkpoint import load_checkpoint, save_checkpoint
from xpnet.registry import build_model
from xpnet.optim import make_optimizer
from xpnet.training import (EVAL_BATCH_SIZE, EpochRecord, Trainer, TrainingError, epoch_seed,
                            eval_batch_size_of)

FEATURES, HIDDEN, CLASSES = 12, 8, 3
blobs = functools.partial(blobs_of, features=FEATURES, classes=CLASSES)


def make_trainer(dev="cpu", dtype="float64", optimizer="momentum", n_train=120, batch_size=10,
                 seed=0, **kwargs) -> Trainer:
    net = xpnet.TwoLayerNet(FEATURES, HIDDEN, CLASSES, weight_init_std=0.1, device=dev,
                            dtype=dtype, seed=seed)
    return Trainer(net, make_optimizer(optimizer, lr=0.1), blobs(n_train), blobs(60, seed=1),
                   batch_size=batch_size, seed=seed, eval_batch_size=25, **kwargs)


def host_params(trainer: Trainer) -> dict[str, np.ndarray]:
    return {k: np.array(xpnet.to_numpy(v)) for k, v in trainer.network.params.items()}


def test_step_on_every_backend_matches_numpy_float64(backend, dtype):
    trainer = make_trainer(backend, dtype)
    reference = make_trainer("cpu", "float64")
    for i in range(3):
        for t in (trainer, reference):
            indices = t.device.send(np.arange(10 * i, 10 * i + 10), "int64")
            t.step(t.device.xp.take(t.x_train, indices, axis=0),
                   t.device.xp.take(t.t_train, indices, axis=0))
    assert trainer.iteration == 3
    rtol = 1e-12 if dtype == "float64" else 1e-4
    expected = host_params(reference)
    for key, value in trainer.network.params.items():
        assert array_device_of(value) == backend.array_device
        assert value.dtype == backend.dtype(dtype)
        np.testing.assert_allclose(xpnet.to_numpy(value), expected[key], rtol=rtol, atol=rtol)
    losses = [float(xpnet.to_numpy(loss)) for loss in trainer._losses]
    expected_losses = [float(loss) for loss in reference._losses]
    np.testing.assert_allclose(losses, expected_losses, rtol=rtol)


def test_fit_on_every_backend(backend):
    """A whole epoch, log point included, on each backend: same shapes, and it learns."""
    trainer = make_trainer(backend, "float32")
    record, = trainer.fit(epochs=1)
    assert (record.epoch, record.iterations) == (1, 12)
    assert record.test_acc > 0.9 and 0 < record.loss < 2
    assert len(trainer.loss_history) == 12 and trainer._losses == []
    for value in trainer.network.params.values():
        assert array_device_of(value) == backend.array_device


def test_data_is_sent_once_and_reshaped_to_the_input_shape():
    trainer = make_trainer("torch:cpu", "float32")
    assert tuple(trainer.x_train.shape) == (120, FEATURES)
    assert str(trainer.x_train.dtype) == "torch.float32"
    assert str(trainer.t_train.dtype) == "torch.int64"
    net = trainer.network
    net.input_shape = (3, 4)  # as a convnet's (C, H, W): the trainer reshapes to it
    x = Trainer(net, make_optimizer("sgd"), blobs(20), blobs(20), batch_size=5).x_train
    assert tuple(x.shape) == (20, 3, 4)


@pytest.mark.parametrize("model, hidden, optimizer", [
    ("mlp", [8], "sgd"), ("mlp", [8, 6], "adam"), ("mlp-bn", [8, 6], "momentum"),
    ("convnet", [8], "rmsprop"),
])
def test_steps_never_wait_for_the_device(model, hidden, optimizer):
    """On torch's meta device any host sync raises, so a full step there proves it has none:
    the trainer's step, the book's hand-written loop and the evaluation count."""
    net = build_model(model, input_shape=(1, 6, 6), hidden=hidden, output_size=CLASSES,
                      device="torch:meta", seed=0)
    rng = np.random.default_rng(0)
    data = (rng.random((40, 36)), rng.integers(0, CLASSES, 40))
    trainer = Trainer(net, make_optimizer(optimizer), data, data, batch_size=10)
    assert tuple(trainer.x_train.shape) == (40, *net.input_shape)
    xp = trainer.device.xp
    order = trainer.batch_order(0)
    for i in range(3):
        indices = order[i * 10:(i + 1) * 10]
        trainer.step(xp.take(trainer.x_train, indices, axis=0),
                     xp.take(trainer.t_train, indices, axis=0))
    # the book's loop: indices drawn with replacement, parameters updated by hand
    idx = xpnet.Generator(trainer.device, seed=0).integers(40, 10)
    grads = net.gradient(xp.take(trainer.x_train, idx, axis=0), xp.take(trainer.t_train, idx, axis=0))
    for key in net.params:
        net.params[key] -= 0.1 * grads[key]
    assert net.count_correct(trainer.x_train, trainer.t_train, batch_size=15).device.type == "meta"
    assert trainer.iteration == 3 and len(trainer._losses) == 3
    assert trainer._losses[0].device.type == "meta" and tuple(trainer._losses[0].shape) == ()
    for value in trainer.network.params.values():
        assert value.device.type == "meta"
    for values in trainer.optimizer.state.values():
        assert all(v.device.type == "meta" for v in values.values())
    with pytest.raises(RuntimeError, match="meta"):  # the meta device really refuses a sync
        float(trainer._losses[0])


def test_batch_order_is_a_permutation_that_depends_on_seed_and_epoch():
    trainer = make_trainer()
    first = xpnet.to_numpy(trainer.batch_order(0))
    assert sorted(first.tolist()) == list(range(120))
    assert np.array_equal(first, xpnet.to_numpy(make_trainer().batch_order(0)))
    assert not np.array_equal(first, xpnet.to_numpy(trainer.batch_order(1)))
    assert not np.array_equal(first, xpnet.to_numpy(make_trainer(seed=1).batch_order(0)))
    assert epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(1, 0)


def test_fit_learns_and_records_every_epoch():
    trainer = make_trainer()
    seen = []
    records = trainer.fit(epochs=3, on_epoch=seen.append)
    assert seen == records == trainer.history
    assert [r.epoch for r in records] == [1, 2, 3]
    assert [r.iterations for r in records] == [12, 24, 36]
    assert all(isinstance(r, EpochRecord) and r.seconds > 0 and r.samples_per_s > 0
               for r in records)
    assert records[-1].loss < records[0].loss
    assert records[-1].train_acc > 0.95 and records[-1].test_acc > 0.95
    assert len(trainer.loss_history) == 36
    assert records[0].loss == pytest.approx(np.mean(trainer.loss_history[:12]))
    assert set(records[0].as_dict()) == {"epoch", "iterations", "loss", "train_acc", "test_acc",
                                         "seconds", "samples_per_s"}


def test_accuracy_is_counted_on_the_device():
    trainer = make_trainer()
    trainer.fit(epochs=2)
    predicted = np.argmax(xpnet.to_numpy(trainer.network.predict(trainer.x_test)), axis=1)
    expected = np.mean(predicted == xpnet.to_numpy(trainer.t_test))
    assert trainer.history[-1].test_acc == expected


def test_fit_by_iterations_ends_with_a_partial_epoch():
    trainer = make_trainer()
    records = trainer.fit(iterations=30)
    assert [(r.epoch, r.iterations) for r in records] == [(1, 12), (2, 24), (3, 30)]
    with pytest.raises(xpnet.ConfigError, match="not both"):
        trainer.fit(epochs=1, iterations=5)


def test_batch_larger_than_the_data_is_refused():
    with pytest.raises(xpnet.ConfigError, match="batch size 500 is larger than the training set "
                                                "\\(120 samples\\)"):
        make_trainer(batch_size=500)


def test_nan_loss_stops_training_naming_the_iteration():
    x, t = blobs(120)
    x[37, 0] = np.nan  # sample 37 poisons the step that draws it
    net = xpnet.TwoLayerNet(FEATURES, HIDDEN, CLASSES, device="cpu", dtype="float64", seed=0)
    trainer = Trainer(net, make_optimizer("sgd", lr=0.1), (x, t), blobs(60, seed=1), batch_size=10)
    position = int(np.flatnonzero(xpnet.to_numpy(trainer.batch_order(1)) == 37)[0])
    expected_iteration = 12 + position // 10 + 1  # in epoch 2, iterations 13-24
    trainer.iteration = 12  # start at epoch 2, as a resumed run would
    message = (f"loss became nan at iteration {expected_iteration}, during epoch 2 "
               "(iterations 13-24); training stopped")
    with pytest.raises(TrainingError, match=re.escape(message)):
        trainer.fit(epochs=2)
    assert isinstance(TrainingError("x"), xpnet.XPNetError)


def test_resume_gives_the_same_parameters_bit_for_bit(tmp_path):
    """Two epochs in one go == one epoch, save, load, one more epoch (also mid-epoch)."""
    straight = make_trainer(optimizer="adam")
    straight.fit(epochs=2)
    for stop in (12, 17):  # the end of epoch 1, and five batches into epoch 2
        first = make_trainer(optimizer="adam")
        first.fit(iterations=stop)
        path = save_checkpoint(tmp_path / f"at{stop}.npz", first.network, first.optimizer,
                               epoch=first.history[-1].epoch, iteration=first.iteration, seed=0)
        network, optimizer, meta = load_checkpoint(path, device="cpu")
        resumed = Trainer(network, optimizer, blobs(120), blobs(60, seed=1), batch_size=10,
                          seed=meta["seed"], eval_batch_size=25)
        resumed.iteration = meta["iteration"]
        resumed.fit(epochs=2)
        assert resumed.iteration == 24
        for key, value in host_params(straight).items():
            assert np.array_equal(host_params(resumed)[key], value), (stop, key)
        assert resumed.history[-1].test_acc == straight.history[-1].test_acc


def test_progress_bar_only_when_asked(capsys):
    make_trainer().fit(epochs=2)
    assert capsys.readouterr().err == ""
    make_trainer(progress=True).fit(epochs=2)
    err = capsys.readouterr().err
    assert "epoch 2" in err and "samples" in err and "loss" in err  # epoch 1's loss, shown in epoch 2


def test_a_network_without_a_loss_layer_is_refused():
    net = xpnet.TwoLayerNet(FEATURES, HIDDEN, CLASSES, device="cpu", seed=0)
    del net.lastLayer
    with pytest.raises(xpnet.ConfigError, match="TwoLayerNet has no lastLayer"):
        Trainer(net, make_optimizer("sgd"), blobs(20), blobs(20), batch_size=5)


def test_accuracy_is_scored_in_the_networks_eval_batch_unless_told(monkeypatch):
    images = (np.random.default_rng(0).random((30, 1, 8, 8)), np.zeros(30, dtype=np.int64))
    conv = xpnet.SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3, "pad": 0,
                                           "stride": 1}, hidden_size=4, device="cpu", seed=0)
    mlp = xpnet.TwoLayerNet(64, 4, 10, device="cpu", seed=0)
    seen = []
    for net in (conv, mlp):
        monkeypatch.setattr(net, "count_correct",
                            lambda x, t, rows, net=net: seen.append(rows) or net.device.xp.asarray(0))
    for net, given, rows in ((conv, None, 30), (mlp, None, 30), (conv, 7, 7)):
        trainer = Trainer(net, make_optimizer("sgd", lr=0.1), images, images, batch_size=10,
                          eval_batch_size=given)
        assert trainer.eval_batch_size == (given or eval_batch_size_of(net))
        trainer.accuracy(trainer.x_test, trainer.t_test)
        assert seen.pop() == rows  # at most the rows there are
    assert (eval_batch_size_of(conv), eval_batch_size_of(mlp)) == (100, EVAL_BATCH_SIZE) == (100, 2000)
    with pytest.raises(xpnet.ConfigError, match="eval_batch_size"):
        eval_batch_size_of(conv, 0)  # an explicit 0 is refused, not read as "the default"
