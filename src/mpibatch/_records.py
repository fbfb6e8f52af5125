"""What a task returned, as typed columns that travel between ranks as one byte buffer.

A *schema* is the ordered list of result fields ``(key, dtype, shape)``, set by the
first task that succeeds: its keys and shapes, and the *kind* of each value, which fixes
the dtype (see _dtypes.py: never the width, so no order of tasks changes it). A
:class:`Columns` object lays out ``rows`` rows of every field (plus the per-task start,
elapsed and status) in one contiguous ``uint8`` buffer, so a block of results is sent
with one buffer-based MPI call and unpacked on rank 0 as zero-copy views. No per-task
pickling. A :class:`Report` says what a block's buffer holds and what else came of the
block (failures, a fatal error).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ._dtypes import Declared, LossyResult, convert, fill_value, mixed_kinds, stored_dtype
from .devices import to_host
from .errors import ResultError
from .layout import TASK_STATUS, Status

BARE = "value"  # key used when a task returns a bare scalar or array
META = (("start", np.dtype("f8"), ()), ("elapsed", np.dtype("f8"), ()))
_ALIGN = 8
_KEEP = 16  # buffers a Buffers keeps at most


@dataclass(frozen=True)
class Field:
    key: str
    dtype: np.dtype
    shape: tuple[int, ...]
    declared: bool = field(default=False, compare=False)  # by the task file: any kind in


Schema = tuple  # tuple[Field, ...]


@dataclass
class Report:
    """What a rank sends rank 0 about one block: rows ``pos .. pos + rows`` of the run.

    The block's columns travel separately as ``nbytes`` raw bytes. The rest is only
    set when there is something to say: the tasks that failed, a fatal result error
    (the run stops), a stop request that reached this rank (a signal), and the rank's
    schema (in its first report with results; ``schema_task`` is the task that set it).
    """

    pos: int
    rows: int
    nbytes: int
    failures: Sequence = ()
    fatal: str | None = None
    stop: str | None = None
    schema: Schema | None = None
    schema_task: int = -1
    # a node leader's bundle: the reports of its ranks, (world rank, report) each, whose
    # data lie one after another in the bundle's buffer; ``grants`` it completes
    parts: list | None = None
    grants: int = 1
    where: int = -1  # a bundle: the rank its stop or fatal error came from

    def has_control(self) -> bool:
        """True if anything besides the header and the data must travel."""
        return (
            bool(self.failures)
            or self.fatal is not None
            or self.stop is not None
            or (self.schema is not None)
        )


def _as_array(key: str, value: object, task_id: int) -> np.ndarray:
    value = to_host(value)  # CuPy / PyTorch / JAX arrays to numpy, without importing them
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ResultError(
            f"task {task_id} returned {key!r} = a ragged sequence; expected numbers or an array "
            f"of one shape ({exc})"
        ) from None
    if arr.dtype.kind not in "biufc":
        raise ResultError(
            f"task {task_id} returned {key!r} of type {type(value).__name__} "
            f"(dtype {arr.dtype}); expected a number or a numeric array - return numbers, "
            "and keep labels in the grid"
        )
    return arr


def _items(out: object, task_id: int) -> list[tuple[str, object]]:
    if isinstance(out, dict):
        bad = [k for k in out if not isinstance(k, str) or not k or "/" in k]
        if bad:
            raise ResultError(
                f"task {task_id} returned a dict with key {bad[0]!r}; expected non-empty "
                "string keys without '/'"
            )
        return list(out.items())
    return [(BARE, out)]


def infer_schema(
    out: object, task_id: int, declared: Mapping[str, Declared] | None = None
) -> Schema:
    """The schema of one task's return value (raises ResultError if it cannot be stored).

    A key's dtype is its kind's (int64, float64, ...) or the one ``declared`` for it.
    """
    fields = []
    for key, value in _items(out, task_id):
        arr = _as_array(key, value, task_id)
        spec = declared.get(key) if declared else None
        if spec is None:
            fields.append(Field(key, stored_dtype(arr.dtype), arr.shape))
        else:
            shape = arr.shape if spec.shape is None else spec.shape
            fields.append(Field(key, spec.dtype, shape, declared=True))
    return tuple(fields)


def describe(schema: Schema) -> str:
    return ", ".join(f"{f.key}: {f.dtype}{list(f.shape) if f.shape else ''}" for f in schema)


@lru_cache(maxsize=256)
def _layout(schema: Schema, rows: int) -> tuple[list[tuple[str, np.dtype, tuple, int]], int]:
    specs: list[tuple[str, np.dtype, tuple]] = [(name, dt, shp) for name, dt, shp in META]
    specs += [(f.key, f.dtype, f.shape) for f in schema]
    specs.append((TASK_STATUS.name, np.dtype(TASK_STATUS.dtype), ()))
    out, offset = [], 0
    for name, dt, shp in specs:
        out.append((name, dt, shp, offset))
        size = rows * dt.itemsize * math.prod(shp)
        offset += -(-size // _ALIGN) * _ALIGN
    return out, offset


@lru_cache(maxsize=64)
def record_bytes(schema: Schema) -> int:
    """Bytes one row takes in a block's buffer (before alignment padding)."""
    return 17 + sum(f.dtype.itemsize * math.prod(f.shape) for f in schema)


