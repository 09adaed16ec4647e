"""digitlab export: runs into TensorBoard and MLflow, their networks into ONNX, safetensors and PyTorch."""

from __future__ import annotations

import pathlib

import click

from digitlab.cli import arguments
from digitlab.export.formats import FORMATS, URI_SCHEME
from digitlab.run.layout import CONFIG, METRICS, RUN_JSON

RUN_FILES = (RUN_JSON, CONFIG, METRICS)  # any of them makes a folder a run's, damaged or not


def holds_runs(path: pathlib.Path, depth: int) -> bool:
    """Whether a run's files sit in `path` or up to `depth` folders below it (runs/, a sweep's points)."""
    patterns = ["/".join(["*"] * level + [name]) for level in range(depth + 1) for name in RUN_FILES]
    return path.is_dir() and any(True for pattern in patterns for _ in path.glob(pattern))


def destination(runs: tuple[str, ...], fmt: str, out: str | None) -> tuple[tuple[str, ...], str | None]:
    """`digitlab export RUNS... --to mlflow URI` and `--to tensorboard RUNS... DIR`: the last argument names where
    the runs go, as --out does, when it cannot be a run: a URI for mlflow; for tensorboard a folder that holds no
    run, or a new one whose parent holds none (a mistyped run under runs/ stays a run, and is refused as missing)."""
    if out is not None or fmt not in ("tensorboard", "mlflow") or len(runs) < 2:
        return runs, out
    last = pathlib.Path(runs[-1])
    if fmt == "mlflow":
        taken = bool(URI_SCHEME.match(runs[-1]))  # an MLflow store, never a run folder
    elif last.exists():
        taken = last.is_dir() and not holds_runs(last, depth=2)
    else:
        taken = last.parent.is_dir() and not holds_runs(last.parent, depth=1)
    return (runs[:-1], runs[-1]) if taken else (runs, out)


@click.command(name="export")
@click.argument("runs", nargs=-1, required=True)
@click.option("--to", "fmt", required=True, type=click.Choice(list(FORMATS)),
              help="onnx: the network as an ONNX graph; safetensors: the weights under PyTorch's names; torch: "
                   "those and the torch.nn.Sequential that loads them; tensorboard: metrics, hyperparameters and "
                   "figures as event files; mlflow: each run as an MLflow run.")
@click.option("--out", metavar="PATH|URI",
              help="; ".join(f"{', '.join(n for n, f in FORMATS.items() if f.out == out)}: {out}"
                             for out in dict.fromkeys(f.out for f in FORMATS.values())) + ".")
def export_command(runs, fmt, out):
    """Export RUNS (run folders; a sweep folder or runs/ stands for its runs) to another tool's format; for
    tensorboard and mlflow the last argument may name where they go instead of --out (`--to tensorboard RUNS... DIR`,
    `--to mlflow RUNS... sqlite:///mlflow.db`) when it is no run folder. Runs that
    are damaged, still running, or (for a model format) unfinished or without model.npz are named on one line
    each and left out; the rest are exported. Needs the optional packages: pip install 'digitlab[export]'."""
    from digitlab.export.formats import export

    if out is not None and not out.strip():
        raise click.BadParameter("expected a path or URI, got an empty string", param_hint="'--out'")
    runs, out = destination(runs, fmt, out)
    paths = [arguments.Path().convert(run, None, None) for run in runs]
    export(paths, fmt, out, say=click.echo, warn=lambda line: click.echo(f"warning: {line}", err=True))
