"""A block's schema and its report: which result fields it holds, and what came of it.

A *schema* is the ordered list of result fields ``(key, dtype, shape, kind)``; see
_records.py for how a block's rows of them travel, and _packer.py for how a task's
return value becomes one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._dtypes import FIXED, RAGGED, VARIABLE

BARE = "value"  # key used when a task returns a bare scalar or array


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

    @property
    def unit(self) -> int:
        """Bytes of a tail key's values per row of them: a ragged row's, 1 for strings."""
        return self.dtype.itemsize * math.prod(self.shape) if self.kind == RAGGED else 1


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


def describe(schema: Schema) -> str:
    return ", ".join(f"{f.key}: {_type_name(f)}{list(f.shape) if f.shape else ''}" for f in schema)


def _type_name(f: Field) -> str:
    if f.kind == RAGGED:
        return f"ragged {f.dtype}"
    if f.kind != FIXED:
        return f.kind if f.dtype == VARIABLE else f"{f.kind}{f.dtype.itemsize}"
    return str(f.dtype)
