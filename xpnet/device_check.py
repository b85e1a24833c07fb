"""The checks behind ``xpnet check`` (:mod:`xpnet.commands.check`): every layer and network on
one device, against NumPy float64.

Each :class:`Case` builds one layer (or network) from seeded host data, so every backend
sees the same numbers. ``run`` returns its outputs and gradients on the device; the parity
check compares them with the same case run by NumPy in float64, and ``gradcheck`` asserts
backward against central differences on the device itself. The test suite and the
``xpnet check`` command share these cases, so what CI proves on CPU backends a user can
prove on a GPU with one command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import device as array_device_of

from .backend import Array, Device, to_numpy
from .backend import device as resolve_device
from .errors import GradientCheckError, XPNetError, first_line
from .gradcheck import GradientReport, check_layer, check_network
from .layers import Affine, AddLayer, MSELoss, MulLayer, ReLU, Sigmoid, SoftmaxWithLoss
from .conv import Convolution, Pooling
from .models import DeepConvNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from .regularization import BatchNormalization, Dropout

__all__ = ["Case", "layer_case", "network_case", "CASES", "PARITY_RTOL", "parity_errors",
           "CheckRow", "run_checks"]

# max |result - NumPy float64| / max |NumPy float64|, per compared array
PARITY_RTOL: dict[str, float] = {"float64": 1e-12, "float32": 1e-5}


@dataclass(frozen=True)
class Case:
    """A named computation with its outputs and gradients (``run``) and a gradient check."""

    name: str
    run: Callable[[Device, str], dict[str, Array]]
    gradcheck: Callable[[Device, str], list[GradientReport]]


def _send_all(dev: Device, arrays: Mapping[str, np.ndarray] | tuple[np.ndarray, ...], dtype: str):
    """Float host arrays become ``dtype`` on ``dev``; integer labels become int64."""
    def send(a: np.ndarray) -> Array:
        return dev.send(a, dtype if a.dtype.kind == "f" else "int64")
    if isinstance(arrays, Mapping):
        return {key: send(a) for key, a in arrays.items()}
    return tuple(send(a) for a in arrays)


def _noise(dev: Device, shape: tuple[int, ...], dtype: str) -> Array:
    """The upstream gradient fed to backward: seeded, so every backend gets the same one."""
    return dev.send(np.random.default_rng(1).standard_normal(shape), dtype)


def layer_case(name: str, build: Callable[[dict[str, Array]], Any],
               params: Mapping[str, np.ndarray], inputs: tuple[np.ndarray, ...],
               forward_kwargs: Mapping[str, Any] | None = None) -> Case:
    """A case for one layer: ``build(params_on_device)`` makes it, ``inputs`` feed ``forward``."""
    kwargs = dict(forward_kwargs or {})

    def setup(dev: Device, dtype: str) -> tuple[Any, tuple[Array, ...]]:
        return build(_send_all(dev, params, dtype)), _send_all(dev, inputs, dtype)

    def run(dev: Device, dtype: str) -> dict[str, Array]:
        with dev:  # the case's own arithmetic (a mask from p["keep"]) runs where its arrays are
            layer, xs = setup(dev, dtype)
            out = layer.forward(*xs, **kwargs)
            returned = layer.backward(_noise(dev, tuple(out.shape), dtype))
        results = {"out": out}
        for i, grad in enumerate(returned if isinstance(returned, tuple) else (returned,)):
            results[f"d(input {i})"] = grad
        for param in layer.param_names:
            results["d" + param] = getattr(layer, "d" + param)
        return results

    def gradcheck(dev: Device, dtype: str) -> list[GradientReport]:
        with dev:
            layer, xs = setup(dev, dtype)
            return check_layer(layer, *xs, forward_kwargs=kwargs)

    return Case(name, run, gradcheck)


def network_case(name: str, build: Callable[[Device, str], Any], x: np.ndarray,
                 t: np.ndarray) -> Case:
    """A case for a network with the book's API (``predict``, ``loss``, ``gradient``)."""

    def run(dev: Device, dtype: str) -> dict[str, Array]:
        net = build(dev, dtype)
        xs, ts = _send_all(dev, (x, t), dtype)
        grads = net.gradient(xs, ts)
        return {"predict": net.predict(xs), "loss": net.loss(xs, ts),
                **{"d" + key: value for key, value in grads.items()}}

    def gradcheck(dev: Device, dtype: str) -> list[GradientReport]:
        xs, ts = _send_all(dev, (x, t), dtype)
        return check_network(build(dev, dtype), xs, ts)

    return Case(name, run, gradcheck)


