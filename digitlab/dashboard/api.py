"""The JSON the dashboard's pages ask for, built from the board (state.py) and the run folders: the runs table
(filtered with `digitlab runs --where`'s expressions, sorted, a slice of it), one run (its row, its metrics per
epoch, its ETA), and several runs to compare (their curves, labels, seed groups and the values that differ).

Every answer carries the board's version; a page that sends the version it has (`since`) gets {"unchanged": true}
while no row changed, so twenty pages polling every second cost next to nothing.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict

from digitlab.errors import UserError
from digitlab.run import layout
from digitlab.runs.columns import CONFIG_COLUMNS, flat, format_value
from digitlab.runs.where import parse_all

# The table's columns: these always, then the config columns whose values differ across the runs listed.
SHOWN = ["name", "status", "digits", "epochs_done", "best_val", "test_acc", "seconds", "started"]
ALWAYS = set(SHOWN) | {"epochs"}
ROW_KEYS = SHOWN + ["epochs", "train_acc", "sweep", "point", "tags", "note", "damage"]
CURVES = ["train_accuracy", "val_accuracy", "test_accuracy", "train_loss", "val_loss", "test_loss", "lr"]
MOST_ROWS = 20_000


class Views:
    """The answers, with a small cache per board version (pages that show the same view share it)."""

    def __init__(self, board):
        self.board = board
        self._lock, self._making = threading.Lock(), threading.Lock()
        self._tables: OrderedDict = OrderedDict()
        self._metrics: dict[str, tuple[tuple, list[dict], str | None]] = {}

    # -- the runs table ----------------------------------------------------------------------------------------------
    def runs(self, where: list[str], statuses: list[str], sort: str, limit: int, since: int | None) -> dict:
        version, entries = self.board.snapshot()
        if since == version or version == 0:  # nothing new, or the first look has not ended
            return {"version": version, "unchanged": True}
        try:
            conditions = parse_all(w for w in where if w.strip())
        except UserError as exc:
            return {"version": version, "error": str(exc)}
        key = (version, tuple(where), tuple(statuses), sort)
        with self._making:  # one page makes a view; the others asking for it meanwhile wait and share it
            cached = self._table(key, entries, conditions, statuses, sort)
        chosen, differ, counts = cached
        limit = max(1, min(limit, MOST_ROWS))
        swept = ["sweep"] if any(e.values.get("sweep") for e in chosen[:limit]) else []
        return {"version": version, "total": len(entries), "matching": len(chosen), "statuses": counts,
                "columns": SHOWN[:2] + swept + SHOWN[2:] + differ, "rows": [row(e, differ) for e in chosen[:limit]],
                "sweeps": [{"id": i, "name": path.name} for i, path in sorted(self.board.sweeps.items())]}

    def _table(self, key, entries, conditions, statuses, sort):
        """(the runs that match, sorted; the config columns that differ among them; runs per status), cached."""
        with self._lock:
            cached = self._tables.get(key)
        if cached is None:
            chosen = [e for e in entries if (not statuses or e.values.get("status") in statuses)
                      and _matches(e.values, conditions)]
            chosen = _sorted(chosen, sort)
            differ = differing([e.values for e in chosen])
            counts: dict[str, int] = {}
            for e in entries:
                counts[e.values.get("status")] = counts.get(e.values.get("status"), 0) + 1
            cached = (chosen, differ, counts)
            with self._lock:
                self._tables[key] = cached
                while len(self._tables) > 32:
                    self._tables.popitem(last=False)
        return cached

    # -- one run -----------------------------------------------------------------------------------------------------
    def run(self, ident: str, since: int | None) -> tuple[int, dict]:
        version, _ = self.board.snapshot()
        entry = self.board.runs.get(ident)
        if version == 0:
            return 200, {"version": 0, "unchanged": True}
        if entry is None:
            return 404, {"error": f"no run {ident!r} in the folders this dashboard shows"}
        if since == version:
            return 200, {"version": version, "unchanged": True}
        metrics, damage = self.metrics(entry)
        answer = {"version": version, "run": row(entry, [c for c in CONFIG_COLUMNS if c not in ALWAYS]),
                  "metrics": columns_of(metrics), "eta": eta(entry.values, metrics), "damage": damage,
                  "report": (entry.path / layout.REPORT).is_file()}
        return 200, answer

    def metrics(self, entry) -> tuple[list[dict], str | None]:
        """metrics.csv's rows, read again only when the file changed."""
        from digitlab.run.folder import RunFolder
        path = entry.path / layout.METRICS
        try:
            st = os.stat(path)
            stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            return [], None
        with self._lock:
            cached = self._metrics.get(entry.id)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        try:
            rows, damage = RunFolder(entry.path).read_metrics(), None
        except UserError as exc:
            rows, damage = [], str(exc)
        with self._lock:
            self._metrics[entry.id] = (stamp, rows, damage)
        return rows, damage

    # -- several runs ------------------------------------------------------------------------------------------------
    def compare(self, idents: list[str], since: int | None) -> dict:
        version, _ = self.board.snapshot()
        if since == version or version == 0:
            return {"version": version, "unchanged": True}
        entries = [self.board.runs[i] for i in dict.fromkeys(idents) if i in self.board.runs]
        differ = differing([e.values for e in entries])
        keys = [k for k in differ if k != "params" or differ == ["params"]]
        grouping = [k for k in keys if k != "seed"]
        runs = []
        for e in entries:
            metrics, _ = self.metrics(e)
            label = " ".join(f"{k}={format_value(k, e.values.get(k))}" for k in keys) or e.values.get("name")
            group = " ".join(f"{k}={format_value(k, e.values.get(k))}" for k in grouping) or "all runs"
            runs.append({"id": e.id, "label": label, "group": group, "row": row(e, differ),
                         "metrics": columns_of(metrics)})
        labels = [r["label"] for r in runs]
        for r in runs:
            if labels.count(r["label"]) > 1:
                r["label"] = f"{r['label']} ({r['row']['name']})"
        return {"version": version, "columns": SHOWN + differ, "runs": runs,
                "missing": [i for i in idents if i not in self.board.runs]}


