"""Points one after the other in this process: the executor of `--executor local` with one worker. Its jobs train in
the sweep's own process, so a Ctrl-C or SIGTERM is caught by the job's training loop and stops the sweep."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from digitlab.errors import RunError
from digitlab.run import layout
from digitlab.run.folder import RunFolder
from digitlab.sweep.executors.base import Executor
from digitlab.sweep.point import run_point
from digitlab.sweep.schedule import Job
from digitlab.sweep.state import find_folder


class LocalExecutor(Executor):
    """Each job runs to its end inside `launch`: nothing is ever in flight."""

    def setup(self, *, sweep_dir: Path, retry_failed: bool, most_at_once: int, echo: Callable[[str], None]) -> None:
        self.sweep_dir, self.retry_failed = sweep_dir, retry_failed

    def launch(self, job: Job) -> dict:
        return run_point(str(self.sweep_dir), job, self.retry_failed)

    def running(self) -> list[Job]:
        return []

    def wait(self) -> Iterator[tuple[Job, dict]]:
        return iter(())

    def interrupted(self, job: Job, outcome: dict) -> int | None:
        """The signal the point's run.json records when its training was stopped by one (SIGINT when unreadable)."""
        if outcome.get("note") != "trained" or outcome["state"] != layout.Status.INTERRUPTED:
            return None
        try:
            return int(RunFolder(find_folder(self.sweep_dir, job.point)).read_json(layout.RUN_JSON).get("signal") or 2)
        except (RunError, TypeError, ValueError):
            return 2
