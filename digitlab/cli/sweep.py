"""`digitlab sweep`: run every point of a sweep file that is not complete yet, here, in processes or on Dask."""

from __future__ import annotations

import sys

import click

from digitlab.cli import arguments, common
from digitlab.options import plural
from digitlab.system import threads as system_threads


@click.command(name="sweep")
@click.argument("sweep_file", type=arguments.Path(dir_okay=False))
@click.option("--workers", type=click.IntRange(1, 1024), help="Points in parallel: processes here (BLAS threads "
              "split between them), or the local Dask cluster's workers. Default 1 (local), 2 (dask).")
@click.option("--dry-run", is_flag=True, help="Print the points and what would run; train nothing.")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Where points run: this machine, or a Dask distributed cluster.")
@click.option("--address", metavar="URL", help="Dask scheduler, e.g. tcp://host:8786 (default: a local cluster).")
@click.option("--retry-failed", is_flag=True, help="Also run again the points that failed or diverged.")
@common.runs_dir("The sweep's folder is <runs-dir>/<sweep name>.")
@common.threads("BLAS threads for the points run here one after the other (as train --threads; --workers gives "
                "each worker cores / workers).")
def sweep_command(sweep_file, workers, dry_run, executor, address, retry_failed, runs_dir, threads):
    """Run every point of SWEEP_FILE that is not complete yet; safe to run again, and from cron."""
    if address and executor != "dask":
        raise click.UsageError("--address needs --executor dask")
    system_threads.use(threads)
    from digitlab.sweep import epochs_line, load_sweep, run_sweep, summary_rows
    from digitlab.system.tables import format_table

    sweep = load_sweep(sweep_file)
    result = run_sweep(sweep, runs_dir, workers=workers, executor=executor, address=address,
                       retry_failed=retry_failed, dry_run=dry_run, echo=click.echo)
    if dry_run:
        return
    headers, cells = summary_rows(result)
    click.echo("")
    click.echo(format_table(headers, cells))
    if result.best is not None:
        best = result.best
        click.echo(f"best by {sweep.select}: {best.point.id} {best.point.label} {best.metric:.4f} "
                   f"({plural(best.params, 'parameter')}) -> {best.folder}")
    if result.elsewhere:
        click.echo(f"{plural(len(result.elsewhere), 'point')} running elsewhere or not run; run the sweep again later")
    if result.waiting:
        wait = "waits at its" if len(result.waiting) == 1 else "wait at their"
        click.echo(f"{plural(len(result.waiting), 'point')} {wait} rung for results still to come; run the sweep "
                   f"again later")
    click.echo(f"{plural(len(set(result.trained)), 'point')} run now; points.csv and compare.png in {result.folder}")
    click.echo(epochs_line(result))
    if result.interrupted:
        sys.exit(128 + result.interrupted)
    if result.failed:
        click.echo(f"{plural(len(result.failed), 'point')} did not complete: "
                   + ", ".join(f"{o.point.id} ({'lost on the cluster' if o.point.id in result.lost else o.state})"
                               for o in result.failed), err=True)
        sys.exit(1)
