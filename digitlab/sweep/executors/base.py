"""What runs a sweep's jobs: the interface every executor implements (as Hydra's launchers do), so that the sweep's
loop (digitlab.sweep.runner) is written once and a new backend is one module and a line in the registry
(digitlab.sweep.executors.registry)."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digitlab.sweep.schedule import Job


class Executor(ABC):
    """Runs jobs, each a point trained to an epoch with its stop rule. The sweep `setup`s it once, `launch`es jobs
    while it has `room`, `wait`s for those `running`, and `close`s it however the sweep ends. An executor
    guarantees:

    - each job trains `job.point` until epoch `job.until`, with `job.stop` as its run's stop rule, in the point's
      run folder under the sweep's folder, holding the point's lock (digitlab.sweep.state.claim) from the check
      that it still needs running until its folder is written: two sweeps at once never train the same point;
    - a point that can continue (crashed, interrupted, pruned and now promoted) resumes from its checkpoint, an
      unusable older folder is set aside (never deleted), and a point that fails is recorded as failed in its
      folder: the sweep goes on. `launch` and `wait` raise only when the executor itself cannot go on;
    - each job's outcome comes back once, as soon as the job ends: from `launch` when it ended there (run in this
      process, or not run: claimed elsewhere, no longer needed), else from `wait`. An outcome is a dict: `id`,
      `state` (the point's status now), `note` ("trained", or why it was not), and when they apply `error`,
      `moved` (where an older folder went), `resumed` (True: continued from its checkpoint) and `lost` (True: the
      job never came back, its worker lost; the point runs next time);
    - a Ctrl-C or SIGTERM leaves every point resumable: training stops after its batch with its checkpoint and an
      `interrupted` run.json, and no lock outlives its process. A signal caught by a job run in this process is
      told by `interrupted`, so the sweep stops there;
    - `close` cancels the jobs still queued (left to the next sweep), waits for or drops those in flight, and
      gives back all that `setup` took (processes, a cluster, locks, environment variables), whether the sweep
      ended, failed or was stopped.
    """

    @classmethod
    def check(cls) -> None:
        """Raise UserError when this executor cannot run here (a library it needs is missing): called before the
        sweep writes anything."""
        return None

    @abstractmethod
    def setup(self, *, sweep_dir: Path, retry_failed: bool, most_at_once: int, echo: Callable[[str], None]) -> None:
        """Get ready to run jobs of the sweep in `sweep_dir`: `retry_failed` reruns failed and diverged points,
        `most_at_once` is the most jobs the sweep can ever have in flight together, `echo` prints a line."""

    def room(self) -> int:
        """How many more jobs to launch before waiting for one to end: any number, unless overridden (an executor
        that queues its jobs itself takes them all)."""
        return sys.maxsize

    @abstractmethod
    def launch(self, job: Job) -> dict | None:
        """Start `job`: its outcome when it has ended already, else None (`wait` brings it)."""

    @abstractmethod
    def running(self) -> list[Job]:
        """The jobs launched whose outcomes are still to come."""

    @abstractmethod
    def wait(self) -> Iterator[tuple[Job, dict]]:
        """Wait until at least one running job ends; yield (job, outcome) for each that has."""

    def interrupted(self, job: Job, outcome: dict) -> int | None:
        """The signal (Ctrl-C, SIGTERM) that stopped this sweep's own process while it ran `job`, or None. Only an
        executor that trains in this process catches signals in its jobs; elsewhere, Ctrl-C reaches the sweep as
        KeyboardInterrupt, SIGTERM ends it, and the workers stop by themselves."""
        return None

    def close(self) -> None:
        """Cancel what is queued, wait for or drop what is in flight, give back what `setup` took; safe after a
        failed `setup`."""
        return None
