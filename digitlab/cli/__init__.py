"""The command line, `digitlab COMMAND`. Each command is a thin click function, `<name>_command`, in the module of
its subject (run: train, evaluate, reproduce, predict, lr-find; runs: runs, compare, report, tag, note, rm; sweep;
data; bench; dashboard; export): it parses, calls the module that does the work, and prints. Options that several
commands take are declared once (cli/common.py); errors end as one line and an exit code, 2 for a bad config,
argument or run folder (cli/arguments.py). No training logic lives here, and nothing heavy is imported before a
command runs: --threads must reach BLAS before numpy loads."""

from __future__ import annotations

import click

from digitlab import __version__
from digitlab.cli import arguments, bench, dashboard, data, export, run, runs, sweep


@click.group(cls=arguments.Group)
@click.version_option(__version__, prog_name="digitlab")
def main():
    """digitlab: neural-network experiments on handwritten digits, with a from-scratch numpy engine."""


for command in (run.train_command, run.evaluate_command, data.data_command, run.reproduce_command,
                runs.compare_command, runs.runs_command, sweep.sweep_command, bench.bench_command,
                runs.report_command, run.predict_command, run.lr_find_command, runs.tag_command, runs.note_command,
                runs.rm_command, dashboard.dashboard_command, export.export_command):
    main.add_command(command)
