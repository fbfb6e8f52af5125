"""Ragged arrays and variable-length strings in a results file: their sidecar and readers.

Why a sidecar: a results file is kill-safe because every dataset is contiguous and
allocated when it is created, and a run only writes raw bytes into it (no metadata
change; see /work/shared notes and README "The results file"). Values whose size is
not known in advance would need resizable datasets or HDF5's global heap (metadata),
which tore in kill trials. So while a run goes they are appended to a raw file beside
the results file, ``<file>.values/<key>.bin`` (:func:`layout.values_path`), and only
where each task's value starts and how long it is goes into the file, as two
preallocated contiguous ``(n,) int64`` columns written after the bytes and before the
status. Closing the file moves the sidecar in; while the sidecar exists it is the truth.
The first ragged key of a fresh run writes the same bytes into the results file's own
tail instead, which the close adopts in place, without a copy (_tail.py).

In the file, ``/results/<key>`` of such a key is a group (``start``, ``length``, and
``values`` once closed for ragged keys); a variable-length string key becomes a plain
``(n, *shape)`` string dataset when the file closes. :func:`read_values` reads both
states. A string key's sidecar record per task: ``count`` int64 byte lengths, then the
encoded strings one after the other (``count`` = the number of strings of the value).
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _tail
from .layout import (
    DTYPE_ATTR,
    INNER_SHAPE_ATTR,
    MISSING_ATTR,
    MISSING_NOTE_STR,
    MISSING_NOTE_TAIL,
    RAGGED_LENGTH,
    RAGGED_START,
    RAGGED_VALUES,
    RESULT_TYPE_ATTR,
    SHAPE_ATTR,
    TYPE_BYTES,
    TYPE_FIXED,
    TYPE_RAGGED,
    TYPE_STR,
    plain,
    values_path,
)

if TYPE_CHECKING:  # workers import encode() without h5py: only rank 0 writes files
    import h5py

_ROWS_AT_ONCE = 1 << 16  # rows of strings decoded at a time when a file closes
_COPY_BYTES = 64 << 20  # bytes of ragged values copied at a time when a file closes
CLOSING = "_closing"  # a string key's dataset while it is written at close (see move_in)
_PIECE = 1 << 20  # bytes per write call (big writes into the page cache ran slower here)


def result_type(obj: h5py.Group | h5py.Dataset) -> str:
    """The kind of a ``/results/<key>``: "fixed", "str", "bytes" or "ragged"."""
    return str(plain(obj.attrs.get(RESULT_TYPE_ATTR, TYPE_FIXED)))


def describe_key(obj: h5py.Group | h5py.Dataset) -> tuple[str, str, tuple[int, ...]]:
    """(kind, dtype, shape) of a ``/results/<key>``; ragged: the inner shape of a row."""
    import h5py

    kind = result_type(obj)
    if isinstance(obj, h5py.Dataset):
        dtype = kind if kind in (TYPE_STR, TYPE_BYTES) else str(obj.dtype)
        if kind in (TYPE_STR, TYPE_BYTES) and obj.dtype.kind == "S":
            dtype = f"{kind}{obj.dtype.itemsize}"
        return kind, dtype, tuple(obj.shape[1:])
    if kind == TYPE_RAGGED:
        return kind, str(plain(obj.attrs[DTYPE_ATTR])), _shape(obj, INNER_SHAPE_ATTR)
    return kind, kind, _shape(obj, SHAPE_ATTR)


def _shape(obj: h5py.Group, attr: str) -> tuple[int, ...]:
    return tuple(json.loads(plain(obj.attrs[attr])))


def _rows(n: int, rows: Any) -> np.ndarray:
    if rows is None:
        return np.arange(n)
    idx = np.asarray(rows)
    return np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64).ravel()


def read_values(
    f: h5py.File | h5py.Group, key: str, rows: Any = None, path: os.PathLike | None = None
) -> list:
    """One value per requested row of result ``key`` (None where a row has none).

    Works on a closed file, a running one and a killed one: a group's side file, if
    present, is the truth; a string key that is a dataset is closed and complete.
    ``rows``: None (all), indices or a boolean mask. Ragged rows come back as arrays
    ``(length, *inner)``; strings as str (bytes keys: bytes), or an object array of them
    for a key with a shape. Rows whose status is not done may hold anything: mask by
    ``/tasks/status``. ``path``: the results file's (default: ``f``'s file name).
    """
    import h5py

    root = f.file
    obj = root["results"][key]
    kind = result_type(obj)
    if isinstance(obj, h5py.Dataset):  # a closed string key (or a fixed one)
        return _read_dataset(obj, _rows(obj.shape[0], rows), kind)
    start, length = obj[RAGGED_START], obj[RAGGED_LENGTH]
    idx = _rows(start.shape[0], rows)
    starts, lengths = start[()][idx], length[()][idx]
    raw = _source(path or root.filename, obj, kind, key)
    if kind == TYPE_RAGGED:
        return [
            None if n < 0 else np.array(raw[s : s + n])
            for s, n in zip(starts, lengths, strict=True)
        ]
    shape = _shape(obj, SHAPE_ATTR)
    return [
        None if n < 0 else decode(bytes(raw[s : s + n]), shape, kind)
        for s, n in zip(starts, lengths, strict=True)
    ]


def _read_dataset(ds: h5py.Dataset, idx: np.ndarray, kind: str) -> list:
    """Rows ``idx`` of a dataset; strings as str, bytes as bytes (object arrays if shaped)."""
    uniq, inverse = np.unique(idx, return_inverse=True)
    data = np.asarray(ds[uniq] if uniq.size else ds[0:0])
    if kind in (TYPE_STR, TYPE_BYTES):
        flat = np.empty(data.size, object)
        flat[:] = [_text(v, kind) for v in data.reshape(-1)]
        data = flat.reshape(data.shape)
    return [data[i] for i in inverse.reshape(-1)]


def _text(v: Any, kind: str) -> str | bytes:
    """One element of a string dataset as str (a str key) or bytes."""
    if isinstance(v, np.ndarray):  # variable-length bytes: uint8 arrays
        v = v.tobytes()
    return v.decode("utf-8") if kind == TYPE_STR and isinstance(v, bytes) else v


def string_dtype(kind: str) -> Any:
    """The HDF5 dtype of a closed variable-length str key (UTF-8) or bytes key (uint8 arrays:
    HDF5 strings cannot hold NUL bytes)."""
    import h5py

    if kind == TYPE_STR:
        return h5py.string_dtype("utf-8")
    return h5py.vlen_dtype(np.dtype(np.uint8))


def _source(results: os.PathLike | str, obj: h5py.Group, kind: str, key: str):
    """The values of a group key: the sidecar (as a memory map) if present, else ``values``."""
    path = values_path(results, key)
    if kind == TYPE_RAGGED:
        dtype, inner = np.dtype(plain(obj.attrs[DTYPE_ATTR])), _shape(obj, INNER_SHAPE_ATTR)
    else:
        dtype, inner = np.dtype(np.uint8), ()
    if not path.is_file() and kind == TYPE_RAGGED and (x := _tail.tail_at(obj)):
        return _tail.source(results, obj, x)
    if path.is_file():
        size = path.stat().st_size
        row = dtype.itemsize * math.prod(inner)
        m = size // row if row else 0
        if m == 0:
            return np.empty((0, *inner), dtype)
        return np.memmap(path, dtype=dtype, mode="r", shape=(m, *inner))
    if RAGGED_VALUES in obj:
        return obj[RAGGED_VALUES]
    return np.empty((0, *inner), dtype)


def encode(raw: list[bytes]) -> bytes:
    """The encoded strings of one value (flat) as a sidecar record."""
    return np.asarray([len(r) for r in raw], np.int64).tobytes() + b"".join(raw)


def decode(record: bytes, shape: tuple[int, ...], kind: str) -> Any:
    """A sidecar record back as str (bytes), or an object array of ``shape`` of them."""
    count = math.prod(shape)
    lens = np.frombuffer(record[: 8 * count], np.int64).tolist()
    at, items = 8 * count, []
    for n in lens:
        piece = record[at : at + n]
        items.append(piece.decode("utf-8") if kind == TYPE_STR else piece)
        at += n
    if not shape:
        return items[0]
    out = np.empty(count, dtype=object)
    out[:] = items
    return out.reshape(shape)


class Sidecar:
    """The append-only values file of one key, as rank 0 writes it during a run."""

    def __init__(self, path: os.PathLike, unit: int, end: int | None = None, base: int = 0) -> None:
        """``unit``: bytes per row of values (1 for strings); ``end``: bytes to keep (resume);
        ``base``: where the values start in the file (the results file's tail: _tail.py)."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if end is not None:
            os.ftruncate(self.fd, base + end)
        self.size = os.lseek(self.fd, 0, os.SEEK_END) - base
        self.unit, self.base = unit, base

    def append(self, data: np.ndarray) -> int:
        """Append ``data`` (bytes); returns the row where it starts."""
        at = self.size
        view = memoryview(np.ascontiguousarray(data).view(np.uint8).ravel().data)
        while view.nbytes:  # in pieces (see _h5.WRITE_PIECE); pwrite may write less
            done = os.pwrite(self.fd, view[:_PIECE], self.base + self.size)
            self.size += done
            view = view[done:]
        return at // self.unit

    def close(self) -> None:
        os.close(self.fd)


def move_in(group: h5py.Group, key: str, n: int, results: os.PathLike) -> None:
    """Move ``key``'s sidecar into the file ``results`` (closing it), then remove it."""
    import h5py

    path = values_path(results, key)
    obj = group[key]
    kind = result_type(obj)
    if not path.is_file():
        return
    if isinstance(obj, h5py.Dataset):  # a string key closed before a kill: it is the truth
        pass
    elif kind == TYPE_RAGGED:
        _move_ragged(obj, path, results)
    else:
        _move_strings(group, key, n, path)
    group.file.flush()
    path.unlink()
    try:
        path.parent.rmdir()
    except OSError:
        pass  # other keys' sidecars still there


def _move_ragged(obj: h5py.Group, path: os.PathLike, results: os.PathLike) -> None:
    """The sidecar's bytes into a new contiguous ``values`` dataset of file ``results``.

    The dataset is allocated and flushed first; then the bytes go straight to its place
    in the file, by the kernel (``copy_file_range``), without passing through Python.
    """
    from ._h5 import dataset as _dataset

    dtype, inner = np.dtype(plain(obj.attrs[DTYPE_ATTR])), _shape(obj, INNER_SHAPE_ATTR)
    row = dtype.itemsize * math.prod(inner)
    m = os.path.getsize(path) // row if row else 0
    if RAGGED_VALUES in obj:  # a kill during an earlier close: the sidecar is the truth
        del obj[RAGGED_VALUES]
    ds = _dataset(obj, RAGGED_VALUES, (m, *inner), dtype)
    obj.file.flush()
    offset = ds.id.get_offset()
    if offset is None or m == 0:
        return
    src, dst = os.open(path, os.O_RDONLY), os.open(results, os.O_WRONLY)
    try:
        _copy(src, dst, m * row, offset)
    finally:
        os.close(src)
        os.close(dst)


def _copy(src: int, dst: int, nbytes: int, offset: int) -> None:
    """``nbytes`` from the start of ``src`` to ``offset`` in ``dst``."""
    try:  # the blocks reserved at once: the copy then ran ~25% faster here
        os.posix_fallocate(dst, offset, nbytes)
    except (AttributeError, OSError):
        pass  # not supported here: the copy allocates as it goes
    _tail.copy_bytes(src, dst, nbytes, 0, offset)


def _move_strings(group: h5py.Group, key: str, n: int, path: os.PathLike) -> None:
    obj = group[key]
    kind, shape = result_type(obj), _shape(obj, SHAPE_ATTR)
    attrs = {k: v for k, v in obj.attrs.items() if k != SHAPE_ATTR}
    starts, lengths = obj[RAGGED_START][()], obj[RAGGED_LENGTH][()]
    raw = np.memmap(path, np.uint8, "r") if os.path.getsize(path) else np.empty(0, np.uint8)
    empty: Any = "" if kind == TYPE_STR else np.empty(0, np.uint8)
    rows = []
    for s, k in zip(starts.tolist(), lengths.tolist(), strict=True):
        if k >= 0:
            value = decode(bytes(raw[s : s + k]), shape, kind)
            if kind == TYPE_BYTES:
                value = _uint8(value, shape)
            rows.append(value)
        else:
            rows.append(_filled(shape, empty))
    del raw
    if CLOSING in obj:  # a kill during an earlier close
        del obj[CLOSING]
    ds = obj.create_dataset(CLOSING, (n, *shape), string_dtype(kind))  # beside start, length
    ds.attrs.update(attrs)
    ds.attrs[MISSING_ATTR] = MISSING_NOTE_STR
    for a in range(0, n, _ROWS_AT_ONCE):
        b = min(n, a + _ROWS_AT_ONCE)
        block = np.empty((b - a, *shape), object)
        for i in range(a, b):
            block[i - a] = rows[i]
        ds[a:b] = block
    group.file.flush()  # complete before it replaces the group (one flush of a few links)
    group.file.move(ds.name, "/" + CLOSING)
    del group[key]
    group.file.move("/" + CLOSING, f"{group.name}/{key}")


def _filled(shape: tuple[int, ...], value: Any) -> Any:
    """``value`` (a missing row's), or an object array of ``shape`` of it."""
    if not shape:
        return value
    out = np.empty(math.prod(shape), object)
    for i in range(out.size):
        out[i] = value
    return out.reshape(shape)


def _uint8(value: Any, shape: tuple[int, ...]) -> Any:
    """Bytes (or an object array of them) as uint8 arrays, as a vlen uint8 dataset takes."""
    if not shape:
        return np.frombuffer(value, np.uint8)
    out = np.empty(math.prod(shape), object)
    for i, v in enumerate(value.reshape(-1)):
        out[i] = np.frombuffer(v, np.uint8)
    return out.reshape(shape)


def move_out(group: h5py.Group, key: str, n: int, results: os.PathLike) -> None:
    """The reverse of :func:`move_in` (``--resume`` of a closed file): values to a sidecar.

    A ragged key's ``values`` go back to the sidecar (unless one is there: it is the
    truth) and the dataset is deleted; a string dataset becomes a group of start and
    length columns again, its strings records in the sidecar.
    """
    from ._h5 import dataset as _dataset

    path = values_path(results, key)
    path.parent.mkdir(exist_ok=True)
    obj = group[key]
    kind = result_type(obj)
    if kind == TYPE_RAGGED:
        if not path.is_file():
            _dump(obj[RAGGED_VALUES], path)
        del obj[RAGGED_VALUES]
        return
    shape = tuple(obj.shape[1:])
    attrs = {k: v for k, v in obj.attrs.items() if k != MISSING_ATTR}
    status = group.file["tasks/status"][()]
    starts, lengths = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    with open(path, "wb") as fh:
        at = 0
        for a in range(0, n, _ROWS_AT_ONCE):
            b = min(n, a + _ROWS_AT_ONCE)
            block = obj[a:b]
            for i in np.flatnonzero(status[a:b] == 1):
                items = [block[i]] if not shape else list(np.asarray(block[i]).reshape(-1))
                record = encode([_raw(v) for v in items])
                fh.write(record)
                starts[a + i], lengths[a + i] = at, len(record)
                at += len(record)
    del group[key]
    g = group.create_group(key)
    g.attrs.update(attrs)
    g.attrs[SHAPE_ATTR] = json.dumps(list(shape))
    g.attrs[MISSING_ATTR] = MISSING_NOTE_TAIL
    for name, col in ((RAGGED_START, starts), (RAGGED_LENGTH, lengths)):
        ds = _dataset(g, name, (n,), np.int64, -1)
        ds[:] = col


def _raw(v: Any) -> bytes:
    """An element of a string dataset as it is encoded in a sidecar record."""
    if isinstance(v, np.ndarray):
        return v.tobytes()
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def _dump(ds: h5py.Dataset, path: os.PathLike) -> None:
    """A dataset's rows, raw, into a new file (bounded memory)."""
    m = ds.shape[0]
    row = ds.dtype.itemsize * math.prod(ds.shape[1:])
    step = max(1, _COPY_BYTES // max(1, row))
    with open(path, "wb") as fh:
        for a in range(0, m, step):
            fh.write(np.ascontiguousarray(ds[a : min(m, a + step)]).tobytes())
