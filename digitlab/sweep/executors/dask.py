"""Points on a Dask distributed cluster: this process claims each point (its lock), a worker trains it in a
temporary folder (resuming it from the checkpoint this process ships when it has one) and sends the files back,
this process writes the run folder and releases the lock, so workers need no shared disk."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from digitlab.errors import CheckpointError, RunError, StorageError, UserError, os_reason
from digitlab.options import plural
from digitlab.run import layout
from digitlab.sweep.executors.base import Executor
from digitlab.sweep.point import origin, record_failure
from digitlab.sweep.schedule import Job
from digitlab.sweep.spec import Point
from digitlab.sweep.state import claim, folder_status, resumable, set_aside
from digitlab.system.storage import atomic_write, make_folder


class DaskExecutor(Executor):
    """Jobs on a Dask cluster: the one at `address`, or a new local one of `workers` processes. This process
    claims each point (its lock); a point that can continue from its checkpoint (crashed, interrupted, or pruned
    and now promoted) has its folder shipped to the worker, which resumes it, else the worker trains it afresh;
    either way in a temporary folder whose files come back, and this process writes the run folder and releases
    the lock. At most twice as many points as the cluster has threads are claimed at once, so a second sweep can
    take the rest."""

    def __init__(self, address: str | None, workers: int | None):
        self.address, self.workers = address, workers
        self.client = self.cluster = None
        self.threads = 1
        self.claimed: dict = {}  # future -> (job, its point's lock, outcome so far, the folder it resumes or None)

    @classmethod
    def check(cls) -> None:
        import_dask()

    def setup(self, *, sweep_dir: Path, retry_failed: bool, most_at_once: int, echo: Callable[[str], None]) -> None:
        self.sweep_dir, self.retry_failed = sweep_dir, retry_failed
        self.client, self.cluster = dask_client(self.address, self.workers)
        self.threads = sum(self.client.nthreads().values()) or 1
        echo(f"dask: {plural(len(self.client.nthreads()), 'worker')}, {plural(self.threads, 'thread')} at "
             f"{self.client.scheduler.address}")

    def room(self) -> int:
        return 2 * self.threads - len(self.claimed)

    def launch(self, job: Job) -> dict | None:
        lock, outcome = claim(self.sweep_dir, job.point, self.retry_failed, job.until)
        if lock is None:
            return outcome
        try:
            folder = outcome.pop("folder")
            files = folder_files(folder) if resumable(folder, outcome["state"]) else None
            if folder is not None and files is None:
                outcome["moved"] = str(set_aside(self.sweep_dir, folder, outcome["state"]))
            future = self.client.submit(train_remote, job.point.cfg, files, job.stop,
                                        origin(self.sweep_dir, job.point.id), pure=False,
                                        key=f"digitlab-{job.point.id}-{time.time_ns()}")
        except BaseException:
            lock.release()
            raise
        self.claimed[future] = (job, lock, outcome, folder if files is not None else None)
        return None

    def running(self) -> list[Job]:
        return [job for job, *_ in self.claimed.values()]

    def wait(self) -> Iterator[tuple[Job, dict]]:
        """Each point's lock is held until the caller asks for the next outcome."""
        from distributed import wait

        for future in wait(list(self.claimed), return_when="FIRST_COMPLETED").done:
            job, lock, outcome, resumed_from = self.claimed.pop(future)
            try:
                yield job, self._written(job, future, outcome, resumed_from)
            finally:
                lock.release()

    def _written(self, job: Job, future, outcome: dict, resumed_from: Path | None) -> dict:
        """Write the run folder a finished task sent back; its outcome."""
        try:
            remote = future.result()
        except Exception as exc:  # the worker died or the task could not run: nothing to write, and the point
            return {**outcome, "state": layout.Status.CRASHED, "note": "trained", "lost": True,  # runs next time
                    "error": f"on the cluster: {type(exc).__name__}: {exc}"}
        if resumed_from is not None and remote.get("restarted"):  # its checkpoint was unusable
            outcome["moved"] = str(set_aside(self.sweep_dir, resumed_from, outcome["state"]))
            resumed_from = None
        run_dir = write_remote_run(self.sweep_dir, job.point, remote, replacing=resumed_from)
        return {**outcome, "state": folder_status(run_dir, locked_here=True), "note": "trained",
                "resumed": resumed_from is not None, "error": remote.get("error") or remote.get("restarted")}

    def close(self) -> None:
        for future, (_, lock, _, _) in self.claimed.items():
            future.cancel()
            lock.release()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def import_dask():
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--executor dask needs Dask: pip install 'digitlab[dask]' "
                        "(or pip install 'dask[distributed]')") from None
    return Client, LocalCluster


