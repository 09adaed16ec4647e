"""The command line: parse, call, print. No training logic lives here.

Errors end as one line and an exit code (digitlab.cli.arguments): 2 for a bad config, argument or run folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from digitlab import __version__
from digitlab.cli import arguments
from digitlab.errors import StorageError, UserError


@click.group(cls=arguments.Group)
@click.version_option(__version__, prog_name="digitlab")
def main():
    """digitlab: neural-network experiments on handwritten digits, with a from-scratch numpy engine."""


@main.command()
@click.argument("config", required=False, type=arguments.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (YAML value); dotted paths reach into lists: model.2.dropout=0.3")
@click.option("--runs-dir", default="runs", show_default=True, type=arguments.Path(file_okay=False),
              help="Folder that receives the run folder.")
@click.option("--name", help="Run name (default: the config's name).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Random seed (overrides the config's).")
@click.option("--resume", "resume_dir", type=arguments.Path(file_okay=False),
              help="Continue a stopped run folder from its last checkpoint (no CONFIG then).")
@click.option("--threads", type=click.IntRange(1), help="Threads for matrix products and the optimizer (default: "
              "every core). On a machine busy with other work, 1 is often several times faster.")
@click.option("--quiet", is_flag=True, help="Print only the run folder's path.")
@click.option("--dry-run", is_flag=True, help="Print the model summary, the splits and the memory needed; train "
                                              "nothing and write nothing.")
def train(config, overrides, runs_dir, name, seed, resume_dir, threads, quiet, dry_run):
    """Train CONFIG (a YAML file) into a new folder under --runs-dir; the last line printed is its path.

    Exit code 0 when the run completes, 1 when it diverges or fails, 130/143 when Ctrl-C/SIGTERM stopped it
    (resume it with --resume), 2 for a bad config."""
    from digitlab.system.threads import limits
    if resume_dir is not None:
        threads = _resume_threads(resume_dir, threads)
    if threads:  # before numpy loads: BLAS reads these once
        os.environ.update(limits(threads))
    from digitlab.config import load_config
    from digitlab.run.lifecycle import resume, start

    if resume_dir is not None:
        if config is not None or overrides or name or seed is not None:
            raise click.UsageError("--resume takes the run folder only: its config.yaml is the config")
        run = resume(resume_dir, quiet=quiet)
    else:
        if config is None:
            raise click.UsageError("give a CONFIG file, or --resume RUN_DIR")
        extra = tuple(overrides) + ((f"name={name}",) if name is not None else ()) + \
            ((f"seed={seed}",) if seed is not None else ())
        cfg = load_config(config, extra)
        with arguments.blaming(config):
            if dry_run:
                from digitlab.run.setup import describe, prepare
                click.echo(describe(prepare(cfg)))
                return
            run = start(cfg, runs_dir, quiet=quiet)
    click.echo(str(run.path))
    info = run.read_json("run.json")
    if info["status"] == "interrupted":
        sys.exit(128 + int(info.get("signal", 2)))
    if info["status"] != "complete":
        sys.exit(1)


def _resume_threads(run_dir: Path, threads: int | None) -> int | None:
    """The BLAS threads a resumed run continues with: the ones it started with (they change the last bits of
    every sum), unless --threads says otherwise, which is allowed with a warning. The OpenBLAS kernels it
    started with (OPENBLAS_CORETYPE) are asked for again too. Read before numpy loads."""
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        recorded, core = info.get("blas_threads"), info.get("blas_core")
    except (OSError, ValueError, AttributeError, RecursionError):
        return threads  # the resume itself reports a missing or damaged run.json
    if isinstance(core, str) and core != (os.environ.get("OPENBLAS_CORETYPE") or "auto"):
        if core == "auto":
            os.environ.pop("OPENBLAS_CORETYPE", None)
        else:
            os.environ["OPENBLAS_CORETYPE"] = core
    recorded = str(recorded) if recorded is not None else None
    if recorded is None:
        return threads
    if threads is None:
        if recorded.isdigit():
            return int(recorded)
        if recorded == "default" and any(os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
            click.echo("warning: the run started with the default BLAS threads and this shell sets "
                       "OPENBLAS_NUM_THREADS/OMP_NUM_THREADS; its results will differ from an uninterrupted run in "
                       "the last digits", err=True)
        return None
    if recorded != str(threads):
        click.echo(f"warning: --threads {threads}: the run started with {recorded} BLAS thread(s); its results will "
                   f"differ from an uninterrupted run in the last digits", err=True)
    return threads


@main.command()
@click.argument("run_dir", type=arguments.Path(file_okay=False))
def evaluate(run_dir):
    """Reload RUN_DIR's model.npz and recompute its test metrics."""
    from digitlab.run.view import evaluate_run

    result = evaluate_run(run_dir)
    click.echo(f"test_accuracy {result['test_accuracy']:.6f}  test_loss {result['test_loss']:.6f}")


