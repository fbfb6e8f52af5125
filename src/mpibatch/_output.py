"""Checks before a results file is written: its path, room for its task table, and a lock
so that two runs never write one file at once.

Rank 0 only (the others never import h5py); store.py re-exports :func:`check_output`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np

from .errors import OutputError
from .layout import TASK_COLUMNS, file_problem


def check_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Raise OutputError unless ``path`` can be created (or replaced with ``overwrite``)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(
            f"output directory '{parent}' does not exist; create it (mkdir -p {parent}) "
            "or choose another --out"
        )
    try:  # a real probe: access() says yes to root on read-only file systems
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".mpibatch-probe-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"output directory '{parent}' is not writable ({exc.strerror}); choose another --out"
        ) from None
    if p.is_dir():
        raise OutputError(
            f"output path '{p}' is a directory; expected a file name like {p}/results.h5"
        )
    if p.suffix == ".py":
        raise OutputError(
            f"output path '{p}' is a Python file; expected a results file name like "
            f"{p.with_suffix('.h5')} (--out never replaces a .py file)"
        )
    if p.exists() and not overwrite:
        raise OutputError(
            f"output file '{p}' already exists; pass --overwrite to replace it "
            "or choose another --out"
        )
    if p.exists() and file_problem(p) is not None:
        raise OutputError(
            f"output file '{p}' exists and is not an mpibatch results file; expected a new "
            "name or a previous results file (--overwrite replaces only those)"
        )
    return p


def _table_bytes(grid, n: int) -> int:
    """Bytes of the task table (/tasks and /params) of ``n`` tasks, results not counted."""
    row = sum(np.dtype(col.dtype).itemsize for col in TASK_COLUMNS) + 8  # + /params/rep
    for values in grid.axis_values().values():
        if isinstance(values[0], str):
            row += max(len(str(v).encode("utf-8")) for v in values) or 1
        else:
            row += 8
    return row * n


def check_space(path: Path, grid, n: int) -> None:
    """OutputError, before anything is written, if the task table alone cannot fit."""
    need = _table_bytes(grid, n)
    free = shutil.disk_usage(path.parent if str(path.parent) else ".").free
    if need > free:
        raise OutputError(
            f"{n:,} tasks need {need / 1e9:,.1f} GB for their task table alone (before any "
            f"result), but {path.parent or '.'} has {free / 1e9:,.1f} GB free; split the "
            "study with --tasks START:STOP over several runs or a job array (mpibatch slurm "
            "array), or write --out where there is room"
        )


class OutputLock:
    """``<out>.lock``, locked (``flock``) by rank 0 for as long as a run writes ``out``.

    A second run on the same file, started meanwhile from any host of a shared file system
    that honours ``flock``, is refused with the holder's host and process id. The lock dies
    with its process: a lock file a killed run left behind is simply taken over.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def release(self) -> None:
        """Remove the lock file and unlock it (in that order: see :func:`lock_output`)."""
        if self.fd < 0:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = -1


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


def lock_output(out: Path) -> OutputLock | None:
    """Lock ``out`` for this run, or raise OutputError naming the run that holds it.

    None where no lock file can be made (a missing or read-only directory): the output
    checks then say what is wrong. A lock taken on a file that its holder removed
    meanwhile is retried, so two runs never both hold one.
    """
    path = lock_path(out)
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another run"
            os.close(fd)
            raise OutputError(
                f"output file '{out}' is being written by another run ({holder}); expected "
                f"one run per file: wait for that run to end, or choose another --out"
            ) from None
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.write(fd, f"mpibatch on host {socket.gethostname()}, pid {os.getpid()}".encode())
            return OutputLock(fd, path)
        os.close(fd)  # its holder removed it before we locked it: take the new one
    raise OutputError(f"could not lock '{path}': it keeps being replaced; choose another --out")


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
