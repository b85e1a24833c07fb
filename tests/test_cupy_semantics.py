"""CuPy's device rules without a GPU: the proxy's self-tests, then xpnet's public entries on
the proxy's second device (``cupy_like``: array_api_strict:device1 as cuda:1), called the way
a user calls them, without ``with dev:``.

tests/cupy_semantics.py says which CuPy source each rule comes from.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import threading
from pathlib import Path

import array_api_strict as xps
import numpy as np
import pytest
import torch
from array_api_compat.common import _aliases as compat_aliases
from array_api_strict._array_object import Array
from cupy_semantics import CREATION, KERNEL_METHODS, cupy_device_rules, current_device

import xpnet
from xpnet import backend
from xpnet.device_check import run_checks
from xpnet.optim import OPTIMIZERS, make_optimizer

pytestmark = pytest.mark.cupy_semantics

CPU, DEVICE1, DEVICE2 = (xps.Device(name) for name in ("CPU_DEVICE", "device1", "device2"))
README = Path(__file__).resolve().parent.parent / "README.md"
OTHER_DEVICE = "different from the current device"


def on(device: xps.Device, values) -> Array:
    """An array made on ``device`` however the rules treat creation (a move is no kernel)."""
    return xps.asarray(np.asarray(values, dtype=np.float64)).to_device(device)


# --- (a) the proxy enforces CuPy's rules -------------------------------------------------


def test_creation_lists_match_array_api_compats_cupy_wrapper():
    """CREATION is what array-api-compat's CuPy namespace builds from the shared aliases that
    only validate ``device=`` (``_check_device``) and never pass it on."""
    compat = Path(importlib.util.find_spec("array_api_compat").submodule_search_locations[0])
    wrapped = set(re.findall(r"^(\w+) = get_xp\(cp\)\(_aliases\.\1\)", (compat / "cupy" / "_aliases.py")
                             .read_text(), re.M))
    drops_device = {name for name in wrapped if "_check_device(xp, device)" in
                    inspect.getsource(getattr(compat_aliases, name))}
    assert drops_device == CREATION


@pytest.mark.parametrize("make", [
    lambda d: xps.zeros((2,), device=d), lambda d: xps.ones((2,), device=d),
    lambda d: xps.empty((2,), device=d), lambda d: xps.full((2,), 3.0, device=d),
    lambda d: xps.arange(3, device=d), lambda d: xps.eye(2, device=d),
    lambda d: xps.linspace(0, 1, 3, device=d),
    lambda d: xps.zeros_like(on(d, [1.0]), device=d), lambda d: xps.ones_like(on(d, [1.0])),
    lambda d: xps.empty_like(on(d, [1.0])), lambda d: xps.full_like(on(d, [1.0]), 2.0, device=d),
], ids=["zeros", "ones", "empty", "full", "arange", "eye", "linspace", "zeros_like", "ones_like",
        "empty_like", "full_like"])
def test_creation_ignores_device_and_uses_the_current_device(make):
    with cupy_device_rules():
        assert make(DEVICE1).device == CPU
        with xpnet.device("array_api_strict:device2"):
            assert make(DEVICE1).device == DEVICE2


def test_asarray_honours_device_and_copies_to_the_current_device():
    with cupy_device_rules():
        x = xps.asarray([1.0, 2.0], device=DEVICE1)
        assert x.device == DEVICE1 and xps.asarray([1.0]).device == CPU
        copy = xps.asarray(x)  # an array of another device is copied to the current one
        assert copy.device == CPU
        copy[0] = 5.0
        assert float(x[0]) == 1.0
        with pytest.raises(ValueError, match="avoid copy"):
            xps.asarray(x, copy=False)


def test_take_astype_and_copies_land_on_the_current_device():
    with cupy_device_rules():
        x, idx = on(DEVICE1, [1.0, 2.0, 3.0]), xps.asarray([2, 0], device=DEVICE1)
        with xpnet.device("array_api_strict:device1"):
            assert xps.take(x, idx).device == DEVICE1
            assert xps.astype(x, xps.float32).device == DEVICE1
            assert xps.asarray(on(CPU, [1.0]), copy=True).device == DEVICE1


@pytest.mark.parametrize("operation", [
    lambda x, i: x + 1.0, lambda x, i: 2.0 * x, lambda x, i: -x, lambda x, i: x == x,
    lambda x, i: x @ x, lambda x, i: xps.sum(x), lambda x, i: xps.exp(x),
    lambda x, i: xps.take(x, i), lambda x, i: xps.astype(x, xps.float32),
    lambda x, i: xps.concat([x, x]), lambda x, i: xps.where(x > 0, x, 0.0), lambda x, i: x[i],
], ids=["add", "rmul", "neg", "eq", "matmul", "sum", "exp", "take", "astype", "concat", "where",
        "index-array"])
def test_an_operation_on_another_devices_arrays_raises(operation):
    with cupy_device_rules():
        x, idx = on(DEVICE1, [1.0, 2.0]), xps.asarray([1, 0], device=DEVICE1)
        with pytest.raises(ValueError, match=rf"\(device1\) is {OTHER_DEVICE} \(CPU_DEVICE\)"):
            operation(x, idx)
        with xpnet.device("array_api_strict:device1"):
            operation(x, idx)


def test_writes_into_another_devices_array_raise():
    with cupy_device_rules():
        x = on(DEVICE1, [1.0, 2.0])
        with pytest.raises(ValueError, match=OTHER_DEVICE):
            x -= 1.0
        with pytest.raises(ValueError, match=OTHER_DEVICE):
            x[0] = 0.0


def test_views_moves_and_host_reads_work_on_any_device():
    with cupy_device_rules():
        x = on(DEVICE1, [[1.0, 2.0], [3.0, 4.0]])
        views = [x[0, :], x[..., None], xps.reshape(x, (4,)), x.mT, xps.matrix_transpose(x),
                 xps.expand_dims(x, axis=0), xps.squeeze(x[None, ...], axis=0)]
        assert all(v.device == DEVICE1 for v in views)
        assert float(x[1, 0]) == 3.0 and x.to_device(CPU).device == CPU
        np.testing.assert_array_equal(xpnet.to_numpy(x), [[1.0, 2.0], [3.0, 4.0]])


def test_with_device_switches_the_current_device_per_thread():
    with cupy_device_rules():
        assert current_device() == CPU
        with xpnet.device("array_api_strict:device1"):
            with xpnet.device("array_api_strict:device2"):
                assert current_device() == DEVICE2
            assert current_device() == DEVICE1
            seen = []
            worker = threading.Thread(target=lambda: seen.append(current_device()))
            worker.start()
            worker.join()
            assert seen == [CPU]  # a new thread starts on GPU 0, as CUDA's current device does
        assert current_device() == CPU


def test_everything_is_restored_after():
    functions = {name: getattr(xps, name) for name in xps.__all__}
    methods = {name: getattr(Array, name) for name in (*KERNEL_METHODS, "__getitem__")}
    with pytest.raises(KeyError):  # an error inside still restores
        with cupy_device_rules():
            assert xps.zeros is not functions["zeros"] and "array_api_strict" in backend.DEVICE_CONTEXTS
            raise KeyError
    assert {name: getattr(xps, name) for name in xps.__all__} == functions
    assert {name: getattr(Array, name) for name in methods} == methods
    assert "array_api_strict" not in backend.DEVICE_CONTEXTS
    x = on(DEVICE1, [1.0])
    assert (x + 1.0).device == DEVICE1 and xps.zeros(1, device=DEVICE1).device == DEVICE1


# --- (b) xpnet's public entries on the second device, without ``with dev:`` ----------------


def _data(dev: xpnet.Device, n: int = 6, features: int = 5, classes: int = 3, dtype: str = "float64"):
    rng = np.random.default_rng(0)
    return (dev.send(rng.standard_normal((n, features)), dtype),
            dev.send(np.arange(n) % classes, "int64"))


def _on_device(dev: xpnet.Device, *arrays) -> None:
    for array in arrays:
        assert array.device == dev.array_device


def test_send(cupy_like):
    from_host = cupy_like.send(np.arange(3.0), "float32")
    from_gpu0 = cupy_like.send(xps.asarray(np.arange(3.0)), "float32")  # same library: a cast
    from_torch = cupy_like.send(torch.arange(3.0))
    _on_device(cupy_like, from_host, from_gpu0, from_torch)
    assert from_gpu0.dtype == xps.float32 and from_torch.dtype == xps.float32


def test_generator_draws(cupy_like):
    rng, again = xpnet.Generator(cupy_like, seed=4), xpnet.Generator(cupy_like, seed=4)
    draws = [rng.random((2, 3)), rng.normal((4,), "float64"), rng.integers(10, 5), rng.permutation(6)]
    _on_device(cupy_like, *draws)
    assert [d.dtype for d in draws] == [xps.float32, xps.float64, xps.int64, xps.int64]
    np.testing.assert_array_equal(xpnet.to_numpy(draws[0]), xpnet.to_numpy(again.random((2, 3))))


def test_two_layer_net_entries(cupy_like):
    net = xpnet.TwoLayerNet(5, 4, 3, weight_init_std=0.5, device=cupy_like, dtype="float64", seed=0)
    x, t = _data(cupy_like)
    grads = net.gradient(x, t)
    _on_device(cupy_like, net.predict(x), net.loss(x, t), *grads.values())
    assert 0.0 <= net.accuracy(x, t) <= 1.0


def test_layers_called_directly(cupy_like):
    x, t = _data(cupy_like)
    W, b = cupy_like.send(np.ones((5, 3))), cupy_like.send(np.zeros(3))
    affine, relu, loss = xpnet.Affine(W, b), xpnet.ReLU(), xpnet.SoftmaxWithLoss()
    out = loss.forward(relu.forward(affine.forward(x)), t)
    dx = affine.backward(relu.backward(loss.backward(1.0)))
    _on_device(cupy_like, out, dx, affine.dW, affine.db)


def test_readme_ten_lines(cupy_like, capsys):
    """The README's loop as printed, on cuda:1's stand-in, with 600 samples and 20 steps."""
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    edits = {'xpnet.device("auto")': "cupy_like",
             "load_mnist()": "(lambda s: ((s[0][0][:600], s[0][1][:600]), (s[1][0][:200], s[1][1][:200])))"
                             "(load_mnist())",
             "range(2000)": "range(20)", "integers(60000, 100)": "integers(600, 100)"}
    for old, new in edits.items():
        assert old in code, f"the README's loop changed: update this test's edit of {old!r}"
        code = code.replace(old, new)
    exec(compile(code, str(README), "exec"), {"cupy_like": cupy_like})
    assert 0.0 <= float(capsys.readouterr().out.strip().splitlines()[-1]) <= 1.0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_update(cupy_like, name):
    net = xpnet.TwoLayerNet(5, 4, 3, device=cupy_like, dtype="float64", seed=0)
    optimizer = make_optimizer(name)
    for _ in range(2):  # the second update uses the state the first created
        optimizer.update(net.params, net.gradient(*_data(cupy_like)))
    _on_device(cupy_like, *net.params.values(), *(v for slot in optimizer.state.values()
                                                  for v in slot.values()))


def test_numerical_gradient(cupy_like):
    x = cupy_like.send(np.array([1.0, -2.0, 3.0]))
    grad = xpnet.numerical_gradient(lambda v: xps.sum(v * v), x)
    _on_device(cupy_like, grad)
    np.testing.assert_allclose(xpnet.to_numpy(grad), [2.0, -4.0, 6.0], rtol=1e-6)


def test_check_layer(cupy_like):
    x, _ = _data(cupy_like)
    W, b = cupy_like.send(np.ones((5, 3))), cupy_like.send(np.zeros(3))
    assert xpnet.check_layer(xpnet.Affine(W, b), x)


def test_check_network(cupy_like):
    net = xpnet.TwoLayerNet(5, 4, 3, weight_init_std=0.5, device=cupy_like, dtype="float64", seed=0)
    assert xpnet.check_network(net, *_data(cupy_like))


def test_checkpoint_round_trip(cupy_like, tmp_path):
    net = xpnet.TwoLayerNet(5, 4, 3, device=cupy_like, dtype="float32", seed=0)
    optimizer = make_optimizer("momentum", lr=0.1)
    x, t = _data(cupy_like, dtype="float32")
    with cupy_like:  # set-up, so that optimizer state exists; test_optimizer_update tests this
        optimizer.update(net.params, net.gradient(x, t))
    path = xpnet.save_checkpoint(tmp_path / "net.npz", net, optimizer, epoch=1, seed=0)
    loaded, loaded_optimizer, _ = xpnet.load_checkpoint(path, device=cupy_like)
    _on_device(cupy_like, *loaded.params.values(), *loaded_optimizer.state["v"].values())
    np.testing.assert_array_equal(xpnet.to_numpy(loaded.predict(x)), xpnet.to_numpy(net.predict(x)))


def test_xpnet_check_rows_all_pass(cupy_like):
    """``xpnet check --device cuda:1``'s engine: every parity and gradient row passes."""
    failures = [f"{row.check} {row.case} {row.dtype}: {row.message}"
                for row in run_checks(cupy_like, ("float32",)) if not row.passed]
    assert not failures, "\n".join(failures)


def test_trainer_fit(cupy_like):
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((40, 5)), rng.integers(0, 3, 40))
    net = xpnet.TwoLayerNet(5, 4, 3, device=cupy_like, seed=0)
    trainer = xpnet.Trainer(net, make_optimizer("sgd", lr=0.1), data, data, batch_size=10, seed=0)
    records = trainer.fit(iterations=6)
    assert trainer.iteration == 6 and len(records) == 2 and np.isfinite(records[-1].loss)
    _on_device(cupy_like, *net.params.values())
