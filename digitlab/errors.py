"""The errors a user can cause: each is one line that names the file, the key and what was expected.

The CLI prints them without a traceback and exits with their exit_code (2 for bad input); anything else is a
bug in digitlab.
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input from the user (a config, a data file, a run folder, a path). Exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """Control characters (a newline in a YAML key, say) shown escaped, so an error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class ConfigError(UserError):
    """A config value that is missing, of the wrong type or out of range."""

    def __init__(self, source, key, message):
        self.source, self.key, self.message = source, key, message
        where = f"{source}: {key}" if key else str(source)
        super().__init__(f"{where}: {message}")


class DataError(UserError):
    """A data file that is missing, corrupt, truncated or inconsistent."""


class SplitError(DataError):
    """Fractions or a limit that leave a split (or a class of it) empty: the config's doing, not the data's."""


class RunError(UserError):
    """A run folder that is missing, incomplete or does not match what is asked of it."""


class DamagedRun(RunError):
    """A file of a run folder that exists but cannot be what digitlab wrote there: truncated, garbled, edited
    into something else, or copied in from another run. `path` is the file, `reason` what is wrong with it."""

    def __init__(self, path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: damaged ({reason})")


class CheckpointError(RunError):
    """A checkpoint that cannot be resumed from: missing, damaged, or not matching the run's config or
    architecture. Starting the run over is the remedy (a sweep does it by itself)."""


def os_reason(exc: OSError) -> str:
    """The reason an OS error gives, in words ('No space left on device', 'Permission denied')."""
    if exc.errno == errno.ENOENT:
        return "the folder was removed or does not exist"
    return exc.strerror or str(exc)


class StorageError(UserError):
    """A write that failed (disk full, permission denied, folder removed, a path under a file). Exit code 1 by
    default: the input was fine, the machine was not; 2 when the path was the user's own argument."""

    exit_code = 1

    def __init__(self, path, reason: str, consequence: str = "", exit_code: int | None = None):
        self.path, self.reason, self.consequence = path, reason, consequence
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(f"{path}: cannot write ({reason}){'; ' + consequence if consequence else ''}")

    def because(self, consequence: str, exit_code: int | None = None) -> StorageError:
        """The same failure told with the consequence the command that met it knows."""
        return StorageError(self.path, self.reason, consequence, exit_code if exit_code is not None else self.exit_code)
