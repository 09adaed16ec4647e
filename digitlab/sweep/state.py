"""The state of a sweep's points, read from the disk alone: which run folder is a point's, whether it is
complete, pruned, failed, crashed or being trained elsewhere (its lock), why it stopped, and claiming a point
before training it. PointReader reads them for every look of a sweep, again only from the folders that changed."""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from digitlab.config import read_run_config
from digitlab.errors import ConfigError, DamagedRun, RunError, StorageError, os_reason
from digitlab.options import plural
from digitlab.run import layout
from digitlab.run.agreement import check_agreement
from digitlab.run.folder import RunFolder
from digitlab.sweep.spec import Point
from digitlab.system.locks import FileLock, held_elsewhere
from digitlab.system.storage import make_folder

Status = layout.Status
FAILED = (Status.FAILED, Status.DIVERGED, Status.DAMAGED)  # rerun only with retry_failed
RERUN = (Status.CRASHED, Status.INTERRUPTED)  # rerun always
PAUSED = Status.PRUNED  # resumed when the sweep's pruning promotes it, or when the sweep no longer prunes
REPLACED = layout.REPLACED


def lock_path(sweep_dir: str | os.PathLike, point_id: str) -> Path:
    """The lock a sweep holds on a point while it is trained: <sweep folder>/.locks/<point id>.lock."""
    return Path(sweep_dir) / layout.LOCKS / f"{point_id}.lock"


@dataclass
class Outcome:
    """What became of a point: its state, folder, the metric `select` names and its parameters (complete points),
    the last epoch it trained and why it stopped there (`why`: pruning's reason, an error, a signal...)."""

    point: Point
    state: str
    folder: Path | None
    metric: float | None = None
    params: int | None = None
    note: str = ""
    last_epoch: int | None = None
    why: str = ""

    @property
    def epochs(self) -> int:
        return self.point.cfg["epochs"]


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
    complete point) summary.json that is not what digitlab writes makes it `damaged`, and so does, for a finished
    point, a config.yaml or metrics.csv that disagrees with the rest of the folder (run.files.check_agreement)."""
    return _folder_status(folder, locked_here)[0]


def _folder_status(folder: Path, locked_here: bool = False) -> tuple[str, bool]:
    """(status, lasting): lasting is False when the status depends on more than the folder's files (a lock, a
    heartbeat's age, the memory free when config.yaml is checked) or comes of a read that failed (it may not fail
    again)."""
    run = RunFolder(folder)
    try:
        status, info = run.status(), run.info()
        point = info.get("point") or folder.name.rsplit("-", 1)[-1]  # older folders: the name's id
        metrics = run.read_metrics()
        if status == "complete":
            run.read_summary()
        if status in ("complete", "pruned"):
            _check_agreement(run, info, metrics)
    except DamagedRun:
        return Status.DAMAGED, True
    except ConfigError:
        return Status.DAMAGED, False
    except RunError:
        return Status.CRASHED, False
    if info["status"] == Status.RUNNING:  # what it says depends on locks and the heartbeat's age
        if status == Status.RUNNING and (locked_here or held_elsewhere(lock_path(folder.parent, str(point))) is None):
            return Status.CRASHED, False
        return status, False
    return status, True


_AGREED: set[tuple] = set()  # folders found to agree, with the stat of each file read: a pruned sweep looks
                             # at every point after every job, and an unchanged folder need not be read again


def _check_agreement(run: RunFolder, info: dict, metrics: list[dict]) -> None:
    names = (layout.CONFIG, layout.RUN_JSON, layout.METRICS, layout.CHECKPOINT, layout.MODEL)
    key = (str(run.path),) + tuple(_stat(run / n) for n in names)
    if key not in _AGREED:
        check_agreement(run, read_run_config(run / layout.CONFIG), info, metrics)
        _AGREED.add(key)


def _stat(path: str | os.PathLike) -> tuple | None:
    """What tells a file's versions apart: size, mtime, ctime (all a change sets), inode (a file replaced by a
    rename). None when there is no such file."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino


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


@dataclass
class Reading:
    """What a look found of a point: its state, folder and lock holder (as point_state says them), the values of
    one metric in its metrics.csv, an epoch each ([] when it has none or it cannot be read), and `version`, which
    changes whenever the folder was read again."""

    state: str
    folder: Path | None
    holder: str | None
    values: list
    version: int = 0


