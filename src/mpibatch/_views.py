"""Lazy columns of a results file: h5py datasets behind a thin numpy-like view.

A :class:`Column` reads only the rows it is indexed with (``col[i]``, ``col[a:b]``,
``col[mask]``, ``col[[3, 1]]``), each read in a file handle opened for that read and
closed after it: no handle stays open between reads, so a notebook's own ``h5py.File``
on the same path (opened before or after) never meets "file locking flag values don't
match", and a running study's writes are seen by the next read. A result column reads
``/tasks/status`` of its rows first and its values after (the writer's order reversed),
so a row read as done holds its value; rows not done read as missing: NaN for floats
and complex, a masked array for everything else (ints, bools, str, bytes, ragged).

Anything else numpy does with a column (``np.asarray(col)``, ufuncs, ``col == 3``,
``col.mean()``, ``col.tolist()``) reads the whole column first, as ``col[:]`` does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from ._say import plural
from .layout import (
    DTYPE_ATTR,
    INNER_SHAPE_ATTR,
    RAGGED_LENGTH,
    RAGGED_START,
    RAGGED_VALUES,
    RESULT_TYPE_ATTR,
    SHAPE_ATTR,
    TASK_STATUS,
    TYPE_BYTES,
    TYPE_FIXED,
    TYPE_RAGGED,
    TYPE_STR,
    Status,
    _open_h5,
    plain,
    values_path,
)

TASK = "task"  # a /tasks or /params column: every row holds a value
_HULL_BYTES = 4 << 20  # rows spread over at most this many bytes are read in one slab
_MAX_RUNS = 64  # more separate runs of rows than this: the span is read in blocks
_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class Meta:
    """What a column is, read once at open: its path, kind, dtype and per-row shape."""

    name: str  # path in the file, e.g. "results/x"
    kind: str  # TASK, or one of the result types of layout.py
    dtype: np.dtype
    shape: tuple  # per row; a ragged column's leading axis is None (any length)
    width: int = 0  # a fixed-width str or bytes column's bytes per string

    def describe(self) -> str:
        """``float64``, ``float64[10]``, ``str``, ``str[5]``, ``ragged float64[*]``."""
        dims = ",".join("*" if d is None else str(d) for d in self.shape)
        base = self.kind if self.kind in (TYPE_STR, TYPE_BYTES) else str(self.dtype)
        base += str(self.width) if self.width else ""
        text = f"{base}[{dims}]" if dims else base
        return f"ragged {text}" if self.kind == TYPE_RAGGED else text


def column_meta(f: h5py.Group, name: str, kind: str | None = None) -> Meta:
    """The Meta of dataset or ragged group ``name`` (e.g. ``"results/x"``) of open file ``f``."""
    node = f[name]
    if kind is None:
        kind = str(plain(node.attrs.get(RESULT_TYPE_ATTR, TYPE_FIXED)))
    if kind == TYPE_RAGGED:
        inner = json.loads(plain(node.attrs[INNER_SHAPE_ATTR]))
        return Meta(name, kind, np.dtype(plain(node.attrs[DTYPE_ATTR])), (None, *inner))
    if isinstance(node, h5py.Group):  # a string key while its run goes: kept in a sidecar
        return Meta(name, kind, np.dtype(object), tuple(json.loads(plain(node.attrs[SHAPE_ATTR]))))
    if kind == TASK and h5py.check_string_dtype(node.dtype) is not None:
        kind = TYPE_STR if h5py.check_string_dtype(node.dtype).encoding == "utf-8" else TYPE_BYTES
        return Meta(name, TASK + kind, np.dtype(object), tuple(node.shape[1:]))
    if kind in (TYPE_STR, TYPE_BYTES):
        width = node.dtype.itemsize if node.dtype.kind == "S" else 0
        return Meta(name, kind, np.dtype(object), tuple(node.shape[1:]), width)
    return Meta(name, kind, node.dtype, tuple(node.shape[1:]))


class Source:
    """A results file by path: each read opens it, reads, and closes it again."""

    def __init__(self, path: str | os.PathLike, n_rows: int) -> None:
        self.path = str(path)
        self.n_rows = n_rows
        self.closed = False

    def read(self, fn: Callable[[h5py.File], Any]) -> Any:
        if self.closed:
            raise ValueError(f"results file '{self.path}' was closed: mpibatch.open it again")
        with _open_h5(self.path) as f:
            return fn(f)


class Column(NDArrayOperatorsMixin):
    """One column of a results file, read lazily (see the module docstring)."""

    def __init__(self, source: Source, meta: Meta, rows: np.ndarray | None = None) -> None:
        self._source, self._meta, self._rows = source, meta, rows

    @property
    def kind(self) -> str:
        return self._meta.kind

    @property
    def shape(self) -> tuple:
        n = self._source.n_rows if self._rows is None else len(self._rows)
        return (n, *self._meta.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._meta.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if None not in self.shape else len(self)

    def describe(self) -> str:
        return self._meta.describe()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if first is Ellipsis:
            first, rest = slice(None), key if isinstance(key, tuple) else ()
        if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            out = self._read(self._file_rows(self._position(int(first))))[0]
            return out[rest] if rest else out
        out = self._read(self._file_rows(first))
        return out[(slice(None),) + tuple(rest)] if rest else out

    def _position(self, i: int) -> np.ndarray:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for a column of {plural(n, 'row')}")
        return np.array([i % n], np.int64)

    def _file_rows(self, key: Any) -> slice | np.ndarray:
        """The file rows ``key`` selects: a slice (contiguous) or an array of row numbers."""
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if self._rows is None and step == 1:
                return slice(start, max(start, stop))
            pos = np.arange(start, stop, step, dtype=np.int64)
        else:
            pos = np.asarray(key)
            if pos.dtype == bool:
                if pos.shape != (n,):
                    got = f"got shape {pos.shape}"
                    raise IndexError(f"expected a boolean mask of {plural(n, 'row')}, {got}")
                pos = np.flatnonzero(pos)
            elif pos.dtype.kind not in "iu":
                raise IndexError(f"expected rows as int, slice or bool mask, got {pos.dtype}")
            pos = pos.astype(np.int64).ravel()
            if pos.size and (pos.min() < -n or pos.max() >= n):
                raise IndexError(f"row index out of bounds for a column of {plural(n, 'row')}")
            pos = pos % max(n, 1)
        return pos if self._rows is None else self._rows[pos]

    def _read(self, rows: slice | np.ndarray) -> Any:
        meta = self._meta
        if isinstance(rows, np.ndarray):
            uniq, inverse = np.unique(rows, return_inverse=True)
            if len(uniq) != len(rows) or (rows[:-1] > rows[1:]).any():
                return self._read(uniq)[inverse.ravel()]

        def read(f: h5py.File) -> Any:
            if meta.kind.startswith(TASK):
                return _take(f[meta.name], rows, _reader(meta.kind))
            status = _take(f[TASK_STATUS.path], rows, _reader(TASK))
            left = status != Status.DONE
            node = f[meta.name]
            if _in_sidecar(f, meta.name):
                return _missing(_sidecar(f, meta, rows, left), left)
            if meta.kind == TYPE_RAGGED:
                return _missing(_ragged(node, rows, left), left)
            return _missing(_take(node, rows, _reader(meta.kind)), left)

        return self._source.read(read)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[:], dtype=dtype)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if any(isinstance(o, Column) for o in kwargs.get("out", ())):
            return NotImplemented
        args = [x[:] if isinstance(x, Column) else x for x in inputs]
        return getattr(ufunc, method)(*args, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return func(*_loaded(args), **{k: _loaded(v) for k, v in kwargs.items()})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self[:], name)  # tolist, mask, mean, all, astype...: numpy's, on all rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self[:])

    def __bool__(self) -> bool:
        return bool(self[:])

    def __repr__(self) -> str:
        return f"<mpibatch column {self._meta.name}: {self.describe()}, {len(self)} rows (lazy)>"


def _loaded(x: Any) -> Any:
    if isinstance(x, Column):
        return x[:]
    if isinstance(x, (list, tuple)):
        return type(x)(_loaded(v) for v in x)
    return x


def _reader(kind: str) -> Callable[[h5py.Dataset, slice], np.ndarray]:
    """How a slab of rows of a dataset of ``kind`` is read: strings as Python objects."""
    if kind in (TYPE_STR, TASK + TYPE_STR):
        return lambda ds, sl: np.asarray(ds.asstr()[sl], dtype=object)
    if kind in (TYPE_BYTES, TASK + TYPE_BYTES):
        return _bytes
    return lambda ds, sl: ds[sl]


def _bytes(ds: h5py.Dataset, sl: slice) -> np.ndarray:
    """Bytes rows: variable length (uint8 sequences, as NUL is kept) or fixed width."""
    raw = ds[sl]
    out = np.empty(raw.shape, dtype=object)
    out.reshape(-1)[:] = [
        np.asarray(v).tobytes() if raw.dtype == object else bytes(v) for v in raw.reshape(-1)
    ]
    return out


def _take(ds: h5py.Dataset, rows: slice | np.ndarray, slab: Callable) -> np.ndarray:
    """Rows ``rows`` (a slice, or sorted unique row numbers) of ``ds``, reading little more."""
    if isinstance(rows, slice):
        return slab(ds, rows)
    if rows.size == 0:
        return slab(ds, slice(0, 0))
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    row_bytes = max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64)))
    if (hi - lo) * row_bytes <= _HULL_BYTES or hi - lo <= 2 * rows.size:
        return slab(ds, slice(lo, hi))[rows - lo]
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
    if len(cuts) < _MAX_RUNS:
        runs = np.split(rows, cuts)
        return np.concatenate([slab(ds, slice(int(r[0]), int(r[-1]) + 1)) for r in runs])
    step = max(1, _BLOCK_BYTES // row_bytes)
    parts = []
    for a in range(lo, hi, step):  # many runs: block by block, each from its first row to its last
        inside = rows[(rows >= a) & (rows < a + step)]
        if inside.size:
            b0 = int(inside[0])
            parts.append(slab(ds, slice(b0, int(inside[-1]) + 1))[inside - b0])
    return np.concatenate(parts)


def _in_sidecar(f: h5py.File, name: str) -> bool:
    """Whether a key's values wait in the sidecar of a running (or killed) study."""
    node = f[name]
    if not isinstance(node, h5py.Group):
        return False
    return RAGGED_VALUES not in node or values_path(f.filename, name.split("/", 1)[1]).is_file()


