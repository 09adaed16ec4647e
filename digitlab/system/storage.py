"""Writing files so that nothing is ever half-written: a temporary file in the same folder, flushed, fsynced and
renamed over the old one, so a reader sees the old file or the new one and never a part of either.

Every OS error on the way (disk full, permission denied, a folder removed or a path under a file) becomes one
StorageError naming the path and the reason; the command that meets it adds what it means for the user.

Inside `synced_once` (a sweep's point) the renames and appends are the same, but each file is fsynced once, after
the block ends, instead of at every write: a small point writes some fifty times, and fifty fsyncs were a third
of its time. A process that dies still leaves every file whole (the rename is what makes a write all-or-nothing);
only a machine that loses power during a point or just after may lose that point's last writes, and the sweep
then finds the point damaged or unfinished and trains it again.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from digitlab.errors import StorageError, os_reason

_unsynced: contextvars.ContextVar[dict | None] = contextvars.ContextVar("digitlab_unsynced", default=None)
_syncing: list[Future] = []  # the last block's fsyncs left to the background thread, at most one
_syncer: ThreadPoolExecutor | None = None
_starting = threading.Lock()


@contextlib.contextmanager
def synced_once(later: bool = False):
    """Files written inside (by atomic_write and append_line, in this thread) are fsynced once each, and their
    folders once each, when the block ends, however it ends. `later`: by a background thread of this process
    while the caller goes on (a sweep worker trains its next point meanwhile; the block after waits for these
    fsyncs before leaving its own, so at most one block's are outstanding, and the interpreter waits for them
    when it exits)."""
    if _unsynced.get() is not None:  # nested: the outer block syncs
        yield
        return
    written: dict[str, None] = {}  # paths in the order first written (a dict: ordered, no repeats)
    token = _unsynced.set(written)
    try:
        yield
    finally:
        _unsynced.reset(token)
        paths = list(written) + list(dict.fromkeys(os.path.dirname(p) for p in written))
        wait_synced()
        if later:
            _syncing.append(_background().submit(_fsync_all, paths))
        else:
            _fsync_all(paths)


def wait_synced() -> None:
    """Wait for the fsyncs left to the background thread (another thread may be taking them too)."""
    while True:
        try:
            future = _syncing.pop()
        except IndexError:
            return
        future.result()


def _background() -> ThreadPoolExecutor:
    global _syncer
    with _starting:
        if _syncer is None:
            _syncer = ThreadPoolExecutor(1, thread_name_prefix="digitlab-fsync")
    return _syncer


def _fsync_all(paths: list[str]) -> None:
    for path in paths:
        fsync_path(path)


def _defer(path: str | os.PathLike) -> bool:
    """Whether `path`'s fsync is left to the enclosing synced_once (noted there)."""
    written = _unsynced.get()
    if written is None:
        return False
    written[os.fspath(path)] = None
    return True


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or folder by its path, if it is still there (an error is no reason to stop)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace `path` with `data` all at once."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    deferred = _defer(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if not deferred:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StorageError(path, os_reason(exc)) from None
        raise
    if not deferred:
        fsync_path(path.parent)
    return path


def append_line(path: str | os.PathLike, text: str) -> None:
    """Append whole lines in one write and fsync (a file that only grows: metrics.csv, log.txt)."""
    deferred = _defer(path)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if not deferred:
                os.fsync(f.fileno())
    except OSError as exc:
        raise StorageError(path, os_reason(exc)) from None


def make_folder(path: str | os.PathLike, exist_ok: bool = True) -> Path:
    """mkdir -p, with a StorageError instead of an OSError (FileExistsError passes through when not exist_ok)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        if not exist_ok:
            raise
        raise StorageError(path, "a file of that name is in the way") from None
    except OSError as exc:
        raise StorageError(path, os_reason(exc)) from None
    return path


def check_writable(folder: str | os.PathLike) -> None:
    """StorageError unless a file can be created in `folder` (made and removed at once): a command that writes
    only after minutes of work says so first."""
    folder = Path(folder)
    probe = folder / f".digitlab-probe.{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StorageError(folder, os_reason(exc)) from None


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_npz(path: str | os.PathLike, keys=None) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (every one, or only `keys`: the others are never decompressed), never
    unpickling: a file that is not a zip archive is refused by its first bytes, where np.load would take it for a
    pickle and suggest loading it unsafely. KeyError for a key the file does not hold."""
    with open(path, "rb") as f:
        if f.read(2) != b"PK":
            raise ValueError("not an .npz archive (it does not start as a zip file does)")
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in (npz.files if keys is None else keys)}
