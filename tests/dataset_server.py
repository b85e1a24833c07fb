"""A local HTTP server and small data set files in the official formats, for the download tests.

:class:`FileServer` serves bytes from memory on 127.0.0.1 (a free port), honours
``Range: bytes=N-`` with 206, logs every request, and misbehaves on demand per path: cut
the connection after some bytes (once), answer 404, or stall before the body. The
``*_files`` helpers build Fashion-MNIST-like IDX ``.gz`` files and CIFAR-10's
``cifar-10-python.tar.gz`` (pickled batches) from NumPy arrays, and :func:`sources`
makes the ``{filename: {"urls", "md5"}}`` table that ``xpnet.datasets.load(sources=...)``
and ``$XPNET_DATASET_SOURCES`` take.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

# the longest a stalled or slowed response holds a server thread (the fixture's stop ends it)
MAX_STALL_S = 10.0


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the first cut
        self.missing: set[str] = set()  # paths answered with 404
        self.stall: set[str] = set()  # paths whose body never comes
        self.chunk_delay: dict[str, float] = {}  # path -> seconds between 4 KiB chunks
        self.ignore_range: set[str] = set()  # paths always sent whole, with 200
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                server._get(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{path}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, path: str) -> int:
        return sum(p == path for p, _ in self.requests)

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.lstrip("/")
        rng = handler.headers.get("Range")
        self.requests.append((path, rng))
        if path in self.missing or path not in self.files:
            handler.send_error(404)
            return
        data = self.files[path]
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        if path in self.ignore_range:
            start = 0
        if start >= len(data):
            handler.send_error(416)
            return
        body = data[start:]
        handler.send_response(206 if start else 200)
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if path in self.stall:
            self._stop.wait(MAX_STALL_S)
            return
        if path in self.cut_after:
            handler.wfile.write(body[:self.cut_after.pop(path)])
            handler.wfile.flush()
            handler.close_connection = True
            return
        delay = self.chunk_delay.get(path)
        for offset in range(0, len(body), 4096):
            if delay and self._stop.wait(delay):
                return
            handler.wfile.write(body[offset:offset + 4096])


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sources(server: FileServer, files: dict[str, bytes], *mirrors: str) -> dict[str, dict]:
    """Serve ``files`` under each of ``mirrors`` (folders) and list them in that order."""
    table = {}
    for name, data in files.items():
        for mirror in mirrors:
            server.files[f"{mirror}/{name}"] = data
        table[name] = {"urls": [server.url(f"{mirror}/{name}") for mirror in mirrors],
                       "md5": md5(data)}
    return table


def idx_gz(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                        *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def idx_files(seed: int, n_train: int = 200, n_test: int = 100):
    """Fashion-MNIST's four files (random 28x28 images whose class shows as a bright row
    block, so a network can learn it), and the arrays in them."""
    rng = np.random.default_rng(seed)
    arrays = []
    for n in (n_train, n_test):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label + 4:2 * label + 6, 4:24] = 255
        arrays += [images, labels]
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return {name: idx_gz(a) for name, a in zip(names, arrays)}, arrays


def cifar_batch(data: np.ndarray, labels: np.ndarray) -> bytes:
    # protocol 2, as the published batches (written by Python 2): NumPy's arrays need
    # numpy's _reconstruct/ndarray/dtype, and Python 3's bytes _codecs.encode
    return pickle.dumps({"batch_label": "made by a test", "labels": [int(v) for v in labels],
                         "data": data, "filenames": [f"{i}.png" for i in range(len(labels))]},
                        protocol=2)


def cifar_tarball(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def cifar_files(seed: int, per_batch: int = 40, n_test: int = 100, replace: dict | None = None):
    """CIFAR-10's archive (5 training batches of ``per_batch`` images, a test batch), the
    arrays in it as ``(N, 3, 32, 32)`` uint8 and int64 labels; ``replace`` swaps members."""
    rng = np.random.default_rng(seed)
    members, xs, ts = {}, [], []
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        labels = rng.integers(0, 10, n)
        data = rng.integers(0, 60, (n, 3, 32, 32)).astype(np.uint8)
        for i, label in enumerate(labels):
            data[i, label % 3, 3 * label:3 * label + 3, :] = 255
        members[name] = cifar_batch(data.reshape(n, 3072), labels)
        xs.append(data)
        ts.append(labels.astype(np.int64))
    members.update(replace or {})
    arrays = (np.concatenate(xs[:5]), np.concatenate(ts[:5]), xs[5], ts[5])
    return {"cifar-10-python.tar.gz": cifar_tarball(members)}, arrays
