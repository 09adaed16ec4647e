"""Options that several commands take, declared once (as Guild's runs_support does): a command stacks the
decorators it needs, and `--where`, `--format`, `--runs-dir`, `--threads` and `--set` read and mean the same
everywhere."""

from __future__ import annotations

import click

from digitlab.cli import arguments
from digitlab.run.layout import STATUSES

FORMATS = ("table", "csv", "json", "markdown")


def runs_dir(help: str = "Folder that receives the run folder."):
    return click.option("--runs-dir", default="runs", show_default=True, type=arguments.Path(file_okay=False),
                        help=help)


def threads(help: str = "BLAS threads (default: every core). On a machine busy with other work, 1 is often "
                        "several times faster.", default: int | None = None):
    return click.option("--threads", type=click.IntRange(1), default=default, show_default=default is not None,
                        help=help)


def overrides(help: str = "Override a config key (YAML value); dotted paths reach into lists: "
                          "model.2.dropout=0.3"):
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=help)


def _parse_where(ctx, param, value):
    from digitlab.runs.where import parse_all
    return parse_all(value)


where = click.option("--where", "conditions", multiple=True, metavar="EXPR", callback=_parse_where,
                     help="Only runs whose column meets EXPR: test_acc>0.99, lr<=0.01, digits=[3,8], "
                          "status!=complete, optimizer=adam (repeat: all must hold); any column of digitlab "
                          "compare, and started, sweep, point.")

status = click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES),
                      help="Only runs with this status (repeat for several).")


def output_format(choices=FORMATS, help: str = "Output format."):
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=choices[0], show_default=True,
                        help=help)
