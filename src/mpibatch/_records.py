"""What a task returned, as typed columns that travel between ranks as one byte buffer.

A *schema* is the ordered list of result fields ``(key, dtype, shape)``, set by the
first task that succeeds: its keys and shapes, and the *kind* of each value, which fixes
the dtype (see _dtypes.py: never the width, so no order of tasks changes it). A
:class:`Columns` object lays out ``rows`` rows of every field (plus the per-task start,
elapsed and status) in one contiguous ``uint8`` buffer, so a block of results is sent
with one buffer-based MPI call and unpacked on rank 0 as zero-copy views. No per-task
pickling. A :class:`Report` says what a block's buffer holds and what else came of the
block (failures, a fatal error).

Ragged arrays and variable-length strings (*tail* fields) hold their byte count in the
row; their bytes follow the columns in the same buffer, key by key, rows in order (see
:meth:`Columns.seal`), so they travel in the same one message. Turning a return value
into a row is _packer.py's, the schema _schema.py's, the buffers _buffers.py's; their
names are importable from here too.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ._buffers import Buffers, Tail, _rounded
from ._dtypes import fill_value
from ._packer import Packer, _items, declared_schema, infer_schema
from ._schema import BARE, Field, Report, Schema, describe
from .layout import TASK_STATUS, Status

__all__ = [  # the packing side and the schema live beside; imported from here too
    "BARE",
    "Buffers",
    "Columns",
    "Field",
    "Packer",
    "Report",
    "Schema",
    "Tail",
    "_items",
    "declared_schema",
    "describe",
    "infer_schema",
    "join",
]

META = (("start", np.dtype("f8"), ()), ("elapsed", np.dtype("f8"), ()))
_ALIGN = 8


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
            k: Tail(
                buffers,
                cols.fixed_nbytes if i == 0 else 0,
                int(buffers.per_row.get(k, 0) * rows),  # as big as the last block's, per row
            )
            for i, k in enumerate(cols.tails)
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
            if buffers is not None and done.any():
                buffers.per_row[key] = sizes[-1] / int(done.sum())
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
