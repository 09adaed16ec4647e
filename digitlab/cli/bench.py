"""`digitlab bench`: the engine timed against a minimal numpy loop, the matmul limit, PyTorch and scikit-learn."""

from __future__ import annotations

import click

from digitlab.cli import arguments, common
from digitlab.errors import StorageError, UserError


@click.command(name="bench")
@click.option("--task", "tasks", multiple=True, metavar="NAME",
              help="A task to run (repeatable): 3v8, mnist10-mlp, mnist10-cnn (when conv layers exist). Default: all.")
@click.option("--engine", "engines", multiple=True, metavar="NAME",
              help="An engine to run (repeatable): digitlab, numpy, matmul, torch, torch-loader, torch-best, sklearn. "
                   "Default: all.")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1),
              help="Epochs per engine; seconds per epoch are the median of the epochs after the first.")
@common.threads("Threads for every engine (default: the CPUs available).")
@click.option("--json", "json_path", type=arguments.Path(dir_okay=False), help="Write the figures here.")
@click.option("--limit", type=click.IntRange(1), help="Train and test on the first N examples only (for tests).")
@click.option("--no-peers", is_flag=True, help="Skip PyTorch and scikit-learn even when installed.")
def bench_command(tasks, engines, epochs, threads, json_path, limit, no_peers):
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
