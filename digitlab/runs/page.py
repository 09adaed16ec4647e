"""`digitlab report`: a page per run folder (digitlab.run.page), or one page that compares runs: the compare
table (sortable, the config columns that differ), their curves overlaid, and for sweeps a parallel-coordinates
plot and the seed groups. A sweep folder gets its own report.html whenever a sweep invocation ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from digitlab.config import read_yaml
from digitlab.errors import RunError, UserError
from digitlab.figures import html
from digitlab.options import plural
from digitlab.run import layout
from digitlab.run.folder import RunFolder
from digitlab.runs.catalog import collect
from digitlab.runs.collect import Run, is_run_folder, is_sweep_folder
from digitlab.runs.table import table
from digitlab.system.storage import atomic_write

PAGE = layout.REPORT
LOWER_IS_BETTER = ("val_loss", "test_loss", "train_loss")
SHOWN_DECIMALS = {"train_acc": 4, "test_acc": 4, "best_val": 4, "seconds": 1}


def report(folders: list[Path], out: Path | None = None, echo: Callable[[str], None] = print,
           redraw: bool = False) -> list[Path]:
    """With `out`: one comparison page of every run in `folders`. Without: each run folder's report.html (every
    figure drawn again with `redraw`, else only those not drawn already from the folder as it is) and each
    sweep folder's. Returns the pages written; a folder that cannot have one is a UserError, raised after the
    others are written."""
    if out is not None:
        return [write_comparison(folders, out)]
    from digitlab.run.page import write_report
    written, failed = [], []
    for folder in map(Path, folders):
        try:
            if is_sweep_folder(folder):
                written.append(write_sweep_report(folder))
            elif is_run_folder(folder) or not folder.is_dir():
                written.append(write_report(RunFolder.open(folder), redraw=redraw).path / PAGE)
            else:
                raise RunError(f"{folder}: not a run folder or a sweep folder; to compare the runs in it, give "
                               f"--out FILE.html")
        except UserError as exc:
            failed.append(exc)
            if len(folders) > 1:
                echo(f"warning: {exc}; no page written for it")
            continue
        echo(str(written[-1]))
    if failed:
        if len(folders) == 1:
            raise failed[0]
        raise RunError(f"{len(failed)} of {plural(len(folders), 'folder')} got no page (see the warnings above)")
    return written


def sweep_select(folder: Path) -> str | None:
    """The metric a sweep selects by (its sweep.yaml's `select`), or None when the folder is not a sweep's."""
    try:
        spec = read_yaml(folder / layout.SWEEP_FILE)
    except UserError:
        return None
    select = spec.get("select", "val_accuracy") if isinstance(spec, dict) else None
    return select if isinstance(select, str) else None


def write_sweep_report(folder: Path, select: str | None = None, curves: bytes | None = None) -> Path:
    """The sweep folder's report.html (a comparison page of its points); `curves`: the PNG of their curves when
    the caller has just drawn it (the sweep's compare.png), so it is not drawn twice."""
    return write_comparison([folder], Path(folder) / PAGE, title=f"sweep {Path(folder).name}",
                            select=select or sweep_select(Path(folder)) or "val_accuracy", curves=curves)


def write_comparison(folders, out: Path, title: str | None = None, select: str | None = None,
                     curves: bytes | None = None) -> Path:
    """The comparison page of the runs in `folders` (run folders, sweep folders, folders of runs), at `out`;
    `curves`, when given, is the PNG of their curves (see figures.compare.overlay) already drawn."""
    out = Path(out)
    runs, warnings = collect(folders)
    warnings += [r.damage for r in runs if r.damage]
    if not runs:
        raise UserError("nothing to report: none of the folders given is a run folder or a folder that holds runs")
    if select is None:
        select = next((sweep_select(Path(f)) for f in folders if is_sweep_folder(Path(f))), None)
    body = [f"<h1>{html.esc(title or plural(len(runs), 'run') + ' compared')}</h1>"]
    if warnings:
        body.append('<div class="banner warn"><b>notes</b><ul>' +
                    "".join(f"<li>{html.esc(w)}</li>" for w in warnings) + "</ul></div>")
    columns, rows = table(runs)
    body += ["<h2>Runs</h2>", '<p class="note">The config columns that differ between the runs, then the results. '
             "Click a column's header to sort by it; a run's name opens its own page.</p>",
             _table(columns, rows, out)]
    if curves is None:
        from digitlab.figures.compare import overlay
        figure = overlay(runs)
        if figure is not None:
            from digitlab.figures.canvas import png
            curves = png(figure)
    if curves is not None:
        body += ["<h2>Curves</h2>", '<div class="figs">', html.figure(
            curves, "accuracy per epoch of every run", "Test accuracy (solid) and train accuracy (dashed) "
            "per epoch."), "</div>"]
    if select is not None:
        body.append(_parallel(runs, select))
    grouped_columns, grouped = table(runs, group_seeds=True)
    if any(r["runs"] > 1 for r in grouped):
        body += ["<h2>Seed groups</h2>", '<p class="note">Runs whose configs differ only by their seed, as one row: '
                 "the mean ± the standard deviation over the seeds.</p>", _table(grouped_columns, grouped, out)]
    atomic_write(out, html.page(title or "digitlab: runs compared", "\n".join(body), sortable=True))
    return out


def _table(columns: list[str], rows: list[dict], out: Path) -> str:
    shown = [c for c in columns if not c.endswith("_std")]
    cells = []
    for row in rows:
        line = []
        for column in shown:
            value, std = row.get(column), row.get(f"{column}_std")
            text = _format(column, value) + (f" ± {_format(column, std)}" if std is not None and row.get("runs", 1) > 1
                                             else "")
            if column == "name" and row.get("path"):
                page = Path(row["path"]) / PAGE
                if page.is_file():
                    href = os.path.relpath(page, out.resolve().parent if out.parent.exists() else out.parent)
                    line.append(f'<td><a href="{html.esc(href)}">{html.esc(text)}</a></td>')
                    continue
            line.append(html.cell(value if isinstance(value, (int, float)) else None,
                                  numeric=isinstance(value, (int, float)) and not isinstance(value, bool), shown=text))
        cells.append(line)
    return html.table(shown, cells, sortable=True)


def _format(column: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        decimals = SHOWN_DECIMALS.get(column)
        return f"{value:.{decimals}f}" if decimals is not None else f"{value:g}"
    return str(value)


def flatten(value, prefix: str = "") -> dict:
    """A config as dotted keys: {'optimizer.lr': 0.1, 'model.2.dropout': 0.3, ...}."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): value}


def varied_keys(configs: list[dict]) -> list[str]:
    """The dotted config keys whose values differ between the configs (the name aside), in config order."""
    flat = [flatten(cfg) for cfg in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f if k != "name"))
    return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


def _parallel(runs: list[Run], select: str) -> str:
    usable = [r for r in runs if r.cfg]
    keys = varied_keys([r.cfg for r in usable])
    head = "<h2>Parallel coordinates</h2>"
    if not keys or len(usable) < 2:
        return head + '<p class="note">Fewer than two points, or nothing varies between them.</p>'
    rows = []
    for run in usable:
        flat = flatten(run.cfg)
        row = {k: flat.get(k) for k in keys}
        row[select] = run.summary.get(select) if run.status == "complete" else None
        rows.append(row)
    from digitlab.figures.canvas import png
    from digitlab.figures.compare import parallel_coordinates
    figure = parallel_coordinates(keys, rows, select, maximize=select not in LOWER_IS_BETTER)
    return head + '<div class="figs">' + html.figure(
        png(figure), "parallel coordinates of the sweep", f"One axis per varied config key and "
        f"{html.esc(select)} last; one line per point, coloured by {html.esc(select)}.") + "</div>"
