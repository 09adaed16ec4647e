"""Runs as MLflow runs (mlflow-skinny's client), in the experiment `digitlab` of a tracking URI (default
sqlite:///mlflow.db, a file beside which the artifacts go, in mlartifacts/).

Each run gets: its name (the run folder's, `<sweep>/<point>` in a sweep); params, the flattened config
(optimizer.lr, data.digits...); every metrics.csv column as a metric with the epoch as its step and the epoch's
wall time as its timestamp, and the final metrics metrics.csv lacks (best_val_accuracy, a test score taken once at
the end) at the last epoch; tags: the folder, sweep, point, commit and status; config.yaml, metrics.csv,
summary.json, report.html and model.npz as artifacts, those the folder has. The tag `digitlab.run` (a hash of the
folder's absolute path) identifies it: exporting again finds that MLflow run and updates it (new epochs, status,
artifacts) instead of adding a second; metric values already there are identical and MLflow keeps them once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path

from digitlab.errors import UserError
from digitlab.export.formats import URI_SCHEME
from digitlab.export.reading import Exportable, flat_config, timestamp
from digitlab.run import layout

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "digitlab"
ARTIFACTS = "mlartifacts"  # beside a SQLite store, as `mlflow server` puts them
IDENTITY = "digitlab.run"
FINAL = ("test_accuracy", "test_loss", "best_val_accuracy", "best_epoch")
ARTIFACT_FILES = (layout.CONFIG, layout.METRICS, layout.SUMMARY, layout.REPORT, layout.MODEL)
SQLITE = "sqlite:///"
SQLITE_HEADER = b"SQLite format 3\0"  # how every SQLite database file starts
# MLflow's HTTP client retries a server it cannot reach for minutes by default: fail in seconds instead (a user's
# own setting of these wins)
HTTP_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
STATUS = {"complete": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "crashed": "FAILED",
          "interrupted": "KILLED", "pruned": "KILLED"}


def identity(item: Exportable) -> str:
    return hashlib.sha256(item.identity.encode()).hexdigest()[:32]


def _ms(text) -> int | None:
    seconds = timestamp(text)
    return None if seconds is None else int(seconds * 1000)


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (none for any other URI, or an in-memory database)."""
    if not uri.startswith(SQLITE):
        return None
    path = uri[len(SQLITE):].split("?")[0]
    return Path(path) if path not in ("", ":memory:") else None


def artifact_location(uri: str) -> str | None:
    """mlartifacts/ beside a SQLite file; the server's own choice for any other store."""
    db = sqlite_file(uri)
    return None if db is None else (db.resolve().parent / ARTIFACTS).as_uri()


