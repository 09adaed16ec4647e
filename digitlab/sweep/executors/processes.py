"""Points in a pool of processes on this machine (started with 'spawn'), each with its share of the cores for BLAS,
and each watching its parent: when the sweep process dies, its workers stop cleanly instead of lingering."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from digitlab.sweep.point import run_point
from digitlab.sweep.schedule import Job
from digitlab.sweep.state import folder_status
from digitlab.system.threads import cpus, limits


def run_in_processes(sweep_dir: Path, jobs: list[Job], retry_failed: bool, workers: int, progress) -> None:
    """Jobs in `workers` processes started with 'spawn', each with its BLAS threads limited to cores // workers:
    the variables are set before the worker starts, so before it loads numpy. After each job, the jobs its
    result allows (a pruned sweep's promotions) join the pool's queue."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    workers = max(1, min(workers, len(progress.sweep.points) if progress.schedule.prunes else len(jobs)))
    limited = limits(cpus() // workers)
    saved = {name: os.environ.get(name) for name in limited}
    os.environ.update(limited)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_watch_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_pool_run_point, str(sweep_dir), job, retry_failed): job for job in jobs}
            try:
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        point = futures.pop(future).point
                        try:
                            outcome = future.result()
                        except Exception as exc:  # the worker process died (killed, out of memory)
                            outcome = {"id": point.id, "state": folder_status(sweep_dir / point.folder)
                                       if (sweep_dir / point.folder).is_dir() else "crashed", "note": "trained",
                                       "error": f"worker died: {type(exc).__name__}: {exc}"}
                        progress.report(point, outcome)
                    for job in progress.more({job.point.id for job in futures.values()}):
                        future = pool.submit(_pool_run_point, str(sweep_dir), job, retry_failed)
                        futures[future] = job
                        pending.add(future)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        for name, value in saved.items():
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
