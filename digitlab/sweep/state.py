"""The state of a sweep's points, read from the disk alone: which run folder is a point's, whether it is
complete, failed, crashed or being trained elsewhere (its lock), and claiming a point before training it."""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path

from digitlab import checkpoint
from digitlab.errors import DamagedRun, RunError, StorageError, os_reason
from digitlab.locks import FileLock, held_elsewhere, lock_path
from digitlab.runs import RunFolder
from digitlab.storage import make_folder
from digitlab.sweep.spec import Point

FAILED = ("failed", "diverged", "damaged")  # rerun only with retry_failed
RERUN = ("crashed", "interrupted")   # rerun always
REPLACED = "replaced"


@dataclass
class Outcome:
    point: Point
    state: str
    folder: Path | None
    metric: float | None = None
    params: int | None = None
    note: str = ""


def best_of(outcomes: list[Outcome], maximize: bool) -> Outcome | None:
    """The complete point with the best metric; ties go to fewer parameters, then to the point id."""
    scored = [o for o in outcomes if o.state == "complete" and o.metric is not None]
    if not scored:
        return None
    sign = -1 if maximize else 1
    return min(scored, key=lambda o: (sign * o.metric, o.params if o.params is not None else math.inf, o.point.id))


def find_folder(sweep_dir: Path, point: Point) -> Path | None:
    """The point's run folder: its own name, or any folder ending in its id (named by an older sweep file)."""
    own = sweep_dir / point.folder
    if own.is_dir():
        return own
    if sweep_dir.is_dir():
        for child in sorted(sweep_dir.iterdir()):
            if child.is_dir() and (child.name == point.id or child.name.endswith("-" + point.id)):
                return child
    return None


def folder_status(folder: Path, locked_here: bool = False) -> str:
    """A point folder's status. `running` with nobody holding the point's lock is `crashed` (the kernel drops a
    lock when its holder dies); a folder without run.json is `crashed` too. A run.json, metrics.csv or (for a
    complete point) summary.json that is not what digitlab writes makes it `damaged`."""
    run = RunFolder(folder)
    try:
        status = run.status()
        run.read_metrics()
        if status == "complete":
            run.read_summary()
    except DamagedRun:
        return "damaged"
    except RunError:
        return "crashed"
    if status == "running" and (locked_here or held_elsewhere(lock_path(folder.parent, folder.name.rsplit(
            "-", 1)[-1])) is None):
        return "crashed"
    return status


def point_state(sweep_dir: Path, point: Point) -> tuple[str, Path | None, str | None]:
    """(state, folder, holder): state is `pending` (never run), `running` (its lock is held: `holder` says by
    whom), or the folder's status (complete, failed, diverged, interrupted, crashed)."""
    holder = held_elsewhere(lock_path(sweep_dir, point.id))
    folder = find_folder(sweep_dir, point)
    if holder:
        return "running", folder, holder
    if folder is None:
        return "pending", None, None
    return folder_status(folder), folder, None


def should_run(state: str, retry_failed: bool) -> bool:
    return state == "pending" or state in RERUN or (retry_failed and state in FAILED)


def read_result(folder: Path | None, select: str) -> tuple[float | None, int | None]:
    """(metric named by select, params) from a run folder's summary.json, when it has one."""
    if folder is None or not (folder / "summary.json").is_file():
        return None, None
    try:
        summary = RunFolder(folder).read_summary()
    except RunError:
        return None, None
    return summary.get(select), summary.get("params")


def set_aside(sweep_dir: Path, folder: Path, state: str) -> Path:
    """Move a crashed, interrupted or failed point's folder to replaced/<folder>.<state>-<n>: kept for a post
    mortem, out of the way of the rerun, never overwritten."""
    attic = make_folder(sweep_dir / REPLACED)
    for n in itertools.count(1):
        target = attic / f"{folder.name}.{state}-{n}"
        if not target.exists():
            try:
                os.rename(folder, target)
            except OSError as exc:
                raise StorageError(target, os_reason(exc), f"cannot set {folder.name} aside") from None
            return target
    raise AssertionError("unreachable")


def claim(sweep_dir: Path, point: Point, retry_failed: bool) -> tuple[FileLock | None, dict]:
    """Take the point's lock and check, under it, that the point still needs running. (lock, outcome) when
    the caller should run it (outcome["folder"] is its old folder, if any); (None, outcome) when not."""
    lock = FileLock(lock_path(sweep_dir, point.id))
    if not lock.acquire():
        return None, {"id": point.id, "state": "running", "note": f"running elsewhere ({lock.holder or 'locked'})"}
    try:
        folder = find_folder(sweep_dir, point)
        state = "pending" if folder is None else folder_status(folder, locked_here=True)
    except BaseException:
        lock.release()
        raise
    if not should_run(state, retry_failed):
        lock.release()
        note = "already complete" if state == "complete" else f"{state} earlier; --retry-failed runs it again"
        return None, {"id": point.id, "state": state, "note": note}
    return lock, {"id": point.id, "state": state, "folder": folder}


def resumable(folder: Path | None, state: str) -> bool:
    """A crashed or interrupted point with a checkpoint continues from it instead of starting over."""
    return folder is not None and state in RERUN and (folder / checkpoint.NAME).is_file()