def check_uri(uri: str) -> None:
    """A UserError for a destination MLflow cannot store into, before MLflow touches it: a plain path or a file:
    URI (MLflow's file store takes no new runs), a SQLite file that is no database, a folder that is a file or
    cannot be written in."""
    scheme = URI_SCHEME.match(uri)
    if uri != "databricks" and (scheme is None or scheme.group(1).lower() == "file"):
        raise UserError(f"{uri}: expected a tracking URI such as {DEFAULT_URI} or http://host:5000")
    db = sqlite_file(uri)
    if db is None:
        return
    if db.exists():
        if not db.is_file():
            raise UserError(f"{uri}: {db} is a folder, not an SQLite database file")
        try:
            with db.open("rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise UserError(f"{uri}: cannot read {db} ({exc.strerror})") from None
        if header and header != SQLITE_HEADER:
            raise UserError(f"{uri}: {db} is not an SQLite database")
        if not os.access(db, os.W_OK):
            raise UserError(f"{uri}: {db} is read-only")
        return
    folder = db.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{uri}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{uri}: cannot write in the folder {folder}")


def reason(exc: BaseException) -> str:
    """What went wrong, in a few words: the system's reason for a server that cannot be reached, else the first
    sentence of the first line of the message (SQLAlchemy's "(sqlite3.DatabaseError) " prefix left out)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(getattr(exc, "message", None) or exc).strip()
    if "API request to" in text:
        cause = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", text)
        if cause:
            return f"cannot reach the server: {cause.group(1).strip()}"
        if "timed out" in text.lower():
            return f"no answer from the server within {os.environ['MLFLOW_HTTP_REQUEST_TIMEOUT']} s"
    first = re.sub(r"^\([\w.]+\) ", "", text.splitlines()[0] if text else type(exc).__name__)
    first = re.split(r"(?<=[.!?])\s", first)[0]
    return first if len(first) <= 300 else first[:300].rsplit(" ", 1)[0] + "..."


def metrics(item: Exportable) -> list:
    from mlflow.entities import Metric
    start = _ms(item.run.info.get("started")) or 0
    out = []
    for row, elapsed in zip(item.metrics, item.elapsed):
        stamp = start + int(elapsed * 1000)
        out += [Metric(column, float(value), stamp, row["epoch"]) for column, value in row.items()
                if column != "epoch" and value is not None]
    last = item.metrics[-1]
    summary = item.run.summary or {}
    out += [Metric(key, float(summary[key]), stamp, last["epoch"]) for key in FINAL
            if last.get(key) is None and isinstance(summary.get(key), (int, float))]
    return out


def tags(item: Exportable) -> dict[str, str]:
    info = item.run.info
    values = {IDENTITY: identity(item), "digitlab.folder": item.identity, "digitlab.status": str(item.run.status),
              "digitlab.sweep": info.get("sweep"), "digitlab.point": info.get("point"),
              "digitlab.commit": info.get("git_commit"), "mlflow.source.git.commit": info.get("git_commit"),
              "mlflow.runName": item.label}
    return {k: str(v) for k, v in values.items() if v is not None}


def _batches(values: list, size: int):
    for i in range(0, len(values), size):
        yield values[i:i + size]


def write_run(client, experiment_id: str, item: Exportable) -> tuple[str, bool]:
    """(MLflow run id, whether it was there already)."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{IDENTITY}` = '{identity(item)}'",
                               max_results=2)
    if found:
        run_id = found[0].info.run_id
    else:
        run_id = client.create_run(experiment_id, start_time=_ms(item.run.info.get("started")), tags=tags(item),
                                   run_name=item.label).info.run_id
    try:
        _fill(client, run_id, item)
    except BaseException:  # left FAILED, not RUNNING: exporting again finds it and completes it
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    return run_id, bool(found)


def _fill(client, run_id: str, item: Exportable) -> None:
    """The run's params, tags, metrics and artifacts, and its status."""
    from mlflow.entities import Param, RunTag
    params = [Param(k, str(v)) for k, v in flat_config(item.run.cfg).items()]
    for batch in _batches(params, 100):
        client.log_batch(run_id, params=batch)
    for batch in _batches([RunTag(k, v) for k, v in tags(item).items()], 100):
        client.log_batch(run_id, tags=batch)
    for batch in _batches(metrics(item), 1000):
        client.log_batch(run_id, metrics=batch)
    for name in ARTIFACT_FILES:
        if (item.run.path / name).is_file():
            client.log_artifact(run_id, str(item.run.path / name))
    client.set_terminated(run_id, STATUS.get(str(item.run.status), "FINISHED"), _ms(item.run.info.get("ended")))


def export(items: list[Exportable], out: str | None, say) -> None:
    """Each run into the experiment `digitlab` at the tracking URI `out` (default sqlite:///mlflow.db); a URI that
    MLflow refuses, cannot reach or fails to write into is one line (exit code 2)."""
    uri = out or DEFAULT_URI
    check_uri(uri)
    for name, value in HTTP_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError
    try:
        _export(items, uri, say)
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        raise UserError(f"{uri}: MLflow cannot store the runs there ({reason(exc)})") from None


def _export(items: list[Exportable], uri: str, say) -> None:
    from mlflow.tracking import MlflowClient
    for name in ("mlflow", "alembic"):  # a new SQLite store announces each table it makes (set after the import,
        logging.getLogger(name).setLevel(logging.WARNING)  # which sets mlflow's level)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else \
        client.create_experiment(EXPERIMENT, artifact_location=artifact_location(uri))
    for item in items:
        run_id, updated = write_run(client, experiment_id, item)
        say(f"{item.run.path} -> {uri} run {run_id}" + (" (updated)" if updated else ""))
    say(f"see them: mlflow ui --backend-store-uri {uri}")
