"""User-facing errors.

Every problem caused by the user's input (a config, a data file, a model directory) is raised as a
:class:`RewardlabError` whose message says what is wrong, where (file, row, field) and how to fix it.
The CLI prints the message and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os


class RewardlabError(Exception):
    """An error in the user's input, with a message fit to print as is."""


class ConfigError(RewardlabError):
    """A config file or ``key=value`` override is invalid."""


class DataError(RewardlabError):
    """A data file or one of its rows is invalid."""

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None, field: str | None = None):
        where = ":".join(str(p) for p in (source, row, field) if p is not None)
        super().__init__(f"{where}: {message}" if where else message)
        self.source, self.row, self.field = source, row, field


class ModelError(RewardlabError):
    """A model or checkpoint directory cannot be used."""


class OutputError(RewardlabError):
    """An output (run directory, export, report) cannot be written: in use, not writable, or out of disk space."""


def missing_reason(path: str | os.PathLike[str]) -> str | None:
    """Why a path that does not open as a file or folder is unusable, when it is not simply absent: a symlink loop
    or a broken symlink (``Path.exists`` says False for both, which would read as "not found"). None otherwise."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop (a link that leads back to itself); point the link at a real file or remove it"
        if os.path.islink(path):
            return f"is a broken symlink (to {os.readlink(path)}, which does not exist); fix or remove the link"
    return None
