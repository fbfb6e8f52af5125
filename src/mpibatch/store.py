"""The results file's writer: created by rank 0, written by slices, closed at the end.

The layout (dataset names, dtypes, status codes, error fields) is defined in layout.py.
Only rank 0 writes. Datasets are created at full size and written by slices, each row's
results first and its status last (see :meth:`Store.write_rows`), so a kill leaves rows
pending, never "done" without data.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._dtypes import fill_value
from ._output import OutputLock, check_output, check_space
from ._records import Columns, Field, Schema
from .errors import OutputError
from .layout import (
    ERROR_FIELDS,
    ERRORS,
    FILL_ATTR,
    MISSING_ATTR,
    MISSING_NOTE,
    MISSING_NOTE_BOOL,
    PARAMS,
    RANK_COLUMNS,
    RANKS,
    RESULTS,
    TASK_COLUMNS,
    TASK_ELAPSED,
    TASK_ID,
    TASK_RANK,
    TASK_START,
    TASK_STATUS,
    TASKS,
    Status,
    failure_record,
    failures_path,
    file_dtype,
    read_errors,
)
from .results import read_failures

__all__ = ["Store", "WriteBehind", "check_output"]  # check_output lives in _output.py

_ROWS_AT_ONCE = 1 << 20
# Bytes per write call for results. One big pwrite into the page cache ran 2-5x slower than
# the same bytes in 1 MiB pieces on ext4 here (Linux 6.18, which gives big writes large
# folios; a VM that hands freed memory back to its host); elsewhere a piece costs one h5py
# call (~30 us per MiB), and HDF5 itself writes chunked data a chunk at a time.
_WRITE_PIECE = 1 << 20


def _fapl():
    """File access: no sieve buffer, so raw writes reach the OS in program order."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_sieve_buf_size(0)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    return fapl


def _create_file(path: Path) -> h5py.File:
    return h5py.File(h5py.h5f.create(os.fsencode(str(path)), h5py.h5f.ACC_TRUNC, fapl=_fapl()))


