"""A task's return value into a row of :class:`~mpibatch._records.Columns`, checked.

The first task that succeeds sets the schema (its keys and shapes, and the *kind* of
each value, which fixes the dtype: see _dtypes.py), unless a declaration gives it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

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
    mixed_kinds,
    stored_dtype,
)
from ._schema import BARE, Field, Schema
from .devices import to_host
from .errors import ResultError
from .layout import result_key_problem

if TYPE_CHECKING:
    from ._records import Columns


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
        for key in out:
            problem = result_key_problem(key)
            if problem:
                raise ResultError(f"task {task_id} returned a dict with key {key!r}; {problem}")
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
        try:
            raw = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in items]
        except UnicodeEncodeError:
            raise LossyResult(
                f"task {task_id} returned {f.key!r} with a lone surrogate (odd bytes through "
                "os.fsdecode?), which UTF-8 cannot hold; return os.fsencode(text) as bytes, "
                "or text.encode('utf-8', 'backslashreplace').decode()"
            ) from None
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
