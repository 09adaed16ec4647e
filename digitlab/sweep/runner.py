"""Running a sweep: find what each point needs from the disk, run the points that need it (here, in processes
or on Dask), report each as it ends with the best so far, and rewrite the sweep's files from what is on disk."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from digitlab.errors import RunError, StorageError
from digitlab.locks import LOCKS, waiting_lock
from digitlab.report import write_sweep_report
from digitlab.runs import RunFolder
from digitlab.storage import check_writable, make_folder
from digitlab.sweep.files import write_compare_png, write_points_csv, write_sweep_file
from digitlab.sweep.point import run_point
from digitlab.sweep.spec import Point, Sweep
from digitlab.sweep.state import FAILED, RERUN, Outcome, best_of, find_folder, point_state, read_result, should_run


@dataclass
class SweepResult:
    sweep: Sweep
    folder: Path
    outcomes: list[Outcome] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    best: Outcome | None = None
    dry_run: bool = False
    interrupted: int | None = None  # the signal that stopped the sweep
    lost: list[str] = field(default_factory=list)  # points a Dask worker did not bring back

    @property
    def failed(self) -> list[Outcome]:
        """Points that did not complete: failed, diverged, crashed, interrupted, or lost on the cluster."""
        return [o for o in self.outcomes if o.state in FAILED + RERUN or o.point.id in self.lost]

    @property
    def elsewhere(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state in ("running", "pending")]


def run_sweep(sweep: Sweep, runs_dir: str | os.PathLike = "runs", workers: int | None = None,
              executor: str = "local", address: str | None = None, retry_failed: bool = False,
              dry_run: bool = False, echo: Callable[[str], None] = print) -> SweepResult:
    """Run the points of `sweep` that need running, then write points.csv and compare.png and return what
    became of every point."""
    sweep_dir = sweep.folder(runs_dir)
    if (sweep_dir / "run.json").exists():
        raise RunError(f"{sweep_dir}: is a run folder, not a sweep's; give the sweep another name")
    result = SweepResult(sweep, sweep_dir, dry_run=dry_run)
    if executor == "dask" and not dry_run:
        from digitlab.sweep.executors.dask import import_dask
        import_dask()
    states = {p.id: point_state(sweep_dir, p) for p in sweep.points}
    to_run = [p for p in sweep.points if should_run(states[p.id][0], retry_failed)]
    counts = _count(state for state, _, _ in states.values())
    extra = f" ({sweep.duplicates} duplicate configs merged)" if sweep.duplicates else ""
    echo(f"sweep {sweep.name}: {len(sweep.points)} points{extra} -> {sweep_dir}")
    hint = "" if retry_failed or not any(s in FAILED for s, _, _ in states.values()) else \
        " (--retry-failed also reruns failed, diverged and damaged points)"
    echo(f"  {counts}; {len(to_run)} to run{hint}")
    if dry_run:
        for p in sweep.points:
            state, folder, holder = states[p.id]
            mark = "to run" if p in to_run else "done" if state == "complete" else \
                f"running elsewhere ({holder})" if state == "running" else f"{state}, skipped"
            if p in to_run and state != "pending":
                mark = f"to run again ({state})"
            echo(f"  {p.id}  {mark:<24} {p.label}")
        result.outcomes = _final_outcomes(sweep, sweep_dir, states=states)
        return result

    try:
        make_folder(sweep_dir)
        check_writable(sweep_dir)
    except StorageError as exc:
        raise exc.because("cannot make or write the sweep's folder (--runs-dir)", exit_code=2) from None
    write_sweep_file(sweep, sweep_dir)
    try:
        if not to_run:
            echo("nothing to run: " + ("every point is complete" if counts == f"{len(sweep.points)} complete"
                                       else "no point needs running"))
        else:
            elsewhere = [p for p in sweep.points if states[p.id][0] == "running"]
            progress = _Progress(sweep, sweep_dir, states, len(to_run) + len(elsewhere), echo)
            for point in elsewhere:
                progress.report(point, {"state": "running", "note": f"running elsewhere ({states[point.id][2]})"})
            if executor == "dask":
                from digitlab.sweep.executors.dask import run_on_dask
                run_on_dask(sweep, sweep_dir, to_run, retry_failed, address, workers, progress)
            elif (workers or 1) > 1 and len(to_run) > 1:
                from digitlab.sweep.executors.processes import run_in_processes
                run_in_processes(sweep, sweep_dir, to_run, retry_failed, min(workers, len(to_run)), progress)
            else:
                for point in to_run:
                    outcome = run_point(str(sweep_dir), point, retry_failed)
                    progress.report(point, outcome)
                    if outcome.get("note") == "trained" and outcome["state"] == "interrupted":  # Ctrl-C, SIGTERM
                        result.interrupted = _signal_of(find_folder(sweep_dir, point))
                        echo("interrupted: the sweep stops here; run it again to continue where it stopped")
                        break
            result.trained, result.lost = progress.trained, progress.lost
    except BaseException:  # Ctrl-C, a lost Dask scheduler...: points.csv still tells what is on disk
        with contextlib.suppress(Exception):
            _write_sweep_files(sweep, sweep_dir, result)
        raise
    _write_sweep_files(sweep, sweep_dir, result)
    return result


def _write_sweep_files(sweep: Sweep, sweep_dir: Path, result: SweepResult) -> None:
    """points.csv and compare.png from the points' states now, under a lock: a concurrent sweep that writes
    after this one has also looked after it."""
    with waiting_lock(sweep_dir / LOCKS / "sweep-files.lock"):
        result.outcomes = _final_outcomes(sweep, sweep_dir)
        result.best = best_of(result.outcomes, sweep.maximize)
        write_points_csv(sweep, sweep_dir, result.outcomes)
        write_compare_png(sweep, sweep_dir, result.outcomes)
        write_sweep_report(sweep_dir, sweep.select)


def _signal_of(folder: Path | None) -> int:
    try:
        return int(RunFolder(folder).read_json("run.json").get("signal") or 2)
    except (RunError, TypeError, ValueError):
        return 2


def _count(states) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    order = ["complete", "pending", "running", "crashed", "interrupted", "failed", "diverged", "damaged"]
    names = {"pending": "not run yet", "running": "running elsewhere"}
    return ", ".join(f"{counts[s]} {names.get(s, s)}" for s in sorted(counts, key=lambda s: (
        order.index(s) if s in order else len(order), s)))


class _Progress:
    """Prints one line per point as it ends: points done / total, the point's result, the best so far."""

    def __init__(self, sweep: Sweep, sweep_dir: Path, states: dict, pending: int, echo):
        self.sweep, self.sweep_dir, self.echo = sweep, sweep_dir, echo
        self.total = len(sweep.points)
        self.done = self.total - pending
        self.trained: list[str] = []
        self.lost: list[str] = []  # points whose Dask task was lost (worker died): no folder, not run
        self.known = [Outcome(p, s, f, *read_result(f, sweep.select)) for p in sweep.points
                      for s, f, _ in [states[p.id]] if s == "complete"]

    def report(self, point: Point, outcome: dict) -> None:
        self.done += 1
        folder = find_folder(self.sweep_dir, point)
        state = outcome["state"]
        metric, params = read_result(folder, self.sweep.select) if state == "complete" else (None, None)
        if outcome.get("note") == "trained":
            self.trained.append(point.id)
            if state == "complete":
                self.known.append(Outcome(point, state, folder, metric, params))
        best = best_of(self.known, self.sweep.maximize)
        shown = f"{self.sweep.select} {metric:.4f}" if metric is not None else ""
        what = state if outcome.get("note") == "trained" else f"skipped: {outcome.get('note')}"
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


def _final_outcomes(sweep: Sweep, sweep_dir: Path, states: dict | None = None) -> list[Outcome]:
    outcomes = []
    for point in sweep.points:
        state, folder, holder = states[point.id] if states else point_state(sweep_dir, point)
        metric, params = read_result(folder, sweep.select)
        outcomes.append(Outcome(point, state, folder, metric, params, f"held by {holder}" if holder else ""))
    return outcomes
