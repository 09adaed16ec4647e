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

import hashlib
import logging
from datetime import datetime
from pathlib import Path

from digitlab.errors import UserError
from digitlab.export.reading import Exportable, flat_config
from digitlab.run import layout

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "digitlab"
ARTIFACTS = "mlartifacts"  # beside a SQLite store, as `mlflow server` puts them
IDENTITY = "digitlab.run"
FINAL = ("test_accuracy", "test_loss", "best_val_accuracy", "best_epoch")
ARTIFACT_FILES = (layout.CONFIG, layout.METRICS, layout.SUMMARY, layout.REPORT, layout.MODEL)
STATUS = {"complete": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "crashed": "FAILED",
          "interrupted": "KILLED", "pruned": "KILLED"}


def identity(item: Exportable) -> str:
    return hashlib.sha256(item.identity.encode()).hexdigest()[:32]


def _ms(text) -> int | None:
    try:
        return int(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def artifact_location(uri: str) -> str | None:
    """mlartifacts/ beside a SQLite file; the server's own choice for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):])
    return (db.resolve().parent / ARTIFACTS).as_uri()


def metrics(item: Exportable) -> list:
    from mlflow.entities import Metric
    start = _ms(item.run.info.get("started")) or 0
    out, elapsed = [], 0.0
    for row in item.metrics:
        elapsed += row.get("seconds") or 0.0
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
    from mlflow.entities import Param, RunTag
    found = client.search_runs([experiment_id], filter_string=f"tags.`{IDENTITY}` = '{identity(item)}'",
                               max_results=2)
    if found:
        run_id = found[0].info.run_id
    else:
        run_id = client.create_run(experiment_id, start_time=_ms(item.run.info.get("started")), tags=tags(item),
                                   run_name=item.label).info.run_id
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
    return run_id, bool(found)


def export(items: list[Exportable], out: str | None, say) -> None:
    """Each run into the experiment `digitlab` at the tracking URI `out` (default sqlite:///mlflow.db); a URI that
    MLflow refuses or cannot reach is one line (exit code 2)."""
    from mlflow.exceptions import MlflowException
    uri = out or DEFAULT_URI
    try:
        _export(items, uri, say)
    except MlflowException as exc:
        reason = " ".join(str(exc.message).split())[:300]
        raise UserError(f"{uri}: MLflow cannot store the runs there ({reason})") from None


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
