"""digitlab export: runs into TensorBoard and MLflow, their networks into ONNX, safetensors and PyTorch."""

from __future__ import annotations

import pathlib
import re

import click

from digitlab.cli import arguments
from digitlab.export.formats import FORMATS
from digitlab.run.layout import RUN_JSON

# A URI scheme (sqlite:///x.db, http://host:5000, file:///x): an MLflow store, never a run folder.
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def holds_runs(path: pathlib.Path) -> bool:
    """A run folder, or a folder whose runs or sweeps' points sit one or two levels down (runs/, a sweep)."""
    if not path.is_dir():
        return False
    return any(True for pattern in (RUN_JSON, f"*/{RUN_JSON}", f"*/*/{RUN_JSON}") for _ in path.glob(pattern))


def destination(runs: tuple[str, ...], fmt: str, out: str | None) -> tuple[tuple[str, ...], str | None]:
    """`digitlab export RUNS... --to tensorboard DIR` and `--to mlflow URI`: the last argument names where the
    runs go when it is no run folder (an MLflow URI, or a folder that holds no run), as --out does."""
    if out is not None or fmt not in ("tensorboard", "mlflow") or len(runs) < 2:
        return runs, out
    last = runs[-1]
    if (fmt == "mlflow" and URI.match(last)) or not holds_runs(pathlib.Path(last)):
        return runs[:-1], last
    return runs, out


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