def _seed_cases() -> list[Case]:
    rng = np.random.default_rng(20261123)
    x = rng.standard_normal((4, 5))
    W, b = rng.standard_normal((5, 3)), rng.standard_normal(3)
    scores = rng.standard_normal((4, 3)) * 3
    labels = np.array([0, 2, 1, 2])
    cases = [
        layer_case("AddLayer", lambda p: AddLayer(), {}, (x, rng.standard_normal((4, 5)))),
        layer_case("MulLayer", lambda p: MulLayer(), {}, (x, rng.standard_normal((4, 5)))),
        layer_case("ReLU", lambda p: ReLU(), {}, (x,)),
        layer_case("Sigmoid", lambda p: Sigmoid(), {}, (x * 4,)),
        layer_case("Affine", lambda p: Affine(p["W"], p["b"]), {"W": W, "b": b}, (x,)),
        layer_case("Affine (N-d input)", lambda p: Affine(p["W"], p["b"]),
                   {"W": rng.standard_normal((6, 3)), "b": b}, (rng.standard_normal((4, 2, 3)),)),
        layer_case("SoftmaxWithLoss (labels)", lambda p: SoftmaxWithLoss(), {}, (scores, labels)),
        layer_case("SoftmaxWithLoss (one-hot)", lambda p: SoftmaxWithLoss(), {},
                   (scores, np.eye(3)[labels])),
        layer_case("MSELoss", lambda p: MSELoss(), {}, (x, rng.standard_normal((4, 5)))),
        network_case("TwoLayerNet",
                     lambda dev, dtype: TwoLayerNet(5, 7, 3, weight_init_std=0.5, device=dev,
                                                    dtype=dtype, seed=3),
                     rng.standard_normal((6, 5)), np.array([0, 1, 2, 2, 1, 0])),
    ]
    cases += _chapter_6_7_cases()
    return cases


def _with_fixed_masks(net: Any, batch: int, dev: Device) -> Any:
    """``net`` with every Dropout layer's mask fixed from a seeded host draw (same on every backend)."""
    rng = np.random.default_rng(7)
    for layer in net.layers.values():
        if hasattr(layer, "fixed_mask"):  # a layer that takes its mask from us: Dropout
            width = net.params["W1"].shape[1]  # every hidden layer of these cases has W1's width
            layer.fixed_mask = dev.send(rng.random((batch, width)) >= layer.dropout_ratio)
    return net


def _chapter_6_7_cases() -> list[Case]:
    """Convolution, pooling, Dropout, BatchNorm and the networks built from them (ch. 6-7)."""
    rng = np.random.default_rng(20261124)
    images = rng.standard_normal((2, 3, 7, 6))
    x = rng.standard_normal((5, 4))
    gamma, beta = rng.standard_normal(4) + 1.0, rng.standard_normal(4)
    labels = np.array([0, 1, 2, 2, 1, 0])
    return [
        layer_case("Convolution", lambda p: Convolution(p["W"], p["b"]),
                   {"W": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4)}, (images,)),
        layer_case("Convolution (stride 2, pad 1, 3x2)",
                   lambda p: Convolution(p["W"], p["b"], stride=2, pad=1),
                   {"W": rng.standard_normal((2, 3, 3, 2)), "b": rng.standard_normal(2)}, (images,)),
        layer_case("Pooling (2x2, stride 2)", lambda p: Pooling(2, 2, stride=2), {}, (images,)),
        layer_case("Pooling (3x2, stride 1, pad 1)", lambda p: Pooling(3, 2, stride=1, pad=1), {},
                   (images,)),
        layer_case("Dropout (fixed mask)",
                   lambda p: Dropout(0.4, fixed_mask=p["keep"] > 0.5),
                   {"keep": (rng.random((5, 4)) >= 0.4) * 1.0}, (x,)),
        layer_case("Dropout (inference)", lambda p: Dropout(0.4), {}, (x,), {"train_flg": False}),
        layer_case("BatchNormalization (train)",
                   lambda p: BatchNormalization(p["gamma"], p["beta"]),
                   {"gamma": gamma, "beta": beta}, (x * 2 + 1,)),
        layer_case("BatchNormalization (inference)",
                   lambda p: BatchNormalization(p["gamma"], p["beta"], running_mean=p["mean"],
                                                running_var=p["var"]),
                   {"gamma": gamma, "beta": beta, "mean": rng.standard_normal(4),
                    "var": rng.random(4) + 0.5}, (x,), {"train_flg": False}),
        layer_case("BatchNormalization (N, C, H, W)",
                   lambda p: BatchNormalization(p["gamma"], p["beta"]),
                   {"gamma": gamma[:3], "beta": beta[:3]}, (images,)),
        network_case("MultiLayerNet (relu, weight decay)",
                     lambda dev, dtype: MultiLayerNet(5, [6, 4], 3, weight_decay_lambda=0.1,
                                                      device=dev, dtype=dtype, seed=3),
                     rng.standard_normal((6, 5)), labels),
        network_case("MultiLayerNet (sigmoid)",
                     lambda dev, dtype: MultiLayerNet(5, [6, 4], 3, "sigmoid", "sigmoid",
                                                      device=dev, dtype=dtype, seed=3),
                     rng.standard_normal((6, 5)), labels),
        network_case("MultiLayerNetExtend (BatchNorm, Dropout)",
                     lambda dev, dtype: _with_fixed_masks(MultiLayerNetExtend(
                         5, [6, 6], 3, use_dropout=True, dropout_ratio=0.3, use_batchnorm=True,
                         weight_decay_lambda=0.05, device=dev, dtype=dtype, seed=3), 6, dev),
                     rng.standard_normal((6, 5)), labels),
        network_case("SimpleConvNet",
                     lambda dev, dtype: SimpleConvNet((3, 7, 6), {"filter_num": 2, "filter_size": 3,
                                                                  "pad": 1, "stride": 1},
                                                      hidden_size=5, output_size=3,
                                                      weight_init_std="he", device=dev,
                                                      dtype=dtype, seed=3),
                     images, labels[:2]),
        network_case("DeepConvNet (no dropout)",
                     lambda dev, dtype: DeepConvNet((1, 6, 6), [{"filter_num": 1}] * 6,
                                                    hidden_size=3, output_size=3, dropout_ratio=0,
                                                    device=dev, dtype=dtype, seed=3),
                     images[:, :1, :6, :6], labels[:2]),
    ]


