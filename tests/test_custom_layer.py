"""examples/custom_layer.py, the example of docs/layers.md: a layer of one's own (a parameter,
a running statistic, statistics over the batch, a random stream) in a network of built-in
layers gets what the built-in ones get: gradients, resuming anywhere, data-parallel results
independent of the number of processes, --jit, ONNX export."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.init import Initializer
from xpnet.layers import array_names
from helpers import MPI_PROGRAMS, mpiexec

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import custom_layer  # noqa: E402  the example itself

_spec = importlib.util.spec_from_file_location("mpi_custom_layer", MPI_PROGRAMS / "custom_layer.py")
program = importlib.util.module_from_spec(_spec)  # its sizes, data and training, for one process
_spec.loader.exec_module(program)


def small_network(**placement) -> xpnet.Sequential:
    return custom_layer.build_network(program.SHAPE, program.CLASSES, filters=2, hidden=6,
                                      **placement)


def test_the_documented_code_is_the_example():
    """Every code block of docs/layers.md's section is a verbatim piece of the example."""
    doc = (ROOT / "docs" / "layers.md").read_text()
    section = doc.split("## Writing your own layer and network", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    source = (ROOT / "examples" / "custom_layer.py").read_text()
    assert blocks and all(block in source for block in blocks)


def test_layer_gradient_matches_numerical_gradients_on_every_backend(backend):
    """The layer alone, noise included (check_layer restarts its stream for every evaluation)."""
    rng = np.random.default_rng(4)
    layer = custom_layer.NoisyCentering(stddev=0.5)
    init = Initializer(backend, "float64", seed=0)
    layer.build((5,), init)
    layer.gain = backend.send(rng.random(5) + 0.5, "float64")
    x = backend.send(rng.standard_normal((6, 5)) * 2 + 1, "float64")
    reports = xpnet.check_layer(layer, x, forward_kwargs={"train_flg": True})
    assert [r.name for r in reports] == ["NoisyCentering d(input 0)", "NoisyCentering.dgain"]
    assert layer.rng is None  # the check put the layer's own (absent) stream back


def test_gradient_matches_numerical_gradients_on_every_backend(backend):
    """float64 on every backend: the noise and Dropout masks are the same in every evaluation
    of the check (check_network restarts the layers' random streams)."""
    net = small_network(device=backend, dtype="float64", seed=1)
    x, t = program.data(2)
    reports = xpnet.check_network(net, backend.send(x[:6], "float64"), backend.send(t[:6], "int64"))
    assert {r.name.split()[-1] for r in reports} == set(net.params) >= {"gain1", "W3"}
    noisy = net.layers["NoisyCentering1"]
    assert noisy.stddev > 0 and isinstance(noisy.rng, xpnet.Generator)  # the noise is really there


def test_resume_in_the_middle_of_an_epoch_repeats_the_uninterrupted_run(tmp_path):
    straight = program.train()
    net = small_network(dtype="float64", seed=3)
    trainer = xpnet.Trainer(net, xpnet.Adam(lr=0.01), program.data(0), program.data(1),
                            batch_size=program.BATCH, seed=5)
    trainer.fit(iterations=3)  # an epoch is 5 steps: stop in the middle of the first
    path = xpnet.save_checkpoint(tmp_path / "half.npz", net, trainer.optimizer, epoch=0, seed=5,
                                 iteration=trainer.iteration)
    loaded, optimizer, meta = xpnet.load_checkpoint(path)
    resumed = xpnet.Trainer(loaded, optimizer, program.data(0), program.data(1),
                            batch_size=program.BATCH, seed=5)
    resumed.iteration = meta["iteration"]
    resumed.fit(iterations=program.ITERATIONS)
    for key, value in straight.network.params.items():
        np.testing.assert_array_equal(loaded.params[key], value, err_msg=key)
    for key, value in straight.network.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value, err_msg=key)
    assert trainer.loss_history + resumed.loss_history == straight.loss_history


def test_two_processes_train_as_one(tmp_path):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'xpnet[mpi]'")
    job = mpiexec(2, str(MPI_PROGRAMS / "custom_layer.py"), str(tmp_path / "two.npz"))
    assert job.returncode == 0, job.stderr
    one = program.train()
    with np.load(tmp_path / "two.npz") as two:
        for key, value in one.network.params.items():
            np.testing.assert_allclose(two[f"params/{key}"], value, rtol=1e-9, atol=1e-12,
                                       err_msg=key)
        for key, value in one.network.state_dict().items():
            np.testing.assert_allclose(two[f"buffers/{key}"], value, rtol=1e-9, atol=1e-12,
                                       err_msg=key)
        np.testing.assert_allclose(two["losses"], one.loss_history, rtol=1e-9)


def test_jit_trains_as_eager_on_jax():
    jax = pytest.importorskip("jax")
    results = []
    for jit in (False, True):
        net = small_network(device="jax:cpu", dtype="float64", seed=3)
        trainer = xpnet.Trainer(net, xpnet.Adam(lr=0.01), program.data(0), program.data(1),
                                batch_size=program.BATCH, seed=5, jit=jit)
        trainer.fit(iterations=program.ITERATIONS)
        results.append(trainer)
    eager, compiled = results
    assert compiled._update.compilations == 1
    # no tracer stayed behind (jax.checking_leaks would say so too, at 5x the time)
    for layer in compiled.network.layers.values():
        for name in array_names(layer):
            assert not isinstance(getattr(layer, name, None), jax.core.Tracer), name
    for key, value in eager.network.params.items():
        np.testing.assert_allclose(xpnet.to_numpy(compiled.network.params[key]),
                                   xpnet.to_numpy(value), rtol=1e-9, atol=1e-12, err_msg=key)
    for key, value in eager.network.state_dict().items():
        np.testing.assert_allclose(compiled.network.state_dict()[key], value, rtol=1e-9, atol=1e-12)


def test_onnx_export_predicts_as_the_network(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("ndonnx")
    trainer = program.train()
    net = trainer.network
    x, _ = program.data(1)
    path = xpnet.export_onnx(net, tmp_path / "custom.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores, = session.run(None, {"x": x})
    np.testing.assert_allclose(scores, net.predict(x, train_flg=False), rtol=1e-10, atol=1e-12)


def test_a_layer_ndonnx_cannot_record_is_refused_in_one_line(tmp_path):
    pytest.importorskip("ndonnx")

    class UnitLength(xpnet.Layer):  # uses linalg, which ndonnx does not have
        def forward(self, x):
            xp = xpnet.namespace_of(x)
            return x / xp.linalg.vector_norm(x, axis=1, keepdims=True)

        def backward(self, dout):
            raise NotImplementedError

    net = xpnet.Sequential(xpnet.Affine(units=3), UnitLength(), input_shape=(4,), seed=0)
    with pytest.raises(xpnet.export.ExportError) as caught:
        xpnet.export_onnx(net, tmp_path / "unit.onnx")
    assert str(caught.value) == ("layer UnitLength1 (UnitLength) cannot be exported to ONNX: ndonnx "
                                 "cannot record its inference pass (module 'ndonnx' has no "
                                 "attribute 'linalg')")
    assert not (tmp_path / "unit.onnx").exists()
