"""The files a command writes: proven writable before any work, and one run per checkpoint.

:func:`check_writable` creates and removes a small file beside each output before training
(or exporting) starts, so a read-only mount, a full disk or a folder that is not there is
found in the first second, not when the first epoch's work would be lost with it.

:class:`RunLock` is an advisory lock (``fcntl.flock``) on a hidden lock file beside a
checkpoint, held for a whole run: a second ``xpnet train --save`` of the same file is refused,
naming the process that holds it, instead of the two runs overwriting each other's epochs.
The kernel drops the lock when its holder dies, even by ``kill -9``.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from types import TracebackType

from .errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

__all__ = ["check_writable", "RunLock"]

# bytes written by the probe: a full disk refuses them (an empty file needs no block)
_PROBE = b"\0" * 4096


def check_writable(flag: str, path: str | os.PathLike[str]) -> Path:
    """``path`` resolved, once a file was created, written and removed beside it; else a
    :class:`ConfigError` naming ``flag``, the path and the reason."""
    target = Path(path).expanduser().resolve()
    folder = target.parent
    if target.is_dir():
        raise ConfigError(f"cannot write {flag} {path}: it is a folder; name a file in it")
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: folder {folder} does not exist; create it first")
    probe = folder / f".{target.name}.{os.getpid()}.probe"
    try:
        with open(probe, "wb") as f:
            try:
                f.write(_PROBE)
                f.flush()
            finally:
                os.unlink(probe)  # created: so the folder takes the unlink too
    except OSError as exc:
        raise ConfigError(f"cannot write {flag} {path}: {_reason(exc)}") from None
    return target


def _reason(exc: OSError) -> str:
    hint = {errno.ENOSPC: "; free some space or write elsewhere",
            errno.EDQUOT: "; free some space or write elsewhere",
            errno.EROFS: "; write to another place",
            errno.EACCES: "; write to a folder you may write to",
            errno.EPERM: "; write to a folder you may write to"}.get(exc.errno, "")
    return f"{exc.strerror or exc}{hint}"


class RunLock:
    """Hold ``.NAME.lock`` beside ``path`` for a run; a second holder gets a :class:`ConfigError`
    naming the first one's PID. Use as a context manager, or :meth:`acquire` / :meth:`release`."""

    def __init__(self, path: str | os.PathLike[str], flag: str = "--save") -> None:
        target = Path(path).expanduser().resolve()
        self.path = target.with_name(f".{target.name}.lock")
        self.flag, self.target = flag, path
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ConfigError(f"cannot write {self.flag} {self.target}: {_reason(exc)}") from None
            try:
                if self._lock(fd):
                    return self
            except BaseException:  # in use, or Ctrl-C in the middle: leave nothing of ours
                if self._fd is None:
                    os.close(fd)
                else:
                    self.release()
                raise
            os.close(fd)

    def _lock(self, fd: int) -> bool:
        """Lock ``fd``, opened on the lock file; False to try again with the file now there."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{self.flag} {self.target} is in use by another xpnet run "
                              f"(PID {self._holder(fd)}); wait for it to end, or save "
                              "elsewhere") from None
        # the holder before us may have removed the file after we opened it: lock the file
        # that is at the path now, or two runs would each hold a lock
        try:
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            return False
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return True

    @staticmethod
    def _holder(fd: int) -> str:
        """The PID the holder wrote, waiting a moment for one that has just locked the file."""
        for _ in range(50):
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            if pid:
                return pid
            time.sleep(0.01)
        return "unknown"

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still held: no one can lock the old file
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
