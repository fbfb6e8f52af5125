"""What one run is asked to do: :class:`RunOptions`, built by ``mpibatch.run`` and the CLI.

The settings among its fields may be left None: :meth:`RunOptions.resolved` fills each
in as keyword -> ``MPIBATCH_<NAME>`` -> default (see ``_config.SETTINGS``) and checks it.
Every rank resolves them before anything else, and the ranks agree on any error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from ._config import SETTINGS, setting
from .errors import UsageError

if TYPE_CHECKING:
    from .grid import Grid


@dataclass(frozen=True)
class RunOptions:
    """The keywords of :func:`mpibatch.run`, the flags of ``mpibatch run``.

    ``time_limit`` is a Slurm time when a string (``"30"`` is 30 minutes, ``"1-12"`` a
    day and a half) and seconds when a number; resolved, it is seconds or None.
    """

    task: Callable[..., Any] | str | os.PathLike | None
    grid: Grid | dict | None = None
    function: str = "task"
    reps: int | None = None
    tasks: str | None = None  # "START:STOP", "array" (this Slurm array element's share) or None
    out: str | os.PathLike | None = None
    resume: bool = False
    force: bool = False
    overwrite: bool = False
    dry_run: bool = False
    argv: tuple[str, ...] | None = None  # the command line the file records
    results: dict | None = None  # declared result types (wins over the task file's)
    shared: Any = None  # shared inputs: {name: array} or a callable returning it (rank 0)
    command: str | None = None  # a command template run as each task (instead of task)
    shell: bool = False  # run the command under /bin/sh -c
    task_dir: bool = False  # run each command in its own folder OUT.tasks/NNNNNN
    keep_output: bool = False  # keep each command's stdout/stderr in OUT.output/
    # settings: None is MPIBATCH_<NAME>, else the default
    seed: int | None = None
    streams: str | None = None
    schedule: str | None = None
    block_size: int | None = None
    dedicated_root: bool | None = None
    root_tasks: str | None = None
    isolation: str | None = None
    task_memory: str | int | None = None
    leaders: str | None = None
    node_size: int | None = None
    threads_per_rank: int | None = None
    gpus: str | int | None = None
    ranks_per_gpu: int | None = None
    flush_seconds: float | None = None
    retries: int | None = None
    max_failures: int | None = None
    task_timeout: float | None = None
    grace: float | None = None
    time_limit: str | float | None = None
    quiet: bool | None = None
    gather_mb: int | None = None

    def resolved(self, n_ranks: int) -> RunOptions:
        """These options with every setting resolved and checked (UsageError if bad)."""
        values = {f.name: setting(f.name, getattr(self, f.name)) for f in _SETTING_FIELDS}
        _check_utf8("task file", self.task)
        _check_utf8("--out", self.out)
        setting("progress_seconds")  # read by progress.py on rank 0: a bad one fails all now
        if values["dedicated_root"] and n_ranks < 2:
            raise UsageError(
                f"--dedicated-root: expected at least 2 ranks, got {n_ranks}; launch with "
                "mpiexec -n 2 or more, or drop --dedicated-root"
            )
        if values["task_memory"] is not None and values["isolation"] == "off":
            raise UsageError(
                "--task-memory: a cap needs task processes; drop --isolation off, or the cap"
            )
        return replace(self, **values)


_SETTING_FIELDS = tuple(f for f in fields(RunOptions) if f.name in SETTINGS)


def _check_utf8(what: str, path: object) -> None:
    """A path the file records (as UTF-8 text): one line if its name has odd bytes."""
    if not isinstance(path, (str, os.PathLike)):
        return
    text = os.fspath(path)
    try:
        text.encode("utf-8") if isinstance(text, str) else text.decode("utf-8")
    except UnicodeError:
        shown = text if isinstance(text, str) else os.fsdecode(text)
        raise UsageError(
            f"{what} {shown!r}: expected a path that is UTF-8 text, got odd bytes in it; "
            "rename it (the results file records its paths as text)"
        ) from None
