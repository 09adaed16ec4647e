"""The comparison table: runs as rows, sorted, or grouped over seeds (mean and standard deviation), and
rendered as an aligned text table, CSV, JSON or Markdown."""

from __future__ import annotations

import csv
import io
import json
import statistics

from digitlab.errors import UserError
from digitlab.runs.collect import Run
from digitlab.runs.columns import (
    ALIASES,
    BEST_FIRST,
    CONFIG_COLUMNS,
    METRIC_COLUMNS,
    describe,
    differing,
    flat,
    format_value,
)
from digitlab.system.tables import format_columns, format_markdown

FORMATS = ("table", "csv", "json", "markdown")


def table(runs: list[Run], all_columns: bool = False, group_seeds: bool = False,
          sort: str | None = None) -> tuple[list[str], list[dict]]:
    """(columns, rows) for `runs`: name, status, the config columns that differ (all with `all_columns`, or
    when there is one run: the named ones and every other option's), the metrics. With `group_seeds`, runs whose
    configs differ only by their seed become one row with the mean and standard deviation of each metric
    (`<metric>_std`)."""
    describe(runs)
    shown = differing(runs) if not all_columns and len(runs) > 1 else \
        list(CONFIG_COLUMNS) + list(dict.fromkeys(k for r in runs for k in r.values.get("options") or {}))
    if group_seeds:
        rows = _group_seeds(runs)
        if "seed" not in shown and any(r["runs"] > 1 for r in rows):
            shown.append("seed")
        columns = ["name", "status", "runs"] + shown + [c for m in METRIC_COLUMNS for c in (m, f"{m}_std")]
    else:
        rows = [flat(run.values, option_keys=False) for run in runs]
        columns = ["name", "status"] + shown + METRIC_COLUMNS + origin_columns(runs)
    if sort:
        key = sort_key(sort, columns)
        present = [r for r in rows if r.get(key) is not None]
        missing = [r for r in rows if r.get(key) is None]
        present.sort(key=lambda r: _sortable(r[key]), reverse=key in BEST_FIRST)
        rows = present + missing
    return columns, rows


def origin_columns(runs: list[Run]) -> list[str]:
    """`sweep` when the runs come from more than one sweep (or some from none), `tags` when any run has a tag:
    what tells a sweep's points and a user's labels apart in a table."""
    sweeps = {run.values.get("sweep") for run in runs}
    return (["sweep"] if len(sweeps) > 1 else []) + (["tags"] if any(run.values.get("tags") for run in runs) else [])


def sort_key(sort: str, columns: list[str]) -> str:
    key = ALIASES.get(sort, sort)
    if key not in columns and key not in CONFIG_COLUMNS + METRIC_COLUMNS + ["name", "status"]:
        known = ", ".join(["name", "status"] + CONFIG_COLUMNS + METRIC_COLUMNS)
        raise UserError(f"--sort {sort}: unknown column; expected one of {known}")
    return key

def _sortable(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))

def _group_seeds(runs: list[Run]) -> list[dict]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        cfg = run.cfg or {"path": str(run.path)}
        key = json.dumps({k: v for k, v in cfg.items() if k not in ("name", "seed")}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(run)
    rows = []
    for members in groups.values():
        first = flat(members[0].values, option_keys=False)
        statuses = [m.status for m in members]
        first["status"] = statuses[0] if len(set(statuses)) == 1 else ", ".join(
            f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
        first["runs"] = len(members)
        first["seed"] = ",".join(str(m.values.get("seed")) for m in members)
        if len(members) > 1:
            first["name"] = f"{members[0].name} (+{len(members) - 1})"
        for metric in METRIC_COLUMNS:
            values = [m.values[metric] for m in members if m.values.get(metric) is not None]
            first[metric] = statistics.fmean(values) if values else None
            first[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        first["paths"] = [str(m.path) for m in members]
        for key in ("path", "started", "point"):
            first.pop(key, None)
        rows.append(first)
    return rows

def render(columns: list[str], rows: list[dict], fmt: str = "table") -> str:
    """The rows as an aligned text table, CSV, JSON (every field, unrounded) or a Markdown table."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else _csv_cell(row.get(c)) for c in columns])
        return buffer.getvalue().rstrip("\n")
    headers = _headers(columns, rows)  # grouped rows show 'mean ± std' in one cell: no _std columns
    cells = [_column(c, rows) for c in headers]  # column by column
    if fmt == "markdown":
        return format_markdown(headers, [list(row) for row in zip(*cells)])
    return format_columns(headers, cells)

def _column(column: str, rows: list[dict]) -> list[str]:
    """The column's cells, top to bottom, as _display shows them (a column without a _std beside it in any row
    needs no look at one in each)."""
    std = f"{column}_std"
    if any(std in row for row in rows):
        return [_display(column, row) for row in rows]
    return [format_value(column, row.get(column)) for row in rows]

def _headers(columns: list[str], rows: list[dict]) -> list[str]:
    grouped = any("runs" in r for r in rows)
    return [c for c in columns if not (grouped and c.endswith("_std"))] if grouped else list(columns)

def _display(column: str, row: dict) -> str:
    value = row.get(column)
    std = row.get(f"{column}_std")
    text = format_value(column, value)
    if std is not None and row.get("runs", 1) > 1 and value is not None:
        text += f" ± {format_value(column, std)}"
    return text

def _csv_cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value
