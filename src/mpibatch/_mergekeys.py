"""Merging the ragged and string results of a job array's parts (see merge.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ._ragged import string_dtype
from ._records import Field
from ._tail import TAIL_ATTR
from ._views import column_meta
from .layout import (
    RAGGED_LENGTH,
    RAGGED_START,
    RAGGED_VALUES,
    RESULTS,
    SHAPE_ATTR,
    TASK_STATUS,
    TYPE_FIXED,
    TYPE_RAGGED,
    TYPE_STR,
    Status,
    open_file,
)
from .results import Results

if TYPE_CHECKING:
    from .merge import _Part


@dataclass(frozen=True)
class KeyType:
    """A result key of a part: its kind, its type as ``mpibatch info`` shows it, its dtype."""

    key: str
    kind: str
    text: str
    dtype: Any  # the HDF5 dataset's (ragged: the values'), so fixed and variable width differ
    shape: tuple  # per task; ragged: (None, *inner)

    @property
    def field(self) -> Field | None:
        """The Field that Store.add_results takes, for a fixed-shape key (else None)."""
        return Field(self.key, self.dtype, self.shape) if self.kind == TYPE_FIXED else None


def key_type(f, key: str) -> KeyType:
    meta = column_meta(f, f"{RESULTS}/{key}")
    node = f[RESULTS][key]
    dtype = node.dtype if isinstance(node, h5py.Dataset) else meta.dtype
    return KeyType(key, meta.kind, meta.describe(), dtype, meta.shape)


def describe(schema: tuple) -> str:
    return ", ".join(f"{t.key}: {t.text}" for t in schema)


_TAIL_ROWS = 4096  # rows of a ragged or string key copied at a time


def merge_key(results: h5py.Group, t: KeyType, parts: list[_Part], ids: range) -> None:
    """A ragged or string key of the parts, written in its closed layout (see layout.py).

    Each part's rows are read as ``mpibatch.open`` reads them (any state: closed, or
    killed with its values in a sidecar); ragged values are concatenated part after part,
    each part's starts shifted by the values before it.
    """
    first = next(p for p in parts if any(k.key == t.key for k in p.schema))
    with open_file(first.path) as src:
        attrs = dict(src[RESULTS][t.key].attrs)
    if t.kind == TYPE_RAGGED:
        group = results.create_group(t.key)
        starts = group.create_dataset(RAGGED_START, (len(ids),), np.int64, fillvalue=-1)
        lengths = group.create_dataset(RAGGED_LENGTH, (len(ids),), np.int64, fillvalue=-1)
        values = group.create_dataset(
            RAGGED_VALUES, (_done_length(parts, t.key), *t.shape[1:]), t.dtype
        )
        node: Any = group
    else:
        node = results.create_dataset(t.key, (len(ids), *t.shape), _string_dtype(t))
    node.attrs.update({k: v for k, v in attrs.items() if k not in (SHAPE_ATTR, TAIL_ATTR)})
    at = 0
    for p in parts:
        if not any(k.key == t.key for k in p.schema):
            continue
        col, base = Results(p.path).results[t.key], p.ids.start - ids.start
        for a in range(0, len(p.ids), _TAIL_ROWS):
            rows = col[a : a + _TAIL_ROWS]
            out = slice(base + a, base + a + len(rows))
            if t.kind != TYPE_RAGGED:
                node[out] = _strings(rows, node.dtype, t.kind)
                continue
            done = ~np.ma.getmaskarray(rows)
            n = np.array([len(v) if ok else -1 for v, ok in zip(rows.data, done, strict=True)])
            starts[out] = np.where(done, at + np.cumsum(np.maximum(n, 0)) - np.maximum(n, 0), -1)
            lengths[out] = n
            if done.any():
                chunk = np.concatenate([v for v, ok in zip(rows.data, done, strict=True) if ok])
                values[at : at + len(chunk)] = chunk
                at += len(chunk)


def _done_length(parts: list[_Part], key: str) -> int:
    """How many value rows a ragged key's done tasks hold in all parts together."""
    total = 0
    for p in parts:
        with open_file(p.path) as src:
            if key in src.get(RESULTS, {}):
                length = src[RESULTS][key][RAGGED_LENGTH][()]
                done = src[TASK_STATUS.path][()] == Status.DONE
                total += int(length[done & (length >= 0)].sum())
    return total


def _string_dtype(t: KeyType) -> Any:
    """A string key's dataset dtype: the parts' (a running part's: the closed one's)."""
    if h5py.check_string_dtype(t.dtype) or h5py.check_vlen_dtype(t.dtype):
        return t.dtype
    return string_dtype(t.kind)


def _strings(rows: np.ndarray, dtype: np.dtype, kind: str) -> np.ndarray:
    """Rows of a string key as the dataset takes them: missing rows empty."""
    data = np.ma.getdata(rows).copy()
    data[np.ma.getmaskarray(rows)] = "" if kind == TYPE_STR else b""
    flat = data.reshape(-1)
    if dtype.kind == "S":  # fixed width: encoded bytes
        return np.asarray([v.encode() if isinstance(v, str) else v for v in flat], dtype).reshape(
            data.shape
        )
    if kind != TYPE_STR:  # variable-length bytes: uint8 sequences
        flat[:] = [np.frombuffer(v, np.uint8) for v in flat]
    return data