@dataclass
class _Read:
    """A point folder as last read: the stat of the folder, its run.json and its metrics.csv (`paths`) taken
    before reading, whether a later change must change that stat (`trusted`), its metric's values and, once asked
    for, its status."""

    name: str
    folder: Path
    paths: tuple[str, ...]
    stamp: tuple
    values: list
    version: int
    trusted: bool
    reading: Reading | None = None  # with its status, once asked for by a look that found no holder


class PointReader:
    """The points' states and the values of `metric` (Reading) at each `read`, as point_state and read_metrics give
    them, read again only from the folders that changed since: a pruned sweep looks at every point after every job.

    One listing of the sweep folder per read (made again only when the folder's own stat changed, or when it holds
    a symbolic link, whose target may change) finds every point's folder. A point's lock is probed at every read:
    another invocation may be training it. A point folder is read again when the stat (size, mtime, ctime, inode)
    of the folder itself, of its run.json or of its metrics.csv changed, when its status depends on more than its
    files (a `running` run.json: a lock, a heartbeat), or when it is in `reread`. That sees every write a run makes:
    metrics.csv grows, and every other file is replaced whole (a rename in the folder); an edit in place of
    summary.json, config.yaml or an .npz file shows at the next change of the folder, or to a new PointReader.
    A stat is trusted only when the file changed some time before the read (COARSE seconds when the file system
    keeps whole seconds, FINE otherwise): a later change then sets another ctime, however coarse the clock."""

    FINE, COARSE = 0.02, 2.0

    def __init__(self, sweep_dir: str | os.PathLike, metric: str = "val_accuracy"):
        self.sweep_dir, self.metric = Path(sweep_dir), metric
        self._reads: dict[str, _Read] = {}
        self._listing: tuple | None = None  # (the sweep folder's stat, trusted, its folders, folder by point id)
        self._locks: dict[str, str] = {}
        self._versions = itertools.count(1)

    def read(self, points, reread=()) -> dict[str, Reading]:
        now = time.time_ns()
        names, by_id = self._listing_now(now)
        out = {}
        for point in points:
            lock = self._locks.get(point.id)
            if lock is None:
                lock = self._locks[point.id] = str(lock_path(self.sweep_dir, point.id))
            holder = held_elsewhere(lock)
            if names is None:  # the sweep folder cannot be listed: as find_folder does it, folder by folder
                name = (folder := find_folder(self.sweep_dir, point)) and folder.name
            else:
                name = point.folder if point.folder in names else by_id.get(point.id)
            if name is None:
                self._reads.pop(point.id, None)
                out[point.id] = Reading(Status.RUNNING if holder else "pending", None, holder, [])
                continue
            read = self._current(point.id, name, now, point.id in reread)
            if holder:
                out[point.id] = Reading(Status.RUNNING, read.folder, holder, read.values, read.version)
                continue
            if read.reading is None:
                status, lasting = _folder_status(read.folder)
                read.trusted = read.trusted and lasting
                read.reading = Reading(status, read.folder, None, read.values, read.version)
            out[point.id] = read.reading
        return out

    def _current(self, point_id: str, name: str, now: int, again: bool) -> _Read:
        """The point's folder as last read, or read now when it may have changed."""
        read = self._reads.get(point_id)
        if read is not None and read.trusted and not again and read.name == name and \
                tuple(map(_stat, read.paths)) == read.stamp:
            return read
        folder = self.sweep_dir / name
        paths = (str(folder), os.path.join(folder, layout.RUN_JSON), os.path.join(folder, layout.METRICS))
        stamp = tuple(map(_stat, paths))  # before reading: a change while reading shows at the next read
        try:
            values = [row.get(self.metric) for row in RunFolder(folder).read_metrics()]
        except RunError:
            values = []
        read = _Read(name, folder, paths, stamp, values, next(self._versions), self._settled(stamp, now))
        self._reads[point_id] = read
        return read

    def _settled(self, stamp: tuple, now: int) -> bool:
        """Whether everything in `stamp` last changed long enough before `now` for a later change to show."""
        for s in stamp:
            if s is not None and s[2] > now - 1e9 * (self.COARSE if s[2] % 1_000_000_000 == 0 else self.FINE):
                return False
        return True

    def _listing_now(self, now: int) -> tuple[set | None, dict]:
        """(the names of the sweep folder's folders, the first of them in name order named by each point id or
        ending in -<id>): what find_folder looks for, from one listing. (None, {}) when it cannot be listed."""
        stat = _stat(self.sweep_dir)
        if self._listing is None or not self._listing[1] or stat is None or stat != self._listing[0]:
            try:
                with os.scandir(self.sweep_dir) as entries:
                    found = [(e.name, e.is_dir(), e.is_symlink()) for e in entries]
            except (FileNotFoundError, NotADirectoryError):
                found = []
            except OSError:
                self._listing = None
                return None, {}
            names = sorted(name for name, folder, _ in found if folder)
            by_id: dict[str, str] = {}
            for name in names:
                by_id.setdefault(name, name)
                dash = name.find("-")
                while dash >= 0:
                    by_id.setdefault(name[dash + 1:], name)
                    dash = name.find("-", dash + 1)
            trusted = stat is not None and not any(link for *_, link in found) and self._settled((stat,), now)
            self._listing = (stat, trusted, set(names), by_id)
        return self._listing[2], self._listing[3]


