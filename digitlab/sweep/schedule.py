"""What a sweep trains now, read from the disk alone: in a plain sweep every point that needs it, to its last
epoch; in a pruned one what the sweep's rule (digitlab.sweep.prune) decides from the metrics on disk, looked at
again after every job, so that a rung's decisions are taken as soon as its results are in.

A job is a point and the epoch to train it to, with the stop rule its run applies. The same (point, epoch) is
never run twice by one invocation, so a job that could not make progress (its worker lost, say) waits for the
next invocation instead of looping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from digitlab.errors import RunError
from digitlab.run import layout
from digitlab.run.callbacks import StopAfter
from digitlab.run.folder import RunFolder, utc_now
from digitlab.sweep.prune import COMPLETE, PRUNED, RUN, WAIT, Decision, Track
from digitlab.sweep.spec import Point, Sweep
from digitlab.sweep.state import FAILED, RERUN, PointReader, Reading, lock_path, should_run, why_stopped
from digitlab.system.locks import FileLock

Status = layout.Status


@dataclass(frozen=True)
class Job:
    """Train `point` until epoch `until` (its last, unless pruning stops it earlier), with `stop` as the stop
    rule of its run (digitlab.run.lifecycle), None to train to the end."""

    point: Point
    until: int
    stop: object | None = None


class Schedule:
    """The points' states and, for a pruned sweep, the rule's decisions, as of the last `look()`."""

    def __init__(self, sweep: Sweep, sweep_dir: Path, retry_failed: bool = False):
        self.sweep, self.sweep_dir, self.retry_failed = sweep, sweep_dir, retry_failed
        self.states: dict[str, tuple[str, Path | None, str | None]] = {}
        self.decisions: dict[str, Decision] = {}
        self.done_epochs: dict[str, int] = {}
        self.tried: set[tuple[str, int]] = set()
        self.reader = PointReader(sweep_dir, sweep.prune.metric if sweep.prune is not None else "val_accuracy")
        self._tracks: dict[str, tuple[tuple, Track]] = {}  # point id -> (what its track was made from, the track)

    @property
    def prunes(self) -> bool:
        return self.sweep.prune is not None

    def look(self, settle: bool = True, reread=()) -> Schedule:
        """Every point's state and metrics as the disk has them now, and decide. Only the folders that changed
        since the last look are read again, and those of the points in `reread` (the job that just ended): see
        digitlab.sweep.state.PointReader. `settle`: write the pruned state of a point that died right after its
        rung's epoch (not in a dry run, which writes nothing)."""
        readings = self.reader.read(self.sweep.points, reread)
        self.states = {p.id: (r.state, r.folder, r.holder) for p in self.sweep.points for r in [readings[p.id]]}
        tracks = [self._track(p, readings[p.id]) for p in self.sweep.points]
        self.done_epochs = {p.id: len(t.values) for p, t in zip(self.sweep.points, tracks)}
        if self.prunes:
            decided = self.sweep.prune.plan(tracks)
            self.decisions = {p.id: d for p, d in zip(self.sweep.points, decided)}
            if settle:
                self._settle()
        else:
            self.decisions = {p.id: Decision(RUN, "", until=p.cfg["epochs"]) if should_run(
                self.states[p.id][0], self.retry_failed) else Decision(self.states[p.id][0])
                for p in self.sweep.points}
        return self

    def _track(self, point: Point, reading: Reading) -> Track:
        """What the rule knows of the point: the same Track as at the last look while its folder is unchanged."""
        made_from = (reading.version, reading.state)
        kept = self._tracks.get(point.id)
        if kept is not None and kept[0] == made_from:
            return kept[1]
        ended = reading.state in FAILED and not self.retry_failed
        track = Track(reading.values, point.cfg["epochs"], ended, finished=reading.state == COMPLETE)
        self._tracks[point.id] = (made_from, track)
        return track

    def _settle(self) -> None:
        """A point killed or interrupted right after the epoch its rung stops it at is pruned, not crashed:
        say so in its run.json (under its lock) so that it is not taken for a failure."""
        for point in self.sweep.points:
            state, folder, _ = self.states[point.id]
            decision = self.decisions[point.id]
            if state not in RERUN or decision.state not in (PRUNED, WAIT) or folder is None:
                continue
            lock = FileLock(lock_path(self.sweep_dir, point.id))
            if not lock.acquire():
                continue
            try:
                run = RunFolder(folder)
                run.update_status(drop=("signal", "error"), status=Status.PRUNED, ended=utc_now(),
                                  epoch=self.done_epochs[point.id], pruned=decision.why)
                self.states[point.id] = (Status.PRUNED, folder, None)
            except RunError:
                continue
            finally:
                lock.release()

    def jobs(self, busy=()) -> list[Job]:
        """The jobs to run now: decided `run` (or complete but killed before its final files: resumed to write
        them), not running anywhere, not in `busy` (ids queued or in flight here), not run by this invocation
        already."""
        out = []
        for point in self.sweep.points:
            decision, state, epochs = self.decisions[point.id], self.states[point.id][0], point.cfg["epochs"]
            finish = decision.state == COMPLETE and state in RERUN
            until = epochs if finish else decision.until
            if (decision.state != RUN and not finish) or state == Status.RUNNING or point.id in busy or \
                    (point.id, until) in self.tried or (state in FAILED and not self.retry_failed):
                continue
            stop = decision.rule if decision.rule is not None else \
                StopAfter(until, self.why_paused(until)) if until < epochs else None
            self.tried.add((point.id, until))
            out.append(Job(point, until, stop))
        return out

    def why_paused(self, epoch: int) -> str:
        return f"reached its rung (epoch {epoch}); waits for the rung's decision"

    def why(self, point: Point) -> str:
        """Why the point is where it is: the rule's reason when pruning, else what its run.json says."""
        state, folder, _ = self.states[point.id]
        decision = self.decisions.get(point.id)
        if self.prunes and decision is not None and decision.why and state not in (Status.RUNNING, *FAILED, *RERUN):
            if decision.state == RUN:
                return f"promoted {decision.why}" if state == Status.PRUNED else decision.why
            return decision.why
        return why_stopped(state, folder, point.cfg["epochs"])

    def final(self) -> dict[str, int]:
        """Counts of the points by what the schedule makes of them: complete, pruned, waiting..."""
        counts: dict[str, int] = {}
        for point in self.sweep.points:
            d, state = self.decisions[point.id], self.states[point.id][0]
            name = state if state != Status.PRUNED or not self.prunes else {WAIT: "waiting", RUN: "promoted"}.get(
                d.state, Status.PRUNED)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def settled(self) -> int:
        """How many points are decided for good: complete, pruned, failed (nothing left to run for them)."""
        return sum(1 for p in self.sweep.points if self.decisions[p.id].done or (
            self.states[p.id][0] in (COMPLETE, *FAILED) and not self.retry_failed))

    def epochs_spent(self) -> tuple[int, int]:
        """(epochs the points' folders hold, epochs the full grid trains)."""
        return sum(self.done_epochs.values()), sum(p.cfg["epochs"] for p in self.sweep.points)
