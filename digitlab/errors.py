"""The errors a user can cause: each is one line that names the file, the key and what was expected.

The CLI prints them without a traceback and exits with their exit_code (2 for bad input); anything else is a
bug in digitlab.
"""


class UserError(Exception):
    """Bad input from the user (a config, a data file, a run folder). Exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A config value that is missing, of the wrong type or out of range."""

    def __init__(self, source, key, message):
        self.source, self.key, self.message = source, key, message
        where = f"{source}: {key}" if key else str(source)
        super().__init__(one_line(f"{where}: {message}"))


def one_line(text: str) -> str:
    """Control characters (a newline in a YAML key, say) shown escaped, so an error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class DataError(UserError):
    """A data file that is missing, corrupt, truncated or inconsistent."""


class RunError(UserError):
    """A run folder that is missing, incomplete or does not match what is asked of it."""


class CheckpointError(RunError):
    """A checkpoint that cannot be resumed from: missing, damaged, or not matching the run's config or
    architecture. Starting the run over is the remedy (a sweep does it by itself)."""


class StorageError(UserError):
    """A write that failed (disk full, permission denied, folder removed): the run stops, the last checkpoint
    stays valid. Exit code 1: the input was fine, the machine was not."""

    exit_code = 1
