"""Tests of ``xpnet train`` and ``xpnet evaluate``: short runs on the packaged MNIST, the files
they write, resuming, and a one-line error with exit status 2 for every kind of bad input."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import datasets
from xpnet.cli import main

# A quick run: 1000 training images, 20 iterations per epoch, 30 in all (one and a half epochs).
QUICK = ["--device", "cpu", "--train-limit", "1000", "--batch-size", "50", "--hidden", "20",
         "--optimizer", "momentum", "--lr", "0.1", "--iters", "30"]
EPOCH_LINE = re.compile(r"^epoch +(\d+) \| iter +(\d+) \| loss (\d\.\d{4}) \| train acc, test acc \| "
                        r"(\d\.\d{4}), (\d\.\d{4}) \| [\d.]+ s, [\d,]+ samples/s$")


pytestmark = pytest.mark.usefixtures("isolated_mnist")


def run(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def params_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "meta"}


def test_train_end_to_end(capsys, tmp_path):
    save, log, plot = tmp_path / "run.npz", tmp_path / "run.jsonl", tmp_path / "run.png"
    code, out, err = run(capsys, "train", *QUICK, "--save", str(save), "--log", str(log),
                         "--plot", str(plot))
    assert code == 0, err
    assert out[0] == "xpnet: training on cpu (numpy), float32"
    assert out[1] == ("model mlp 784-20-10 relu, optimizer momentum lr 0.1, batch 50, "
                      "30 iterations, seed 0")
    epochs = [EPOCH_LINE.match(line) for line in out[2:4]]
    assert all(epochs), out
    assert [(int(m[1]), int(m[2])) for m in epochs] == [(1, 20), (2, 30)]
    assert float(epochs[1][5]) > 0.5  # 30 steps on 1000 images: far above chance (0.1) already
    assert re.fullmatch(rf"final test accuracy: {epochs[1][5]} \(epoch 2, 30 iterations, "
                        r"[\d.]+ s\)", out[4])
    assert len(out) == 5 and err == ""  # no progress bar: stderr is not a terminal here

    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["epoch"], r["iterations"]) for r in records] == [(1, 20), (2, 30)]
    assert set(records[0]) == {"epoch", "iterations", "loss", "train_acc", "test_acc",
                               "seconds", "samples_per_s"}
    for record, match in zip(records, epochs):
        assert f"{record['loss']:.4f}" == match[3] and f"{record['test_acc']:.4f}" == match[5]
        assert record["train_acc"] * 1000 == round(record["train_acc"] * 1000)  # of 1000 images

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000

    network, optimizer, meta = xpnet.load_checkpoint(save)
    assert (meta["epoch"], meta["iteration"], optimizer.step_count) == (2, 30, 30)
    assert meta["extra"]["settings"]["hidden"] == [20]

    code, out, err = run(capsys, "evaluate", "--checkpoint", str(save), "--device", "torch:cpu")
    assert code == 0, err
    assert out == [f"xpnet: evaluating {save} on torch:cpu (torch)",
                   f"test acc {epochs[1][5]} ({round(float(epochs[1][5]) * 10000)}/10000)"]


def test_quiet_prints_the_device_and_the_result_only(capsys):
    code, out, err = run(capsys, "train", *QUICK, "--quiet")
    assert code == 0 and err == ""
    assert out[0] == "xpnet: training on cpu (numpy), float32"
    assert out[1].startswith("final test accuracy: ") and len(out) == 2


def test_resume_continues_exactly_and_appends_to_the_log(capsys, tmp_path):
    straight, half, resumed, log = (tmp_path / n for n in ("a.npz", "b.npz", "c.npz", "log.jsonl"))
    assert main(["train", *QUICK, "--save", str(straight)]) == 0
    halfway = [a if a != "30" else "25" for a in QUICK]  # stop five batches into epoch 2
    assert main(["train", *halfway, "--save", str(half), "--log", str(log)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "train", "--device", "cpu", "--resume", str(half), "--iters", "30",
                         "--save", str(resumed), "--log", str(log))
    assert code == 0, err
    assert out[2] == f"resuming from {half} at iteration 25 (epoch 1)"
    for key, value in params_of(straight).items():
        assert np.array_equal(params_of(resumed)[key], value), key
    iterations = [json.loads(line)["iterations"] for line in log.read_text().splitlines()]
    assert iterations == [20, 25, 30]


def test_jax_trains_like_numpy_eagerly_and_compiled(capsys, tmp_path):
    """The batch order is JAX's own (its random streams), so the runs differ, but not in class."""
    accuracy = {}
    for name, argv in (("numpy", QUICK), ("jax", ["--device", "jax:cpu", *QUICK[2:]]),
                       ("jit", ["--device", "jax:cpu", *QUICK[2:], "--jit"])):
        code, out, err = run(capsys, "train", *argv, "--save", str(tmp_path / f"{name}.npz"))
        assert code == 0, err
        accuracy[name] = float(out[-1].split()[3])
    assert out[0] == "xpnet: training on jax:cpu (jax), float32, each step compiled (--jit)"
    assert all(abs(accuracy[name] - accuracy["numpy"]) < 0.1 for name in ("jax", "jit")), accuracy
    code, out, err = run(capsys, "evaluate", "--checkpoint", str(tmp_path / "jit.npz"),
                         "--device", "cpu")
    assert code == 0 and out[1].startswith(f"test acc {accuracy['jit']:.4f} "), err


