"""Every error mpibatch raises on purpose. The CLI turns them into exit codes.

Each message is one line: what is wrong, then how to fix it.
"""

from __future__ import annotations


class MpibatchError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class UsageError(MpibatchError):
    """Bad input from the user: arguments, grid, seed, output path."""


class GridError(UsageError):
    """A grid axis or value that cannot be used."""


class TaskFileError(UsageError):
    """The task file is missing, does not import, or lacks the function."""


class OutputError(UsageError):
    """The output file or its directory cannot be used."""


class ResultError(MpibatchError):
    """A task returned something that cannot be stored, or changed shape/dtype."""


class TasksFailed(MpibatchError):
    """The run completed but some tasks raised (their tracebacks are in the file)."""

    exit_code = 1
