"""A run folder: everything about one training run, written so that nothing is ever half-written, and read back
as something that may have been damaged or edited by hand.

Every file is written atomically (see digitlab.system.storage); `metrics.csv` and `log.txt` only grow, a whole line at
a time. `run.json` carries the status (`running`, `complete`, `failed`, `interrupted`, `diverged`, or `pruned`:
stopped early by a sweep's rule, resumable from its checkpoint) and a heartbeat, and the training process holds
the folder's lock, so a reader can tell a crashed run from a live one. Every reader here checks what it reads
and raises DamagedRun (file and reason) for what digitlab cannot have written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from digitlab.errors import DamagedRun, RunError, StorageError
from digitlab.options import plural
from digitlab.run import layout
from digitlab.system.locks import FileLock, held_elsewhere
from digitlab.system.storage import append_line, atomic_write, make_folder, npz_bytes

METRICS_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "test_loss", "test_accuracy", "lr", "seconds"]
HEADERS = (METRICS_COLUMNS, [c for c in METRICS_COLUMNS if c != "lr"])  # runs that recorded no lr read as written
FINISHED_FIELDS = ("ended", "signal", "error", "diverged", "hint", "pruned")  # cleared when a run goes back to running
STALE_AFTER = 600  # seconds without a heartbeat before a `running` run is taken as crashed
SUMMARY_NUMBERS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "val_accuracy", "val_loss",
                   "best_val_accuracy", "seconds")
SUMMARY_COUNTS = ("epochs", "params", "best_epoch")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunFolder:
    """One run's folder. Create a new one with `RunFolder.create`, open an existing one with `RunFolder.open`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def create(cls, runs_dir: str | os.PathLike, name: str) -> RunFolder:
        """runs_dir/<name>-<UTC time>, made exclusively: a clash gets a -2, -3... suffix, never a shared folder.
        A runs folder that cannot be made or written is the user's argument: StorageError with exit code 2."""
        runs_dir = Path(runs_dir)
        try:
            make_folder(runs_dir)
        except StorageError as exc:
            raise exc.because("cannot make the runs folder (--runs-dir)", exit_code=2) from None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            path = runs_dir / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
            except OSError as exc:
                raise StorageError(path, exc.strerror or str(exc), "cannot make the run folder (--runs-dir)",
                                   exit_code=2) from None
        raise RunError(f"{runs_dir}: could not create a new run folder for {name}")

    @classmethod
    def create_at(cls, path: str | os.PathLike) -> RunFolder:
        """Exactly `path`, which must not exist yet (its parent is created)."""
        path = Path(path)
        make_folder(path.parent)
        try:
            path.mkdir()
        except FileExistsError:
            raise RunError(f"{path}: already exists; a run never reuses a folder") from None
        except OSError as exc:
            raise StorageError(path, exc.strerror or str(exc)) from None
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunFolder:
        run = cls(path)
        if not run.path.exists():
            raise RunError(f"{run.path}: no such folder")
        if not run.path.is_dir():
            raise RunError(f"{run.path}: not a folder")
        if not (run.path / layout.RUN_JSON).is_file() or not (run.path / layout.CONFIG).is_file():
            raise RunError(f"{run.path}: not a run folder (no run.json and config.yaml)")
        return run

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- files ----------------------------------------------------------------------------------------------
    def write(self, name: str, data: bytes | str) -> Path:
        return atomic_write(self.path / name, data)

    def write_json(self, name: str, obj) -> Path:
        return self.write(name, json.dumps(obj, indent=2, default=_jsonable) + "\n")

    def read_json(self, name: str) -> dict:
        """A JSON object (a mapping) from the folder; DamagedRun for anything else."""
        path = self.path / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{path}: file not found") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise DamagedRun(path, f"not JSON: {exc}") from None
        except RecursionError:
            raise DamagedRun(path, "nested too deeply for a file digitlab writes") from None
        except OSError as exc:
            raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        if not isinstance(data, dict):
            raise DamagedRun(path, f"expected a JSON object, got {type(data).__name__}")
        return data

    def read_summary(self, name: str | None = None) -> dict:
        """summary.json, checked: its metrics are numbers, its counts whole numbers, and it is this run's
        (`name`, the config's name, when given)."""
        path = self.path / layout.SUMMARY
        summary = self.read_json(layout.SUMMARY)
        for key in SUMMARY_NUMBERS:
            value = summary.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise DamagedRun(path, f"{key} is {value!r}, not a number")
            if complaint := _implausible(key, value):
                raise DamagedRun(path, f"{key} is {value!r}, {complaint}")
        for key in SUMMARY_COUNTS:
            value = summary.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise DamagedRun(path, f"{key} is {value!r}, not a whole number")
        if name is not None and summary.get("name") != name:
            raise DamagedRun(path, f"belongs to run {summary.get('name')!r}, not {name!r}")
        return summary

    def save_npz(self, name: str, arrays: dict[str, np.ndarray]) -> Path:
        return self.write(name, npz_bytes(arrays))

    def append_log(self, line: str) -> None:
        append_line(self.path / layout.LOG, line + "\n")

    # -- run.json ---------------------------------------------------------------------------------------------
    def info(self) -> dict:
        """run.json, checked: a mapping whose status is one digitlab writes."""
        info = self.read_json(layout.RUN_JSON)
        status = info.get("status")
        if status not in layout.WRITTEN:
            raise DamagedRun(self.path / layout.RUN_JSON,
                             f"status {status!r} is not one of {', '.join(layout.WRITTEN)}")
        for key in ("heartbeat",):
            if key in info and not isinstance(info[key], (int, float)):
                raise DamagedRun(self.path / layout.RUN_JSON, f"{key} is {info[key]!r}, not a number")
        return info

    def update_status(self, drop: tuple[str, ...] = (), **fields) -> dict:
        """Merge `fields` into run.json (with a fresh heartbeat), drop the keys in `drop`, rewrite it atomically."""
        path = self.path / layout.RUN_JSON
        info = self.read_json(layout.RUN_JSON) if path.exists() else {}
        for key in drop:
            info.pop(key, None)
        info.update(fields)
        info["heartbeat"] = time.time()
        self.write_json(layout.RUN_JSON, info)
        return info

    def status(self) -> str:
        """The run's status, with `running` read as `crashed` when no process holds its lock (on this
        machine) or, where the lock cannot tell, when its heartbeat has gone stale."""
        info = self.info()
        status = info["status"]
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
        lock = FileLock(self.path / layout.LOCK)
        deadline = time.monotonic() + 2.0
        try:
            while not lock.acquire():
                if time.monotonic() > deadline:
                    raise RunError(f"{self.path}: is being trained by another process right now ({lock.holder})")
                time.sleep(0.02)
        except OSError as exc:
            raise StorageError(lock.path, exc.strerror or str(exc)) from None
        with lock:
            yield

    def is_live(self) -> bool | None:
        """True while a process holds the run's lock, False when none does, None when there is no lock file."""
        path = self.path / layout.LOCK
        return None if not path.exists() else held_elsewhere(path) is not None

    # -- metrics.csv -------------------------------------------------------------------------------------------
    def append_metrics(self, logs: dict) -> None:
        """Append one epoch's row (header first when the file is new), a whole line in one write + fsync. A run
        resumed from a file with the header without lr goes on with that header."""
        path = self.path / layout.METRICS
        row = io.StringIO()
        writer = csv.writer(row, lineterminator="\n")
        columns = METRICS_COLUMNS
        if not path.exists() or path.stat().st_size == 0:
            writer.writerow(columns)
        else:
            with open(path, encoding="utf-8", errors="replace") as file:
                first = file.readline().strip().split(",")
            columns = first if first in HEADERS else columns
        writer.writerow([_cell(logs.get(c)) for c in columns])
        append_line(path, row.getvalue())

    def read_metrics(self) -> list[dict]:
        """metrics.csv's rows (epoch 1, 2, ... in order), [] when there is none yet; DamagedRun when it is not
        what digitlab writes."""
        path = self.path / layout.METRICS
        if not path.exists():
            return []
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DamagedRun(path, "not UTF-8 text") from None
        except OSError as exc:
            raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        return parse_metrics(text, path)


