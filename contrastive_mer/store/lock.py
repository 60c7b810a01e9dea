"""An exclusive, non-blocking writer lock on an output file: ``<path>.lock`` held with ``fcntl.flock``.

One process at a time may write a store: the second one fails at once with :class:`OutputLockedError`
naming the store and the holder's pid (written into the lock file). The kernel drops the lock when the holder
exits, however it dies (kill -9 included), so a stale lock file never blocks a later run. The lock file is
removed while still locked on release; a process that opened it just before checks after locking that the
file it locked is still the one at that path, and retries otherwise.

Within one process the newest :func:`acquire` of a path takes over the lock (an older writer object of the
same path is treated as abandoned, as after a crash); its :meth:`WriterLock.release` then does nothing.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from contrastive_mer.errors import UserError

__all__ = ["OutputLockedError", "WriterLock", "acquire", "holds", "lock_path_for"]

#: path -> the lock this process holds on it (the newest holder object owns it)
_HELD: dict[str, "_Held"] = {}


class OutputLockedError(UserError):
    """Another process is writing the same output."""


class _Held:
    """The open, locked lock file of one path in this process."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd
        self.owner: WriterLock | None = None


class WriterLock:
    """A held lock; :meth:`release` (idempotent) unlocks and removes the lock file."""

    def __init__(self, held: _Held) -> None:
        self._held: _Held | None = held
        held.owner = self

    @property
    def held(self) -> bool:
        """True while this object owns the lock."""
        return self._held is not None and self._held.owner is self

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None or held.owner is not self:
            return
        _HELD.pop(str(held.path), None)
        held.owner = None
        try:
            held.path.unlink(missing_ok=True)  # while still locked: nobody can hold a lock on a removed file
        finally:
            os.close(held.fd)


def lock_path_for(path: str | Path) -> Path:
    """The lock file of an output: ``<path>.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def holds(path: str | Path, lock_file: str | Path | None = None) -> bool:
    """Whether this process holds the lock of ``path`` (lock file as in :func:`acquire`)."""
    lock = Path(lock_file if lock_file is not None else lock_path_for(path)).absolute()
    return str(lock) in _HELD


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "a process whose pid is not yet recorded"


def acquire(path: str | Path, what: str = "output", lock_file: str | Path | None = None) -> WriterLock:
    """Lock ``path`` for writing (``what`` names it in the error); raises :class:`OutputLockedError` at once
    when another process holds it. The lock file is ``<path>.lock`` unless ``lock_file`` names another."""
    lock = Path(lock_file if lock_file is not None else lock_path_for(path)).absolute()
    held = _HELD.get(str(lock))
    if held is not None:  # this process already holds it: the new writer takes it over
        return WriterLock(held)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(f"{path}: this {what} is being written by another process ({_holder(lock)}, "
                                    f"lock file {lock}); wait for it to finish or choose another output") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:  # the previous holder removed it between our open and our lock
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    held = _HELD[str(lock)] = _Held(lock, fd)
    return WriterLock(held)
