"""The JSON of a sweep's page: its points (done, running, pruned, failed, pending) with the values the sweep varies and
the metric it selects on, the pruning rule's rungs (which points stopped where, and why), and the progress and ETA of
the invocation running. Read from the disk alone, as the sweep itself reads it: sweep.yaml for the points,
sweep.state.PointReader for their states (their locks, their folders, read again only when they changed)."""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import threading
import time
from pathlib import Path

from digitlab.errors import UserError
from digitlab.run import layout

EVERY = 0.8  # seconds a sweep's answer is reused for: its locks change without any file of a run changing
FINISHED = ("complete", "pruned", "failed", "diverged", "damaged")


class Sweeps:
    """Each sweep's answer, made again at most every EVERY seconds whoever asks."""

    def __init__(self, board):
        self.board = board
        self._lock = threading.Lock()
        self._made: dict[str, tuple[float, dict]] = {}
        self._loaded: dict[str, tuple[tuple, object, object]] = {}  # id -> (sweep.yaml stamp, Sweep, PointReader)

    def view(self, ident: str, since: str | None) -> tuple[int, dict]:
        folder = self.board.sweeps.get(ident)
        if folder is None:
            return 404, {"error": f"no sweep {ident!r} in the folders this dashboard shows"}
        with self._lock:
            made = self._made.get(ident)
            if made is None or time.monotonic() - made[0] > EVERY:
                answer = self._answer(ident, folder)
                digest = hashlib.sha1(json.dumps(answer, sort_keys=True, default=str).encode()).hexdigest()[:16]
                answer["version"] = digest
                made = self._made[ident] = (time.monotonic(), answer)
        answer = made[1]
        return 200, ({"version": answer["version"], "unchanged": True} if since == answer["version"] else answer)

    def _load(self, ident: str, folder: Path):
        from digitlab.sweep.spec import load_sweep
        from digitlab.sweep.state import PointReader
        path = folder / layout.SWEEP_FILE
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        loaded = self._loaded.get(ident)
        if loaded is None or loaded[0] != stamp:
            sweep = load_sweep(path)
            loaded = self._loaded[ident] = (stamp, sweep, PointReader(folder, sweep.select))
        return loaded[1], loaded[2]

    def _answer(self, ident: str, folder: Path) -> dict:
        from digitlab.sweep.state import why_stopped
        try:
            sweep, reader = self._load(ident, folder)
        except (UserError, OSError) as exc:
            return {"name": folder.name, "error": f"{folder / layout.SWEEP_FILE}: cannot be read ({exc})",
                    "points": [], "keys": [], "progress": {}, "rule": None}
        readings = reader.read(sweep.points)
        keys = list(dict.fromkeys(k for p in sweep.points for k in p.values))
        points = []
        for point in sweep.points:
            reading = readings[point.id]
            values = [v for v in reading.values if isinstance(v, (int, float)) and math.isfinite(v)]
            epochs = point.cfg.get("epochs")
            done = len(reading.values)
            state = str(reading.state)
            why = "" if state in ("pending", "running") else why_stopped(state, reading.folder, epochs)
            run = self.board.ident(reading.folder) if reading.folder is not None else None
            points.append({"id": point.id, "label": point.label, "values": {k: _plain(point.values.get(k))
                                                                            for k in keys},
                           "state": state, "metric": values[-1] if values else None, "epochs_done": done,
                           "epochs": epochs, "why": why, "run": run if run in self.board.runs else None})
        return {"name": sweep.name, "select": sweep.select, "maximize": sweep.maximize, "keys": keys,
                "points": points, "rule": rule(sweep.prune, points), "progress": progress(points, self.board)}


def rule(prune, points: list[dict]) -> dict | None:
    """The pruning rule, and for successive halving its rungs: how many points reached each and which stopped there."""
    if prune is None:
        return None
    epochs = max((p["epochs"] or 0 for p in points), default=0)
    out = {"name": type(prune).__name__, "metric": prune.metric, "rungs": []}
    if hasattr(prune, "rungs"):
        for rung in prune.rungs(epochs):
            stopped = [p for p in points if p["state"] == "pruned" and p["epochs_done"] == rung]
            out["rungs"].append({"epoch": rung, "reached": sum(p["epochs_done"] >= rung for p in points),
                                 "stopped": [{"label": p["label"], "why": p["why"]} for p in stopped]})
    else:
        out["stopped"] = [{"label": p["label"], "epoch": p["epochs_done"], "why": p["why"]}
                          for p in points if p["state"] == "pruned"]
    return out


def progress(points: list[dict], board) -> dict:
    """Points per state, and the time left: the points still to train, at the mean time of the finished ones,
    shared among as many as are training now."""
    counts: dict[str, int] = {}
    for p in points:
        counts[p["state"]] = counts.get(p["state"], 0) + 1
    running = counts.get("running", 0)
    seconds = [board.runs[p["run"]].values.get("seconds") for p in points
               if p["state"] == "complete" and p["run"] in board.runs]
    seconds = [s for s in seconds if isinstance(s, (int, float))]
    left = sum(counts.get(s, 0) for s in ("pending", "running", "crashed", "interrupted"))
    eta = None
    if running and seconds and left:
        eta = round(left * statistics.mean(seconds) / running, 1)
    done = sum(counts.get(s, 0) for s in FINISHED)
    return {"total": len(points), "done": done, "running": running, "counts": counts, "eta": eta}


def _plain(value):
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)
