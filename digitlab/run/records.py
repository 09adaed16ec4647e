"""What only the live training process can see, recorded into the run folder so that its figures are functions of
the folder like every other output: the test images in the network's 2-unit plane at several epochs
(embedding_epochs.npz) and each layer's health per epoch (layer_health.csv).

Both are measured in evaluation mode on a fixed small subset at the end of an epoch (every few epochs in long
runs), never per batch, so training is unchanged (no random draw, no batch statistic) and barely slower. They
are written before the epoch's checkpoint: the plane's file rewritten whole and atomically (it holds at most
SNAPSHOTS epochs), the health rows appended an epoch at a time like metrics.csv. A resumed run first drops what
was recorded after its checkpoint, so it ends with the same files as a run that never stopped. Readers check
what they read (DamagedRun).
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from digitlab.config import config_hash
from digitlab.errors import DamagedRun, RunError
from digitlab.inside.health import COLUMNS, PROBE, alarm, layer_health
from digitlab.inside.plane import embedding_layer, project
from digitlab.learner import Callback
from digitlab.options import plural
from digitlab.run import layout
from digitlab.run.console import Console
from digitlab.run.folder import RunFolder
from digitlab.run.setup import Setup
from digitlab.system.storage import append_line, read_npz

EMBEDDING = layout.EMBEDDING_EPOCHS
HEALTH = layout.LAYER_HEALTH
HEALTH_COLUMNS = COLUMNS + ["config"]  # the config's hash closes every row
EMBEDDING_POINTS = 2000  # test images in the plane
SNAPSHOTS = 16  # the plane is recorded after at most about this many epochs (as many as the GIF shows)
HEALTH_RECORDS = 200  # layer health after at most about this many (every epoch for shorter runs)
EARLY = 4  # the first epochs, where most of the movement is, are always recorded


def snapshot_epochs(epochs: int, most: int = SNAPSHOTS) -> set[int]:
    """Epoch 0 (the initial weights), the first EARLY epochs, then every `step`-th epoch so that there are at
    most about `most`, and the last."""
    step = max(1, math.ceil((epochs - EARLY) / max(most - EARLY, 1)))
    return {0, epochs} | set(range(1, min(EARLY, epochs) + 1)) | set(range(EARLY + step, epochs + 1, step))


class EmbeddingRecorder(Callback):
    """The first EMBEDDING_POINTS test images in the 2-unit plane, at epoch 0 and after the snapshot epochs;
    does nothing for a network without a 2-unit layer."""

    def __init__(self, run: RunFolder, setup: Setup, start_epoch: int):
        self.run, self.start_epoch, self.cfg = run, start_epoch, setup.cfg
        self.model, self.layer = setup.model, embedding_layer(setup.model)
        self.epochs = snapshot_epochs(setup.cfg["epochs"])
        test = setup.data.test
        self.x = setup.inputs(test)[:EMBEDDING_POINTS]
        self.labels = test.y[:EMBEDDING_POINTS].astype(np.int64)
        self.saved: dict[int, np.ndarray] = {}

    def on_train_begin(self, logs):
        if self.layer is None:
            return
        try:
            record = read_embedding(self.run, self.cfg)
        except RunError:
            record = None  # damaged: recorded again from here on
        if record is not None and len(record["labels"]) == len(self.labels):
            self.saved = {int(e): p for e, p in zip(record["epochs"], record["points"]) if e < self.start_epoch}
        if self.start_epoch == 1 and 0 not in self.saved:
            self.saved[0] = project(self.model, self.x, self.layer)
        if self.saved:  # a resume whose record was damaged or lost has nothing to keep until its next snapshot
            self.save()

    def on_epoch_end(self, epoch, logs):
        if self.layer is not None and epoch in self.epochs:
            self.saved[epoch] = project(self.model, self.x, self.layer)
            self.save()

    def save(self) -> None:
        epochs = sorted(self.saved)
        self.run.save_npz(EMBEDDING, {
            "epochs": np.array(epochs, dtype=np.int64), "labels": self.labels, "layer": np.array(self.layer),
            "points": np.stack([self.saved[e] for e in epochs]).astype(np.float32),
            "config_hash": np.array(config_hash(self.cfg))})


class HealthRecorder(Callback):
    """Each layer's health (digitlab.inside.health) on the first PROBE training images, at epoch 0 and after
    every epoch (every few for runs over HEALTH_RECORDS epochs), appended to layer_health.csv a whole epoch at a
    time; one warning on the console the first time most of a layer is dead or saturated."""

    def __init__(self, run: RunFolder, setup: Setup, start_epoch: int, console: Console):
        self.run, self.setup, self.start_epoch, self.console = run, setup, start_epoch, console
        self.x = setup.inputs(setup.data.train)[:PROBE]
        self.y = setup.data.train.y[:PROBE]
        self.epochs = snapshot_epochs(setup.cfg["epochs"], HEALTH_RECORDS)
        self.config = config_hash(setup.cfg)  # on every row: a file copied in from another run is told apart
        self.warned = False

    def on_train_begin(self, logs):
        try:
            old = read_health(self.run, self.setup.cfg)
        except RunError:
            old = []  # damaged or foreign: recorded again from here on
        kept = [r for r in old if r["epoch"] < self.start_epoch]
        self.run.write(HEALTH, _csv([HEALTH_COLUMNS] + [_cells(r) for r in kept]))  # drops rows after the checkpoint
        if self.start_epoch == 1 and not any(r["epoch"] == 0 for r in kept):
            self.measure(0)

    def on_epoch_end(self, epoch, logs):
        if epoch in self.epochs:
            self.measure(epoch)

    def measure(self, epoch: int) -> None:
        rows = [{"epoch": epoch, **row, "config": self.config}
                for row in layer_health(self.setup.model, self.setup.loss_fn, self.x, self.y)]
        append_line(self.run / HEALTH, _csv([_cells(r) for r in rows]))
        message = alarm(rows, fused_output=self.setup.model.output_activation is not None)
        if message and not self.warned:
            self.warned = True
            self.console.warn(f"{'at the start' if epoch == 0 else f'after epoch {epoch}'}: {message}")


def _cells(row: dict) -> list:
    return ["" if row[c] is None else f"{row[c]:.6g}" if isinstance(row[c], float) else row[c]
            for c in HEALTH_COLUMNS]


def _csv(lines: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue()


def recorders(run: RunFolder, setup: Setup, start_epoch: int, console: Console) -> list[Callback]:
    return [EmbeddingRecorder(run, setup, start_epoch), HealthRecorder(run, setup, start_epoch, console)]


def read_embedding(run: RunFolder, cfg: dict) -> dict | None:
    """embedding_epochs.npz as {epochs (E,), points (E, N, 2), labels (N,), layer}, checked (and checked to be
    this config's); None when the run has none (no 2-unit layer, or older than the record)."""
    path = run / EMBEDDING
    if not path.exists():
        return None
    try:
        record = read_npz(path, ("epochs", "points", "labels", "layer", "config_hash"))
        made_for = str(record["config_hash"])
    except Exception as exc:  # zip, key and value errors alike mean a damaged file
        raise DamagedRun(path, f"{type(exc).__name__}: {exc}") from None
    if made_for != config_hash(cfg):
        raise DamagedRun(path, f"belongs to another run: recorded for config {made_for}, this run's config.yaml is "
                               f"{config_hash(cfg)}")
    epochs, points, labels = record["epochs"], record["points"], record["labels"]
    if epochs.ndim != 1 or epochs.dtype.kind not in "iu" or labels.ndim != 1 or labels.dtype.kind not in "iu" or \
            points.shape != (len(epochs), len(labels), 2) or points.dtype.kind != "f" or \
            np.any(np.diff(epochs) <= 0) or (len(labels) and labels.min() < 0):
        raise DamagedRun(path, "its arrays do not fit together")
    return record


def read_health(run: RunFolder, cfg: dict) -> list[dict]:
    """layer_health.csv's rows, checked, and checked to be this config's ([] when the run has none)."""
    path = run / HEALTH
    if not path.exists():
        return []
    try:
        lines = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DamagedRun(path, f"not CSV text: {exc}") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not lines or lines[0] != HEALTH_COLUMNS:
        raise DamagedRun(path, f"header is not {','.join(HEALTH_COLUMNS)!r}")
    mine, rows = config_hash(cfg), []
    for n, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        if len(line) != len(HEALTH_COLUMNS):
            raise DamagedRun(path, f"line {n} has {plural(len(line), 'cell')}, the header {len(HEALTH_COLUMNS)}")
        row = dict(zip(HEALTH_COLUMNS, line))
        try:
            row["epoch"] = int(row["epoch"])
            for key in COLUMNS[3:]:
                row[key] = float(row[key]) if row[key] != "" else None
        except ValueError:
            raise DamagedRun(path, f"line {n}: not a number where one belongs") from None
        if row["epoch"] < 0 or (rows and row["epoch"] < rows[-1]["epoch"]):
            raise DamagedRun(path, f"line {n}: epoch {row['epoch']} out of order")
        if row["config"] != mine:
            raise DamagedRun(path, f"belongs to another run: line {n} was recorded for config {row['config']}, this "
                                   f"run's config.yaml is {mine}")
        rows.append(row)
    return rows


def carry_over(run: RunFolder, old: dict, new: dict) -> None:
    """The records of a run whose config changed to `new` without changing what they recorded (an extended run:
    only its epochs grew), marked as the new config's, so that they stay this run's. Each file is rewritten whole
    and atomically; a record the run does not have is left absent."""
    embedding = read_embedding(run, old)
    if embedding is not None:
        run.save_npz(EMBEDDING, {**{k: embedding[k] for k in ("epochs", "labels", "layer", "points")},
                                 "config_hash": np.array(config_hash(new))})
    rows = read_health(run, old)
    if (run / HEALTH).exists():
        mine = config_hash(new)
        run.write(HEALTH, _csv([HEALTH_COLUMNS] + [_cells({**r, "config": mine}) for r in rows]))
