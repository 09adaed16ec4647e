"""The command line: parse, call, print. No training logic lives here.

A UserError (bad config, data or run folder) prints one line and exits with code 2, without a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digitlab import __version__
from digitlab.errors import UserError


class Group(click.Group):
    """Turns UserError into a one-line message and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="digitlab")
def main():
    """digitlab: neural-network experiments on handwritten digits, with a from-scratch numpy engine."""


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (YAML value); dotted paths reach into lists: model.2.dropout=0.3")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder that receives the run folder.")
@click.option("--name", help="Run name (default: the config's name).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Random seed (overrides the config's).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Continue a stopped run folder from its last checkpoint (no CONFIG then).")
@click.option("--quiet", is_flag=True, help="Print only the run folder's path.")
def train(config, overrides, runs_dir, name, seed, resume_dir, quiet):
    """Train CONFIG (a YAML file) into a new folder under --runs-dir; the last line printed is its path.

    Exit code 0 when the run completes, 1 when it diverges or fails, 130/143 when Ctrl-C/SIGTERM stopped it
    (resume it with --resume), 2 for a bad config."""
    from digitlab import experiment
    from digitlab.config import load_config

    if resume_dir is not None:
        if config is not None or overrides or name or seed is not None:
            raise click.UsageError("--resume takes the run folder only: its config.yaml is the config")
        run = experiment.resume(resume_dir, quiet=quiet)
    else:
        if config is None:
            raise click.UsageError("give a CONFIG file, or --resume RUN_DIR")
        extra = tuple(overrides) + ((f"name={name}",) if name else ()) + ((f"seed={seed}",) if seed is not None else ())
        run = experiment.train(load_config(config, extra), runs_dir, quiet=quiet)
    click.echo(str(run.path))
    info = run.read_json("run.json")
    if info["status"] == "interrupted":
        sys.exit(128 + int(info.get("signal", 2)))
    if info["status"] != "complete":
        sys.exit(1)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def evaluate(run_dir):
    """Reload RUN_DIR's model.npz and recompute its test metrics."""
    from digitlab.experiment import evaluate_run

    result = evaluate_run(run_dir)
    click.echo(f"test_accuracy {result['test_accuracy']:.6f}  test_loss {result['test_loss']:.6f}")


# --- digitlab compare (issue 3) ---------------------------------------------------------------------------------

# --- digitlab sweep (issue 3) -----------------------------------------------------------------------------------

# --- digitlab bench (issue 4) -----------------------------------------------------------------------------------