def row(entry, config_columns: list[str]) -> dict:
    """What a page shows of a run: its id, dataset and the columns asked for. The dataset is the row's option
    column `data.dataset`, which is left out at its default, mnist (columns.option_values)."""
    values = entry.values
    out = {k: values.get(k) for k in ROW_KEYS + config_columns}
    out.update(id=entry.id, dataset=(values.get("options") or {}).get("data.dataset") or "mnist")
    return _finite(out)


def columns_of(metrics: list[dict]) -> dict:
    """metrics.csv's rows as columns (epoch, then each curve), a missing or nan cell as null."""
    out = {"epoch": [r.get("epoch") for r in metrics]}
    for name in CURVES:
        values = [r.get(name) for r in metrics]
        if any(v is not None for v in values):
            out[name] = [v if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]
    return out


def eta(values: dict, metrics: list[dict]) -> float | None:
    """Seconds left for a running run: the epochs still planned times the mean of its last three epochs."""
    planned, done = values.get("epochs"), len(metrics)
    if values.get("status") != layout.Status.RUNNING.value or not isinstance(planned, int) or not metrics:
        return None
    recent = [r.get("seconds") for r in metrics[-3:] if isinstance(r.get("seconds"), (int, float))]
    return round(max(planned - done, 0) * sum(recent) / len(recent), 1) if recent else None


def differing(rows: list[dict]) -> list[str]:
    """The config columns (but those always shown) whose values are not all the same across `rows`."""
    out = []
    for column in CONFIG_COLUMNS:
        if column in ALWAYS or not rows:
            continue
        first = rows[0].get(column)
        if any(r.get(column) != first for r in rows):
            out.append(column)
    return out


def _sorted(entries: list, sort: str) -> list:
    """Sorted by a column ('-col' descending), runs without a value last either way; newest first by default."""
    column = sort.lstrip("-") or "started"
    descending = sort.startswith("-") or not sort
    have = [e for e in entries if e.values.get(column) is not None]
    empty = [e for e in entries if e.values.get(column) is None]

    def key(e):
        value = e.values.get(column)
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        return (0, number, "") if number is not None and math.isfinite(number) else (1, 0, str(value))

    have.sort(key=lambda e: e.values.get("name") or "")
    have.sort(key=key, reverse=descending)
    return have + sorted(empty, key=lambda e: e.values.get("name") or "")


def _finite(values: dict) -> dict:
    """NaN and infinities as text: JSON has no word for them, and a diverged run's loss is one."""
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def dumps(answer: dict) -> bytes:
    return json.dumps(answer, separators=(",", ":"), default=str, allow_nan=False).encode()


def _matches(values: dict, conditions) -> bool:
    """Whether a run's row meets every --where condition, its other options' columns (optimizer.nesterov,
    data.dataset) beside the named ones, as `digitlab runs` reads them."""
    if not conditions:
        return True
    row = flat(values, option_keys=False)
    return all(c.matches(row) for c in conditions)
