"""Running a sweep: find what each point needs from the disk (digitlab.sweep.schedule), hand the jobs to an
executor (digitlab.sweep.executors; a pruned sweep finds more as results come in), report each as it ends with
the best so far, and rewrite the sweep's files from what is on disk."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from digitlab.errors import RunError, StorageError
from digitlab.options import plural
from digitlab.run import layout
from digitlab.runs.page import write_sweep_report
from digitlab.sweep.executors.base import Executor
from digitlab.sweep.executors.registry import backend
from digitlab.sweep.files import write_compare_png, write_points_csv, write_sweep_file
from digitlab.sweep.prune import ASHA, WAIT
from digitlab.sweep.schedule import Job, Schedule
from digitlab.sweep.spec import Point, Sweep
from digitlab.sweep.state import FAILED, RERUN, Outcome, best_of, epochs_done, find_folder, last_metric, read_result
from digitlab.system.locks import waiting_lock
from digitlab.system.storage import check_writable, make_folder

Status = layout.Status


@dataclass
class SweepResult:
    sweep: Sweep
    folder: Path
    outcomes: list[Outcome] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    best: Outcome | None = None
    dry_run: bool = False
    interrupted: int | None = None  # the signal that stopped the sweep
    lost: list[str] = field(default_factory=list)  # points whose job never came back (a lost worker)
    retry_failed: bool = False
    waiting: list[str] = field(default_factory=list)  # pruned points waiting at their rung for a decision
    epochs: tuple[int, int] = (0, 0)  # epochs the points' folders hold, epochs the full grid would train
    seconds: float = 0.0  # wall time of this invocation

    @property
    def failed(self) -> list[Outcome]:
        """Points that did not complete: failed, diverged, crashed, interrupted, or lost on the cluster."""
        return [o for o in self.outcomes if o.state in FAILED + RERUN or o.point.id in self.lost]

    @property
    def elsewhere(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state in (Status.RUNNING, "pending")]


def run_sweep(sweep: Sweep, runs_dir: str | os.PathLike = "runs", workers: int | None = None,
              executor: str = "local", address: str | None = None, retry_failed: bool = False,
              dry_run: bool = False, echo: Callable[[str], None] = print) -> SweepResult:
    """Run the points of `sweep` that need running (as far as its pruning lets them), then write points.csv
    and compare.png and return what became of every point."""
    began = time.monotonic()
    sweep_dir = sweep.folder(runs_dir)
    if (sweep_dir / layout.RUN_JSON).exists():
        raise RunError(f"{sweep_dir}: is a run folder, not a sweep's; give the sweep another name")
    result = SweepResult(sweep, sweep_dir, dry_run=dry_run, retry_failed=retry_failed)
    chosen = backend(executor)
    if not dry_run:
        chosen.check()
    schedule = Schedule(sweep, sweep_dir, retry_failed).look(settle=not dry_run)
    states = schedule.states
    jobs = schedule.jobs()
    counts = _count(schedule.final() if schedule.prunes else (s for s, _, _ in states.values()))
    extra = f" ({plural(sweep.duplicates, 'duplicate config')} merged)" if sweep.duplicates else ""
    rule = f"; pruned by {_describe(sweep.prune)}" if sweep.prune is not None else ""
    echo(f"sweep {sweep.name}: {plural(len(sweep.points), 'point')}{extra}{rule} -> {sweep_dir}")
    hint = "" if retry_failed or not any(s in FAILED for s, _, _ in states.values()) else \
        " (--retry-failed also reruns failed, diverged and damaged points)"
    later = " now, more as their results come in" if schedule.prunes and jobs else ""
    echo(f"  {counts}; {len(jobs)} to run{later}{hint}")
    if dry_run:
        planned = {job.point.id: job for job in jobs}
        for p in sweep.points:
            state, _, holder = states[p.id]
            mark = _mark(state, holder, planned.get(p.id), schedule.prunes)
            why = f"  ({schedule.why(p)})" if schedule.prunes else ""
            echo(f"  {p.id}  {mark:<24} {p.label}{why}")
        result.outcomes = _final_outcomes(sweep, sweep_dir, schedule)
        return result

    try:
        make_folder(sweep_dir)
        check_writable(sweep_dir)
    except StorageError as exc:
        raise exc.because("cannot make or write the sweep's folder (--runs-dir)", exit_code=2) from None
    write_sweep_file(sweep, sweep_dir)
    try:
        if not jobs:
            settled = schedule.settled() == len(sweep.points)
            echo("nothing to run: " + ("every point is complete" if counts == f"{len(sweep.points)} complete"
                                       else "every point is complete or pruned" if settled and schedule.prunes
                                       else "no point needs running"))
        else:
            elsewhere = [p for p in sweep.points if states[p.id][0] == Status.RUNNING]
            progress = _Progress(sweep, sweep_dir, schedule, len(jobs) + len(elsewhere), echo)
            for point in elsewhere:
                progress.report(point, {"state": Status.RUNNING, "note": f"running elsewhere ({states[point.id][2]})"})
            jobs_executor = chosen.make(workers, address, len(jobs), schedule.prunes)
            try:
                jobs_executor.setup(sweep_dir=sweep_dir, retry_failed=retry_failed, echo=echo,
                                    most_at_once=len(sweep.points) if schedule.prunes else len(jobs))
                result.interrupted = _run_jobs(jobs_executor, jobs, progress)
            finally:
                jobs_executor.close()
            if result.interrupted:
                echo("interrupted: the sweep stops here; run it again to continue where it stopped")
            result.trained, result.lost = progress.trained, progress.lost
    except BaseException:  # Ctrl-C, a lost Dask scheduler...: points.csv still tells what is on disk
        with contextlib.suppress(Exception):
            _write_sweep_files(sweep, sweep_dir, result)
        raise
    _write_sweep_files(sweep, sweep_dir, result)
    result.seconds = time.monotonic() - began
    return result


def _run_jobs(executor: Executor, jobs: list[Job], progress: _Progress) -> int | None:
    """Launch the jobs while the executor has room, report each as it ends, and queue the jobs its result allows
    (a pruned sweep's promotions) until none is left. The signal that stopped the sweep, if one did."""
    queue = list(jobs)

    def busy() -> set[str]:
        return {job.point.id for job in queue + executor.running()}

    while queue or executor.running():
        while queue and executor.room() > 0:
            job = queue.pop(0)
            outcome = executor.launch(job)
            if outcome is not None:
                progress.report(job.point, outcome)
                if stopped := executor.interrupted(job, outcome):
                    return stopped
                queue += progress.more(busy())
        if not executor.running():
            break
        for job, outcome in executor.wait():
            progress.report(job.point, outcome)
            if stopped := executor.interrupted(job, outcome):
                return stopped
        queue += progress.more(busy())
    return None


def _mark(state: str, holder: str | None, job, prunes: bool) -> str:
    """What a dry run says of a point."""
    if state == Status.RUNNING:
        return f"running elsewhere ({holder})"
    if job is not None:
        to = f" to epoch {job.until}" if prunes else ""
        return f"to run{to}" if state == "pending" else f"to run again ({state}){to}"
    return "done" if state == Status.COMPLETE else state if prunes else f"{state}, skipped"


def _describe(rule) -> str:
    if isinstance(rule, ASHA):
        return f"asha on {rule.metric} (min_epochs {rule.min_epochs}, reduction_factor {rule.eta})"
    return f"the median rule on {rule.metric} (min_epochs {rule.min_epochs}, min_points {rule.min_points})"


def _write_sweep_files(sweep: Sweep, sweep_dir: Path, result: SweepResult) -> None:
    """points.csv and compare.png from the points' states now, under a lock: a concurrent sweep that writes
    after this one has also looked after it."""
    with waiting_lock(sweep_dir / layout.LOCKS / "sweep-files.lock"):
        schedule = Schedule(sweep, sweep_dir, result.retry_failed).look(settle=False)
        result.outcomes = _final_outcomes(sweep, sweep_dir, schedule)
        result.epochs = schedule.epochs_spent()
        result.waiting = [p.id for p in sweep.points if schedule.prunes and schedule.decisions[p.id].state == WAIT]
        result.best = best_of(result.outcomes, sweep.maximize)
        write_points_csv(sweep, sweep_dir, result.outcomes)
        drawn = write_compare_png(sweep, sweep_dir, result.outcomes)
        write_sweep_report(sweep_dir, sweep.select, curves=drawn.read_bytes() if drawn is not None else None)


def _count(states) -> str:
    """'3 complete, 2 pruned, 1 not run yet' from states (or a dict of counts)."""
    counts: dict[str, int] = dict(states) if isinstance(states, dict) else {}
    for state in [] if isinstance(states, dict) else states:
        counts[state] = counts.get(state, 0) + 1
    order = [Status.COMPLETE, Status.PRUNED, "waiting", "promoted", "pending", Status.RUNNING, Status.CRASHED,
             Status.INTERRUPTED, Status.FAILED, Status.DIVERGED, Status.DAMAGED]
    names = {"pending": "not run yet", Status.RUNNING: "running elsewhere", "waiting": "waiting at a rung",
             "promoted": "promoted"}
    return ", ".join(f"{counts[s]} {names.get(s, s)}" for s in sorted(counts, key=lambda s: (
        order.index(s) if s in order else len(order), s)))


class _Progress:
    """Prints one line per job as it ends: points settled / total, the point's result, the best so far; and,
    for a pruned sweep, looks at the disk again to find the jobs the new results allow (`more`)."""

    def __init__(self, sweep: Sweep, sweep_dir: Path, schedule: Schedule, pending: int, echo):
        self.sweep, self.sweep_dir, self.schedule, self.echo = sweep, sweep_dir, schedule, echo
        self.total = len(sweep.points)
        self.done = self.total - pending
        self.trained: list[str] = []
        self.lost: list[str] = []  # points whose job never came back (a lost worker): not run
        states = schedule.states
        self.known = [Outcome(p, s, f, *read_result(f, sweep.select)) for p in sweep.points
                      for s, f, _ in [states[p.id]] if s == Status.COMPLETE]

    def report(self, point: Point, outcome: dict) -> None:
        if outcome.get("lost"):
            self.lost.append(point.id)
        folder = find_folder(self.sweep_dir, point)
        state = outcome["state"]
        metric, params = read_result(folder, self.sweep.select) if state == Status.COMPLETE else (None, None)
        if outcome.get("note") == "trained":
            self.trained.append(point.id)
            if state == Status.COMPLETE:
                self.known.append(Outcome(point, state, folder, metric, params))
        if self.schedule.prunes:
            self.schedule.look(reread=(point.id,))
            self.done = self.schedule.settled()
        else:
            self.done += 1
        best = best_of(self.known, self.sweep.maximize)
        shown = f"{self.sweep.select} {metric:.4f}" if metric is not None else ""
        what = state if outcome.get("note") == "trained" else f"skipped: {outcome.get('note')}"
        if outcome.get("note") == "trained" and self.schedule.prunes and state in (Status.PRUNED, Status.COMPLETE):
            what += f" at epoch {epochs_done(folder)}/{point.cfg['epochs']}"
            if state == Status.PRUNED:
                shown = f"({self.schedule.why(point)})"
        if outcome.get("resumed"):
            what += " (resumed from its checkpoint)"
        line = f"[{self.done}/{self.total}] {point.id} {point.label}: {what} {shown}".rstrip()
        if outcome.get("moved"):
            line += f" (old folder moved to {Path(outcome['moved']).relative_to(self.sweep_dir)})"
        if outcome.get("error"):
            line += f" ({outcome['error']})"
        if best is not None:
            line += f"  | best so far {best.metric:.4f} ({best.point.id})"
        self.echo(line)

    def more(self, busy) -> list[Job]:
        """The jobs that the results so far allow, leaving out the points in `busy` (queued or in flight)."""
        return self.schedule.jobs(busy) if self.schedule.prunes else []


def _final_outcomes(sweep: Sweep, sweep_dir: Path, schedule: Schedule) -> list[Outcome]:
    outcomes = []
    for point in sweep.points:
        state, folder, holder = schedule.states[point.id]
        metric, params = read_result(folder, sweep.select)
        if metric is None and folder is not None:  # a point that stopped early: its metric at its last epoch
            metric = last_metric(folder, sweep.select)
        outcomes.append(Outcome(point, state, folder, metric, params, f"held by {holder}" if holder else "",
                                schedule.done_epochs.get(point.id) if folder is not None else None,
                                schedule.why(point)))
    return outcomes
