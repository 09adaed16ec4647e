"""`digitlab runs`: every run under some folders (runs/ by default, sweeps' points included), one line each,
newest first, found by its values with --where and --status, with the config values that tell them apart. It
reads each folder with runs.collect, so a damaged run is listed as `damaged` (with a warning naming the file),
never a traceback."""

from __future__ import annotations

from pathlib import Path

from digitlab.errors import UserError
from digitlab.runs.catalog import collect, few_collections
from digitlab.runs.columns import describe, differing_rows, flat
from digitlab.runs.where import Condition

COLUMNS = ["name", "status", "started", "epochs_done", "test_acc", "best_val", "folder"]
OPTIONAL = ["sweep", "tags"]  # shown when some run has one


def list_runs(paths, conditions: list[Condition] = (), statuses=()) -> tuple[list[str], list[dict], list[str]]:
    """(columns, rows newest first, warnings) for the runs under `paths` that meet every condition and have one
    of `statuses` (any, when none is given). A path that does not exist is a UserError."""
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such folder")
    with few_collections():
        runs, warnings = collect(paths)
        describe(runs)
        rows, shown = [], []  # the rows met, and their runs' values (with their options), for differing_rows
        for run in runs:
            row = flat(run.values, option_keys=False)  # the row --where looks at and the listing shows
            row["folder"] = run.values["path"]
            if (not conditions or all(c.matches(row) for c in conditions)) and \
                    (not statuses or row["status"] in statuses):
                rows.append(row)
                shown.append(run.values)
    rows.sort(key=lambda row: (row.get("started") or "", row["folder"]), reverse=True)
    extra = [c for c in OPTIONAL if any(row.get(c) for row in rows)]
    varied = differing_rows(shown) if len(rows) > 1 else []  # what tells the listed runs apart
    return COLUMNS[:2] + varied + COLUMNS[2:-1] + extra + COLUMNS[-1:], rows, \
        [w for w in warnings if "no run folders in it" not in w]
