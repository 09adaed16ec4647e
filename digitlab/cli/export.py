"""digitlab export: runs into TensorBoard and MLflow, their networks into ONNX, safetensors and PyTorch."""

from __future__ import annotations

import click

from digitlab.cli import arguments
from digitlab.export.formats import FORMATS


@click.command(name="export")
@click.argument("runs", nargs=-1, required=True, type=arguments.Path())
@click.option("--to", "fmt", required=True, type=click.Choice(list(FORMATS)),
              help="onnx: the network as an ONNX graph; safetensors: the weights under PyTorch's names; torch: "
                   "those and the torch.nn.Sequential that loads them; tensorboard: metrics, hyperparameters and "
                   "figures as event files; mlflow: each run as an MLflow run.")
@click.option("--out", metavar="PATH|URI",
              help="; ".join(f"{', '.join(n for n, f in FORMATS.items() if f.out == out)}: {out}"
                             for out in dict.fromkeys(f.out for f in FORMATS.values())) + ".")
def export_command(runs, fmt, out):
    """Export RUNS (run folders; a sweep folder or runs/ stands for its runs) to another tool's format. Runs that
    are damaged, still running, or (for a model format) unfinished or without model.npz are named on one line
    each and left out; the rest are exported. Needs the optional packages: pip install 'digitlab[export]'."""
    from digitlab.export.formats import export

    if out is not None and not out.strip():
        raise click.BadParameter("expected a path or URI, got an empty string", param_hint="'--out'")
    export(runs, fmt, out, say=click.echo, warn=lambda line: click.echo(f"warning: {line}", err=True))
