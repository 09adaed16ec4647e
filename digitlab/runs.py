"""A run folder: everything about one training run, written so that nothing is ever half-written.

Every file is written atomically (a temporary file in the same folder, flushed, fsynced, renamed over the
old one); `metrics.csv` grows a whole row at a time. `run.json` carries the status (`running`, `complete`,
`failed`, `interrupted`, `diverged`) and a heartbeat, so a reader can tell a crashed run from a live one.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from digitlab import __version__
from digitlab.errors import RunError, StorageError
from digitlab.locks import PointLock, held_elsewhere

METRICS_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "test_loss", "test_accuracy", "seconds"]
STALE_AFTER = 600  # seconds without a heartbeat before a `running` run is taken as crashed


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace `path` with `data` all at once: readers see the old file or the new one, never a part."""
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
            raise storage_error(path, exc) from None
        raise
    _fsync_dir(path.parent)


def save_png(path: str | os.PathLike, figure) -> Path:
    """A matplotlib figure as a PNG at `path`, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write(path, buffer.getvalue())
    return Path(path)


def storage_error(path: Path, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT:
        reason = "the folder was removed"
    return StorageError(f"{path}: cannot write ({reason}); the run stopped, its last checkpoint is intact")


def _fsync_dir(folder: Path) -> None:
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


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_commit() -> str | None:
    """The commit of the digitlab checkout this code runs from, when it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """What a run's numbers depend on besides its config; the BLAS threads change the last bits of sums."""
    return {"python": platform.python_version(), "numpy": np.__version__, "digitlab": __version__,
            "git_commit": git_commit(), "host": socket.gethostname(), "platform": platform.platform(),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"}


class RunFolder:
    """One run's folder. Create a new one with `RunFolder.create`, open an existing one with `RunFolder(path)`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def create(cls, runs_dir: str | os.PathLike, name: str) -> "RunFolder":
        """runs_dir/<name>-<UTC time>, made exclusively: a clash gets a -2, -3... suffix, never a shared folder."""
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            path = runs_dir / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise RunError(f"{runs_dir}: could not create a new run folder for {name}")

    @classmethod
    def create_at(cls, path: str | os.PathLike) -> "RunFolder":
        """Exactly `path`, which must not exist yet (its parent is created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise RunError(f"{path}: already exists; a run never reuses a folder") from None
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunFolder":
        run = cls(path)
        if not (run.path / "run.json").is_file() or not (run.path / "config.yaml").is_file():
            raise RunError(f"{run.path}: not a run folder (no run.json and config.yaml)")
        return run

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- files ----------------------------------------------------------------------------------------------
    def write(self, name: str, data: bytes | str) -> Path:
        atomic_write(self.path / name, data)
        return self.path / name

    def write_json(self, name: str, obj) -> Path:
        return self.write(name, json.dumps(obj, indent=2, default=_jsonable) + "\n")

    def read_json(self, name: str) -> dict:
        try:
            return json.loads((self.path / name).read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path / name}: file not found") from None
        except (ValueError, OSError) as exc:
            raise RunError(f"{self.path / name}: cannot be read as JSON ({exc})") from None

    def save_figure(self, name: str, figure) -> Path:
        return save_png(self.path / name, figure)

    def save_npz(self, name: str, arrays: dict[str, np.ndarray]) -> Path:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return self.write(name, buffer.getvalue())

    # -- run.json ---------------------------------------------------------------------------------------------
    def update_status(self, **fields) -> dict:
        """Merge `fields` into run.json (with a fresh heartbeat) and rewrite it atomically."""
        path = self.path / "run.json"
        info = json.loads(path.read_text()) if path.exists() else {}
        info.update(fields)
        info["heartbeat"] = time.time()
        self.write_json("run.json", info)
        return info

    def status(self) -> str:
        """The run's status, with `running` read as `crashed` when no process holds its lock (on this
        machine) or, where the lock cannot tell, when its heartbeat has gone stale."""
        info = self.read_json("run.json")
        status = info.get("status", "unknown")
        if status == "running":
            live = self.is_live()
            if live is False or (live is None and time.time() - float(info.get("heartbeat", 0)) > STALE_AFTER):
                return "crashed"
        return status

    # -- the lock a training process holds ------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Hold the run's lock while training it (released by the OS when the process dies, even by SIGKILL).
        A second process asking for it gets a RunError; readers' probes (is_live) last microseconds and are
        waited out."""
        lock = PointLock(self.path / ".lock")
        deadline = time.monotonic() + 2.0
        try:
            while not lock.acquire():
                if time.monotonic() > deadline:
                    raise RunError(f"{self.path}: is being trained by another process right now ({lock.holder})")
                time.sleep(0.02)
        except OSError as exc:
            raise storage_error(lock.path, exc) from None
        with lock:
            yield

    def is_live(self) -> bool | None:
        """True while a process holds the run's lock, False when none does, None when there is no lock file."""
        path = self.path / ".lock"
        return None if not path.exists() else held_elsewhere(path) is not None

    # -- metrics.csv -------------------------------------------------------------------------------------------
    def append_metrics(self, logs: dict) -> None:
        """Append one epoch's row (header first when the file is new), a whole line in one write + fsync."""
        path = self.path / "metrics.csv"
        row = io.StringIO()
        writer = csv.writer(row, lineterminator="\n")
        if not path.exists() or path.stat().st_size == 0:
            writer.writerow(METRICS_COLUMNS)
        writer.writerow([_cell(logs.get(c)) for c in METRICS_COLUMNS])
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(row.getvalue())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise storage_error(path, exc) from None

    def read_metrics(self) -> list[dict]:
        path = self.path / "metrics.csv"
        if not path.exists():
            return []
        try:
            with open(path, newline="", encoding="utf-8") as f:
                return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
        except (csv.Error, UnicodeDecodeError, OSError) as exc:
            raise RunError(f"{path}: cannot be read ({exc})") from None


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _parse(text: str):
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _jsonable(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def command_line() -> str:
    """The command this process runs, as a shell would take it back (`python -m digitlab` shown as digitlab)."""
    import shlex
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) in ("digitlab", "__main__.py"):
        argv[0] = "digitlab"
    elif argv:
        argv[0] = os.path.basename(argv[0])
    return " ".join(shlex.quote(a) for a in argv)