@main.command(name="data")
@click.argument("config", required=False, type=arguments.Path(dir_okay=False))
@click.option("--dataset", help="A dataset by name (mnist, digits8x8), instead of a CONFIG's data section.")
@click.option("--digits", metavar="LIST", help="Digits, e.g. 3,8 (default: all the dataset has).")
@click.option("--validation", type=float, help="Fraction of the training pool held out for validation.")
@click.option("--test", "test_fraction", type=float, help="Fraction held out for testing (datasets without an "
                                                          "official test split).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Seed of the splits and the samples shown.")
@click.option("--out", type=arguments.Path(file_okay=False),
              help="Folder for the figures (default: runs/data-<dataset>).")
def data_look(config, dataset, digits, validation, test_fraction, seed, out):
    """A look at the data: split sizes and class counts, and figures of samples, counts, class means and pixels."""
    from digitlab.config import load_config, validate_data
    from digitlab.figures.data import look

    if config is not None:
        if dataset or digits or validation is not None or test_fraction is not None:
            raise click.UsageError("give a CONFIG, or --dataset/--digits/--validation/--test, not both")
        cfg = load_config(config)
        data, seed = cfg["data"], cfg["seed"] if seed is None else seed
    else:
        raw = {"dataset": dataset or "mnist"}
        if digits:
            raw["digits"] = [d.strip() for d in digits.split(",")]
        if validation is not None:
            raw["validation"] = validation
        if test_fraction is not None:
            raw["test"] = test_fraction
        data, seed = validate_data(raw, "--dataset/--digits"), seed or 0
    target = out or Path("runs") / f"data-{data.get('dataset') or 'mnist'}"
    try:
        with arguments.blaming(config or "--dataset/--digits/--validation/--test"):
            written = look(data, seed, target, echo=click.echo)
    except StorageError as exc:
        raise exc.because("cannot write the figures (--out)", exit_code=2) from None
    click.echo(f"\nfigures: {', '.join(p.name for p in written)} in {target}")


# --- digitlab reproduce (issue 12) ------------------------------------------------------------------------------
@main.command(name="reproduce")
@click.argument("run_dir", type=arguments.Path(file_okay=False))
@click.option("--runs-dir", default="runs", show_default=True, type=arguments.Path(file_okay=False),
              help="Folder that receives the new run folder.")
@click.option("--threads", type=click.IntRange(1), help="BLAS threads (default: those the run started with).")
def reproduce_command(run_dir, runs_dir, threads):
    """Train RUN_DIR's config.yaml again into a new folder and say whether metrics.csv matches (apart from
    seconds), naming what differs in the environment when it does not. Exit code 0 when it matches, 1 when not."""
    from digitlab.system.threads import limits
    threads = _resume_threads(run_dir, threads)  # the run's own BLAS threads and kernels, before numpy loads
    if threads:
        os.environ.update(limits(threads))
    from digitlab.run.reproduce import reproduce_run

    result = reproduce_run(run_dir, runs_dir)
    click.echo(f"trained {result.original} again: {result.copy}")
    for line in result.lines():
        click.echo(line)
    sys.exit(0 if result.match else 1)