def columns_bytes(schema: Schema, rows: int) -> int:
    """Bytes of the buffer that ``rows`` rows of ``schema`` take (padding included)."""
    return _layout(schema, rows)[1]


class Columns:
    """``rows`` rows of meta and result columns, as views into one byte buffer."""

    def __init__(self, schema: Schema, rows: int, buffer: np.ndarray | None = None) -> None:
        layout, nbytes = _layout(schema, rows)
        self.schema, self.rows, self.nbytes = schema, rows, nbytes
        self.storage = np.zeros(nbytes, np.uint8) if buffer is None else buffer  # to give back
        self.buffer = self.storage[:nbytes]
        self.stale = False  # results of unfinished rows hold old bytes (see reusing)
        self.arrays: dict[str, np.ndarray] = {}
        for name, dt, shp, off in layout:
            count = rows * math.prod(shp)
            view = self.buffer[off : off + count * dt.itemsize].view(dt)
            self.arrays[name] = view.reshape((rows, *shp))
        self.start = self.arrays["start"]
        self.elapsed = self.arrays["elapsed"]
        self.status = self.arrays["status"]
        self.results = {f.key: self.arrays[f.key] for f in schema}
        if buffer is None:  # a fresh buffer: results not yet computed hold the fill value
            for f in schema:
                if f.dtype.kind != "b":  # bool: False (zeros); mask by status
                    self.results[f.key][...] = fill_value(f.dtype)

    @classmethod
    def reusing(cls, schema: Schema, rows: int, buffers: Buffers) -> Columns:
        """Empty columns, in a kept buffer if they are big: meta and status zeroed.

        In a kept buffer the results are left as found: fill the rows, set their status,
        then call :meth:`clear_unfinished`; that writes each result byte once, where
        pre-filling NaN would write it twice. Small columns are fresh ones.
        """
        nbytes = columns_bytes(schema, rows)
        if nbytes < buffers.min_bytes:
            return cls(schema, rows)
        cols = cls(schema, rows, buffers.take(nbytes))
        for name in ("start", "elapsed", "status"):
            cols.arrays[name][...] = 0
        cols.stale = True
        return cols

    def clear_unfinished(self) -> None:
        """The fill value (see :func:`fill_value`) in the result rows whose status is not done.

        Only columns in a reused buffer need it; fresh ones start that way.
        """
        if not self.stale:
            return
        left = self.status != Status.DONE
        if self.schema and left.any():
            for f in self.schema:
                self.results[f.key][left] = _fill(f.dtype)

    def clear_row(self, row: int) -> None:
        """Row ``row``'s results back to the fill value (a task failed while storing them)."""
        for f in self.schema:
            self.results[f.key][row] = _fill(f.dtype)


def _fill(dtype: np.dtype):
    fill = fill_value(dtype)
    return False if fill is None else fill


