"""Tests of xpnet.checkpoint: round trips across devices, atomic writes, and bad files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import xpnet
from xpnet.checkpoint import FORMAT, VERSION, CheckpointError, load_checkpoint, save_checkpoint
from xpnet.optim import Momentum, make_optimizer


def trained(dev="cpu", dtype="float32", optimizer="adam"):
    """A small network after two optimizer steps, so every optimizer slot holds values."""
    net = xpnet.TwoLayerNet(6, 5, 3, weight_init_std=0.1, device=dev, dtype=dtype, seed=3)
    opt = make_optimizer(optimizer, lr=0.01)
    rng = np.random.default_rng(0)
    x, t = net.device.send(rng.standard_normal((8, 6)), dtype), net.device.send(rng.integers(0, 3, 8))
    for _ in range(2):
        opt.update(net.params, net.gradient(x, t))
    return net, opt


def host(arrays):
    return {k: np.array(xpnet.to_numpy(v)) for k, v in arrays.items()}


def assert_same(net_a, opt_a, net_b, opt_b):
    for key, value in host(net_a.params).items():
        assert np.array_equal(host(net_b.params)[key], value), key
    assert opt_a.config == opt_b.config and opt_a.step_count == opt_b.step_count
    for slot in opt_a.slots:
        for key, value in host(opt_a.state[slot]).items():
            assert np.array_equal(host(opt_b.state[slot])[key], value), (slot, key)


def test_round_trip_cpu_torch_cpu(tmp_path):
    net, opt = trained("cpu")
    first = save_checkpoint(tmp_path / "a.npz", net, opt, epoch=3, iteration=1800, seed=7,
                            extra={"note": "from cpu"})
    torch_net, torch_opt, meta = load_checkpoint(first, device="torch:cpu")
    assert meta["epoch"] == 3 and meta["iteration"] == 1800 and meta["seed"] == 7
    assert meta["extra"] == {"note": "from cpu"} and meta["saved_from"] == "cpu"
    assert meta["config"] == net.config and meta["dtype"] == "float32"
    assert torch_net.device == xpnet.device("torch:cpu")
    assert all(str(v.device) == "cpu" and str(v.dtype) == "torch.float32"
               for v in [*torch_net.params.values(), *torch_opt.state["m"].values()])
    assert_same(net, opt, torch_net, torch_opt)

    second = save_checkpoint(tmp_path / "b.npz", torch_net, torch_opt, epoch=3, iteration=1800, seed=7)
    cpu_net, cpu_opt, meta = load_checkpoint(second, device="cpu")
    assert meta["saved_from"] == "torch:cpu"
    assert_same(net, opt, cpu_net, cpu_opt)
    # the restored network computes what the original does
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    assert np.array_equal(cpu_net.predict(x), net.predict(x))


def test_round_trip_cpu_jax_cpu(tmp_path):
    net, opt = trained("cpu")
    jax_net, jax_opt, _ = load_checkpoint(save_checkpoint(tmp_path / "a.npz", net, opt, epoch=1,
                                                          iteration=2, seed=0), device="jax:cpu")
    assert jax_net.device == xpnet.device("jax:cpu")
    assert all(xpnet.backend._library_of(v) == "jax" and v.dtype == np.float32
               for v in [*jax_net.params.values(), *jax_opt.state["m"].values()])
    assert_same(net, opt, jax_net, jax_opt)
    x, t = (jax_net.device.send(a) for a in (np.ones((4, 6), np.float32), np.arange(4) % 3))
    jax_opt.update(jax_net.params, jax_net.gradient(x, t))  # JAX rebinds params and state
    path = save_checkpoint(tmp_path / "b.npz", jax_net, jax_opt, epoch=1, iteration=3, seed=0)
    cpu_net, cpu_opt, meta = load_checkpoint(path)
    assert meta["saved_from"] == "jax:cpu" and cpu_opt.step_count == 3
    assert_same(jax_net, jax_opt, cpu_net, cpu_opt)


def test_loading_in_another_dtype(tmp_path):
    net, opt = trained(optimizer="momentum")
    path = save_checkpoint(tmp_path / "c.npz", net, opt, epoch=1, iteration=2, seed=0)
    net64, opt64, _ = load_checkpoint(path, dtype="float64")
    assert net64.dtype == "float64"
    assert all(v.dtype == np.float64 for v in [*net64.params.values(), *opt64.state["v"].values()])
    np.testing.assert_array_equal(net64.params["W1"], net.params["W1"].astype(np.float64))


def test_network_without_optimizer(tmp_path):
    net, _ = trained()
    path = save_checkpoint(tmp_path / "n.npz", net, None, epoch=0, seed=None)
    restored, optimizer, meta = load_checkpoint(path)
    assert optimizer is None and meta["iteration"] is None
    assert np.array_equal(restored.params["b2"], net.params["b2"])


def test_loaded_parameters_are_writable_copies(tmp_path):
    net, opt = trained(optimizer="sgd")
    path = save_checkpoint(tmp_path / "w.npz", net, opt, epoch=1, iteration=2, seed=0)
    restored, optimizer, _ = load_checkpoint(path)
    before = restored.params["W1"].copy()
    optimizer.update(restored.params, {k: np.ones_like(v) for k, v in restored.params.items()})
    assert np.array_equal(restored.params["W1"], before - np.float32(0.01))


def test_buffers_are_saved_and_restored(tmp_path, monkeypatch):
    """Networks with state beyond params (BatchNorm statistics) expose state_dict/load_state_dict."""
    net, opt = trained()
    running_mean = np.arange(5.0)
    net.state_dict = lambda: {"running_mean1": running_mean}
    path = save_checkpoint(tmp_path / "bn.npz", net, opt, epoch=1, iteration=2, seed=0)
    with np.load(path) as data:
        assert np.array_equal(data["buffers/running_mean1"], running_mean)
    received = {}
    monkeypatch.setattr(xpnet.TwoLayerNet, "load_state_dict", lambda self, d: received.update(d),
                        raising=False)
    load_checkpoint(path)
    assert list(received) == ["running_mean1"] and np.array_equal(received["running_mean1"],
                                                                   running_mean)
    monkeypatch.delattr(xpnet.TwoLayerNet, "load_state_dict")
    with pytest.raises(CheckpointError, match="damaged: state for TwoLayerNet must have keys \\[\\], "
                                              "got \\['running_mean1'\\]"):
        load_checkpoint(path)


def test_write_is_atomic(tmp_path):
    net, opt = trained()
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, net, opt, epoch=1, iteration=2, seed=0)
    original = path.read_bytes()
    with pytest.raises(CheckpointError, match="not JSON serialisable"):
        save_checkpoint(path, net, opt, epoch=2, iteration=4, seed=0, extra={"bad": object()})
    assert path.read_bytes() == original  # a failed save leaves the old checkpoint whole
    save_checkpoint(path, net, opt, epoch=2, iteration=4, seed=0)
    assert load_checkpoint(path)[2]["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temporary file left behind
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "missing" / "c.npz", net, opt, epoch=1, seed=0)


def test_file_layout(tmp_path):
    net, opt = trained(optimizer="momentum")
    path = save_checkpoint(tmp_path / "m.npz", net, opt, epoch=1, iteration=2, seed=5)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["meta", "optimizer/v/W1", "optimizer/v/W2", "optimizer/v/b1",
                                      "optimizer/v/b2", "params/W1", "params/W2", "params/b1",
                                      "params/b2"]
        meta = json.loads(str(data["meta"]))
    assert meta["format"] == FORMAT and meta["version"] == VERSION
    assert meta["optimizer"] == {"config": Momentum(lr=0.01).config, "step": 2}


# ---- bad files: each raises CheckpointError (an XPNetError) naming the file


def expect_error(path, message):
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, xpnet.XPNetError)


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nothing.npz", "does not exist")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, keep):
    net, opt = trained()
    path = save_checkpoint(tmp_path / "t.npz", net, opt, epoch=1, iteration=2, seed=0)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    expect_error(path, "is not a readable xpnet checkpoint: it is truncated, corrupt or another kind")


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    expect_error(text, "not a readable xpnet checkpoint")
    single = tmp_path / "array.npy"
    np.save(single, np.zeros(3))
    expect_error(single, "holds a single array")
    other = tmp_path / "other.npz"
    np.savez(other, W1=np.zeros(3))
    expect_error(other, "is not an xpnet checkpoint \\(no xpnet metadata")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": FORMAT}], dtype=object))
    expect_error(pickled, "not a readable xpnet checkpoint")  # allow_pickle=False refuses it
    not_json = tmp_path / "notjson.npz"
    np.savez(not_json, meta=np.array("{oops"))
    expect_error(not_json, "its metadata is not JSON")


def rewrite(path, change):
    """Rewrite checkpoint ``path`` after ``change(contents)`` edits its arrays."""
    with np.load(path) as data:
        contents = {k: data[k] for k in data.files}
    change(contents)
    np.savez(path, **contents)


def edit_meta(contents, **updates):
    meta = json.loads(str(contents["meta"]))
    meta.update(updates)
    contents["meta"] = np.array(json.dumps(meta))


def test_newer_version_and_damaged_contents(tmp_path):
    net, opt = trained(optimizer="momentum")
    path = save_checkpoint(tmp_path / "d.npz", net, opt, epoch=1, iteration=2, seed=0)
    original = path.read_bytes()

    rewrite(path, lambda c: edit_meta(c, version=VERSION + 1))
    expect_error(path, f"has format version {VERSION + 1}; this xpnet reads version {VERSION}")

    path.write_bytes(original)
    rewrite(path, lambda c: c.pop("params/b2"))
    expect_error(path, "is damaged: it holds parameters \\['W1', 'W2', 'b1'\\]")

    path.write_bytes(original)
    rewrite(path, lambda c: c.update({"params/W1": np.zeros((6, 4), np.float32)}))
    expect_error(path, "parameter W1 has shape \\(6, 4\\) but its model config needs \\(6, 5\\)")

    path.write_bytes(original)
    rewrite(path, lambda c: c.update({"optimizer/v/W9": np.zeros(2, np.float32)}))
    expect_error(path, "optimizer state v/W9 does not match any parameter")

    path.write_bytes(original)
    rewrite(path, lambda c: edit_meta(c, config={"model": "transformer"}))
    expect_error(path, "describes a network this xpnet cannot build: unknown model 'transformer'")

    path.write_bytes(original)
    rewrite(path, lambda c: edit_meta(c, optimizer={"config": {"optimizer": "lion"}, "step": 1}))
    expect_error(path, "has an optimizer this xpnet cannot build: unknown optimizer 'lion'")


def test_crc_corruption_is_reported(tmp_path):
    net, opt = trained()
    path = save_checkpoint(tmp_path / "crc.npz", net, opt, epoch=1, iteration=2, seed=0)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("params/W1.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 200] ^= 0xFF  # flip a byte inside W1's data
    path.write_bytes(bytes(data))
    expect_error(path, "is not a readable xpnet checkpoint")