# --- digitlab compare (issue 3) ---------------------------------------------------------------------------------
@main.command(name="compare")
@click.argument("folders", nargs=-1, required=True, type=arguments.Path())
@click.option("--sort", metavar="KEY", help="Sort by a column (test_acc, best_val, seconds, lr...); accuracies "
                                            "best first, everything else ascending.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "markdown"]), default="table",
              show_default=True, help="Output format.")
@click.option("--all-columns", is_flag=True, help="Show every config column, not only those that differ.")
@click.option("--plot", "plot_path", type=arguments.Path(dir_okay=False),
              help="Write the overlay of accuracy per epoch to this PNG (default for one sweep folder: its "
                   "compare.png).")
@click.option("--group-seeds", is_flag=True, help="One row per config: mean and std over runs that differ only "
                                                  "by seed.")
@click.option("--where", "conditions", multiple=True, metavar="EXPR", help="Only runs whose column meets EXPR: "
              "test_acc>0.99, lr<=0.01, digits=[3,8], status!=complete, optimizer=adam (repeat: all must hold).")
def compare_runs(folders, sort, fmt, all_columns, plot_path, group_seeds, conditions):
    """Runs side by side. FOLDERS are run folders or sweep folders (a sweep folder stands for its runs)."""
    from digitlab.runs import compare, where

    conditions = where.parse_all(conditions)
    runs, warnings = compare.collect(folders)
    for warning in warnings + [run.damage for run in runs if run.damage]:
        click.echo(f"warning: {warning}", err=True)
    if not runs:
        raise UserError("nothing to compare: none of the folders given is a run folder or a folder that holds runs")
    if conditions:
        compare.describe(runs)
        runs = [run for run in runs if all(c.matches(run.values) for c in conditions)]
        if not runs:
            raise UserError(f"nothing to compare: no run meets --where {' '.join(c.text for c in conditions)}")
    columns, rows = compare.table(runs, all_columns=all_columns, group_seeds=group_seeds, sort=sort)
    click.echo(compare.render(columns, rows, fmt))
    target = plot_path or (compare.default_plot_path(folders) if not conditions else None)
    if target is None:
        return
    try:
        written = compare.plot(runs, target)
    except StorageError as exc:
        if plot_path:  # the user's own path: an error; the sweep folder's compare.png: a note
            raise exc.because("cannot write the plot (--plot)", exit_code=2) from None
        click.echo(f"warning: {exc}; the plot was not written", err=True)
        return
    click.echo(f"plot: {written}" if written else "plot: no run has a finished epoch yet; nothing drawn", err=True)


# --- digitlab runs (issue 12) -----------------------------------------------------------------------------------
@main.command(name="runs")
@click.argument("folders", nargs=-1, type=arguments.Path())
@click.option("--where", "conditions", multiple=True, metavar="EXPR", help="Only runs whose column meets EXPR: "
              "test_acc>0.99, lr<=0.01, digits=[3,8], status!=complete, optimizer=adam (repeat: all must hold); "
              "any column of digitlab compare, and started, sweep, point.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(["running", "complete", "pruned",
              "interrupted", "crashed", "failed", "diverged", "damaged"]), help="Only runs with this status "
              "(repeat for several).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "markdown"]), default="table",
              show_default=True, help="Output format.")
def list_runs(folders, conditions, statuses, fmt):
    """Every run under FOLDERS (default: runs/), newest first: name, status, started, epochs done, test accuracy,
    best validation accuracy, folder."""
    from digitlab.runs import compare, where
    from digitlab.runs import listing as catalog

    conditions = where.parse_all(conditions)
    if not folders and not Path("runs").is_dir():
        click.echo("no runs: there is no runs/ folder here", err=True)
        return
    columns, rows, warnings = catalog.list_runs(folders or [Path("runs")], conditions, statuses)
    for warning in warnings + [row["damage"] for row in rows if row.get("damage")]:
        click.echo(f"warning: {warning}", err=True)
    if not rows:
        click.echo("no runs" + (" meet the conditions" if conditions or statuses else " found"), err=True)
        return
    click.echo(compare.render(columns, rows, fmt))