def dask_client(address: str | None, workers: int | None):
    """A distributed.Client: connected to `address`, or to a new LocalCluster on 127.0.0.1 (processes, one
    thread each; Dask sets OMP/MKL/OPENBLAS_NUM_THREADS=1 in its workers). Returns (client, cluster or None)."""
    Client, LocalCluster = import_dask()
    try:
        if address:
            return Client(address, timeout="20s"), None
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, host="127.0.0.1", processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    except OSError as exc:
        raise UserError(f"--executor dask: cannot reach the Dask scheduler at {address or 'a local cluster'}: "
                        f"{exc}") from None


def folder_files(folder: Path) -> dict[str, bytes]:
    """A run folder's files (relative path -> bytes), its lock and temporary files left out: what a worker needs
    to resume it, checkpoint included."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)}


def train_remote(cfg: dict, files: dict[str, bytes] | None = None, stop=None, record: dict | None = None) -> dict:
    """On a Dask worker: resume the run folder `files` (or, without them or when its checkpoint is unusable,
    train `cfg` afresh) in a temporary folder until `stop` ends it, and return the run folder's files as bytes
    (relative path -> bytes), so that the client writes the run folder and workers need no shared disk."""
    from digitlab.run.lifecycle import resume, start

    with tempfile.TemporaryDirectory(prefix="digitlab-") as tmp:
        run_dir = Path(tmp) / "run"
        error = restarted = None
        if files:
            for name, data in files.items():
                (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (run_dir / name).write_bytes(data)
            try:
                resume(run_dir, quiet=True, progress=False, stop=stop)
            except CheckpointError as exc:  # a missing or damaged checkpoint, a changed config: start over
                restarted = f"could not resume ({exc}); trained from scratch"
                shutil.rmtree(run_dir)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        if not files or restarted:
            try:
                start(cfg, run_dir=run_dir, quiet=True, progress=False, stop=stop, record=record)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        return {"files": folder_files(run_dir) if run_dir.is_dir() else {}, "error": error, "restarted": restarted}


def write_remote_run(sweep_dir: Path, point: Point, result: dict, replacing: Path | None = None) -> Path:
    """Write the files a worker sent into a hidden folder, each atomically, then rename the folder into place:
    the run folder appears whole or not at all. A resumed point's new folder takes the place of `replacing`, its
    old one (whose every file the new one continues), which is then removed."""
    final = replacing if replacing is not None else sweep_dir / point.folder
    incoming = sweep_dir / f".incoming-{point.id}-{os.getpid()}-{time.time_ns()}"
    make_folder(incoming, exist_ok=False)
    try:
        for name, data in result["files"].items():
            target = incoming / name
            if ".." in Path(name).parts or Path(name).is_absolute():
                raise RunError(f"{point.id}: a worker sent a file outside its run folder: {name!r}")
            make_folder(target.parent)
            atomic_write(target, data)
        if not (incoming / layout.RUN_JSON).is_file():
            record_failure(incoming, point.cfg, result.get("error") or "the worker sent no run.json")
        previous = sweep_dir / f".previous-{point.id}-{os.getpid()}-{time.time_ns()}"
        try:
            if replacing is not None:
                os.rename(replacing, previous)
            try:
                os.rename(incoming, final)
            except OSError:
                if replacing is not None:
                    os.rename(previous, replacing)
                raise
        except OSError as exc:
            raise StorageError(final, os_reason(exc)) from None
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    return final