def parse_metrics(text: str, path) -> list[dict]:
    """The rows of a metrics.csv text, checked: the header digitlab writes, every row as long as it, epochs
    1, 2, 3... in order, every other cell empty or a number."""
    if not text.strip():
        return []
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise DamagedRun(path, f"not CSV: {exc}") from None
    header, body = lines[0], [line for line in lines[1:] if line]
    if header not in HEADERS:
        raise DamagedRun(path, f"header is {','.join(header)[:80]!r}, expected {','.join(METRICS_COLUMNS)!r}")
    rows = []
    for n, line in enumerate(body, start=2):
        if len(line) != len(header):
            raise DamagedRun(path, f"line {n} has {plural(len(line), 'cell')}, the header {len(header)}")
        row = {}
        for column, cell in zip(header, line):
            value = _parse(cell)
            if column == "epoch":
                if not isinstance(value, int) or value != len(rows) + 1:
                    raise DamagedRun(path, f"line {n}: epoch {cell!r}, expected {len(rows) + 1}")
            elif value is not None and not isinstance(value, (int, float)):
                raise DamagedRun(path, f"line {n}: {column} is {cell[:20]!r}, not a number")
            elif complaint := _implausible(column, value):
                raise DamagedRun(path, f"line {n}: {column} is {cell[:20]}, {complaint}")
            row[column] = value
        rows.append(row)
    return rows


def _implausible(column: str, value) -> str | None:
    """What is wrong with a metric's value, if anything: an accuracy is a fraction (or nan, for a diverged run);
    seconds are finite and not negative. Losses may be anything."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    if column.endswith("accuracy") and not 0 <= value <= 1:
        return "not an accuracy between 0 and 1"
    if column == "seconds" and not (value >= 0 and math.isfinite(value)):
        return "not a number of seconds"
    return None


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