def should_run(state: str, retry_failed: bool) -> bool:
    """Whether a point in `state` is trained (further) by a sweep that does not prune."""
    return state in ("pending", PAUSED) or state in RERUN or (retry_failed and state in FAILED)


def epochs_done(folder: Path | None) -> int:
    """The epochs in a point folder's metrics.csv (0 when it has none or it cannot be read)."""
    if folder is None:
        return 0
    try:
        return len(RunFolder(folder).read_metrics())
    except RunError:
        return 0


def why_stopped(state: str, folder: Path | None, epochs: int) -> str:
    """Why a point is where it is, in words, from its run.json (pruning's own reasons come from its rule)."""
    try:
        info = RunFolder(folder).read_json(layout.RUN_JSON) if folder is not None else {}
    except RunError:
        info = {}
    done = epochs_done(folder)
    diverged = info.get("diverged") if isinstance(info.get("diverged"), dict) else {}
    return {"complete": f"trained all {plural(epochs, 'epoch')}",
            "pruned": str(info.get("pruned") or f"pruned after epoch {done}"),
            "failed": str(info.get("error") or "failed"),
            "diverged": f"loss {diverged.get('loss', 'nan')} in epoch {diverged.get('epoch', done + 1)}",
            "interrupted": f"interrupted by signal {info.get('signal', '?')} after epoch {done}",
            "crashed": f"its process died after epoch {done}",
            "damaged": "a file of its folder is damaged",
            "pending": "not run yet", "running": "being trained elsewhere"}.get(state, state)


def read_result(folder: Path | None, select: str) -> tuple[float | None, int | None]:
    """(metric named by select, params) from a run folder's summary.json, when it has one."""
    if folder is None or not (folder / layout.SUMMARY).is_file():
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


def claim(sweep_dir: Path, point: Point, retry_failed: bool, until: int | None = None
          ) -> tuple[FileLock | None, dict]:
    """Take the point's lock and check, under it, that the point still needs running (to epoch `until`, when a
    pruned sweep stops it before its last). (lock, outcome) when the caller should run it (outcome["folder"] is
    its old folder, if any); (None, outcome) when not."""
    lock = FileLock(lock_path(sweep_dir, point.id))
    if not lock.acquire():
        return None, {"id": point.id, "state": "running", "note": f"running elsewhere ({lock.holder or 'locked'})"}
    try:
        folder = find_folder(sweep_dir, point)
        state = "pending" if folder is None else folder_status(folder, locked_here=True)
        early = until is not None and until < point.cfg["epochs"]
        done = epochs_done(folder) if early and state in (PAUSED, *RERUN) else 0
    except BaseException:
        lock.release()
        raise
    if not should_run(state, retry_failed) or (early and done >= until):
        lock.release()
        note = "already complete" if state == "complete" else f"already trained to epoch {done}" \
            if state in (PAUSED, *RERUN) else f"{state} earlier; --retry-failed runs it again"
        return None, {"id": point.id, "state": state, "note": note}
    return lock, {"id": point.id, "state": state, "folder": folder}


def resumable(folder: Path | None, state: str) -> bool:
    """A crashed, interrupted or pruned point with a checkpoint continues from it instead of starting over."""
    return folder is not None and state in (*RERUN, PAUSED) and (folder / layout.CHECKPOINT).is_file()


def last_metric(folder: Path, select: str) -> float | None:
    """The `select` metric of a point that has no summary.json (pruned, interrupted...) from its metrics.csv: its
    last epoch's (best_val_accuracy: the best epoch's). None when it has none."""
    try:
        rows = RunFolder(folder).read_metrics()
    except RunError:
        return None
    if select == "best_val_accuracy":
        values = [r["val_accuracy"] for r in rows if isinstance(r.get("val_accuracy"), (int, float))]
        return max(values) if values else None
    value = rows[-1].get(select) if rows else None
    return value if isinstance(value, (int, float)) else None
