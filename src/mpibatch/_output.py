"""Checks before a results file is written: its path, room for its task table, and a lock
so that two runs never write one file at once.

Rank 0 only (the others never import h5py); store.py re-exports :func:`check_output`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np

from .errors import OutputError
from .layout import TASK_COLUMNS, file_problem


def check_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Raise OutputError unless ``path`` can be created (or replaced with ``overwrite``);
    a symlink is judged by its target, which the run writes (see :func:`real_path`)."""
    p = Path(path)
    if p.is_symlink():  # judged, and named, by its target
        p = real_path(p)
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

    It lies beside the file itself (a symlinked ``out``'s target) and records its
    holder's host and process id. A second run on the same file, started meanwhile from
    any host of a shared file system that honours ``flock``, is refused with the holder's
    host and process id. The lock dies with its process: a lock file a killed run left
    behind is simply taken over. Where the file system has no ``flock`` (some Lustre and
    NFS mounts: ENOSYS, ENOLCK, EOPNOTSUPP), the record decides: a lock file of this host
    whose process is gone is stale and taken over; one of another host is refused, with
    how to remove it. (The results file is opened with HDF5's own locking off, so plain
    h5py readers can open it while the run writes it; this lock is the one that counts.)
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


_NO_FLOCK = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP)
_RECORD = re.compile(r"on host (\S+), pid (\d+)")
CREATE_NEW = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW  # a side file made new, never through a link


def real_path(out: str | os.PathLike) -> Path:
    """Where ``out``'s bytes live: a symlink's target (``os.path.realpath``), so that the
    file is written through the link, the link stays, and the temporary, lock and side
    files lie beside the target, on its file system (the final rename stays on one)."""
    return Path(os.path.realpath(out))


def lock_path(out: Path) -> Path:
    out = real_path(out)
    return out.with_name(out.name + ".lock")


def pid_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process
        return False
    return False


def lock_output(out: Path) -> OutputLock | None:
    """Lock ``out`` for this run, or raise OutputError naming the run that holds it.

    None where no lock file can be made (a missing or read-only directory): the output
    checks then say what is wrong. A lock taken on a file that its holder removed
    meanwhile is retried, so two runs never both hold one.
    """
    path = lock_path(out)
    for _ in range(20):
        try:
            fd, new = _open_lock(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink planted as the lock file
                raise OutputError(
                    f"lock file '{path}' is a symbolic link; expected a plain file or none: "
                    "remove it"
                ) from None
            return None
        if not _take(fd, path, out, new):
            continue  # stale (its holder gone), or removed before we locked it: again
        os.ftruncate(fd, 0)
        os.write(fd, f"mpibatch on host {socket.gethostname()}, pid {os.getpid()}".encode())
        return OutputLock(fd, path)
    raise OutputError(f"could not lock '{path}': it keeps being replaced; choose another --out")


def _open_lock(path: Path) -> tuple[int, bool]:
    """The lock file's descriptor, and whether this call created it."""
    try:
        return os.open(path, os.O_RDWR | CREATE_NEW, 0o644), True
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_NOFOLLOW), False


def _take(fd: int, path: Path, out: Path, new: bool) -> bool:
    """Lock ``fd``; False (closed) to try again; OutputError if another run holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in _NO_FLOCK:
            holder = _holder(fd)
            os.close(fd)
            raise _held(out, holder, "") from None
        if not new:  # no flock here: the record says whether its holder is alive
            holder = _holder(fd)
            os.close(fd)
            m = _RECORD.search(holder)
            if m and m.group(1) == socket.gethostname() and pid_gone(int(m.group(2))):
                path.unlink(missing_ok=True)  # stale: its holder is gone from this host
                return False
            raise _held(out, holder, f"; if no run writes it, remove '{path}'") from None
    if _same_file(fd, path):
        return True
    os.close(fd)  # its holder removed it before we locked it: take the new one
    return False


def _holder(fd: int) -> str:
    return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another run"


def _held(out: Path, holder: str, fix: str) -> OutputError:
    return OutputError(
        f"output file '{out}' is being written by another run ({holder}); expected "
        f"one run per file: wait for that run to end, or choose another --out{fix}"
    )


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def remove_stale_temporaries(path: Path) -> None:
    """Remove the ``.NAME.creating-PID`` files beside ``path`` whose process is gone from
    this host (a run killed while it created the file), and one of this process's PID (a
    killed run's, in a container that gave it the same PID). Called under the output's lock."""
    for tmp in path.parent.glob(f".{path.name}.creating-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and (int(pid) == os.getpid() or pid_gone(int(pid))):
            tmp.unlink(missing_ok=True)


def check_same_file(path: Path, ident: tuple[int, int]) -> None:
    """OutputError if the file at ``path`` is no longer the one whose (st_dev, st_ino) is
    ``ident``: deleted or replaced (by a task, or another program) since it was opened."""
    try:
        st = os.stat(path)
        now: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except FileNotFoundError:
        now = None
    if now != ident:
        what = "deleted" if now is None else "replaced by another file"
        raise OutputError(
            f"output file '{path}' was {what} while this run wrote it (by a task, or another "
            "program?), and the results written so far with it; run again with tasks that "
            "leave the output file alone"
        )
