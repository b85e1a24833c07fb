"""Checkpoints: a network, its optimizer's state and where training stood, in one ``.npz`` file.

The file is written on the host (every array copied off the device first) and atomically:
to a temporary file in the same folder, then renamed over the target, so a crash or a
reader never sees half a checkpoint. It holds plain arrays only and is read with
``allow_pickle=False``, so loading a file cannot run code. Layout (format version 1)::

    meta                   0-d string: JSON with "format", "version", the model "config",
                           "dtype", "epoch", "iteration", "seed", the optimizer's config
                           and step count, "saved_from" (device name) and "extra"
    params/<key>           network.params[key]
    buffers/<key>          network.state_dict()[key], for networks with state beyond params
                           (BatchNorm's running statistics)
    optimizer/<slot>/<key> optimizer state, e.g. optimizer/v/W1 for Momentum

A checkpoint loads on any device, whatever device wrote it: the arrays go through host
memory, and the network is rebuilt from its config by :func:`xpnet.registry.from_config`: a
network of the book from its constructor's arguments, a :class:`~xpnet.Sequential` from its
layer list (each layer's registered name and settings), so a layer class of one's own must be
registered (:func:`xpnet.register_layer`) before loading; an unknown one is refused in one line.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .backend import Device, to_numpy
from .backend import device as resolve_device
from .errors import DataError, XPNetError
from .optim import Optimizer, make_optimizer
from .registry import from_config
from .validate import check_dtype

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "FORMAT", "VERSION"]

FORMAT = "xpnet-checkpoint"
VERSION = 1


_ZIP_MAGIC = b"PK\x03\x04"  # how every .npz (a zip archive) begins


class CheckpointError(DataError):
    """A checkpoint that is missing, truncated, not an xpnet checkpoint, or does not fit."""


def save_checkpoint(path: str | os.PathLike[str], network: Any, optimizer: Optimizer | None, *,
                    epoch: int, seed: int | None, iteration: int | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``network`` (and ``optimizer``'s state) to ``path`` atomically; return the path.

    ``epoch``, ``iteration`` (updates done) and ``seed`` say where training stood; ``extra``
    is any JSON-serialisable dict (``xpnet train`` stores its settings there). This copies
    every array to the host: a sync, meant for the end of an epoch.
    """
    path = Path(path).expanduser()
    arrays = {f"params/{key}": to_numpy(value) for key, value in network.params.items()}
    state_dict = getattr(network, "state_dict", None)
    if callable(state_dict):
        arrays.update({f"buffers/{key}": np.asarray(value) for key, value in state_dict().items()})
    optimizer_meta = None
    if optimizer is not None:
        state = optimizer.state_dict()
        for slot, values in state["slots"].items():
            arrays.update({f"optimizer/{slot}/{key}": value for key, value in values.items()})
        optimizer_meta = {"config": optimizer.config, "step": state["step"]}
    meta = {"format": FORMAT, "version": VERSION, "config": network.config,
            "dtype": network.dtype, "epoch": epoch, "iteration": iteration, "seed": seed,
            "optimizer": optimizer_meta, "saved_from": network.device.name, "extra": extra or {}}
    try:
        arrays["meta"] = np.array(json.dumps(meta))
    except TypeError as exc:
        raise CheckpointError(f"cannot write checkpoint {path}: its extra data is not JSON "
                              f"serialisable ({exc})") from None
    _write_atomically(path, arrays)
    return path


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    write_atomically(path, lambda f: np.savez(f, **arrays), CheckpointError, "checkpoint ")


def write_atomically(path: Path, write: Callable[[BinaryIO], Any], error: type[XPNetError],
                     what: str = "") -> None:
    """``write`` a file into a temporary file in ``path``'s folder, then rename it over ``path``,
    so a crash or a reader never sees half a file. An OS error raises ``error``, naming
    ``what`` and the path, and leaves nothing behind.

    The temporary file is ``.NAME.PID.XXXX.tmp``: a writer killed mid-write (``kill -9``)
    leaves it, and the next write of ``path`` removes it once no process has that PID.
    """
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                   suffix=".tmp")
    except OSError as exc:
        raise error(f"cannot write {what}{path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise error(f"cannot write {what}{path}: {exc.strerror or exc}") from None
        raise


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files of writes of ``path`` whose writer is gone; return them.

    A live writer's file (its PID still runs, on this machine) is left alone.
    """
    removed = []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed  # mkstemp, next, says why the folder cannot be used
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not _running(int(match[1])):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass  # another writer removed it first
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _read(path: Path) -> dict[str, np.ndarray]:
    """Every array in the file, read in full now so that truncation shows here."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if not magic.startswith((_ZIP_MAGIC, b"\x93NUMPY")):
        # np.load would try it as a pickle and advise allow_pickle=True: never for a checkpoint
        raise CheckpointError(f"{path} is not a readable xpnet checkpoint: it is not the .npz "
                              "archive xpnet train --save writes")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path} is not an xpnet checkpoint: it holds a single array, "
                                  "not the .npz archive xpnet train --save writes")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except CheckpointError:
        raise
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise CheckpointError(f"{path} is not a readable xpnet checkpoint: it is truncated, "
                                  f"corrupt or another kind of file ({exc})") from None
        # NumPy's advice (allow_pickle=True) would let the file run code: never for a checkpoint
        raise CheckpointError(f"{path} is not a readable xpnet checkpoint: it holds pickled "
                              "Python objects, which xpnet checkpoints never do") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable xpnet checkpoint: it is truncated, "
                              f"corrupt or another kind of file ({exc})") from None


