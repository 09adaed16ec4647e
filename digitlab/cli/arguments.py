"""How the command line reads its arguments and reports what is wrong with them.

Every error a user can cause ends as one line, `error: ...`, and an exit code: a UserError (bad config, data or run
folder) with its own code (2, or 1 for a run that failed), and click's own argument errors (an unknown option, a
value out of range, a missing argument) with click's code, 2; click would print four lines (usage, a hint, a blank
line, the error). Paths may not be empty and numbers must be finite: click lets "" and nan through.
"""

from __future__ import annotations

import contextlib
import math
import pathlib
import sys

import click

from digitlab.errors import ConfigError, SplitError, UserError, one_line


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


def _usage(exc: click.ClickException) -> None:
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # click >= 8.2
        raise exc  # a bare command shows its help, as click does
    ctx = getattr(exc, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if isinstance(exc, click.UsageError) and ctx is not None else ""
    _fail(exc.format_message() + hint, exc.exit_code)


class Group(click.Group):
    """Turns UserError and click's argument errors into one line; Ctrl-C outside a training loop into code 130."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:  # an option of the group itself
            _usage(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            _fail(str(exc), exc.exit_code)
        except click.ClickException as exc:  # a command's arguments, or a UsageError a command raised
            _usage(exc)
        except KeyboardInterrupt:  # a training loop handles its own
            click.echo("interrupted", err=True)
            sys.exit(130)


@contextlib.contextmanager
def blaming(config):
    """A SplitError (the config's fractions leave a split empty), and a ConfigError found after the config was read
    (init_from's run does not fit), are named after the config file that set them."""
    try:
        yield
    except SplitError as exc:
        raise SplitError(f"{config}: {exc}") from None
    except ConfigError as exc:
        if exc.source != "config":
            raise
        raise ConfigError(config, exc.key, exc.message) from None


class Path(click.Path):
    """click.Path (as pathlib.Path) that refuses an empty string, which pathlib would read as the current folder."""

    def __init__(self, **kwargs):
        super().__init__(path_type=pathlib.Path, **kwargs)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("expected a path, got an empty string", param, ctx)
        return super().convert(value, param, ctx)


class Positive(click.FloatRange):
    """A finite number above zero (click.FloatRange lets nan through, and inf)."""

    name = "positive number"

    def __init__(self):
        super().__init__(min=0, min_open=True)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"expected a finite number above 0, got {value!r}", param, ctx)
        return number
