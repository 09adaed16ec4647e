"""Writing files so that nothing is ever half-written: a temporary file in the same folder, flushed, fsynced and
renamed over the old one, so a reader sees the old file or the new one and never a part of either.

Every OS error on the way (disk full, permission denied, a folder removed or a path under a file) becomes one
StorageError naming the path and the reason; the command that meets it adds what it means for the user.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from digitlab.errors import StorageError, os_reason


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace `path` with `data` all at once."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StorageError(path, os_reason(exc)) from None
        raise
    fsync_dir(path.parent)
    return path


def append_line(path: str | os.PathLike, text: str) -> None:
    """Append whole lines in one write and fsync (a file that only grows: metrics.csv, log.txt)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
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


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