CASES: list[Case] = _seed_cases()


def parity_errors(reference: Mapping[str, Array], result: Mapping[str, Array]) -> dict[str, tuple[float, float]]:
    """``{name: (max abs error, max rel error)}`` of ``result`` against ``reference``, on the host."""
    if set(reference) != set(result):
        raise GradientCheckError(f"results {sorted(result)} do not match reference {sorted(reference)}")
    scales = {key: float(np.max(np.abs(to_numpy(ref)), initial=0.0)) for key, ref in reference.items()}
    # gradients ("d..." keys) of one scalar share its scale: one that is 0 in exact arithmetic
    # (a bias before BatchNorm) is judged against the largest, not against its rounding noise
    gradient_scale = max((s for key, s in scales.items() if key.startswith("d")), default=0.0)
    errors = {}
    for key, ref in reference.items():
        r = to_numpy(ref).astype(np.float64)
        a = to_numpy(result[key]).astype(np.float64)
        if r.shape != a.shape:
            raise GradientCheckError(f"{key}: shape {a.shape}, NumPy float64 gives {r.shape}")
        max_abs = float(np.max(np.abs(a - r), initial=0.0))
        scale = max(scales[key], gradient_scale) if key.startswith("d") else scales[key]
        errors[key] = (max_abs, max_abs / scale if scale else max_abs)
    return errors


@dataclass
class CheckRow:
    """One line of the ``xpnet check`` table."""

    check: str
    case: str
    dtype: str
    max_abs_error: float = float("nan")
    max_rel_error: float = float("nan")
    tolerance: float = float("nan")
    passed: bool = False
    message: str = field(default="")


def _placement_problem(results: Mapping[str, Array], dev: Device, dtype: str) -> str:
    expected_dtype = dev.dtype(dtype)
    for key, value in results.items():
        if array_device_of(value) != dev.array_device or value.dtype != expected_dtype:
            return f"{key} is {value.dtype} on {array_device_of(value)}, expected {dtype} on {dev.name}"
    return ""


def run_checks(spec: str | Device, dtypes: tuple[str, ...] = ("float64", "float32"),
               cases: list[Case] | None = None,
               on_row: Callable[[CheckRow], None] | None = None) -> list[CheckRow]:
    """Run parity and gradient checks of ``cases`` on ``spec``; one row per case, dtype and check,
    each passed to ``on_row`` as soon as it is known (a check can take a minute)."""
    dev = resolve_device(spec)
    cpu = resolve_device("cpu")
    rows = []
    for case in cases or CASES:
        reference = case.run(cpu, "float64")
        for dtype in dtypes:
            parity = CheckRow("parity", case.name, dtype, tolerance=PARITY_RTOL[dtype])
            try:
                results = case.run(dev, dtype)
                errors = parity_errors(reference, results)
                parity.max_abs_error = max(e[0] for e in errors.values())
                parity.max_rel_error = max(e[1] for e in errors.values())
                parity.message = _placement_problem(results, dev, dtype)
                parity.passed = parity.max_rel_error <= parity.tolerance and not parity.message
            except Exception as exc:  # a check reports every failure as a row, never a traceback
                parity.message = _describe_failure(exc)
            rows.append(parity)
            if on_row is not None:
                on_row(parity)

            grad = CheckRow("gradient", case.name, dtype)
            try:
                reports = case.gradcheck(dev, dtype)
                grad.max_abs_error = max(r.max_abs_error for r in reports)
                grad.max_rel_error = max(r.max_rel_error for r in reports)
                grad.tolerance = reports[0].rtol
                grad.passed = True
            except Exception as exc:
                grad.message = _describe_failure(exc)
            rows.append(grad)
            if on_row is not None:
                on_row(grad)
    return rows


def _describe_failure(exc: Exception) -> str:
    text = first_line(exc)
    return text if isinstance(exc, XPNetError) else f"{type(exc).__name__}: {text}"
