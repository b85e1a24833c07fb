"""Tests of ONNX export (``xpnet.export_onnx``, ``xpnet export``, ``xpnet evaluate --onnx``).

For every model, trained a few steps: onnxruntime's scores on all 10,000 MNIST test images
agree with ``predict``, the classes are the same, the model passes ``onnx.checker``, batch 1
runs, and the network is left exactly as it was. Then the command-line round trip, and a
one-line error with exit status 2 and no file left behind for every kind of bad input.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xpnet
from xpnet import datasets
from xpnet.cli import main
from xpnet.export import ExportError

onnx = pytest.importorskip("onnx", reason="ONNX export needs pip install 'xpnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX export needs pip install 'xpnet[onnx]'")
pytest.importorskip("ndonnx", reason="ONNX export needs pip install 'xpnet[onnx]'")

IMAGE = (1, 28, 28)
MODELS = {
    "two-layer": lambda: xpnet.build_model("mlp", input_shape=IMAGE, hidden=[40], output_size=10,
                                           seed=0),
    "mlp-relu": lambda: xpnet.build_model("mlp", input_shape=IMAGE, hidden=[40, 30],
                                          output_size=10, seed=0),
    # float64 too: the input takes the network's dtype
    "mlp-sigmoid": lambda: xpnet.build_model("mlp", input_shape=IMAGE, hidden=[40, 30, 20],
                                             output_size=10, activation="sigmoid",
                                             dtype="float64", seed=0),
    "mlp-bn": lambda: xpnet.build_model("mlp-bn", input_shape=IMAGE, hidden=[40, 30],
                                        output_size=10, seed=0),
    # 8 filters, not build_model's 30: the same layers, a quarter of the time
    "convnet": lambda: xpnet.SimpleConvNet(IMAGE, conv_param={"filter_num": 8}, hidden_size=30,
                                           seed=0),
    # padded convolutions (pad 1 and 2) and Dropout; 4 filters a layer keep it quick
    "deepconvnet": lambda: xpnet.DeepConvNet(IMAGE, conv_params=[{"filter_num": 4}] * 6,
                                             hidden_size=20, seed=0),
}
CLASSES = {"two-layer": xpnet.TwoLayerNet, "mlp-relu": xpnet.MultiLayerNet,
           "mlp-sigmoid": xpnet.MultiLayerNet, "mlp-bn": xpnet.MultiLayerNetExtend,
           "convnet": xpnet.SimpleConvNet, "deepconvnet": xpnet.DeepConvNet}


pytestmark = pytest.mark.usefixtures("isolated_mnist")


@pytest.fixture(scope="module")
def mnist(mnist_cache) -> tuple[tuple, tuple]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XPNET_CACHE_DIR", str(mnist_cache))
        patch.delenv(datasets.DATA_DIR_ENV, raising=False)
        return datasets.load_mnist()


def train_a_little(network: Any, mnist: tuple[tuple, tuple], steps: int = 5) -> None:
    """Adam steps on 100-image batches: BatchNorm's running statistics leave 0 and 1."""
    (x_train, t_train), _ = mnist
    dev, optimizer = network.device, xpnet.Adam()
    for step in range(steps):
        rows = slice(100 * step, 100 * (step + 1))
        x = dev.xp.reshape(dev.send(x_train[rows], network.dtype), (-1, *network.input_shape))
        optimizer.update(network.params, network.gradient(x, dev.send(t_train[rows], "int64")))


def snapshot(network: Any) -> dict[str, Any]:
    """The objects a forward pass reads or writes, and host copies of the values they hold."""
    return {"params": network.params, "arrays": dict(network.params),
            "layers": {name: dict(vars(layer)) for name, layer in network.layers.items()},
            "values": {key: np.array(xpnet.to_numpy(v)) for key, v in network.params.items()},
            "state": {key: np.array(v) for key, v in network.state_dict().items()}}


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    """The same objects everywhere (params dict, arrays, every layer attribute), holding the same values."""
    assert after["params"] is before["params"]
    assert after["arrays"].keys() == before["arrays"].keys()
    assert all(after["arrays"][key] is array for key, array in before["arrays"].items())
    assert after["layers"].keys() == before["layers"].keys()
    for name, attributes in before["layers"].items():
        assert after["layers"][name].keys() == attributes.keys(), name
        assert all(after["layers"][name][a] is v for a, v in attributes.items()), name
    for kind in ("values", "state"):
        assert after[kind].keys() == before[kind].keys()
        for key, value in before[kind].items():
            np.testing.assert_array_equal(after[kind][key], value)


