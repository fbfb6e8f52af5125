"""Reading a results file back: ``mpibatch.open(path)``, sidecar failures, attributes.

See layout.py for the layout; this module only reads, so it works on a file a run is
still writing (HDF5 file locking is off for readers) and on one a kill left behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .layout import (
    ERROR_NAMES,
    ERRORS,
    PARAMS,
    RANKS,
    RESULTS,
    STATUS_NAMES,
    TASK_ELAPSED,
    TASK_ID,
    TASK_RANK,
    TASK_START,
    TASK_STATUS,
    Status,
    failures_path,
    open_file,
    read_attrs,
    read_column,
    read_group,
    read_shared,
)

STATUS = STATUS_NAMES  # kept for callers of results.STATUS
ERROR_FIELDS = ERROR_NAMES  # kept for callers of results.ERROR_FIELDS


class Results:
    """A results file read back into numpy arrays (see the module docstring for the layout)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        with open_file(path) as f:  # readable while a run writes it
            self.attrs = read_attrs(f)
            self.task_id = read_column(f, TASK_ID.path)
            self.status = read_column(f, TASK_STATUS.path)
            self.rank = read_column(f, TASK_RANK.path)
            self.start = read_column(f, TASK_START.path)
            self.elapsed = read_column(f, TASK_ELAPSED.path)
            self.params = read_group(f, PARAMS)
            self.results = read_group(f, RESULTS)
            self.errors = read_group(f, ERRORS)
            self.ranks = read_group(f, RANKS)
            self.shared = read_shared(f)  # the shared inputs' records (load())
        if not self.errors:  # a run that has not closed its file keeps failures beside it
            found = read_failures(failures_path(path))
            if found:
                self.errors = {
                    name: np.asarray([e[name] for e in found], dtype=object) for name in ERROR_NAMES
                }
        self.results = {k: _missing_rows(v, self.status) for k, v in self.results.items()}

    @property
    def n_tasks(self) -> int:
        return int(self.task_id.shape[0])

    def count(self, status: str) -> int:
        code = {v: k for k, v in STATUS_NAMES.items()}[status]
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
        cols.update({k: _pandas_column(v) for k, v in self.results.items() if v.ndim == 1})
        cols["status"] = np.asarray([STATUS_NAMES[int(s)] for s in self.status])
        cols.update(rank=self.rank, start=self.start, elapsed=self.elapsed)
        return pd.DataFrame(cols).set_index("task_id")

    def __repr__(self) -> str:
        return (
            f"<mpibatch results {self.path!r}: {self.n_tasks} tasks, {self.count('done')} done, "
            f"{self.count('failed')} failed; results {sorted(self.results)}>"
        )


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


def open_results(path: str | os.PathLike) -> Results:
    """Read a results file: ``mpibatch.open("out.h5").results["estimate"]``."""
    return Results(path)


def _missing_rows(arr: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Rows without a result (pending or failed) as missing values, never as 0 or False.

    Floats and complex read as NaN; integers, bools and the rest as a masked array.
    """
    left = status != Status.DONE
    if arr.dtype.kind in "fc":
        arr[left] = np.nan
        return arr
    mask = np.broadcast_to(left.reshape((-1,) + (1,) * (arr.ndim - 1)), arr.shape)
    return np.ma.MaskedArray(arr, mask=mask.copy())


def _pandas_column(arr: np.ndarray):
    """A 1-D result for pandas: masked integers and bools become nullable (pd.NA)."""
    if not isinstance(arr, np.ma.MaskedArray):
        return arr
    import pandas as pd

    kind = {"b": "boolean", "i": "Int64", "u": "UInt64"}.get(arr.dtype.kind)
    if kind is None:
        return np.ma.filled(arr.astype(object), None)
    out = pd.array(arr.data, dtype=kind)
    out[arr.mask] = pd.NA
    return out
