"""`digitlab data`: a look at a dataset before any model."""

from __future__ import annotations

from pathlib import Path

import click

from digitlab.cli import arguments
from digitlab.errors import StorageError


@click.command(name="data")
@click.argument("config", required=False, type=arguments.Path(dir_okay=False))
@click.option("--dataset", help="A dataset by name (mnist, digits8x8), instead of a CONFIG's data section.")
@click.option("--digits", metavar="LIST", help="Digits, e.g. 3,8 (default: all the dataset has).")
@click.option("--validation", type=float, help="Fraction of the training pool held out for validation.")
@click.option("--test", "test_fraction", type=float, help="Fraction held out for testing (datasets without an "
                                                          "official test split).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Seed of the splits and the samples shown.")
@click.option("--out", type=arguments.Path(file_okay=False),
              help="Folder for the figures (default: runs/data-<dataset>).")
def data_command(config, dataset, digits, validation, test_fraction, seed, out):
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
