"""Every error mpibatch raises on purpose, and the exit codes (``ExitCode``) the CLI turns
them into.

Each message is one line: what is wrong, then how to fix it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What the ``mpibatch`` command exits with: the one definition for every subcommand.

    ====  ===========  ===============================================================
    code  name         meaning
    ====  ===========  ===============================================================
    0     OK           done: every task (run, merge), the same result (rerun), printed
    1     FAILED       some tasks failed (``mpibatch errors FILE``); merge: some pending
                       or failed; rerun: the task differs or raised
    2     USAGE        bad input: arguments, grid, task file, output path, or results
                       that cannot be stored
    3     STOPPED      stopped early on purpose (a signal, the time limit): what finished
                       is in the file, and ``--resume`` goes on from there
    4     STUCK        a task never returned within the grace; its rank ended the run
    74    NO_SPACE     the results file's filesystem is full (or over quota): what finished
                       is kept, and ``--resume`` completes the run once there is room
                       (``EX_IOERR`` of sysexits.h)
    70    BUG          reserved: an mpibatch bug (``EX_SOFTWARE`` of sysexits.h)
    130   INTERRUPTED  stopped by Ctrl-C (SIGINT), like 3: --resume goes on
    ====  ===========  ===============================================================
    """

    OK = 0
    FAILED = 1
    USAGE = 2
    STOPPED = 3
    STUCK = 4
    BUG = 70
    NO_SPACE = 74
    INTERRUPTED = 130


class MpibatchError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code: ExitCode = ExitCode.USAGE


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

    exit_code = ExitCode.FAILED


class NoSpace(MpibatchError):
    """The results file's filesystem is full or over quota (ENOSPC, EDQUOT)."""

    exit_code = ExitCode.NO_SPACE


_NO_SPACE = ("No space left on device", "Disk quota exceeded", "errno = 28", "errno = 122")


def no_space(exc: BaseException, path: str, nbytes: int = 0) -> NoSpace | None:
    """``exc`` as a :class:`NoSpace` naming ``path`` if it says the disk is full, else None.

    HDF5 reports a failed write as an ``OSError`` whose text carries the system's errno.
    """
    import errno

    text = str(exc)
    if getattr(exc, "errno", None) not in (errno.ENOSPC, errno.EDQUOT) and not any(
        m in text for m in _NO_SPACE
    ):
        return None
    need = f" (writing {nbytes / 1e6:,.1f} MB more)" if nbytes else ""
    return NoSpace(
        f"no space left for {path}{need}: its filesystem is full or over quota; nothing "
        "finished is lost: free space or raise the quota, then run the same command with "
        "--resume"
    )