@dataclass
class Exported:
    network: Any
    model: Any  # onnx.ModelProto, read back from the file
    before: dict[str, Any]
    after: dict[str, Any]  # right after the export
    scores: np.ndarray  # onnxruntime, all test images
    expected: np.ndarray  # predict, all test images
    batch_1: np.ndarray  # onnxruntime, the first test image alone


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, mnist, tmp_path_factory) -> Exported:
    network = MODELS[request.param]()
    assert type(network) is CLASSES[request.param]
    train_a_little(network, mnist)
    before = snapshot(network)
    path = xpnet.export_onnx(network, str(tmp_path_factory.mktemp("onnx") / "model.onnx"))
    after = snapshot(network)
    assert isinstance(path, Path)
    _, (x_test, _) = mnist
    x = x_test.astype(network.dtype).reshape(-1, *network.input_shape)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = np.concatenate([session.run(["scores"], {"x": x[i:i + 2000]})[0]
                             for i in range(0, len(x), 2000)])
    expected = np.concatenate([network.predict(x[i:i + 2000]) for i in range(0, len(x), 2000)])
    return Exported(network, onnx.load(path), before, after, scores, expected,
                    session.run(["scores"], {"x": x[:1]})[0])


def test_scores_agree_with_predict_on_the_test_set(exported):
    assert exported.scores.shape == (10_000, 10)
    assert exported.scores.dtype == exported.network.dtype
    np.testing.assert_allclose(exported.scores, exported.expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(exported.scores.argmax(axis=1), exported.expected.argmax(axis=1))


def test_batch_of_one(exported):
    assert exported.batch_1.shape == (1, 10)
    np.testing.assert_allclose(exported.batch_1, exported.expected[:1], rtol=1e-4, atol=1e-4)


def test_model_is_valid_with_a_free_batch_dimension(exported):
    model, network = exported.model, exported.network
    onnx.checker.check_model(model, full_check=True)
    element = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(network.dtype))

    def signature(value):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        return value.name, value.type.tensor_type.elem_type, dims

    assert [signature(v) for v in model.graph.input] == [("x", element, ["N", *network.input_shape])]
    assert [signature(v) for v in model.graph.output] == [("scores", element, ["N", 10])]
    assert model.producer_name == "xpnet"


def test_running_statistics_are_the_trained_ones(exported):
    """Inference BatchNorm uses the running statistics, moved by training and exported."""
    state = exported.before["state"]
    assert bool(state) == (exported.network.name == "mlp-extend")
    for key, value in state.items():
        assert not np.allclose(value, 0.0 if key.endswith("mean") else 1.0), key


def test_network_is_unchanged_and_keeps_training(exported, mnist):
    assert_same(exported.before, exported.after)
    network = exported.network
    # in inference mode: a training-mode loss draws new Dropout masks at each call
    loss_before = float(network.loss(*_first_batch(network, mnist), train_flg=False))
    train_a_little(network, mnist, steps=3)
    assert float(network.loss(*_first_batch(network, mnist), train_flg=False)) < loss_before


def _first_batch(network: Any, mnist: tuple[tuple, tuple]) -> tuple[np.ndarray, np.ndarray]:
    (x_train, t_train), _ = mnist
    return x_train[:100].astype(network.dtype).reshape(-1, *network.input_shape), t_train[:100]


@pytest.mark.parametrize("spec", ["torch:cpu", "array_api_strict:device1"])
def test_network_on_another_device_stays_there(mnist, tmp_path, spec):
    """Parameters elsewhere are copied to the host for the export, and stay where they were."""
    if spec.startswith("torch"):
        pytest.importorskip("torch")
    network = xpnet.build_model("mlp-bn", input_shape=IMAGE, hidden=[20], output_size=10,
                                device=spec, seed=0)
    train_a_little(network, mnist, steps=2)
    before = snapshot(network)
    path = xpnet.export_onnx(network, tmp_path / "model.onnx")
    assert_same(before, snapshot(network))
    batchnorm = network.layers["BatchNorm1"]
    for array in (*network.params.values(), batchnorm.running_mean, batchnorm.running_var):
        assert xpnet.device_of(array) == network.device
    _, (x_test, _) = mnist
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = session.run(["scores"], {"x": x_test[:500]})[0]
    expected = xpnet.to_numpy(network.predict(network.device.send(x_test[:500])))
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


def test_network_on_torch_meta_is_refused(tmp_path):
    pytest.importorskip("torch")
    network = xpnet.TwoLayerNet(784, 10, 10, device="torch:meta")
    with pytest.raises(ExportError, match="torch:meta holds shapes but no values"):
        xpnet.export_onnx(network, tmp_path / "meta.onnx")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- the commands

