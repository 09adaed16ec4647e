"""Locks that tell live work from dead: an exclusive, non-blocking `fcntl.flock` on a file. A sweep takes one per
point (`<sweep folder>/.locks/<point id>.lock`), so two sweeps running at once (cron overlapping itself) never
train the same point; a training process takes one on its run folder (`<run>/.lock`, see RunFolder.lock).

The kernel releases the lock when its holder exits, however it exits (SIGKILL included), so a held lock means a
live process is working on the point and a free lock on a `running` run means that run crashed. The file holds
the holder's pid and host, for the message of the one that finds it taken. Lock files are never deleted:
unlinking a lock file while another process waits on it would let two holders in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from digitlab.errors import StorageError, os_reason


class FileLock:
    """`FileLock(path).acquire()` is True when this process now holds the lock, False when another does
    (`holder` then says who). `release()` (or leaving a `with` block) lets it go."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.fd: int | None = None
        self.holder = ""

    def acquire(self) -> bool:
        fd = _open_for_locking(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.holder = _read_holder(fd)
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def waiting_lock(path: str | os.PathLike):
    """A blocking exclusive lock for a short critical section, e.g. reading the points' states and rewriting
    points.csv from them, so that the sweep that writes last has also looked last."""
    fd = _open_for_locking(Path(path))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _open_for_locking(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(path, os_reason(exc)) from None


def held_elsewhere(path: str | os.PathLike) -> str | None:
    """Who holds the lock at `path` ("pid 123 on host"), or None when nobody does. Takes and drops the lock
    to find out, without creating anything: a missing lock file is a free lock."""
    try:
        fd = os.open(path, os.O_RDONLY)  # flock needs no write access: a read-only sweep folder can be probed
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd) or "another process"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""
