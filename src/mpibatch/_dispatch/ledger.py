"""Rank 0's bookkeeping of what came back: counts and timings, and the run's schema."""

from __future__ import annotations

import numpy as np

from .._dtypes import kind, mixed_kinds
from .._records import Columns, Report, Schema, describe, record_bytes
from ..layout import Status


class Ledger:
    """Blocks handed out and not yet reported (per rank), tasks back, time they took."""

    def __init__(self, size: int) -> None:
        self.owed = [0] * size  # blocks handed to each rank, not yet reported
        self.done = self.failed = 0
        self.busy = 0.0  # seconds the tasks back so far took
        self.n_blocks = 0
        self.dispatch_seconds = 0.0  # rank 0's time spent answering reports

    def handed(self, rank: int) -> None:
        self.owed[rank] += 1
        self.n_blocks += 1

    def reported(self, rank: int, blocks: int = 1) -> None:
        self.owed[rank] -= blocks

    def outstanding(self) -> bool:
        """True while some rank holds a block it has not reported."""
        return any(self.owed)

    @property
    def seen(self) -> int:
        """Tasks back so far, done or failed."""
        return self.done + self.failed

    def mean(self) -> float | None:
        """Mean task time so far (seconds), None before any task is back."""
        seen = self.done + self.failed
        return self.busy / seen if seen else None

    def count(self, cols: Columns) -> np.ndarray:
        """Count a block's tasks; returns the times of those that ran (seconds)."""
        status = cols.status
        ran = status > 0
        took = cols.elapsed[ran]
        self.done += int(np.count_nonzero(status == Status.DONE))
        self.failed += int(np.count_nonzero(status == Status.FAILED))
        self.busy += float(took.sum())
        return took


_NONE: tuple[Schema, int] = ((), -1)


class SchemaGate:
    """The run's schema (the first one seen, or the file's when resuming) against later ones.

    The first schema creates the result datasets. Each rank sends its schema once, in
    its first report with results; later reports of that rank are read with it. Ranks
    store every kind of number with one dtype (_dtypes.py), so their schemas are equal
    unless tasks return other keys, shapes or kinds: then the run stops, whichever
    rank's schema came first.
    """

    def __init__(self, store) -> None:
        self.store = store
        self.canonical: Schema | None = store.schema  # set already when resuming
        self.canonical_task = -1
        self.by_rank: dict[int, tuple[Schema, int]] = {}  # rank: (its schema, the task)
        self.row_bytes = 0  # the most bytes per row a block took (ragged rows vary)

    @property
    def record_bytes(self) -> int | None:
        """Bytes a row of the run's results takes (the most seen, for rows of varying
        size: ragged arrays, strings); None before a task succeeded."""
        if self.canonical is None:
            return None
        return max(record_bytes(self.canonical), self.row_bytes)

    def seen(self, nbytes: int, rows: int) -> None:
        """A block of ``rows`` rows took ``nbytes`` bytes."""
        if rows:
            self.row_bytes = max(self.row_bytes, -(-nbytes // rows))

    def schema_of(self, rank: int, report: Report) -> tuple[Schema, int]:
        """The schema of ``rank``'s columns (``()`` before it had a result), and its task."""
        if report.schema is not None:
            self.by_rank[rank] = (report.schema, report.schema_task)
        return self.by_rank.get(rank, _NONE)

    def check(self, schema: Schema, task: int) -> str | None:
        """None if ``schema`` fits the run's (the first creates the datasets); else why not."""
        canonical = self.canonical
        if canonical is None:
            self.canonical, self.canonical_task = schema, task
            self.store.add_results(schema)
            return None
        if schema == canonical or _fits(schema, canonical):
            return None
        other = _other_kind(schema, canonical)
        if other is not None and self.canonical_task >= 0:
            got, want = other
            return mixed_kinds(got.key, got.dtype, want.dtype, task, self.canonical_task)
        where = (
            f"task {self.canonical_task} returned"
            if self.canonical_task >= 0
            else "the results already in the file have"
        )
        return (
            f"task {task} returned {{{describe(schema)}}}; expected {{{describe(canonical)}}} "
            f"as {where} - every task must return the same keys, shapes and dtypes (integers "
            "of any width store as int64, floats as float64; declare others with "
            f"results = {{...}} in the task file){_ragged_hint(schema, canonical)}"
        )


def _ragged_hint(schema: Schema, canonical: Schema) -> str:
    """Advice to declare a key ragged when only its leading axis differs between tasks."""
    for a, b in zip(schema, canonical, strict=False):
        if a.key == b.key and a.shape and len(a.shape) == len(b.shape) and a.shape != b.shape:
            if a.shape[1:] == b.shape[1:] and a.dtype == b.dtype:
                inner = (
                    f"('ragged {b.dtype}', {b.shape[1:]})" if b.shape[1:] else f"'ragged {b.dtype}'"
                )
                return (
                    f"; only the length of {a.key!r} varies: declare results = "
                    f"{{{a.key!r}: {inner}}} to store arrays of varying length"
                )
    return ""


def _other_kind(schema: Schema, canonical: Schema):
    """The first (field, run's field) pair of other kinds, if keys and shapes agree."""
    if [(f.key, f.shape) for f in schema] != [(f.key, f.shape) for f in canonical]:
        return None
    for a, b in zip(schema, canonical, strict=True):
        if a.kind != "fixed" or b.kind != "fixed":  # strings, ragged: the generic line
            if a.kind != b.kind or a.dtype != b.dtype:
                return None
        elif kind(a.dtype) != kind(b.dtype):
            return a, b
    return None


def _fits(schema: Schema, canonical: Schema) -> bool:
    """Same keys, shapes and kinds, and dtypes that cast safely to the run's.

    Only a file written before the type policy (or with other declarations) has other
    widths than the ranks; an int arriving for a float key never fits, in either order.
    """
    if [(f.key, f.shape) for f in schema] != [(f.key, f.shape) for f in canonical]:
        return False
    return all(
        (a.kind, a.dtype) == (b.kind, b.dtype)
        if a.kind != "fixed" or b.kind != "fixed"
        else kind(a.dtype) == kind(b.dtype) and np.can_cast(a.dtype, b.dtype, "safe")
        for a, b in zip(schema, canonical, strict=True)
    )