class Buffers:
    """Big byte buffers kept for reuse, so blocks of results do not fault in fresh memory.

    The first write to memory a process has not used costs a page fault per page (far
    more on virtual machines that hand freed memory back to their host), and a run makes
    a block buffer thousands of times. Buffers under ``min_bytes`` are left to malloc,
    whose heap hands back memory already touched, faster than any bookkeeping here.
    :meth:`take` returns the smallest kept buffer big enough, or a new one; :meth:`give`
    keeps a buffer again, the largest up to ``max_bytes`` in all and at most 16.
    Thread-safe: rank 0's task thread takes while its main thread gives back.
    """

    min_bytes = 1 << 18

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.kept: list[np.ndarray] = []
        self.lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        if nbytes >= self.min_bytes:
            with self.lock:
                best = None
                for k, b in enumerate(self.kept):
                    if b.nbytes >= nbytes and (best is None or b.nbytes < self.kept[best].nbytes):
                        best = k
                if best is not None:
                    return self.kept.pop(best)
        return np.empty(nbytes, np.uint8)

    def give(self, buffer: np.ndarray) -> None:
        if buffer.nbytes < self.min_bytes:
            return
        with self.lock:
            self.kept.append(buffer)
            self.kept.sort(key=lambda b: b.nbytes, reverse=True)
            total = 0
            for k, b in enumerate(self.kept):
                total += b.nbytes
                if total > self.max_bytes or k == _KEEP:
                    del self.kept[k:]
                    break


class Packer:
    """Puts one task's return value into row ``row`` of a :class:`Columns`, checking it."""

    def __init__(self, schema: Schema, schema_task: int) -> None:
        self.schema, self.schema_task = schema, schema_task
        self.bare = len(schema) == 1 and schema[0].key == BARE
        self.keys = [f.key for f in schema]
        # a bare float64 scalar: the runner's fast path may store such values itself
        self.scalar_float = self.bare and schema[0].shape == () and schema[0].dtype == np.float64

    def put(self, cols: Columns, row: int, out: object, task_id: int) -> None:
        """Store ``out``; ResultError stops the run, LossyResult fails only this task."""
        if self.bare and not isinstance(out, dict):
            self._put(cols.results[BARE], self.schema[0], row, out, task_id)
            return
        if not isinstance(out, dict) or list(out) != self.keys:
            got = list(out) if isinstance(out, dict) else type(out).__name__
            raise ResultError(
                f"task {task_id} returned keys {got}; expected {self.keys} as task "
                f"{self.schema_task} did - every task must return the same keys"
            )
        results = cols.results
        try:
            for f in self.schema:
                self._put(results[f.key], f, row, out[f.key], task_id)
        except LossyResult:
            cols.clear_row(row)  # no key of a failed task keeps a value
            raise

    def _put(self, col: np.ndarray, f: Field, row: int, value: object, task_id: int) -> None:
        tp = type(value)
        if f.shape == ():  # the commonest results, without building an array
            if (tp is float or tp is np.float64) and f.dtype == _F8:
                col[row] = value
                return
            if tp is int and f.dtype == _I8 and _I8_MIN <= value <= _I8_MAX:  # type: ignore[operator]
                col[row] = value
                return
            if tp is int and not _I8_MIN <= value <= _U8_MAX:  # type: ignore[operator]
                raise LossyResult(
                    f"task {task_id} returned {f.key!r} = {value}, beyond 64-bit integers; "
                    "return a float, or keep it in the grid"
                )
        arr = _as_array(f.key, value, task_id)
        if arr.shape != f.shape:
            raise ResultError(
                f"task {task_id} returned {f.key!r} with shape {arr.shape}; expected shape "
                f"{f.shape} as task {self.schema_task} returned - every task must return the "
                "same shapes"
            )
        try:
            col[row] = convert(f.key, arr, f.dtype, f.declared, task_id)
        except LossyResult:
            raise
        except ResultError:  # another kind of number than the first task's
            raise ResultError(
                mixed_kinds(f.key, arr.dtype, f.dtype, task_id, self.schema_task)
            ) from None


_F8, _I8 = np.dtype(np.float64), np.dtype(np.int64)
_I8_MIN, _I8_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_U8_MAX = int(np.iinfo(np.uint64).max)
