"""`digitlab dashboard`: every run and sweep under some folders, live in the browser (digitlab/dashboard/)."""

from __future__ import annotations

from pathlib import Path

import click

from digitlab.cli import arguments
from digitlab.errors import UserError


@click.command(name="dashboard")
@click.argument("folders", nargs=-1, type=arguments.Path())
@click.option("--port", type=click.IntRange(0, 65535), default=8808, show_default=True,
              help="The port to listen on; 0 picks a free one (the URL printed says which).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; anything but this machine's own shows every run to the network.")
@click.option("--allow-stop", is_flag=True,
              help="Add a stop button for running runs on this machine (SIGINT to the process training the run), "
                   "guarded by a token printed in the URL.")
def dashboard_command(folders, port, host, allow_stop):
    """A local web server over FOLDERS (default: runs/): the runs table, each run's curves, comparisons and sweeps,
    updated live. Prints its URL first; Ctrl-C stops it. It writes nothing in the run folders (the run catalog
    beside them is kept up to date, as `digitlab runs` does) unless --allow-stop is given."""
    from digitlab.dashboard.server import serve

    if not host.strip():
        raise click.BadParameter("expected an address to listen on (127.0.0.1, a host name, 0.0.0.0), got an "
                                 "empty string", param_hint="'--host'")
    folders = list(folders) or [Path("runs")]  # arguments.Path gives pathlib.Path
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder")
    serve(folders, host, port, allow_stop, echo=click.echo)
