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

from . import _ragged
from ._dtypes import (
    BYTES,
    FIXED,
    RAGGED,
    STR,
    VARIABLE,
    Declared,
    LossyResult,
    convert,
    fill_value,
    mixed_kinds,
    stored_dtype,
)
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
    kind: str = FIXED  # or RAGGED (shape: a row's inner shape), STR, BYTES

    @property
    def tail(self) -> bool:
        """Values of varying size: the row holds their byte count, the bytes follow the
        columns in the same buffer (ragged arrays, variable-length strings)."""
        return self.kind == RAGGED or (self.kind != FIXED and self.dtype == VARIABLE)


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

    def has_control(self) -> bool:
        """True if anything besides the header and the data must travel."""
        return (
            bool(self.failures)
            or self.fatal is not None
            or self.stop is not None
            or (self.schema is not None)
        )


def _as_array(
    key: str, value: object, task_id: int, kinds: str = "biufc", declared: bool = False
) -> np.ndarray:
    """``value`` as an array of one of ``kinds``; LossyResult (its task fails) if it
    cannot be stored at all (an object, None, a ragged list) or a declared key gets
    another kind, ResultError if an undeclared key does (a string where numbers were)."""
    value = to_host(value)  # CuPy / PyTorch / JAX arrays to numpy, without importing them
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise LossyResult(
            f"task {task_id} returned {key!r} = a ragged sequence; expected numbers or an array "
            f"of one shape ({exc}); declare results = {{{key!r}: 'ragged float64'}} for arrays "
            "whose length varies"
        ) from None
    if arr.dtype.kind in kinds:
        return arr
    if arr.dtype.kind not in "biufcUS":
        raise LossyResult(
            f"task {task_id} returned {key!r} of type {type(value).__name__} "
            f"(dtype {arr.dtype}), which a results file cannot store; return numbers, "
            "strings or arrays of them"
        )
    raise (LossyResult if declared else ResultError)(
        f"task {task_id} returned {key!r} of type {type(value).__name__} "
        f"(dtype {arr.dtype}); expected {_WANT[kinds]} as the key's other values - a "
        "result keeps one kind in every task"
    )


_WANT = {"biufc": "a number or a numeric array", "U": "a str", "S": "bytes"}


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
        spec = declared.get(key) if declared else None
        if spec is not None and spec.shape is not None:
            fields.append(Field(key, spec.dtype, spec.shape, True, spec.kind))
            continue
        arr = _as_array(key, value, task_id, "biufcUS")
        if spec is not None:
            fields.append(Field(key, spec.dtype, arr.shape, declared=True))
        elif arr.dtype.kind in "US":
            fields.append(
                Field(key, VARIABLE, arr.shape, kind=STR if arr.dtype.kind == "U" else BYTES)
            )
        else:
            fields.append(Field(key, stored_dtype(arr.dtype), arr.shape))
    return tuple(fields)


def declared_schema(declared: Mapping[str, Declared] | None) -> Schema | None:
    """The schema a declaration fixes before any task, if it gives every key's shape."""
    if not declared or any(spec.shape is None for spec in declared.values()):
        return None
    return tuple(Field(k, s.dtype, s.shape or (), True, s.kind) for k, s in declared.items())


def describe(schema: Schema) -> str:
    return ", ".join(f"{f.key}: {_type_name(f)}{list(f.shape) if f.shape else ''}" for f in schema)


def _type_name(f: Field) -> str:
    if f.kind == RAGGED:
        return f"ragged {f.dtype}"
    if f.kind != FIXED:
        return f.kind if f.dtype == VARIABLE else f"{f.kind}{f.dtype.itemsize}"
    return str(f.dtype)


