"""Verified downloads of data set files, with the standard library only (``urllib``).

:func:`fetch` puts one file into a folder the way torchvision's dataset downloads do, and
more carefully: the official URL first, then each mirror; every byte goes to a temporary
``.<name>.part`` file beside the target; a cut connection or a timeout is retried with
exponential backoff and resumed with an HTTP ``Range`` request from the bytes already
there; the whole file is checked against its published MD5 and only then renamed into
place (``os.replace``, atomic). A partial or unverified file is never returned, and a file
whose checksum is wrong is deleted.

Two processes fetching into one folder at once take turns through an advisory lock on
``.<name>.lock`` (``fcntl.flock``, released by the OS if a process dies); the second finds
the first's verified file and uses it. Where ``fcntl`` is missing (Windows) each process
writes its own temporary file and the atomic rename still leaves one verified copy.

Why urllib and not ``requests``: the standard library does everything needed here (Range
requests, timeouts, redirects, HTTPS), and a dependency only for downloads would be a
dependency for every user, including the many who train on the packaged MNIST only.

Tests and users with a local copy point the sources elsewhere: see :func:`sources_override`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import DataError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the atomic rename alone keeps files whole
    fcntl = None  # type: ignore[assignment]

__all__ = ["SOURCES_ENV", "Source", "DownloadError", "fetch", "md5_of", "unverified_digest",
           "parse_sources", "sources_for", "sources_override"]

SOURCES_ENV = "XPNET_DATASET_SOURCES"
_CHUNK = 1 << 16
_USER_AGENT = "xpnet-dataset-download"
# HTTP statuses worth retrying at the same URL; any other 4xx/5xx moves on to the next mirror
_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}
# (resolved path, size, mtime_ns, digest) of files verified in this process
_VERIFIED: set[tuple[str, int, int, str]] = set()


@dataclass(frozen=True)
class Source:
    """One file of a data set: its name in the folder, the URLs that serve it (official
    first, then mirrors) and its published MD5."""

    filename: str
    urls: tuple[str, ...]
    md5: str


class DownloadError(DataError):
    """No URL of a :class:`Source` gave a file with the published checksum."""


class _Cut(Exception):
    """The transfer stopped early; what arrived stays in the .part file for a resume."""


def md5_of(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest (MD5 by default, or any ``hashlib`` algorithm) of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unverified_digest(path: Path, expected: str, algorithm: str = "md5") -> str | None:
    """None when the file at ``path`` has the hex digest ``expected``, else the digest it has.
    A match is remembered by (path, size, mtime) for the process: large files (CIFAR-10's 170 MB,
    the packaged MNIST) are hashed once, not on every load."""
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if memo in _VERIFIED:
        return None
    found = md5_of(path, algorithm)
    if found != expected:
        return found
    _VERIFIED.add(memo)
    return None


def sources_override(dataset: str) -> dict[str, Source] | None:
    """The sources ``$XPNET_DATASET_SOURCES`` gives for ``dataset``, or None.

    The variable names a JSON file ``{"<dataset>": {"<filename>": {"urls": [...],
    "md5": "..."}}}``: a local mirror, or (in xpnet's tests) a server on 127.0.0.1.
    """
    path = os.environ.get(SOURCES_ENV)
    if not path:
        return None
    try:
        table = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"${SOURCES_ENV} names {path}, which is not a readable JSON file ({exc}); "
                        "fix it or unset the variable") from None
    if not isinstance(table, dict) or dataset not in table:
        return None
    return parse_sources(table[dataset], f"${SOURCES_ENV} ({path})")


def parse_sources(files: Mapping[str, Any], origin: str) -> dict[str, Source]:
    """``{filename: Source}`` from ``{filename: {"urls": [...], "md5": "..."}}`` or Sources."""
    parsed = {}
    for name, spec in files.items():
        if isinstance(spec, Source):
            parsed[name] = spec
            continue
        urls, md5 = (spec.get("urls"), spec.get("md5")) if isinstance(spec, dict) else (None, None)
        if (not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls)
                or not isinstance(md5, str) or len(md5) != 32):
            raise DataError(f"{origin}: entry {name!r} must be {{\"urls\": [URL, ...], \"md5\": "
                            f"\"<32 hex digits>\"}}, got {spec!r}")
        parsed[name] = Source(name, tuple(urls), md5.lower())
    return parsed


def fetch(source: Source, folder: str | os.PathLike[str], *, timeout: float = 30.0,
          attempts: int = 3, backoff: float = 1.0, progress: bool | None = None,
          by_hand: str = "") -> Path:
    """``folder/source.filename``, downloaded and verified unless a verified copy is there.

    Each URL is tried ``attempts`` times (waiting ``backoff``, then twice as long...) while it
    fails in a way that may pass (a cut, a timeout, a refused connection, a 5xx); a 4xx or a
    wrong checksum moves on to the next URL at once. ``timeout`` bounds every connect and
    read, so a stalled server fails instead of hanging. ``progress`` (default: stderr is a
    terminal) shows a tqdm bar. A file already in ``folder`` with another checksum is not
    overwritten: it may be the user's, so :class:`DataError` says so. If no URL works,
    :class:`DownloadError` names the URLs and the last failure, followed by ``by_hand``.
    """
    folder = Path(folder).expanduser()
    target = folder / source.filename
    if target.is_file():
        _check_existing(target, source)
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create data folder {folder}: {exc.strerror or exc}") from None
    if progress is None:
        progress = sys.stderr.isatty()
    with _locked(folder / f".{source.filename}.lock"):
        if target.is_file():  # another process finished it while this one waited
            _check_existing(target, source)
            return target
        part = folder / (f".{source.filename}.part" if fcntl is not None
                         else f".{source.filename}.{os.getpid()}.part")
        failures = []
        for url in source.urls:
            failure = _from_url(url, part, source, timeout, attempts, backoff, progress)
            if failure is None:
                os.replace(part, target)
                return target
            failures.append(f"{url}: {failure}")
        part.unlink(missing_ok=True)
    tried = "; ".join(failures)
    raise DownloadError(f"cannot download {source.filename} ({tried}){'; ' if by_hand else ''}"
                        f"{by_hand}")


def _check_existing(target: Path, source: Source) -> None:
    found = unverified_digest(target, source.md5)
    if found is not None:
        raise DataError(f"{target} has MD5 {found}, not the published {source.md5}: it is "
                        "damaged or another file; delete it to download it again")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _from_url(url: str, part: Path, source: Source, timeout: float, attempts: int,
              backoff: float, progress: bool) -> str | None:
    """Download ``url`` into ``part`` and verify it: None on success, else why it failed."""
    restarted = False
    attempt = 0
    while True:
        attempt += 1
        try:
            _transfer(url, part, timeout, progress, source.filename)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # the .part already holds every byte (or more): verify below
                pass
            elif exc.code not in _TRANSIENT or attempt >= attempts:
                return f"HTTP {exc.code} {exc.reason}"
            else:
                time.sleep(backoff * 2 ** (attempt - 1))
                continue
        except (_Cut, OSError, http.client.HTTPException) as exc:
            if attempt >= attempts:
                return _reason(exc, timeout)
            time.sleep(backoff * 2 ** (attempt - 1))
            continue
        found = md5_of(part) if part.is_file() else "nothing"
        if found == source.md5:
            return None
        part.unlink(missing_ok=True)
        if not restarted and attempt < attempts:
            # a .part left by an older run may belong to another version of the file: once
            # more from byte 0 before calling this URL wrong
            restarted = True
            continue
        return f"MD5 {found}, expected {source.md5} (the partial file was deleted)"


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"no data for {timeout:g} s (timed out)"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _transfer(url: str, part: Path, timeout: float, progress: bool, name: str) -> None:
    """Append the rest of ``url`` to ``part``, asking for it with a Range header."""
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # the server ignored Range: start again
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        with open(part, "ab" if have else "wb") as out, _bar(progress, total, have, name) as bar:
            received = _copy(response, out, bar)
    if total is not None and have + received < total:
        raise _Cut(f"connection closed after {have + received} of {total} bytes")


def _copy(response: Any, out: BinaryIO, bar: Any) -> int:
    received = 0
    while True:
        try:
            chunk = response.read(_CHUNK)
        except http.client.IncompleteRead as exc:
            out.write(exc.partial)
            raise _Cut("connection cut mid-file") from None
        if not chunk:
            return received
        out.write(chunk)
        received += len(chunk)
        if bar is not None:
            bar.update(len(chunk))


@contextlib.contextmanager
def _bar(progress: bool, total: int | None, initial: int, name: str) -> Iterator[Any]:
    if not progress:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
              desc=name, leave=False, file=sys.stderr) as bar:
        yield bar


def sources_for(default: Sequence[Source], dataset: str,
                override: Mapping[str, Any] | None) -> dict[str, Source]:
    """The sources to fetch ``dataset``'s files from: ``override`` (the ``sources=`` argument)
    if given, else ``$XPNET_DATASET_SOURCES``'s entry, else ``default`` (the official ones)."""
    table = {s.filename: s for s in default}
    replaced = (parse_sources(override, "the sources argument") if override is not None
                else sources_override(dataset))
    if replaced is not None:
        unknown = sorted(set(replaced) - set(table))
        if unknown:
            raise DataError(f"sources for {dataset} name files it does not have: "
                            f"{', '.join(unknown)}; its files are {', '.join(table)}")
        table.update(replaced)
    return table
