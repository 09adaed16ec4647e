"""The sweep folder's own files, rewritten atomically from what is on disk whenever a sweep invocation ends:
sweep.yaml (the sweep file as run), points.csv (every point's state and metric) and compare.png; and the summary
table printed at the end."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import yaml

from digitlab.errors import UserError
from digitlab.run import layout
from digitlab.run.folder import utc_now
from digitlab.sweep.spec import Sweep, _text
from digitlab.sweep.state import Outcome
from digitlab.system.storage import atomic_write


def write_sweep_file(sweep: Sweep, sweep_dir: Path) -> None:
    """sweep.yaml: the sweep file as run, its base made absolute so that the copy runs from anywhere."""
    spec = dict(sweep.spec)
    spec["name"] = sweep.name
    spec["base"] = str(sweep.base.resolve())
    header = f"# digitlab sweep {sweep.source}, last run {utc_now()}\n"
    atomic_write(sweep_dir / layout.SWEEP_FILE, header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None))


def write_points_csv(sweep: Sweep, sweep_dir: Path, outcomes: list[Outcome]) -> Path:
    """points.csv: point, status, metric (the one `select` names: at the last epoch for a point that stopped
    early), run folder, params, last_epoch, epochs (its config's), stopped (why it stopped there), then the
    varied keys."""
    keys = list(dict.fromkeys(k for o in outcomes for k in o.point.values))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["point", "status", "metric", "run_folder", "params", "last_epoch", "epochs", "stopped"] + keys)
    for o in outcomes:
        writer.writerow([o.point.id, o.state, "" if o.metric is None else o.metric,
                         o.folder.name if o.folder else "", "" if o.params is None else o.params,
                         "" if o.last_epoch is None else o.last_epoch, o.epochs, o.why]
                        + [_text(o.point.values[k]) if k in o.point.values else "" for k in keys])
    atomic_write(sweep_dir / layout.POINTS, buffer.getvalue())
    return sweep_dir / layout.POINTS


def write_compare_png(sweep: Sweep, sweep_dir: Path, outcomes: list[Outcome]) -> Path | None:
    from digitlab.figures.compare import plot
    from digitlab.runs.collect import read_run
    runs = []
    for o in outcomes:
        if o.folder is not None:
            try:
                runs.append(read_run(o.folder))
            except UserError:
                continue
    return plot(runs, sweep_dir / layout.COMPARE_PNG, title=f"{sweep.name}: test accuracy (solid), train "
                                                               f"(dashed)") if runs else None


def summary_rows(result) -> tuple[list[str], list[list[str]]]:
    """The final table: every point with its status, metric, last epoch and parameters, the best marked; and
    why each stopped where it did, when the sweep prunes or a point did not complete."""
    explain = result.sweep.prune is not None or any(o.state != "complete" for o in result.outcomes)
    headers = ["point", "status", result.sweep.select, "epoch", "params", "values", "run folder"] + \
        (["stopped"] if explain else [])
    cells = []
    for o in result.outcomes:
        state = "running elsewhere" if o.state == "running" else "not run" if o.state == "pending" else o.state
        mark = " *" if result.best is not None and o is result.best else ""
        cells.append([o.point.id + mark, state, "-" if o.metric is None else f"{o.metric:.4f}",
                      f"{o.last_epoch or 0}/{o.epochs}", "-" if o.params is None else str(o.params), o.point.label,
                      o.folder.name if o.folder else "-"] + ([o.why] if explain else []))
    return headers, cells


def epochs_line(result) -> str:
    """Epochs the points' folders hold against those of the full grid trained to the end, and this invocation's
    wall time."""
    spent, full = result.epochs
    share = f" ({100 * spent / full:.0f}%)" if full else ""
    return f"epochs: {spent} trained of the full grid's {full}{share}; this invocation {result.seconds:.1f} s"