@lru_cache(maxsize=256)
def _layout(schema: Schema, rows: int) -> tuple[list[tuple[str, np.dtype, tuple, int]], int]:
    specs: list[tuple[str, np.dtype, tuple]] = [(name, dt, shp) for name, dt, shp in META]
    specs += [(f.key, _LEN, ()) if f.tail else (f.key, f.dtype, f.shape) for f in schema]
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
    return 17 + sum(8 if f.tail else f.dtype.itemsize * math.prod(f.shape) for f in schema)


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
        self.fixed_nbytes = nbytes  # the columns; a sealed buffer's tail bytes follow them
        # while rows are filled: each tail key's bytes so far, rows in order
        keys = [f.key for f in schema if f.tail]
        self.tails = {k: Tail(None, nbytes if i == 0 else 0) for i, k in enumerate(keys)}
        if buffer is None:  # a fresh buffer: results not yet computed hold the fill value
            for f in schema:
                if fill_value(f.dtype) is not None and not f.tail:  # bool, str: zeros
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
            cols = cls(schema, rows)
        else:
            cols = cls(schema, rows, buffers.take(nbytes))
            for name in ("start", "elapsed", "status"):
                cols.arrays[name][...] = 0
            cols.stale = True
        cols.tails = {  # grown in kept buffers; the first has room for the columns
            k: Tail(buffers, cols.fixed_nbytes if i == 0 else 0) for i, k in enumerate(cols.tails)
        }
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
                self.results[f.key][left] = _fill(f)

    def clear_row(self, row: int) -> None:
        """Row ``row``'s results back to the fill value (a task failed while storing them)."""
        for f in self.schema:
            self.results[f.key][row] = _fill(f)
            if f.tail:
                self.tails[f.key].drop(row)

    def seal(self, buffers: Buffers | None = None) -> Columns:
        """These columns with their tail keys' bytes appended: one buffer to send.

        Columns without tail keys are returned as they are. The first tail key's buffer
        has room for the columns in front (see :class:`Tail`), so it becomes the block's
        buffer: the commonest case (one ragged key) copies no value twice. Rows not done
        hold no bytes (only the last row put can be one: a result error stopped there).
        """
        if not self.tails:
            return self
        done = self.status == Status.DONE
        tails = list(self.tails.items())
        sizes = []
        for key, _ in tails:
            self.results[key][~done] = 0
            sizes.append(int(self.results[key].sum()))
        fixed, total = self.fixed_nbytes, self.fixed_nbytes + sum(sizes)
        storage = tails[0][1].take(total)
        storage[:fixed] = self.buffer[:fixed]
        at = fixed + sizes[0]
        for (_, tail), n in zip(tails[1:], sizes[1:], strict=True):
            storage[at : at + n] = tail.buf[tail.reserve : tail.reserve + n]
            at += n
            tail.release()
        if buffers is not None:
            buffers.give(self.storage)
        sealed = Columns(self.schema, self.rows, storage)
        sealed.nbytes, sealed.buffer = total, storage[:total]
        return sealed

    def tail_bytes(self) -> dict[str, np.ndarray]:
        """Each tail key's bytes in a sealed (or received) buffer, rows in order."""
        out, at = {}, self.fixed_nbytes
        for f in self.schema:
            if f.tail:
                n = int(self.results[f.key].sum())
                out[f.key] = self.storage[at : at + n]
                at += n
        return out


class Tail:
    """A tail key's bytes while a block is filled: one growing buffer, rows in order.

    Each value is copied in as it is put, so the task's own array is freed at once (its
    memory is reused for the next task, as with fixed-shape results). The first
    ``reserve`` bytes are left for the block's columns (see :meth:`Columns.seal`).
    """

    def __init__(self, buffers: Buffers | None = None, reserve: int = 0) -> None:
        self.buffers, self.reserve = buffers, reserve
        self.buf = np.empty(0, np.uint8)
        self.used = reserve
        self.last = (-1, 0)  # (row, bytes) of the last value put

    def _grow(self, size: int) -> None:
        new = self.buffers.take(size) if self.buffers else np.empty(size, np.uint8)
        new[self.reserve : self.used] = self.buf[self.reserve : self.used]
        self.release()
        self.buf = new

    def put(self, row: int, data: np.ndarray) -> int:
        """Append ``data``'s bytes for ``row``; returns how many."""
        raw = data.reshape(-1).view(np.uint8)
        n = raw.nbytes
        if self.used + n > self.buf.nbytes:
            self._grow(max(2 * self.buf.nbytes, self.used + n, 1 << 16))
        self.buf[self.used : self.used + n] = raw
        self.used += n
        self.last = (row, n)
        return n

    def drop(self, row: int) -> None:
        """Take back ``row``'s bytes, if they were the last put (its task failed)."""
        if self.last[0] == row:
            self.used -= self.last[1]
            self.last = (-1, 0)

    def take(self, nbytes: int) -> np.ndarray:
        """The buffer, at least ``nbytes`` long, handed over (the tail is empty after)."""
        if self.buf.nbytes < nbytes:
            self._grow(nbytes)
        buf, self.buf = self.buf, np.empty(0, np.uint8)
        return buf

    def release(self) -> None:
        """Give the buffer back for reuse."""
        if self.buffers is not None:
            self.buffers.give(self.buf)
        self.buf = np.empty(0, np.uint8)


