"""Reading a results file back: ``mpibatch.open(path)``, sidecar failures, attributes.

See store.py for the layout; this module only reads, so it works on a file a run is
still writing (HDF5 file locking is off for readers) and on one a kill left behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import UsageError

STATUS = {0: "pending", 1: "done", 2: "failed"}
ERROR_FIELDS = ("task", "rank", "host", "type", "message", "traceback")


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_file(path: str | os.PathLike) -> h5py.File:
    """Open a results file to read, whoever else has it open.

    File locking is off, so a run writing the file (another process) does not block
    readers; if this process already holds the file open with locking (a notebook's own
    h5py handle), HDF5 refuses other locking flags, so that handle's flags are used.
    """
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "locking flag" not in str(exc):
            raise
        return h5py.File(path, "r")


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a results file mpibatch can read (None if it is one)."""
    p = Path(path)
    if not p.is_file():
        return "no such file" if not p.exists() else "not a file"
    try:
        with open(p, "rb") as fh:
            if fh.read(8) != _HDF5_SIGNATURE:
                return "not an HDF5 file"
        with read_file(p) as f:
            return None if "tasks/status" in f else "an HDF5 file that mpibatch did not write"
    except OSError as exc:
        return f"unreadable ({exc})"


def check_file(path: str | os.PathLike) -> None:
    """Raise a one-line UsageError unless ``path`` is a results file mpibatch can read."""
    problem = file_problem(path)
    if problem is not None:
        raise UsageError(
            f"'{path}': expected an mpibatch results file, got {problem}; "
            "pass the .h5 file that mpibatch run --out wrote"
        )


def read_attrs(path: Path) -> dict[str, Any]:
    check_file(path)
    with read_file(path) as f:
        return {k: _attr(v) for k, v in f.attrs.items()}


class Results:
    """A results file read back into numpy arrays (see the module docstring for the layout)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        check_file(path)
        with read_file(path) as f:  # readable while a run writes it
            self.attrs = {k: _attr(v) for k, v in f.attrs.items()}
            self.task_id = f["tasks/id"][()]
            self.status = f["tasks/status"][()]
            self.rank = f["tasks/rank"][()]
            self.start = f["tasks/start"][()]
            self.elapsed = f["tasks/elapsed"][()]
            self.params = {k: _read(ds) for k, ds in f["params"].items()}
            self.results = {k: ds[()] for k, ds in f["results"].items()} if "results" in f else {}
            self.errors = {k: _read(ds) for k, ds in f["errors"].items()} if "errors" in f else {}
            self.ranks = {k: _read(ds) for k, ds in f["ranks"].items()} if "ranks" in f else {}
        if not self.errors:  # a run that has not closed its file keeps failures beside it
            found = read_failures(failures_path(path))
            if found:
                self.errors = {
                    name: np.asarray([e[name] for e in found], dtype=object)
                    for name in ERROR_FIELDS
                }
        for arr in self.results.values():  # rows without a result read as NaN
            if arr.dtype.kind in "fc":
                arr[self.status != 1] = np.nan

    @property
    def n_tasks(self) -> int:
        return int(self.task_id.shape[0])

    def count(self, status: str) -> int:
        code = {v: k for k, v in STATUS.items()}[status]
        return int(np.count_nonzero(self.status == code))

    def to_pandas(self):
        """Params, scalar results and task status as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "to_pandas() needs pandas: pip install 'mpibatch[pandas]' (or pip install pandas)"
            ) from None
        cols = {"task_id": self.task_id, **self.params}
        cols.update({k: v for k, v in self.results.items() if v.ndim == 1})
        cols["status"] = np.asarray([STATUS[int(s)] for s in self.status])
        cols.update(rank=self.rank, start=self.start, elapsed=self.elapsed)
        return pd.DataFrame(cols).set_index("task_id")

    def __repr__(self) -> str:
        return (
            f"<mpibatch results {self.path!r}: {self.n_tasks} tasks, {self.count('done')} done, "
            f"{self.count('failed')} failed; results {sorted(self.results)}>"
        )


def failures_path(path: str | os.PathLike) -> Path:
    """The sidecar where a running study's failures wait until its file closes."""
    return Path(str(path) + ".failures")


def read_failures(path: Path) -> list[dict]:
    """Failures recorded in a sidecar; a line torn by a kill is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _read(ds: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(ds.asstr()[()], dtype=object)
    return ds[()]


def _attr(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def open_results(path: str | os.PathLike) -> Results:
    """Read a results file: ``mpibatch.open("out.h5").results["estimate"]``."""
    return Results(path)
