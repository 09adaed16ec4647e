"""The executors by the name `--executor` gives: `local` (this machine: in this process, or in a pool of processes
with more than one worker) and `dask` (a Dask cluster). The one place that maps a name to an executor: a new
backend is a module with an Executor and a line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from digitlab.errors import UserError
from digitlab.sweep.executors.base import Executor
from digitlab.sweep.executors.dask import DaskExecutor
from digitlab.sweep.executors.local import LocalExecutor
from digitlab.sweep.executors.processes import ProcessExecutor


@dataclass(frozen=True)
class Backend:
    """What a name stands for: `make(workers, address, jobs, prunes)` gives the executor for a sweep that has
    `jobs` to run now (and, when it `prunes`, more to come); `check` raises UserError when it cannot run here."""

    make: Callable[[int | None, str | None, int, bool], Executor]
    check: Callable[[], None] = Executor.check


def _local(workers: int | None, address: str | None, jobs: int, prunes: bool) -> Executor:
    """A pool when there are workers and more than one job to share between them, else this process."""
    if (workers or 1) > 1 and (jobs > 1 or prunes):
        return ProcessExecutor(workers)
    return LocalExecutor()


EXECUTORS: dict[str, Backend] = {
    "local": Backend(_local),
    "dask": Backend(lambda workers, address, jobs, prunes: DaskExecutor(address, workers), DaskExecutor.check),
}


def backend(name: str) -> Backend:
    try:
        return EXECUTORS[name]
    except KeyError:
        raise UserError(f"--executor {name}: no such executor (one of: {', '.join(EXECUTORS)})") from None