def _sidecar(f: h5py.File, meta: Meta, rows: slice | np.ndarray, left: np.ndarray) -> np.ndarray:
    """Rows of a key kept in the sidecar, read by the writer's own reader (_ragged.py)."""
    from ._ragged import read_values

    if isinstance(rows, slice):
        rows = np.arange(rows.start, rows.stop, dtype=np.int64)
    got = read_values(f, meta.name.split("/", 1)[1], rows[~left])
    ragged = meta.kind == TYPE_RAGGED
    out = np.empty((len(rows), *meta.shape[int(ragged) :]), dtype=object)
    for i, v in zip(np.flatnonzero(~left), got, strict=True):
        out[i] = np.array(v) if ragged else v
    return out


def _ragged(group: h5py.Group, rows: slice | np.ndarray, left: np.ndarray) -> np.ndarray:
    """Each row's value as an array (``values[start:start+length]``), None where missing."""
    plain = _reader(TASK)
    start = _take(group[RAGGED_START], rows, plain)
    length = _take(group[RAGGED_LENGTH], rows, plain)
    values = group[RAGGED_VALUES]
    out = np.empty(len(start), dtype=object)
    ok = ~left & (start >= 0) & (length >= 0)
    if not ok.any():
        return out
    lo, hi = int(start[ok].min()), int((start[ok] + length[ok]).max())
    row_bytes = max(1, values.dtype.itemsize * int(np.prod(values.shape[1:], dtype=np.int64)))
    if (hi - lo) * row_bytes <= _HULL_BYTES or hi - lo <= 2 * int(length[ok].sum()):
        block = values[lo:hi]
        for i in np.flatnonzero(ok):
            a = int(start[i]) - lo
            out[i] = block[a : a + int(length[i])].copy()
    else:  # rows far apart in a large file: each read alone
        for i in np.flatnonzero(ok):
            out[i] = values[int(start[i]) : int(start[i]) + int(length[i])]
    return out


def _missing(arr: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Rows without a result (pending or failed) as missing values, never as 0 or False.

    Floats and complex read as NaN; integers, bools, strings and ragged rows (object
    arrays, None where missing) as a masked array.
    """
    if arr.dtype.kind in "fc":
        arr[left] = np.nan
        return arr
    if arr.dtype.kind == "O":
        arr[left] = None
    mask = np.broadcast_to(left.reshape((-1,) + (1,) * (arr.ndim - 1)), arr.shape)
    return np.ma.MaskedArray(arr, mask=mask.copy())
