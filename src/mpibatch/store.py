"""The results file: one HDF5 file that plain h5py (or h5dump) can read.

Layout (``n`` rows, one per task of the run, in task order)::

    /tasks/id        (n,) int64     global task id of each row
    /tasks/status    (n,) int8      0 pending, 1 done, 2 failed
    /tasks/rank      (n,) int32     rank that ran it (-1 pending)
    /tasks/start     (n,) float64   seconds since the run started (NaN pending)
    /tasks/elapsed   (n,) float64   seconds the task took (NaN pending)
    /params/<axis>   (n,)           grid value of each task; /params/rep the replicate
    /results/<key>   (n, *shape)    what tasks returned (NaN / 0 where not done)
    /errors/*        (m,)           task, rank, host, type, message, traceback per failure
    /ranks/*         (n_ranks,)     host, local rank, BLAS libraries and threads per rank
    attributes of /                seed, streams, schedule, grid, versions, command, ...

Only rank 0 writes. Datasets are created at full size and written by slices.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._records import Columns, Schema
from .errors import OutputError

STATUS = {0: "pending", 1: "done", 2: "failed"}
_PARAM_CHUNK = 1 << 20
_STR = h5py.string_dtype("utf-8")
_ERROR_FIELDS = (
    ("task", "i8"),
    ("rank", "i4"),
    ("host", _STR),
    ("type", _STR),
    ("message", _STR),
    ("traceback", _STR),
)


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
    if p.exists() and not overwrite:
        raise OutputError(
            f"output file '{p}' already exists; pass --overwrite to replace it "
            "or choose another --out"
        )
    return p


def _chunks(shape: tuple, itemsize: int) -> tuple:
    row = itemsize * int(np.prod(shape[1:], dtype=np.int64))
    rows = max(1, min(shape[0], (1 << 20) // max(1, row)))
    return (rows, *shape[1:])


def _dataset(group: h5py.Group, name: str, shape: tuple, dtype, fill=None) -> h5py.Dataset:
    dtype = np.dtype(dtype) if not isinstance(dtype, np.dtype) else dtype
    return group.create_dataset(
        name,
        shape=shape,
        dtype=dtype,
        chunks=_chunks(shape, dtype.itemsize) if shape[0] else None,
        fillvalue=fill,
    )


def _param_dtype(column: np.ndarray):
    if column.dtype.kind == "U":
        width = max(1, int(np.char.str_len(np.char.encode(column, "utf-8")).max()))
        return h5py.string_dtype("utf-8", width)
    return column.dtype


class Store:
    """The writer side: created by rank 0 at the start, closed at the end."""

    def __init__(self, f: h5py.File, ids: range) -> None:
        self.f, self.ids = f, ids
        self.n = len(ids)
        self.schema: Schema | None = None

    @classmethod
    def create(cls, path: Path, grid, ids: range, attrs: dict[str, Any]) -> Store:
        """A new file with every task pending; removed again if it cannot be completed."""
        f = h5py.File(path, "w")
        try:
            return cls._fill(cls(f, ids), grid, attrs)
        except BaseException:
            f.close()
            path.unlink(missing_ok=True)
            raise

    @staticmethod
    def _fill(store: Store, grid, attrs: dict[str, Any]) -> Store:
        f, ids, n = store.f, store.ids, store.n
        tasks = f.create_group("tasks")
        _dataset(tasks, "id", (n,), "i8")[...] = np.arange(ids.start, ids.stop, dtype=np.int64)
        _dataset(tasks, "status", (n,), "i1", 0)
        _dataset(tasks, "rank", (n,), "i4", -1)
        _dataset(tasks, "start", (n,), "f8", np.nan)
        _dataset(tasks, "elapsed", (n,), "f8", np.nan)
        store._write_params(grid)
        f.create_group("results", track_order=True)
        f.attrs.update({k: v for k, v in attrs.items() if v is not None})
        f.flush()
        return store

    def _write_params(self, grid) -> None:
        group = self.f.create_group("params", track_order=True)
        first = grid.columns(self.ids.start, min(self.ids.stop, self.ids.start + 1))
        dsets = {}
        for name, col in first.items():
            if col.dtype.kind == "U":  # width from the axis's own values, not the first row
                col = np.asarray([str(v) for v in grid.axis_values()[name]])
            dsets[name] = _dataset(group, name, (self.n,), _param_dtype(col))
        for a in range(0, self.n, _PARAM_CHUNK):
            b = min(self.n, a + _PARAM_CHUNK)
            cols = grid.columns(self.ids.start + a, self.ids.start + b)
            for name, col in cols.items():
                ds = dsets[name]
                ds[a:b] = (
                    np.char.encode(col, "utf-8").astype(ds.dtype) if col.dtype.kind == "U" else col
                )

    def add_results(self, schema: Schema) -> None:
        self.schema = schema
        group = self.f["results"]
        for fld in schema:
            fill = np.nan if fld.dtype.kind in "fc" else 0
            _dataset(group, fld.key, (self.n, *fld.shape), fld.dtype, fill)

    def write_rows(self, row: int, cols: Columns, rank: int) -> None:
        """Write ``cols`` (a rank's round) at rows ``row .. row + cols.rows``."""
        k = cols.rows
        if k == 0:
            return
        sl = slice(row, row + k)
        tasks = self.f["tasks"]
        tasks["status"][sl] = cols.status
        tasks["start"][sl] = cols.start
        tasks["elapsed"][sl] = cols.elapsed
        ranks = np.where(cols.status > 0, rank, -1).astype(np.int32)
        tasks["rank"][sl] = ranks
        for key, arr in cols.results.items():
            self.f["results"][key][sl] = arr

    def write_failures(self, failures: list) -> None:
        if not failures:
            return
        group = self.f.require_group("errors")
        m = len(failures)
        for name, dtype in _ERROR_FIELDS:
            if name not in group:
                group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(256,))
            ds = group[name]
            old = ds.shape[0]
            ds.resize((old + m,))
            key = "task_id" if name == "task" else name
            ds[old:] = [getattr(fl, key) for fl in failures]

    def write_ranks(self, infos: list[dict]) -> None:
        group = self.f.create_group("ranks")
        group.create_dataset("host", data=[i["host"] for i in infos], dtype=_STR)
        group.create_dataset("local_rank", data=[i["local_rank"] for i in infos], dtype="i4")
        group.create_dataset("blas", data=[json.dumps(i["blas"]) for i in infos], dtype=_STR)
        hosts = sorted({i["host"] for i in infos})
        self.f.attrs["hosts"] = json.dumps(hosts)

    def flush(self) -> None:
        self.f.flush()

    def close(self, attrs: dict[str, Any]) -> None:
        self.f.attrs.update(attrs)
        self.f.close()


class Results:
    """A results file read back into numpy arrays (see the module docstring for the layout)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        with h5py.File(path, "r", locking=False) as f:  # readable while a run writes it
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
