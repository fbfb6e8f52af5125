"""The results file's writer: created by rank 0, written by slices, closed at the end.

The layout (dataset names, dtypes, status codes, error fields) is defined in layout.py.
Only rank 0 writes. Datasets are created at full size and written by slices, each row's
results first and its status last (see :meth:`Store.write_rows`), so a kill leaves rows
pending, never "done" without data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import _h5, _ragged, _tail
from ._behind import WriteBehind
from ._dtypes import fill_value
from ._output import (
    OutputLock,
    check_output,
    check_same_file,
    check_space,
    real_path,
    remove_stale_temporaries,
)
from ._records import Columns, Field, Schema
from .errors import OutputError
from .layout import (
    ERROR_FIELDS,
    ERRORS,
    FILL_ATTR,
    KEYS_ATTR,
    MISSING_ATTR,
    MISSING_NOTE,
    MISSING_NOTE_BOOL,
    MISSING_NOTE_STR,
    PARAMS,
    RAGGED_LENGTH,
    RAGGED_START,
    RAGGED_VALUES,
    RANK_COLUMNS,
    RANK_PEAK_RSS,
    RANKS,
    RESULT_TYPE_ATTR,
    RESULTS,
    SHARED,
    TASK_COLUMNS,
    TASK_ELAPSED,
    TASK_ID,
    TASK_RANK,
    TASK_START,
    TASK_STATUS,
    TASKS,
    TYPE_FIXED,
    Status,
    failure_record,
    failures_path,
    file_dtype,
    pending_ranges,
    read_errors,
    status_counts,
    values_path,
)
from .results import read_failures

__all__ = ["Store", "WriteBehind", "check_output"]  # these two live in _behind.py, _output.py

_ROWS_AT_ONCE = 1 << 20


class Store:
    """The writer side: created by rank 0 at the start, closed at the end."""

    def __init__(self, f: h5py.File, ids: range) -> None:
        self.f, self.ids = f, ids
        self.path = Path(f.filename)
        self.n = len(ids)
        self.schema: Schema | None = None
        self.unfilled: list[tuple[int, int]] = []  # rows failed before results had datasets
        self.sidecars: dict[str, _ragged.Sidecar] = {}  # ragged and string keys' values
        self.shared_records: Callable[[], dict] | None = None  # /shared, written at close
        self.peaks: Any = None  # each rank's peak RSS, into /ranks at close
        self.lock: OutputLock | None = None  # held while this run writes the file
        self.tail: str | None = None  # the ragged key whose values go in the file's tail
        self.tail_at = 0  # where they start, once the first of them came (_tail.py)
        self.ident = _h5.identity(f)  # the file this run writes: still the one at its path?

    @classmethod
    def create(
        cls, path: Path, grid, ids: range, attrs: dict[str, Any], schema: Schema | None = None
    ) -> Store:
        """A new file with every task pending, under its name only once it is complete.

        ``schema``: declared results, whose datasets it then has from the start.

        It is built under a temporary name beside ``path`` (a symlink's target: the link
        stays) and renamed: a kill while the datasets are created leaves no half-made file
        at ``path`` (and a previous file being replaced stays whole until then); the
        temporary file is removed on errors, and one that a killed run left is removed by
        the next run on that file (its process gone from this host).
        """
        path = real_path(path)
        check_space(path, grid, len(ids))
        remove_stale_temporaries(path)
        tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
        f = _h5.create_file(tmp)
        store = cls(f, ids)
        try:
            cls._fill(store, grid, attrs)
            store.path = path  # the side files of ragged and string keys go beside ``path``
            if schema is not None:
                store.add_results(schema)
            os.replace(tmp, path)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            for sidecar in store.sidecars.values():
                sidecar.close()
            raise
        store.path = path
        return store

    @staticmethod
    def _fill(store: Store, grid, attrs: dict[str, Any]) -> Store:
        f, ids, n = store.f, store.ids, store.n
        tasks = f.create_group(TASKS)
        for col in TASK_COLUMNS:  # every row pending; the ids written now
            _h5.dataset(tasks, col.name, (n,), col.dtype, col.pending)
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
        path = real_path(path)
        _tail.evacuate(path)  # before HDF5 opens it to write, which would cut the tail off
        f = _h5.open_file(path)
        store = cls(f, ids)
        stored = f[TASK_ID.path]
        if stored.shape != (store.n,) or (store.n and stored[0] != ids.start):
            f.close()
            raise OutputError(f"'{path}' holds other task ids than this run; start a new --out")
        results = f[RESULTS]
        for obj in results.values():  # tails moved to side files by evacuate() above
            if isinstance(obj, h5py.Group):
                _tail.forget(obj)
        if len(results):
            keys = json.loads(results.attrs.get(KEYS_ATTR, "null")) or list(results)
            store.schema = tuple(_h5.field(k, results[k]) for k in keys)
            store._open_sidecars()
        old = read_errors(f)
        if old:  # failures so far wait in the sidecar with this run's; the latest per task wins
            with open(failures_path(path), "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(e) + "\n" for e in old))
        for name in (ERRORS, RANKS):
            if name in f:
                del f[name]
        f.flush()
        return store

    def pending(self) -> list[tuple[int, int]]:
        """Row ranges whose tasks are not done (pending or failed)."""
        return pending_ranges(self.f[TASK_STATUS.path])

    def counts(self) -> tuple[int, int]:
        """(done, failed) over the whole file."""
        return status_counts(self.f[TASK_STATUS.path])

    def _write_params(self, grid) -> None:
        group = self.f.create_group(PARAMS, track_order=True)
        first = grid.columns(self.ids.start, min(self.ids.stop, self.ids.start + 1))
        dsets = {}
        for name, col in first.items():
            if col.dtype.kind == "U":  # width from the axis's own values, not the first row
                col = np.asarray([str(v) for v in grid.axis_values()[name]])
            dsets[name] = _h5.dataset(group, name, (self.n,), _h5.param_dtype(col))
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
        Ragged and variable-length string keys are groups whose values wait in a sidecar
        (see _ragged.py); every key carries its kind (``mpibatch_type``).
        """
        self.schema = schema
        self.tail = next((fld.key for fld in schema if fld.kind == "ragged"), None)
        group = self.f[RESULTS]
        group.attrs[KEYS_ATTR] = json.dumps([fld.key for fld in schema])
        for fld in schema:
            if fld.tail:
                _h5.add_tail_key(group, fld, self.n)
                continue
            dtype = _h5.string_dtype(fld) if fld.kind != TYPE_FIXED else fld.dtype
            fill = fill_value(np.dtype(fld.dtype))
            ds = _h5.dataset(group, fld.key, (self.n, *fld.shape), dtype, fill, prefill=False)
            ds.attrs[RESULT_TYPE_ATTR] = fld.kind
            if fill is not None:
                ds.attrs[FILL_ATTR] = fill
            note = MISSING_NOTE if fill is not None else MISSING_NOTE_BOOL
            ds.attrs[MISSING_ATTR] = MISSING_NOTE_STR if fld.kind != TYPE_FIXED else note
        self._open_sidecars()
        for row, k in self.unfilled:
            self._fill_rows(row, k)
        self.unfilled = []
        self.f.flush()

    def _open_sidecars(self) -> None:
        """Open the tail keys' sidecars, cut to the values that done rows hold (resume)."""
        status = None
        for fld in self.schema or ():
            if not fld.tail or fld.key == self.tail:
                continue  # the tail's values start with the first of them (_start_tail)
            obj = self.f[RESULTS][fld.key]
            if isinstance(obj, h5py.Dataset) or RAGGED_VALUES in obj:  # closed: out again
                _ragged.move_out(self.f[RESULTS], fld.key, self.n, self.path)
                obj = self.f[RESULTS][fld.key]
            if status is None:
                status = self.f[TASK_STATUS.path][()]
            ends = obj[RAGGED_START][()] + obj[RAGGED_LENGTH][()]
            unit, side = fld.unit, values_path(self.path, fld.key)
            have = side.stat().st_size if side.is_file() else 0
            lost = (status == Status.DONE) & (ends * unit > have)
            if lost.any():  # the tail was cut (opened to write before --resume): run them again
                self._forget(obj, np.flatnonzero(lost))
                status[lost] = Status.PENDING
            end = int(ends[status == Status.DONE].max(initial=0)) * unit
            self.sidecars[fld.key] = _ragged.Sidecar(side, unit, end)

    def _forget(self, group: h5py.Group, rows: np.ndarray) -> None:
        """Rows whose values are gone back to pending (their start and length -1)."""
        self.f[TASK_STATUS.path][rows] = np.full(len(rows), Status.PENDING, TASK_STATUS.dtype)
        for name in (RAGGED_START, RAGGED_LENGTH):
            group[name][rows] = np.full(len(rows), -1, np.int64)

    def _fill_rows(self, row: int, k: int) -> None:
        """The fill value in rows ``row .. row + k`` (none done) of every result dataset."""
        results = self.f[RESULTS]
        for fld in self.schema or ():
            if fld.tail:
                continue  # start and length stay -1
            fill = fill_value(np.dtype(fld.dtype))
            if fill is not None:
                _h5.write_pieces(results[fld.key], row, np.full((k, *fld.shape), fill, fld.dtype))

    def write_rows(self, row: int, cols: Columns, rank: int | np.ndarray) -> None:
        """Write ``cols`` (a rank's round) at rows ``row .. row + cols.rows``."""
        k = cols.rows
        if k == 0:
            return
        sl = slice(row, row + k)
        if self.tail is not None and self.tail not in self.sidecars:
            first = [fld for fld in cols.schema if fld.key == self.tail]
            if first:  # before taking any handle: it reopens the file
                self._start_tail(first[0])
        tasks = self.f[TASKS]
        results = self.f[RESULTS]
        # results first, status last: a kill in between leaves rows pending, never
        # "done, no data"
        tails = cols.tail_bytes() if cols.tails else {}
        for fld in cols.schema:
            if fld.tail:
                self._write_tail(results[fld.key], row, cols, fld, tails[fld.key])
            else:  # fixed-width strings: their bytes, tagged with the dataset's encoding
                ds, arr = results[fld.key], cols.results[fld.key]
                _h5.write_pieces(ds, row, arr.view(ds.dtype) if fld.kind != TYPE_FIXED else arr)
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

    def _write_tail(self, group, row: int, cols: Columns, fld: Field, data: np.ndarray) -> None:
        """A tail key's bytes appended to its sidecar, then where each row's value is."""
        sidecar = self.sidecars[fld.key]
        first = sidecar.append(data)
        nbytes = cols.results[fld.key]
        done = cols.status == Status.DONE
        lengths = nbytes // sidecar.unit
        starts = first + np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(nbytes) else nbytes
        group[RAGGED_START][row : row + cols.rows] = np.where(done, starts, -1)
        group[RAGGED_LENGTH][row : row + cols.rows] = np.where(done, lengths, -1)

    def _start_tail(self, fld: Field) -> None:
        """The tail key's values from now on go past HDF5's end of allocation (_tail.py):
        ``X`` recorded, then the file reopened with HDF5's alignment set to it."""
        group = self.f[RESULTS][fld.key]
        group.attrs[_tail.TAIL_ATTR] = np.int64(0)  # its room first, then its value
        self.f.flush()
        self.tail_at = _tail.place(self.f.id.get_filesize())
        group.attrs.modify(_tail.TAIL_ATTR, np.int64(self.tail_at))
        self._reopen(self.tail_at)
        self.sidecars[fld.key] = _ragged.Sidecar(self.path, fld.unit, end=0, base=self.tail_at)

    def _reopen(self, align: int = 0) -> None:
        """Close the file and open it again (releasing HDF5's free-space aggregators)."""
        self.check_same_file()  # (else the path would open another file, or none)
        self.f.flush()
        self.f.close()
        self.f = _h5.open_file(self.path, align)
        self.ident = _h5.identity(self.f)

    def check_same_file(self) -> None:
        """OutputError if the file at ``self.path`` is no longer the one this run writes."""
        check_same_file(self.path, self.ident)

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
        self.check_same_file()
        self.f.flush()
        if self.tail_at:  # HDF5 never cuts the file back while nothing allocates: checked
            tail = self.sidecars[str(self.tail)]
            if os.fstat(tail.fd).st_size < tail.base + tail.size:
                raise OutputError(
                    f"'{self.path}' was cut short while '{self.tail}' values were written to "
                    "it (another program writing it?); run again with --resume: the rows "
                    "whose values are gone run again"
                )

    def _write_end(self) -> None:
        """What is known only at the end: the shared inputs' hashes, each rank's peak RSS."""
        if self.peaks is not None and RANKS in self.f:
            group = self.f[RANKS]
            if RANK_PEAK_RSS.name in group:
                del group[RANK_PEAK_RSS.name]
            group.create_dataset(RANK_PEAK_RSS.name, data=self.peaks, dtype=RANK_PEAK_RSS.dtype)
        if self.shared_records is not None:
            self.write_shared(self.shared_records())

    def write_shared(self, rec: dict) -> None:
        """/shared: each shared input's dtype, shape, bytes and SHA-256 (see layout.py)."""
        if SHARED in self.f:
            del self.f[SHARED]
        group = self.f.create_group(SHARED, track_order=True)
        group.attrs.update({k: v for k, v in rec.items() if k != "arrays"})
        for name, attrs in rec["arrays"].items():
            group.create_group(name).attrs.update(attrs)
        self.f.flush()

    def close(self, attrs: dict[str, Any]) -> None:
        self.check_same_file()  # never "done" into a file nobody can open
        if self.tail_at:  # first: nothing may be allocated before the tail is adopted
            sidecar = self.sidecars.pop(str(self.tail))
            sidecar.close()
            _tail.adopt(self.f[RESULTS][str(self.tail)], self.path, self.tail_at, sidecar.size)
            self._reopen()  # without the alignment, for the rest
            self.tail_at = 0
        self._move_failures()
        for key, sidecar in self.sidecars.items():
            sidecar.close()
            _ragged.move_in(self.f[RESULTS], key, self.n, self.path)
        self.sidecars = {}
        self._write_end()
        self.f.attrs.update(attrs)
        self.f.close()
        failures_path(self.path).unlink(missing_ok=True)
        if self.lock is not None:
            self.lock.release()