def test_jit_resumes_exactly(capsys, tmp_path, small_mnist):
    common = ["--device", "jax:cpu", "--jit", "--data-dir", str(small_mnist), "--batch-size", "50",
              "--model", "mlp-bn", "--hidden", "30", "--quiet"]
    straight, half, resumed = (tmp_path / n for n in ("a.npz", "b.npz", "c.npz"))
    assert main(["train", *common, "--epochs", "2", "--save", str(straight)]) == 0
    assert main(["train", *common, "--epochs", "1", "--save", str(half)]) == 0
    assert main(["train", *common, "--resume", str(half), "--epochs", "2",
                 "--save", str(resumed)]) == 0
    capsys.readouterr()
    for key, value in params_of(straight).items():
        assert np.array_equal(params_of(resumed)[key], value), key


def test_device_auto_names_what_it_chose(capsys, caplog):
    code, out, err = run(capsys, "train", *QUICK[2:], "--device", "auto", "--quiet")
    assert code == 0
    dev = xpnet.device("auto")
    assert out[0] == f"xpnet: training on {dev.name} ({dev.backend}), float32"
    if dev.fallback_reason:  # and the warning says why it is not a GPU
        assert f"no usable GPU ({dev.fallback_reason}); using the CPU" in caplog.text


# ---- bad input: one line on stderr, exit status 2, before any training


def expect_error(capsys, argv, message, command="train"):
    code, out, err = run(capsys, command, *argv)
    assert code == 2
    assert err.startswith(f"xpnet {command}: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not any(line.startswith(("epoch", "final")) for line in out)
    return err


def cuda_spec() -> str:
    """``cuda`` on a machine without a usable GPU, else a GPU number that does not exist."""
    return "cuda:99" if xpnet.cuda_status()[0] else "cuda"


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "unknown device 'tpu'; valid forms: cpu, numpy, cuda"),
    (["--device", "torch:cuda:7"], "cannot use torch:cuda:7"),
    (["--device", "torch:meta"], "torch:meta holds shapes but no values"),
    (["--device", "jax:cuda:99"], "cannot use jax:cuda:99"),
    (["--jit"], "--jit compiles the training step with JAX, but cpu (numpy) runs eagerly"),
    (["--optimizer", "adamw"], "unknown optimizer 'adamw'; choose one of sgd, momentum, nesterov"),
    (["--model", "resnet"], "unknown model 'resnet'; choose one of mlp, mlp-bn, convnet"),
    (["--activation", "tanh"], "unknown activation 'tanh'; choose relu or sigmoid"),
    (["--dtype", "float16"], "unknown dtype 'float16'; choose float32 or float64"),
    (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["--iters", "-5"], "--iters must be a positive integer, got -5"),
    (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--train-limit", "0"], "--train-limit must be a positive integer, got 0"),
    (["--hidden", "100", "0"], "each --hidden size must be a positive integer, got 0"),
    (["--lr", "0"], "--lr must be a positive number, got 0.0"),
    (["--lr", "-0.1"], "--lr must be a positive number, got -0.1"),
    (["--lr", "nan"], "--lr must be a positive number, got nan"),
    (["--weight-decay", "-1"], "--weight-decay must be zero or a positive number, got -1.0"),
    (["--train-limit", "1000", "--batch-size", "1001"],
     "batch size 1001 is larger than the training set (1000 samples)"),
    (["--save", "/nonexistent-folder/run.npz"], "folder /nonexistent-folder does not exist"),
    (["--plot", "curves.txt"], "the file name must end in an image extension such as .png"),
])
def test_bad_training_options(capsys, argv, message):
    device = [] if "--device" in argv else ["--device", "cpu"]
    expect_error(capsys, [*device, *argv], message)


def test_cuda_without_a_usable_gpu(capsys):
    expect_error(capsys, ["--device", cuda_spec()], "cannot use cuda")