def _dataset(
    group: h5py.Group, name: str, shape: tuple, dtype, fill=None, prefill: bool = True
) -> h5py.Dataset:
    """A contiguous dataset whose space is allocated now, so writes never change metadata.

    With ``fill`` (and ``prefill``) the space is filled at creation; else it is left as
    the file system gives it (zeros), which keeps creating gigabytes of results instant,
    and ``fill`` is only the fill value HDF5 reports.
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return group.create_dataset(
        name,
        shape=shape,
        dtype=dtype,
        dcpl=dcpl,
        fillvalue=fill,
        fill_time="alloc" if fill is not None and prefill else "never",
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
        self.path = Path(f.filename)
        self.n = len(ids)
        self.schema: Schema | None = None
        self.unfilled: list[tuple[int, int]] = []  # rows failed before results had datasets
        self.lock: OutputLock | None = None  # held while this run writes the file

    @classmethod
    def create(cls, path: Path, grid, ids: range, attrs: dict[str, Any]) -> Store:
        """A new file with every task pending, under its name only once it is complete.

        It is built under a temporary name beside ``path`` and renamed: a kill while the
        datasets are created leaves no half-made file at ``path`` (and a previous file
        being replaced stays whole until then); the temporary file is removed on errors.
        """
        check_space(path, grid, len(ids))
        tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
        f = _create_file(tmp)
        try:
            store = cls._fill(cls(f, ids), grid, attrs)
            os.replace(tmp, path)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        store.path = path
        return store

    @staticmethod
    def _fill(store: Store, grid, attrs: dict[str, Any]) -> Store:
        f, ids, n = store.f, store.ids, store.n
        tasks = f.create_group(TASKS)
        for col in TASK_COLUMNS:  # every row pending; the ids written now
            _dataset(tasks, col.name, (n,), col.dtype, col.pending)
        for a in range(0, n, _ROWS_AT_ONCE):  # bounded memory, whatever the number of tasks
            b = min(n, a + _ROWS_AT_ONCE)
            tasks[TASK_ID.name][a:b] = np.arange(ids.start + a, ids.start + b, dtype=np.int64)
        store._write_params(grid)
        f.create_group(RESULTS, track_order=True)
        f.attrs.update({k: v for k, v in attrs.items() if v is not None})
        f.flush()
        return store

    @classmethod
    def reopen(cls, path: Path, ids: range) -> Store:
        """An existing file, to run its pending and failed tasks (``--resume``)."""
        f = h5py.File(h5py.h5f.open(os.fsencode(str(path)), h5py.h5f.ACC_RDWR, fapl=_fapl()))
        store = cls(f, ids)
        stored = f[TASK_ID.path]
        if stored.shape != (store.n,) or (store.n and stored[0] != ids.start):
            f.close()
            raise OutputError(f"'{path}' holds other task ids than this run; start a new --out")
        results = f[RESULTS]
        if len(results):
            store.schema = tuple(Field(k, ds.dtype, ds.shape[1:]) for k, ds in results.items())
        old = read_errors(f)
        if old:  # failures so far wait in the sidecar with this run's; the latest per task wins
            with open(failures_path(path), "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(e) + "\n" for e in old))
        for name in (ERRORS, RANKS):
            if name in f:
                del f[name]
        f.flush()
        return store

    def _status_slices(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, statuses)`` a bounded slice at a time."""
        ds = self.f[TASK_STATUS.path]
        for a in range(0, self.n, _ROWS_AT_ONCE):
            yield a, ds[a : min(self.n, a + _ROWS_AT_ONCE)]

    def pending(self) -> list[tuple[int, int]]:
        """Row ranges whose tasks are not done (pending or failed)."""
        out: list[tuple[int, int]] = []
        for a, status in self._status_slices():
            todo = np.flatnonzero(status != Status.DONE) + a
            if todo.size == 0:
                continue
            cuts = np.flatnonzero(np.diff(todo) > 1)
            starts = np.concatenate(([todo[0]], todo[cuts + 1])).tolist()
            stops = np.concatenate((todo[cuts] + 1, [todo[-1] + 1])).tolist()
            if out and out[-1][1] == starts[0]:  # a range running on from the last slice
                starts[0] = out.pop()[0]
            out += zip(starts, stops, strict=True)
        return out

    def counts(self) -> tuple[int, int]:
        """(done, failed) over the whole file."""
        done = failed = 0
        for _, status in self._status_slices():
            done += int(np.count_nonzero(status == Status.DONE))
            failed += int(np.count_nonzero(status == Status.FAILED))
        return done, failed

    def _write_params(self, grid) -> None:
        group = self.f.create_group(PARAMS, track_order=True)
        first = grid.columns(self.ids.start, min(self.ids.stop, self.ids.start + 1))
        dsets = {}
        for name, col in first.items():
            if col.dtype.kind == "U":  # width from the axis's own values, not the first row
                col = np.asarray([str(v) for v in grid.axis_values()[name]])
            dsets[name] = _dataset(group, name, (self.n,), _param_dtype(col))
        for a in range(0, self.n, _ROWS_AT_ONCE):
            b = min(self.n, a + _ROWS_AT_ONCE)
            cols = grid.columns(self.ids.start + a, self.ids.start + b)
            for name, col in cols.items():
                ds = dsets[name]
                ds[a:b] = (
                    np.char.encode(col, "utf-8").astype(ds.dtype) if col.dtype.kind == "U" else col
                )

    def add_results(self, schema: Schema) -> None:
        """Create the result datasets (once, from the first schema) and write the metadata.

        Each carries its fill value (NaN, an int's minimum) as the HDF5 fill value and the
        ``fillvalue`` attribute, for readers without mpibatch; failed rows hold it. The
        space is not pre-filled (pending rows may read 0): /tasks/status is the truth.
        """
        self.schema = schema
        group = self.f[RESULTS]
        for fld in schema:
            fill = fill_value(np.dtype(fld.dtype))
            ds = _dataset(group, fld.key, (self.n, *fld.shape), fld.dtype, fill, prefill=False)
            if fill is not None:
                ds.attrs[FILL_ATTR] = fill
            ds.attrs[MISSING_ATTR] = MISSING_NOTE if fill is not None else MISSING_NOTE_BOOL
        for row, k in self.unfilled:
            self._fill_rows(row, k)
        self.unfilled = []
        self.f.flush()

    def _fill_rows(self, row: int, k: int) -> None:
        """The fill value in rows ``row .. row + k`` (none done) of every result dataset."""
        results = self.f[RESULTS]
        for fld in self.schema or ():
            fill = fill_value(np.dtype(fld.dtype))
            if fill is not None:
                _write_pieces(results[fld.key], row, np.full((k, *fld.shape), fill, fld.dtype))

    def write_rows(self, row: int, cols: Columns, rank: int | np.ndarray) -> None:
        """Write ``cols`` (a rank's round) at rows ``row .. row + cols.rows``."""
        k = cols.rows
        if k == 0:
            return
        sl = slice(row, row + k)
        tasks = self.f[TASKS]
        results = self.f[RESULTS]
        # results first, status last: a kill in between leaves rows pending, never
        # "done, no data"
        for key, arr in cols.results.items():
            _write_pieces(results[key], row, arr)
        if not cols.schema and (cols.status == Status.FAILED).any():  # no row of it done
            if self.schema:
                self._fill_rows(row, k)
            else:
                self.unfilled.append((row, k))
        tasks[TASK_START.name][sl] = cols.start
        tasks[TASK_ELAPSED.name][sl] = cols.elapsed
        ran = cols.status != Status.PENDING
        tasks[TASK_RANK.name][sl] = np.where(ran, rank, TASK_RANK.pending).astype(TASK_RANK.dtype)
        tasks[TASK_STATUS.name][sl] = cols.status

    def write_failures(self, failures: list) -> None:
        """Append failures to the sidecar file (moved into /errors when the file closes)."""
        if not failures:
            return
        lines = "".join(json.dumps(failure_record(fl)) + "\n" for fl in failures)
        with open(failures_path(self.path), "a", encoding="utf-8") as fh:
            fh.write(lines)

    def _move_failures(self) -> None:
        """Failures of tasks that are still failed (the latest record of each) into /errors."""
        status = self.f[TASK_STATUS.path][()]
        latest = {}
        for e in read_failures(failures_path(self.path)):
            row = e["task"] - self.ids.start
            if 0 <= row < self.n and status[row] == Status.FAILED:
                latest[e["task"]] = e
        errors = [latest[t] for t in sorted(latest)]
        if errors and ERRORS not in self.f:
            group = self.f.create_group(ERRORS)
            for fld in ERROR_FIELDS:
                data = [e[fld.name] for e in errors]
                group.create_dataset(fld.name, data=data, dtype=file_dtype(fld.dtype))

    def write_ranks(self, infos: list[dict]) -> None:
        gpus = [i.get("device") or {} for i in infos]  # -1 and "" on CPU ranks
        values = {
            "host": [i["host"] for i in infos],
            "local_rank": [i["local_rank"] for i in infos],
            "cores": [i.get("cores", "") for i in infos],
            "gpu_index": [g.get("index", -1) for g in gpus],
            "gpu_uuid": [g.get("uuid") or "" for g in gpus],
            "gpu_name": [g.get("name") or "" for g in gpus],
            "blas": [json.dumps(i["blas"]) for i in infos],
        }
        group = self.f.create_group(RANKS)
        for col in RANK_COLUMNS:
            group.create_dataset(col.name, data=values[col.name], dtype=file_dtype(col.dtype))
        hosts = sorted({i["host"] for i in infos})
        self.f.attrs["hosts"] = json.dumps(hosts)
        self.f.flush()

    def flush(self) -> None:
        self.f.flush()

    def close(self, attrs: dict[str, Any]) -> None:
        self._move_failures()
        self.f.attrs.update(attrs)
        self.f.close()
        failures_path(self.path).unlink(missing_ok=True)
        if self.lock is not None:
            self.lock.release()