def join(run: list[Columns], spare: np.ndarray | None = None) -> Columns:
    """Sealed columns of one schema as one (rows one after the other).

    The joined buffer is ``spare`` if it is big enough (the caller keeps one for every
    join: a run makes thousands, of varying sizes, which fragment the heap otherwise).
    """
    schema, rows = run[0].schema, sum(c.rows for c in run)
    fixed = columns_bytes(schema, rows)
    tails = [c.tail_bytes() for c in run] if run[0].tails else []
    parts = [t[f.key] for f in schema if f.tail for t in tails]
    total = fixed + sum(p.nbytes for p in parts)
    if spare is None or spare.nbytes < total:
        spare = np.empty(_rounded(total), np.uint8)
    joined = Columns(schema, rows, spare)
    at = 0
    for cols in run:
        for name, arr in cols.arrays.items():
            joined.arrays[name][at : at + cols.rows] = arr
        at += cols.rows
    at = fixed
    for p in parts:
        spare[at : at + p.nbytes] = p
        at += p.nbytes
    joined.nbytes, joined.buffer = total, spare[:total]
    return joined


_LEN = np.dtype(np.int64)


def _fill(f: Field):
    if f.tail:
        return 0
    if f.dtype.kind == "S":
        return b""
    fill = fill_value(f.dtype)
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
            nbytes = _rounded(nbytes)
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


