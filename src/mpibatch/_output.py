"""Checks before a results file is written: its path, and room for its task table.

Rank 0 only (the others never import h5py); store.py re-exports :func:`check_output`.
"""

from __future__ import annotations

import os
import shutil
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