def test_epochs_and_iters_are_exclusive(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "1", "--iters", "5"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_missing_matplotlib(capsys, monkeypatch, tmp_path):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    expect_error(capsys, ["--device", "cpu", "--plot", str(tmp_path / "p.png")],
                 "plotting needs matplotlib, which is not installed: pip install 'xpnet[plot]'")


def test_missing_data_folder(capsys, tmp_path):
    expect_error(capsys, ["--device", "cpu", "--data-dir", str(tmp_path / "nowhere")],
                 "does not exist or is not a folder")


def test_corrupt_data_file(capsys, tmp_path):
    for name in datasets.MNIST_FILES:
        (tmp_path / name).write_bytes((datasets._PACKAGED_DIR / name).read_bytes())
    images = tmp_path / datasets.MNIST_FILES[2]
    images.write_bytes(images.read_bytes()[:5000])  # a truncated download
    expect_error(capsys, ["--device", "cpu", "--data-dir", str(tmp_path)],
                 "is a corrupt or truncated gzip file")
    expect_error(capsys, ["--checkpoint", str(tmp_path / "none.npz"), "--device", "cpu"],
                 "does not exist", command="evaluate")


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "quick.npz"
    assert main(["train", *QUICK, "--quiet", "--save", str(path)]) == 0
    return path


def test_bad_resume(capsys, checkpoint, tmp_path):
    capsys.readouterr()
    expect_error(capsys, ["--device", "cpu", "--resume", str(checkpoint), "--hidden", "50"],
                 f"checkpoint {checkpoint} was trained with --hidden 20, but this run asks for "
                 "--hidden 50; drop --hidden to resume")
    expect_error(capsys, ["--device", "cpu", "--resume", str(checkpoint), "--optimizer", "adam"],
                 "was trained with --optimizer momentum, but this run asks for --optimizer adam")
    expect_error(capsys, ["--device", "cpu", "--resume", str(checkpoint)],
                 "is already at iteration 30 of 30; ask for more with --epochs or --iters")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(checkpoint.read_bytes()[:3000])
    expect_error(capsys, ["--device", "cpu", "--resume", str(truncated)],
                 f"{truncated} is not a readable xpnet checkpoint")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, W1=np.zeros(3))
    expect_error(capsys, ["--device", "cpu", "--resume", str(foreign)],
                 f"{foreign} is not an xpnet checkpoint")
    expect_error(capsys, ["--checkpoint", str(truncated), "--device", "cpu"],
                 f"{truncated} is not a readable xpnet checkpoint", command="evaluate")
    expect_error(capsys, ["--checkpoint", str(foreign), "--device", "cpu"],
                 f"{foreign} is not an xpnet checkpoint", command="evaluate")
    expect_error(capsys, ["--checkpoint", str(checkpoint), "--device", "tpu"],
                 "unknown device 'tpu'", command="evaluate")


def test_resume_may_change_the_learning_rate(capsys, checkpoint):
    capsys.readouterr()
    code, out, err = run(capsys, "train", "--device", "cpu", "--resume", str(checkpoint),
                         "--iters", "40", "--lr", "0.05")
    assert code == 0, err
    assert "optimizer momentum lr 0.05" in out[1]
    assert EPOCH_LINE.match(out[3])[2] == "40"


@pytest.mark.parametrize("model", [
    ["--model", "mlp", "--hidden", "30", "20", "--activation", "sigmoid", "--weight-decay", "0.001"],
    ["--model", "mlp-bn", "--hidden", "30", "20"],
    ["--model", "convnet", "--hidden", "20"],
    ["--model", "deepconvnet"],
])
def test_every_model_trains_saves_and_resumes(capsys, tmp_path, small_mnist, model):
    common = ["--device", "cpu", "--data-dir", str(small_mnist), "--batch-size", "50", *model]
    straight, half, resumed = (tmp_path / n for n in ("a.npz", "b.npz", "c.npz"))
    code, out, err = run(capsys, "train", *common, "--epochs", "2", "--save", str(straight))
    assert code == 0, err
    assert out[1].startswith(f"model {model[1]} ")
    assert [EPOCH_LINE.match(line)[2] for line in out[2:4]] == ["6", "12"]
    assert main(["train", *common, "--epochs", "1", "--save", str(half), "--quiet"]) == 0
    assert main(["train", "--device", "cpu", "--data-dir", str(small_mnist), "--resume", str(half),
                 "--epochs", "2", "--save", str(resumed), "--quiet"]) == 0
    capsys.readouterr()
    expected = params_of(straight)
    assert any(key.startswith("buffers/") for key in expected) == (model[1] == "mlp-bn")
    for key, value in expected.items():
        assert np.array_equal(params_of(resumed)[key], value), key
    code, out, _ = run(capsys, "evaluate", "--checkpoint", str(resumed), "--device", "cpu",
                       "--data-dir", str(small_mnist))
    assert code == 0 and re.fullmatch(r"test acc 0\.\d{4} \(\d+/200\)", out[1])