def _rounded(nbytes: int) -> int:
    """``nbytes`` rounded up to 1/8 of its power of two (at most 12.5% more).

    Blocks of ragged or string results vary in size; buffers of a few sizes are reused
    (here and by malloc) where buffers of every size would fragment the heap: rank 0's
    memory grew with the results until sizes were rounded.
    """
    step = 1 << max(0, nbytes.bit_length() - 4)
    return -(-nbytes // step) * step


class Packer:
    """Puts one task's return value into row ``row`` of a :class:`Columns`, checking it.

    ``schema_task`` -1: the schema is a declaration's (see :func:`declared_schema`), so a
    value that does not fit it fails its task; else a task's, and another shape or kind
    than that task's stops the run (the undeclared type policy, _dtypes.py).
    """

    def __init__(self, schema: Schema, schema_task: int) -> None:
        self.schema, self.schema_task = schema, schema_task
        self.bare = len(schema) == 1 and schema[0].key == BARE
        self.keys = [f.key for f in schema]
        # a bare float64 scalar: the runner's fast path may store such values itself
        self.scalar_float = self.bare and schema[0].shape == () and schema[0].dtype == np.float64
        self.origin = "declared" if schema_task < 0 else f"as task {schema_task} returned"

    def put(self, cols: Columns, row: int, out: object, task_id: int) -> None:
        """Store ``out``; ResultError stops the run, LossyResult fails only this task."""
        if self.bare and not isinstance(out, dict):
            self._put(cols, self.schema[0], row, out, task_id)
            return
        if not isinstance(out, dict) or out.keys() != set(self.keys):
            got = list(out) if isinstance(out, dict) else type(out).__name__
            error = LossyResult if self.schema_task < 0 else ResultError
            raise error(
                f"task {task_id} returned keys {got}; expected {self.keys} {self.origin} - "
                "every task must return the same keys"
            )
        try:
            for f in self.schema:
                self._put(cols, f, row, out[f.key], task_id)
        except LossyResult:
            cols.clear_row(row)  # no key of a failed task keeps a value
            raise

    def _put(self, cols: Columns, f: Field, row: int, value: object, task_id: int) -> None:
        col = cols.results[f.key]
        tp = type(value)
        if f.kind != FIXED:
            self._put_other(cols, f, row, value, task_id)
            return
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
        arr = _as_array(f.key, value, task_id, "biufc", f.declared or self.schema_task < 0)
        if arr.shape != f.shape:
            self._shape_error(f, arr, task_id)
        try:
            col[row] = convert(f.key, arr, f.dtype, f.declared, task_id)
        except LossyResult:
            raise
        except ResultError:  # another kind of number than the first task's
            raise ResultError(
                mixed_kinds(f.key, arr.dtype, f.dtype, task_id, self.schema_task)
            ) from None

    def _shape_error(self, f: Field, arr: np.ndarray, task_id: int) -> None:
        what = "ragged " if f.kind == RAGGED else ""
        shape = ("k", *f.shape) if f.kind == RAGGED else f.shape
        msg = (
            f"task {task_id} returned {f.key!r} with shape {arr.shape}; expected {what}shape "
            f"{shape} {self.origin}"
        )
        if f.declared or self.schema_task < 0:
            raise LossyResult(msg)
        hint = " - every task must return the same shapes"
        if arr.ndim and arr.ndim == len(f.shape) and arr.shape[1:] == f.shape[1:]:
            inner = f"('ragged {f.dtype}', {f.shape[1:]})" if f.shape[1:] else f"'ragged {f.dtype}'"
            hint = (
                f"; only the length varies: declare results = {{{f.key!r}: {inner}}} in the "
                "task file (or mpibatch.run(results=...)) to store arrays of varying length"
            )
        raise ResultError(msg + hint)

    def _put_other(self, cols: Columns, f: Field, row: int, value: object, task_id: int) -> None:
        """A ragged array or strings into ``row``: their bytes wait in ``cols.tails``."""
        if f.kind == RAGGED:
            arr = _as_array(f.key, value, task_id, "biufc", f.declared or self.schema_task < 0)
            if arr.ndim != 1 + len(f.shape) or arr.shape[1:] != f.shape:
                self._shape_error(f, arr, task_id)
            data = np.ascontiguousarray(convert(f.key, arr, f.dtype, True, task_id))
            cols.results[f.key][row] = cols.tails[f.key].put(row, data)
            return
        items = _strings(value, f)
        if items is None:
            shape = f" of shape {f.shape}" if f.shape else ""
            error = LossyResult if f.declared or self.schema_task < 0 else ResultError
            raise error(
                f"task {task_id} returned {f.key!r} as {type(value).__name__}; expected "
                f"{f.kind}{shape} {self.origin} - a result keeps one type and shape in every task"
            )
        raw = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in items]
        if f.kind == STR and any(b"\0" in r for r in raw):
            raise LossyResult(
                f"task {task_id} returned {f.key!r} with a NUL character, which HDF5 strings "
                "cannot hold; return bytes for binary data"
            )
        if f.tail:
            data = np.frombuffer(_ragged.encode(raw), np.uint8)
            cols.results[f.key][row] = cols.tails[f.key].put(row, data)
            return
        if max(map(len, raw), default=0) > f.dtype.itemsize:
            raise LossyResult(
                f"task {task_id} returned {f.key!r} with a string of {max(map(len, raw))} bytes; "
                f"it is declared {f.kind}{f.dtype.itemsize} - declare a wider one or '{f.kind}'"
            )
        cols.results[f.key][row] = np.asarray(raw, dtype=f.dtype).reshape(f.shape)


def _strings(value: object, f: Field) -> list | None:
    """The strings (bytes) of a value of ``f``'s kind and shape, flat; None if it is not one."""
    want = str if f.kind == STR else bytes
    if not f.shape:
        return [value] if isinstance(value, want) else None
    if isinstance(value, (str, bytes)):
        return None
    try:
        arr = np.asarray(value, dtype=object)
    except ValueError:
        return None
    items = list(arr.flat)
    return items if arr.shape == f.shape and all(isinstance(v, want) for v in items) else None


_F8, _I8 = np.dtype(np.float64), np.dtype(np.int64)
_I8_MIN, _I8_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_U8_MAX = int(np.iinfo(np.uint64).max)
