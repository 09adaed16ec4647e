"""Training one job of a sweep in this process: claim its point, resume it from its checkpoint when it crashed,
was interrupted or was pruned and is now promoted, otherwise train it afresh (an older folder set aside, never
deleted), and release it. A point that fails is recorded as failed; the sweep goes on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from digitlab.config import dump
from digitlab.errors import CheckpointError, UserError
from digitlab.run import layout
from digitlab.run.folder import RunFolder, utc_now
from digitlab.sweep.state import claim, folder_status, resumable, set_aside
from digitlab.system.environment import command_line
from digitlab.system.storage import synced_once

if TYPE_CHECKING:
    from digitlab.sweep.schedule import Job


def record_failure(run_dir: Path, cfg: dict, error: str) -> None:
    """A failed run folder for a point that failed before training made one (bad data path, ...), so the sweep
    remembers it failed instead of taking it for never run."""
    folder = RunFolder(run_dir) if run_dir.is_dir() else RunFolder.create_at(run_dir)
    if not (folder / layout.CONFIG).exists():
        folder.write(layout.CONFIG, dump(cfg))
    folder.update_status(status=layout.Status.FAILED, ended=utc_now(), error=error, command=command_line())


def origin(sweep_dir: Path, point_id: str) -> dict:
    """What a point's run.json records of its sweep (compare reads it instead of guessing from folder names)."""
    return {"sweep": Path(sweep_dir).name, "point": point_id}


def run_point(sweep_dir: str, job: Job, retry_failed: bool) -> dict:
    """Claim, train (until job.until) and release one point in this process: an outcome dict (id, state, note,
    error). The point's files are fsynced once each, by a background thread while the next point trains (see
    system.storage.synced_once)."""
    with synced_once(later=True):
        return _run_point(sweep_dir, job, retry_failed)


def _run_point(sweep_dir: str, job: Job, retry_failed: bool) -> dict:
    sweep_dir, point = Path(sweep_dir), job.point
    lock, outcome = claim(sweep_dir, point, retry_failed, job.until)
    if lock is None:
        return outcome
    try:
        from digitlab.run.lifecycle import resume, start
        folder, state = outcome.pop("folder"), outcome["state"]
        run_dir, error = sweep_dir / point.folder, None
        if resumable(folder, state):
            try:
                resume(folder, quiet=True, progress=False, stop=job.stop)
                return {**outcome, "state": folder_status(folder), "note": "trained", "resumed": True}
            except CheckpointError as exc:  # a missing or damaged checkpoint, a changed config: start over
                error = f"could not resume ({exc}); trained from scratch"
            except UserError as exc:  # a failed write, the run live elsewhere: keep the folder as it is
                return {**outcome, "state": folder_status(folder), "note": "not resumed", "error": str(exc)}
            except Exception as exc:  # the resumed training itself failed: recorded in its run.json
                return {**outcome, "state": folder_status(folder), "note": "trained", "resumed": True,
                        "error": f"{type(exc).__name__}: {exc}"}
        if folder is not None:
            outcome["moved"] = str(set_aside(sweep_dir, folder, state))
        try:
            start(point.cfg, run_dir=run_dir, quiet=True, progress=False, stop=job.stop,
                  record=origin(sweep_dir, point.id))
        except Exception as exc:  # the point failed; the sweep goes on
            error = f"{type(exc).__name__}: {exc}"
            if not (run_dir / layout.RUN_JSON).is_file():
                record_failure(run_dir, point.cfg, error)
        return {**outcome, "state": folder_status(run_dir), "note": "trained", "error": error}
    finally:
        lock.release()