# --- digitlab sweep (issue 3) -----------------------------------------------------------------------------------
@main.command(name="sweep")
@click.argument("sweep_file", type=arguments.Path(dir_okay=False))
@click.option("--workers", type=click.IntRange(1, 1024), help="Points in parallel: processes here (BLAS threads "
              "split between them), or the local Dask cluster's workers. Default 1 (local), 2 (dask).")
@click.option("--dry-run", is_flag=True, help="Print the points and what would run; train nothing.")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Where points run: this machine, or a Dask distributed cluster.")
@click.option("--address", metavar="URL", help="Dask scheduler, e.g. tcp://host:8786 (default: a local cluster).")
@click.option("--retry-failed", is_flag=True, help="Also run again the points that failed or diverged.")
@click.option("--runs-dir", default="runs", show_default=True, type=arguments.Path(file_okay=False),
              help="The sweep's folder is <runs-dir>/<sweep name>.")
@click.option("--threads", type=click.IntRange(1), help="BLAS threads for the points run here one after the other "
              "(as train --threads; --workers gives each worker cores / workers).")
def sweep_points(sweep_file, workers, dry_run, executor, address, retry_failed, runs_dir, threads):
    """Run every point of SWEEP_FILE that is not complete yet; safe to run again, and from cron."""
    if threads:  # before numpy loads
        from digitlab.system.threads import limits
        os.environ.update(limits(threads))
    from digitlab.sweep import epochs_line, load_sweep, run_sweep, summary_rows
    from digitlab.system.tables import format_table

    if address and executor != "dask":
        raise click.UsageError("--address needs --executor dask")
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
                   f"({best.params} parameters) -> {best.folder}")
    if result.elsewhere:
        click.echo(f"{len(result.elsewhere)} point(s) running elsewhere or not run; run the sweep again later")
    if result.waiting:
        click.echo(f"{len(result.waiting)} point(s) wait at their rung for results still to come; run the sweep "
                   f"again later")
    click.echo(f"{len(set(result.trained))} point(s) run now; points.csv and compare.png in {result.folder}")
    click.echo(epochs_line(result))
    if result.interrupted:
        sys.exit(128 + result.interrupted)
    if result.failed:
        click.echo(f"{len(result.failed)} point(s) did not complete: "
                   + ", ".join(f"{o.point.id} ({'lost on the cluster' if o.point.id in result.lost else o.state})"
                               for o in result.failed), err=True)
        sys.exit(1)


# --- digitlab bench (issue 4) -----------------------------------------------------------------------------------
@main.command()
@click.option("--task", "tasks", multiple=True, metavar="NAME",
              help="A task to run (repeatable): 3v8, mnist10-mlp, mnist10-cnn (when conv layers exist). Default: all.")
@click.option("--engine", "engines", multiple=True, metavar="NAME",
              help="An engine to run (repeatable): digitlab, numpy, matmul, torch, torch-loader, torch-best, sklearn. "
                   "Default: all.")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1),
              help="Epochs per engine; seconds per epoch are the median of the epochs after the first.")
@click.option("--threads", type=click.IntRange(1), help="Threads for every engine (default: the CPUs available).")
@click.option("--json", "json_path", type=arguments.Path(dir_okay=False), help="Write the figures here.")
@click.option("--limit", type=click.IntRange(1), help="Train and test on the first N examples only (for tests).")
@click.option("--no-peers", is_flag=True, help="Skip PyTorch and scikit-learn even when installed.")
def bench(tasks, engines, epochs, threads, json_path, limit, no_peers):
    """Time digitlab's engine against a minimal numpy loop, the matmul limit, PyTorch and scikit-learn."""
    from digitlab import bench as benchmark

    if json_path:  # say so now, not after minutes of timing
        from digitlab.system.storage import check_writable
        if not json_path.resolve().parent.is_dir():
            raise UserError(f"{json_path}: --json needs an existing folder ({json_path.resolve().parent} is not one)")
        try:
            check_writable(json_path.resolve().parent)
        except StorageError as exc:
            raise exc.because("cannot write the figures there (--json)", exit_code=2) from None
    results = benchmark.run(list(tasks), list(engines), epochs=epochs, threads=threads, limit=limit,
                            peers=not no_peers, echo=lambda line: click.echo(line, err=True))
    click.echo(benchmark.format_machine(results))
    click.echo("")
    click.echo(benchmark.results_table(results))
    if json_path:
        try:
            benchmark.write_json(results, json_path)
        except StorageError as exc:
            raise exc.because("the figures above were not saved (--json)", exit_code=2) from None
        click.echo(f"figures written to {json_path}")


