"""Points in a pool of processes on this machine (started with 'spawn'), each with its share of the cores for BLAS,
and each watching its parent: when the sweep process dies, its workers stop cleanly instead of lingering."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from digitlab.run import layout
from digitlab.sweep.executors.base import Executor
from digitlab.sweep.point import run_point
from digitlab.sweep.schedule import Job
from digitlab.sweep.state import folder_status
from digitlab.system.threads import cpus, limits


class ProcessExecutor(Executor):
    """Jobs in `workers` processes started with 'spawn', each with its BLAS threads limited to cores // workers:
    the variables are set before the workers start, so before they load numpy. The pool queues every job it is
    given; `close` cancels those not started yet (left to the next sweep) and waits for those in flight."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[Future, Job] = {}
        self.saved: dict[str, str | None] = {}  # the variables as they were before `setup`

    def setup(self, *, sweep_dir: Path, retry_failed: bool, most_at_once: int, echo: Callable[[str], None]) -> None:
        self.sweep_dir, self.retry_failed = sweep_dir, retry_failed
        workers = max(1, min(self.workers, most_at_once))
        limited = limits(cpus() // workers)
        self.saved = {name: os.environ.get(name) for name in limited}
        os.environ.update(limited)
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_watch_parent, initargs=(os.getpid(),))

    def launch(self, job: Job) -> None:
        self.futures[self.pool.submit(_pool_run_point, str(self.sweep_dir), job, self.retry_failed)] = job

    def running(self) -> list[Job]:
        return list(self.futures.values())

    def wait(self) -> Iterator[tuple[Job, dict]]:
        finished, _ = wait(list(self.futures), return_when=FIRST_COMPLETED)
        for future in finished:
            job = self.futures.pop(future)
            try:
                outcome = future.result()
            except Exception as exc:  # the worker process died (killed, out of memory)
                folder = self.sweep_dir / job.point.folder
                state = folder_status(folder) if folder.is_dir() else layout.Status.CRASHED
                outcome = {"id": job.point.id, "state": state, "note": "trained",
                           "error": f"worker died: {type(exc).__name__}: {exc}"}
            yield job, outcome

    def close(self) -> None:
        try:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
        finally:
            for name, value in self.saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


_orphaned = threading.Event()


def _watch_parent(parent: int) -> None:
    """In a pool worker: when the sweep process (`parent`, its pid passed in: a worker that finishes starting
    after the sweep died must not take its new parent for the sweep) dies (SIGKILL, a crash), stop too instead of
    lingering. SIGTERM to itself ends the training loop after its batch (the point becomes `interrupted`, its
    checkpoint intact, and the next sweep continues it); a worker still there 30 s later exits anyway."""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.25)
        _orphaned.set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        os._exit(1)

    threading.Thread(target=watch, name="digitlab-parent-watch", daemon=True).start()


def _pool_run_point(sweep_dir: str, job: Job, retry_failed: bool) -> dict:
    if _orphaned.is_set():  # a point queued before the sweep died: leave it to the next sweep
        os._exit(1)
    outcome = run_point(sweep_dir, job, retry_failed)
    if _orphaned.is_set():
        os._exit(1)
    return outcome
