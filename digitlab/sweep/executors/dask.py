"""Points on a Dask distributed cluster: this process claims each point (its lock), a worker trains it in a
temporary folder and sends the files back, this process writes the run folder and releases the lock, so workers
need no shared disk."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from digitlab.errors import RunError, StorageError, UserError, os_reason
from digitlab.storage import atomic_write, make_folder
from digitlab.sweep.point import record_failure
from digitlab.sweep.spec import Point, Sweep
from digitlab.sweep.state import claim, folder_status, set_aside


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
    import logging

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


def run_on_dask(sweep: Sweep, sweep_dir: Path, to_run: list[Point], retry_failed: bool, address: str | None,
              workers: int | None, progress) -> None:
    """Points on a Dask cluster. This process claims each point (its lock), a worker trains it in a temporary
    folder and sends the files back, this process writes the run folder and releases the lock. At most twice
    as many points as the cluster has threads are claimed at once, so a second sweep can take the rest."""
    from distributed import wait

    client, cluster = dask_client(address, workers)
    claimed: dict = {}
    try:
        threads = sum(client.nthreads().values()) or 1
        progress.echo(f"dask: {len(client.nthreads())} workers, {threads} threads at {client.scheduler.address}")
        queue = list(to_run)
        while queue or claimed:
            while queue and len(claimed) < 2 * threads:
                point = queue.pop(0)
                lock, outcome = claim(sweep_dir, point, retry_failed)
                if lock is None:
                    progress.report(point, outcome)
                    continue
                folder = outcome.pop("folder")
                if folder is not None:  # no resuming on a cluster: its checkpoint lives here
                    outcome["moved"] = str(set_aside(sweep_dir, folder, outcome["state"]))
                future = client.submit(train_remote, point.cfg, pure=False, key=f"digitlab-{point.id}-{time.time_ns()}")
                claimed[future] = (point, lock, outcome)
            if not claimed:
                break
            finished = wait(list(claimed), return_when="FIRST_COMPLETED").done
            for future in finished:
                point, lock, outcome = claimed.pop(future)
                try:
                    try:
                        remote = future.result()
                    except Exception as exc:  # the worker died or the task could not run: nothing to write,
                        progress.lost.append(point.id)  # the point stays to run next time
                        progress.report(point, {**outcome, "state": "crashed", "note": "trained",
                                                "error": f"on the cluster: {type(exc).__name__}: {exc}"})
                        continue
                    run_dir = write_remote_run(sweep_dir, point, remote)
                    progress.report(point, {**outcome, "state": folder_status(run_dir, locked_here=True),
                                            "note": "trained", "error": remote.get("error")})
                finally:
                    lock.release()
    finally:
        for future, (_, lock, _) in claimed.items():
            future.cancel()
            lock.release()
        client.close()
        if cluster is not None:
            cluster.close()


def train_remote(cfg: dict) -> dict:
    """On a Dask worker: train `cfg` in a temporary folder and return the run folder's files as bytes (relative
    path -> bytes), so that the client writes the run folder and workers need no shared disk."""
    from digitlab.run import start
    with tempfile.TemporaryDirectory(prefix="digitlab-") as tmp:
        run_dir = Path(tmp) / "run"
        error = None
        try:
            start(cfg, run_dir=run_dir, quiet=True, progress=False)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        files = {}
        if run_dir.is_dir():
            for path in sorted(run_dir.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    files[str(path.relative_to(run_dir))] = path.read_bytes()
        return {"files": files, "error": error}


def write_remote_run(sweep_dir: Path, point: Point, result: dict) -> Path:
    """Write the files a worker sent into a hidden folder, each atomically, then rename the folder into place:
    the run folder appears whole or not at all."""
    final = sweep_dir / point.folder
    incoming = sweep_dir / f".incoming-{point.id}-{os.getpid()}-{time.time_ns()}"
    make_folder(incoming, exist_ok=False)
    try:
        for name, data in result["files"].items():
            target = incoming / name
            if ".." in Path(name).parts or Path(name).is_absolute():
                raise RunError(f"{point.id}: a worker sent a file outside its run folder: {name!r}")
            make_folder(target.parent)
            atomic_write(target, data)
        if not (incoming / "run.json").is_file():
            record_failure(incoming, point.cfg, result.get("error") or "the worker sent no run.json")
        try:
            os.rename(incoming, final)
        except OSError as exc:
            raise StorageError(final, os_reason(exc)) from None
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    return final
