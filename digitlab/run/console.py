"""What the user reads: lines printed to stdout (unless quiet) and kept in the run's log.txt."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digitlab.run.folder import RunFolder


class Console:
    """Prints lines and appends them to log.txt once a run folder is attached (earlier ones wait for it)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.run: RunFolder | None = None
        self.pending: list[str] = []

    def attach(self, run: RunFolder) -> None:
        self.run = run
        for line in self.pending:
            run.append_log(line)
        self.pending.clear()

    def warn(self, line: str) -> None:
        """A warning: on stderr (even when quiet) and in log.txt."""
        print(f"warning: {line}", file=sys.stderr, flush=True)
        if self.run is None:
            self.pending.append(f"warning: {line}")
        else:
            self.run.append_log(f"warning: {line}")

    def echo(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)
        if self.run is None:
            self.pending.append(line)
        else:
            self.run.append_log(line)