# --- digitlab report, predict, lr-find (issue 11) ---------------------------------------------------------------
@main.command(name="report")
@click.argument("folders", nargs=-1, required=True, type=arguments.Path())
@click.option("--out", type=arguments.Path(dir_okay=False),
              help="Write one page comparing every run in FOLDERS here (the compare table, the curves overlaid, "
                   "a sweep's parallel coordinates and seed groups).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="BLAS threads for scoring the test set (one is steadiest on a busy machine).")
def report_pages(folders, out, threads):
    """Write report.html, a page to open in a browser, for each run folder (figures made again from the folder)
    and each sweep folder in FOLDERS; with --out, one page comparing all their runs."""
    from digitlab.system.threads import limits
    if "numpy" not in sys.modules:  # BLAS reads them as numpy loads; later they would only leak into subprocesses
        os.environ.update(limits(threads))
    from digitlab.runs.page import report
    if out is not None:
        try:
            written = report(list(folders), out)
        except StorageError as exc:
            raise exc.because("the page was not written (--out)", exit_code=2) from None
        click.echo(str(written[0]))
        return
    report(list(folders), echo=click.echo)


@main.command(name="predict")
@click.argument("run_dir", type=arguments.Path(file_okay=False))
@click.argument("images", nargs=-1, required=True, type=arguments.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: a line per image with the top three digits; json: a list with every probability.")
@click.option("--explain", "explain_path", type=arguments.Path(dir_okay=False),
              help="Draw each image as read, as the model saw it, and its probabilities into this PNG.")
def predict_digits(run_dir, images, fmt, explain_path):
    """Classify your own digit images (PNG or JPEG, any size, dark on light or light on dark) with RUN_DIR's
    trained model."""
    from digitlab.run import predict
    predictions = predict.predict(run_dir, list(images))
    click.echo(predict.as_json(predictions) if fmt == "json" else predict.as_text(predictions))
    if explain_path is not None:
        try:
            predict.explain(predictions, explain_path)
        except StorageError as exc:
            raise exc.because("the drawing was not written (--explain)", exit_code=2) from None
        click.echo(f"explained: {explain_path}", err=True)


@main.command(name="lr-find")
@click.argument("config", type=arguments.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, as for train.")
@click.option("--runs-dir", default="runs", show_default=True, type=arguments.Path(file_okay=False),
              help="Folder that receives the lr-find folder.")
@click.option("--start", default=1e-7, show_default=True, type=arguments.Positive(),
              help="The first learning rate.")
@click.option("--end", default=10.0, show_default=True, type=arguments.Positive(),
              help="The last learning rate.")
@click.option("--steps", default=200, show_default=True, type=click.IntRange(10, 100_000),
              help="Batches from --start to --end.")
def lr_find_command(config, overrides, runs_dir, start, end, steps):
    """The learning-rate range test: train CONFIG's initial weights while the learning rate grows exponentially,
    stop when the loss explodes, plot loss against lr and suggest one."""
    from digitlab.config import load_config
    from digitlab.run.lr_find import lr_find

    if end <= start:
        raise click.UsageError(f"--end ({end:g}) must be larger than --start ({start:g})")
    click.echo(lr_find(load_config(config, tuple(overrides)), runs_dir, start=start, end=end, steps=steps).told())
