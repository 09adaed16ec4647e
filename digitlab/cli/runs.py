"""Commands on many runs: list them, compare them side by side, and write their pages."""

from __future__ import annotations

from pathlib import Path

import click

from digitlab.cli import arguments, common
from digitlab.errors import StorageError, UserError
from digitlab.options import plural
from digitlab.system import threads as system_threads


@click.command(name="runs")
@click.argument("folders", nargs=-1, type=arguments.Path())
@common.where
@common.status
@common.output_format()
def runs_command(folders, conditions, statuses, fmt):
    """Every run under FOLDERS (default: runs/), newest first: name, status, started, epochs done, test accuracy,
    best validation accuracy, folder."""
    from digitlab.runs.listing import list_runs
    from digitlab.runs.table import render

    if not folders and not Path("runs").is_dir():
        click.echo("no runs: there is no runs/ folder here", err=True)
        return
    columns, rows, warnings = list_runs(folders or [Path("runs")], conditions, statuses)
    for warning in warnings + [row["damage"] for row in rows if row.get("damage")]:
        click.echo(f"warning: {warning}", err=True)
    if not rows:
        click.echo("no runs" + (" meet the conditions" if conditions or statuses else " found"), err=True)
        return
    click.echo(render(columns, rows, fmt))


@click.command(name="compare")
@click.argument("folders", nargs=-1, required=True, type=arguments.Path())
@click.option("--sort", metavar="KEY", help="Sort by a column (test_acc, best_val, seconds, lr...); accuracies "
                                            "best first, everything else ascending.")
@common.output_format()
@click.option("--all-columns", is_flag=True, help="Show every config column, not only those that differ.")
@click.option("--plot", "plot_path", type=arguments.Path(dir_okay=False),
              help="Write the overlay of accuracy per epoch to this PNG (default for one sweep folder: its "
                   "compare.png).")
@click.option("--group-seeds", is_flag=True, help="One row per config: mean and std over runs that differ only "
                                                  "by seed.")
@common.where
def compare_command(folders, sort, fmt, all_columns, plot_path, group_seeds, conditions):
    """Runs side by side. FOLDERS are run folders or sweep folders (a sweep folder stands for its runs)."""
    from digitlab.runs.catalog import collect
    from digitlab.runs.collect import default_plot_path
    from digitlab.runs.columns import describe, flat
    from digitlab.runs.table import render, table

    runs, warnings = collect(folders)
    for warning in warnings + [run.damage for run in runs if run.damage]:
        click.echo(f"warning: {warning}", err=True)
    if not runs:
        raise UserError("nothing to compare: none of the folders given is a run folder or a folder that holds runs")
    if conditions:
        describe(runs)
        runs = [run for run in runs if all(c.matches(flat(run.values)) for c in conditions)]
        if not runs:
            raise UserError(f"nothing to compare: no run meets --where {' '.join(c.text for c in conditions)}")
    columns, rows = table(runs, all_columns=all_columns, group_seeds=group_seeds, sort=sort)
    click.echo(render(columns, rows, fmt))
    target = plot_path or (default_plot_path(folders) if not conditions else None)
    if target is None:
        return
    from digitlab.figures.compare import plot
    try:
        written = plot(runs, target)
    except StorageError as exc:
        if plot_path:  # the user's own path: an error; the sweep folder's compare.png: a note
            raise exc.because("cannot write the plot (--plot)", exit_code=2) from None
        click.echo(f"warning: {exc}; the plot was not written", err=True)
        return
    click.echo(f"plot: {written}" if written else "plot: no run has a finished epoch yet; nothing drawn", err=True)


@click.command(name="report")
@click.argument("folders", nargs=-1, required=True, type=arguments.Path())
@click.option("--out", type=arguments.Path(dir_okay=False),
              help="Write one page comparing every run in FOLDERS here (the compare table, the curves overlaid, "
                   "a sweep's parallel coordinates and seed groups).")