def run(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_cli_round_trip(capsys, tmp_path):
    save, model = tmp_path / "run.npz", tmp_path / "mnist.onnx"
    code, _, err = run(capsys, "train", "--device", "cpu", "--train-limit", "1000", "--iters", "20",
                       "--model", "mlp-bn", "--hidden", "30", "--save", str(save), "--quiet")
    assert code == 0, err
    code, out, err = run(capsys, "export", "--checkpoint", str(save), "--output", str(model))
    assert code == 0, err
    assert out == [f"xpnet: exported {save} (mlp-extend, float32) to {model}: input x (N, 784), "
                   f"{model.stat().st_size:,} bytes"]
    code, by_checkpoint, err = run(capsys, "evaluate", "--checkpoint", str(save), "--device", "cpu")
    assert code == 0, err
    code, by_onnx, err = run(capsys, "evaluate", "--onnx", str(model))
    assert code == 0, err
    assert re.fullmatch(r"test acc \d\.\d{4} \(\d+/10000\)", by_checkpoint[1])
    assert by_onnx == [f"xpnet: evaluating {model} on onnxruntime (CPUExecutionProvider)",
                       by_checkpoint[1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.onnx", "run.npz"]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    network = xpnet.TwoLayerNet(784, 10, 10, seed=0)
    return xpnet.save_checkpoint(tmp_path / "run.npz", network, None, epoch=0, seed=0)


def expect_error(capsys, tmp_path: Path, argv: list[str], message: str, files: set[str]) -> None:
    """Exit status 2, one line on stderr matching ``message``, and only ``files`` in ``tmp_path``."""
    code, out, err = run(capsys, *argv)
    assert code == 2 and all(line.startswith("xpnet: evaluating ") for line in out), out
    assert err.count("\n") == 1 and re.match(rf"xpnet {argv[0]}: error: .*{message}", err), err
    assert {p.name for p in tmp_path.iterdir()} == files


def test_export_of_a_missing_checkpoint(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["export", "--checkpoint", str(tmp_path / "nope.npz"),
                                    "--output", str(tmp_path / "out.onnx")],
                 "does not exist", set())


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_export_of_a_damaged_checkpoint(capsys, tmp_path, checkpoint, damage):
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(b"not a checkpoint" if damage == "garbage" else data[:len(data) // 2])
    expect_error(capsys, tmp_path, ["export", "--checkpoint", str(checkpoint),
                                    "--output", str(tmp_path / "out.onnx")],
                 "not a readable xpnet checkpoint", {"run.npz"})


def test_export_into_a_missing_folder(capsys, tmp_path, checkpoint):
    expect_error(capsys, tmp_path, ["export", "--checkpoint", str(checkpoint),
                                    "--output", str(tmp_path / "no" / "out.onnx")],
                 "folder .* does not exist", {"run.npz"})


def test_export_onto_a_folder(capsys, tmp_path, checkpoint):
    (tmp_path / "out.onnx").mkdir()
    expect_error(capsys, tmp_path, ["export", "--checkpoint", str(checkpoint),
                                    "--output", str(tmp_path / "out.onnx")],
                 "cannot write", {"run.npz", "out.onnx"})


def test_a_failed_write_leaves_the_old_file(capsys, tmp_path, checkpoint, monkeypatch):
    """The rename is the last step: when it fails the temporary file goes and the old model stays."""
    (tmp_path / "out.onnx").write_bytes(b"the old model")

    def refuse(*args: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("xpnet.export.os.replace", refuse)
    expect_error(capsys, tmp_path, ["export", "--checkpoint", str(checkpoint),
                                    "--output", str(tmp_path / "out.onnx")],
                 "cannot write .*Permission denied", {"run.npz", "out.onnx"})
    assert (tmp_path / "out.onnx").read_bytes() == b"the old model"


def test_export_without_ndonnx(capsys, tmp_path, checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "ndonnx", None)  # import ndonnx raises ImportError
    expect_error(capsys, tmp_path, ["export", "--checkpoint", str(checkpoint),
                                    "--output", str(tmp_path / "out.onnx")],
                 r"needs ndonnx, which is not installed: pip install 'xpnet\[onnx\]'", {"run.npz"})
    with pytest.raises(ExportError, match="needs ndonnx"):
        xpnet.export_onnx(xpnet.TwoLayerNet(784, 10, 10), tmp_path / "api.onnx")
    assert not (tmp_path / "api.onnx").exists()


def test_evaluate_without_onnxruntime(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    expect_error(capsys, tmp_path, ["evaluate", "--onnx", str(tmp_path / "m.onnx")],
                 r"needs onnxruntime, which is not installed: pip install 'xpnet\[onnx\]'", set())


def test_evaluate_a_missing_or_damaged_model(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["evaluate", "--onnx", str(tmp_path / "m.onnx")],
                 "ONNX model .* does not exist", set())
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    expect_error(capsys, tmp_path, ["evaluate", "--onnx", str(tmp_path / "m.onnx")],
                 "is not a readable ONNX model", {"m.onnx"})


def test_evaluate_a_model_that_does_not_take_images(capsys, tmp_path):
    ndx = pytest.importorskip("ndonnx")
    x = ndx.argument(shape=("N", 5), dtype=ndx.float32)
    onnx.save(ndx.build({"x": x}, {"scores": x * 2.0}), tmp_path / "m.onnx")
    expect_error(capsys, tmp_path, ["evaluate", "--onnx", str(tmp_path / "m.onnx")],
                 r"takes input of shape \('N', 5\)", {"m.onnx"})


def test_evaluate_options(capsys, tmp_path):
    expect_error(capsys, tmp_path, ["evaluate", "--onnx", "m.onnx", "--device", "cpu"],
                 "--device applies to --checkpoint", set())
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--onnx", "m.onnx", "--checkpoint", "run.npz"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