def _meta(path: Path, contents: dict[str, np.ndarray]) -> dict[str, Any]:
    foreign = f"{path} is not an xpnet checkpoint (no xpnet metadata in it)"
    if "meta" not in contents or contents["meta"].shape != () or contents["meta"].dtype.kind != "U":
        raise CheckpointError(foreign)
    try:
        meta = json.loads(str(contents["meta"][()]))
    except ValueError:
        raise CheckpointError(f"{foreign}: its metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(foreign)
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {meta.get('version')!r}; this "
                              f"xpnet reads version {VERSION} and older: upgrade xpnet")
    missing = [k for k in ("config", "dtype", "epoch", "iteration", "seed") if k not in meta]
    if missing or not isinstance(meta["config"], dict):
        raise CheckpointError(f"checkpoint {path} is damaged: its metadata lacks "
                              f"{', '.join(missing) or 'a model config'}")
    return meta


def _group(contents: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {key[len(prefix):]: value for key, value in contents.items() if key.startswith(prefix)}


def load_checkpoint(path: str | os.PathLike[str], device: str | Device = "cpu",
                    dtype: str | None = None) -> tuple[Any, Optimizer | None, dict[str, Any]]:
    """``(network, optimizer, meta)`` rebuilt from ``path`` on ``device``.

    ``dtype`` (default: the checkpoint's) is the dtype of the parameters and optimizer
    state. ``optimizer`` is ``None`` when none was saved. ``meta`` holds "epoch",
    "iteration", "seed", "config", "dtype", "saved_from", "version" and "extra".
    A missing, truncated or foreign file, or arrays that do not fit the saved
    architecture, raise :class:`CheckpointError` naming the file.
    """
    path = Path(path).expanduser()
    dev = resolve_device(device)
    contents = _read(path)
    meta = _meta(path, contents)
    dtype = check_dtype(dtype or meta["dtype"])
    try:
        network = from_config(meta["config"], device=dev, dtype=dtype)
    except (XPNetError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} describes a network this xpnet cannot build: "
                              f"{exc}") from None
    _load_params(path, network, _group(contents, "params/"), dev, dtype)
    buffers = _group(contents, "buffers/")
    if buffers:
        try:
            network.load_state_dict(buffers)
        except XPNetError as exc:
            raise CheckpointError(f"checkpoint {path} is damaged: {exc}") from None
    optimizer = None
    if meta.get("optimizer"):
        optimizer = _load_optimizer(path, meta["optimizer"], _group(contents, "optimizer/"),
                                    network, dev, dtype)
    return network, optimizer, meta


def _load_params(path: Path, network: Any, saved: dict[str, np.ndarray], dev: Device,
                 dtype: str) -> None:
    expected = network.params
    if set(saved) != set(expected):
        raise CheckpointError(f"checkpoint {path} is damaged: it holds parameters "
                              f"{sorted(saved)} but its model config needs {sorted(expected)}")
    for key, value in saved.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"checkpoint {path} is damaged: parameter {key} has shape "
                                  f"{value.shape} but its model config needs "
                                  f"{tuple(expected[key].shape)}")
    for key, value in saved.items():
        # a fresh copy: updates write into parameters in place
        network.params[key] = dev.send(np.array(value), dtype)


def _load_optimizer(path: Path, saved_meta: dict[str, Any], arrays: dict[str, np.ndarray],
                    network: Any, dev: Device, dtype: str) -> Optimizer:
    try:
        optimizer = make_optimizer(**saved_meta["config"])
    except (XPNetError, TypeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} has an optimizer this xpnet cannot build: "
                              f"{exc}") from None
    slots: dict[str, dict[str, np.ndarray]] = {}
    for name, value in arrays.items():
        slot, _, key = name.partition("/")
        if key not in network.params or tuple(value.shape) != tuple(network.params[key].shape):
            raise CheckpointError(f"checkpoint {path} is damaged: optimizer state {name} does not "
                                  "match any parameter of its network")
        slots.setdefault(slot, {})[key] = value
    try:
        optimizer.load_state_dict({"step": saved_meta.get("step", 0), "slots": slots}, dev, dtype)
    except XPNetError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    return optimizer