@common.threads("BLAS threads for scoring the test set (one is steadiest on a busy machine).", default=1)
@click.option("--redraw", is_flag=True, help="Draw every figure again, even those digitlab drew from the run "
              "folder as it is (kept in the folder and reused otherwise).")
def report_command(folders, out, threads, redraw):
    """Write report.html, a page to open in a browser, for each run folder (figures made from the folder, or
    reused when drawn from it as it is) and each sweep folder in FOLDERS; with --out, one page comparing all
    their runs."""
    system_threads.use(threads, default=threads == 1)
    from digitlab.runs.page import report

    if out is not None:
        try:
            written = report(list(folders), out)
        except StorageError as exc:
            raise exc.because("the page was not written (--out)", exit_code=2) from None
        click.echo(str(written[0]))
        return
    report(list(folders), echo=click.echo, redraw=redraw)


@click.command(name="tag")
@click.argument("items", nargs=-1, required=True, metavar="RUN... KEY=VALUE...")
@click.option("--remove", "remove", multiple=True, metavar="KEY", help="Remove this tag (repeatable).")
def tag_command(items, remove):
    """Tag runs: `digitlab tag runs/a-* owner=ana idea=wider`. Arguments with '=' are tags, the others run
    folders; `--remove KEY` takes a tag off. Tags show in `runs`, `compare` and the pages and filter with
    --where tag.KEY=VALUE."""
    from digitlab.run import tags as run_tags
    from digitlab.run.folder import RunFolder

    folders = [Path(item) for item in items if "=" not in item]
    assignments = run_tags.parse(item for item in items if "=" in item)
    if not folders:
        raise click.UsageError("give at least one run folder")
    if not assignments and not remove:
        raise click.UsageError("give KEY=VALUE tags, or --remove KEY")
    runs = [RunFolder.open(folder) for folder in folders]  # every folder checked before any is written
    for run in runs:
        now = run_tags.update(run, assignments, remove)
        shown = " ".join(f"{k}={v}" for k, v in sorted(now["tags"].items())) or "no tags"
        click.echo(f"{run.path}: {shown}")


@click.command(name="note")
@click.argument("run_dir", type=arguments.Path(file_okay=False))
@click.argument("text", required=False)
def note_command(run_dir, text):
    """Say something about a run, in words: `digitlab note runs/a-* "the lr was too high"`. Without TEXT, print
    its note; an empty TEXT ("") clears it."""
    from digitlab.run import tags as run_tags
    from digitlab.run.folder import RunFolder

    run = RunFolder.open(run_dir)
    if text is None:
        click.echo(run_tags.read(run)["note"] or f"{run.path}: no note")
        return
    run_tags.update(run, note=text)
    click.echo(f"{run.path}: note {'cleared' if not text else 'saved'}")


@click.command(name="rm")
@click.argument("folders", nargs=-1, type=arguments.Path())
@click.option("--restore", is_flag=True, help="Bring the runs back from the trash (give where they were).")
@click.option("--list", "listing", is_flag=True, help="List what the trash of FOLDERS (default: runs/) holds.")
@click.option("--empty", is_flag=True, help="Delete what the trash of FOLDERS (default: runs/) holds, for good.")
def rm_command(folders, restore, listing, empty):
    """Move run folders to the trash beside them (<folder>/.trash/), out of every listing; nothing is deleted
    until --empty. `digitlab rm --restore runs/x` brings runs/x back."""
    from digitlab.run import trash

    if sum((restore, listing, empty)) > 1:
        raise click.UsageError("give one of --restore, --list, --empty")
    if listing or empty:
        where = list(folders) or [Path("runs")]
        found = trash.empty(where) if empty else trash.trashed(where)
        for path in found:
            click.echo(str(path))
        click.echo(f"{plural(len(found), 'run folder')} {'deleted' if empty else 'in the trash'}", err=True)
        return
    if not folders:
        raise click.UsageError("give the run folders to move to the trash (or to --restore)")
    for folder in folders:
        moved = trash.restore(folder) if restore else trash.remove(folder)
        click.echo(f"{folder} -> {moved}")