class WriteBehind:
    """Small reports kept in memory briefly and written as a few contiguous slices.

    Every h5py write costs tens of microseconds whatever its size, so many one-task
    blocks would make rank 0 a bottleneck. Reports wait here until ``max_bytes`` of
    them pile up or the oldest is ``max_seconds`` old; then reports of adjacent rows are
    joined and each run is written once. A kill loses only what waits here, and those
    rows are still pending in the file (status is written with the data).
    """

    def __init__(
        self,
        store: Store,
        max_bytes: int = 8 << 20,
        max_seconds: float = 0.5,
        release: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        self.store, self.max_bytes, self.max_seconds = store, max_bytes, max_seconds
        self.release = release  # takes each report's buffer back once it is written
        self.items: list[tuple[int, Columns, int | np.ndarray]] = []
        self.bytes, self.since = 0, time.monotonic()

    def add(self, row: int, cols: Columns, rank: int | np.ndarray) -> None:
        if not self.items:
            self.since = time.monotonic()
        self.items.append((row, cols, rank))
        self.bytes += cols.nbytes
        if self.bytes >= self.max_bytes:
            self.flush()
        else:
            self.tick()

    def tick(self) -> None:
        """Write what waits if the oldest report has waited long enough."""
        if self.items and time.monotonic() - self.since >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        items = sorted(self.items, key=lambda item: item[0])
        self.items, self.bytes = [], 0
        run: list = []
        for item in items:
            if run and (
                item[0] != run[-1][0] + run[-1][1].rows or item[1].schema != run[-1][1].schema
            ):
                self._write(run)
                run = []
            run.append(item)
        if run:
            self._write(run)

    def _write(self, run: list) -> None:
        if len(run) == 1:
            self.store.write_rows(*run[0])
        else:
            joined = Columns(run[0][1].schema, sum(c.rows for _, c, _ in run))
            at = 0
            for _, cols, _ in run:
                for name, arr in cols.arrays.items():
                    joined.arrays[name][at : at + cols.rows] = arr
                at += cols.rows
            ranks = np.concatenate([np.full(c.rows, r, dtype=np.int32) for _, c, r in run])
            self.store.write_rows(run[0][0], joined, ranks)
        if self.release is not None:
            for _, cols, _ in run:
                self.release(cols.storage)


def _write_pieces(ds: h5py.Dataset, row: int, arr: np.ndarray) -> None:
    """``ds[row : row + len(arr)] = arr`` in pieces of about ``_WRITE_PIECE`` bytes."""
    n = len(arr)
    step = max(1, _WRITE_PIECE // max(1, arr.nbytes // n))
    for a in range(0, n, step):
        b = min(n, a + step)
        ds[row + a : row + b] = arr[a:b]
