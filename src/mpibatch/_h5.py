"""The results file's HDF5 building blocks: access properties, preallocated datasets.

Every dataset a run writes is contiguous and allocated when it is created (no metadata
change while tasks run; see store.py), and written in pieces.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from . import _ragged, _tail
from ._dtypes import VARIABLE
from ._records import Field
from .layout import (
    DTYPE_ATTR,
    INNER_SHAPE_ATTR,
    MISSING_ATTR,
    MISSING_NOTE_TAIL,
    RAGGED_LENGTH,
    RAGGED_START,
    RESULT_TYPE_ATTR,
    SHAPE_ATTR,
    TYPE_FIXED,
)

# Bytes per write call for results. One big pwrite into the page cache ran 2-5x slower than
# the same bytes in 1 MiB pieces on ext4 here (Linux 6.18, which gives big writes large
# folios; a VM that hands freed memory back to its host); elsewhere a piece costs one h5py
# call (~30 us per MiB), and HDF5 itself writes chunked data a chunk at a time.
WRITE_PIECE = 1 << 20


def fapl(align: int = 0):
    """File access: no sieve buffer, so raw writes reach the OS in program order; HDF5's
    file locking off, so that a plain ``h5py.File(path, "r")`` opens the file while a run
    writes it (mpibatch's own ``<out>.lock`` keeps a second run out: _output.py), and so
    that file systems without ``flock`` (HDF5's errno 38 on some Lustre and NFS mounts)
    can hold the file.

    ``align``: objects of _tail.THRESHOLD bytes or more go at a multiple of it (_tail.py).
    """
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_sieve_buf_size(0)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    fapl.set_file_locking(False, False)  # as h5py's locking=False (h5py >= 3.5)
    if align:
        fapl.set_alignment(_tail.THRESHOLD, align)
    return fapl


def open_file(path: Path, align: int = 0) -> h5py.File:
    """An existing results file, to write (``align``: see :func:`fapl`)."""
    return h5py.File(h5py.h5f.open(os.fsencode(str(path)), h5py.h5f.ACC_RDWR, fapl=fapl(align)))


def create_file(path: Path) -> h5py.File:
    """A new file at ``path``, which must not exist: made with ``O_EXCL | O_NOFOLLOW`` first
    (HDF5 itself follows links), then checked to be the file HDF5 opened."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        f = h5py.File(h5py.h5f.create(os.fsencode(str(path)), h5py.h5f.ACC_TRUNC, fapl=fapl()))
        if identity(f) != _ident(os.fstat(fd)):
            f.close()
            raise OSError(f"'{path}' was replaced while it was created")
        return f
    finally:
        os.close(fd)


def identity(f: h5py.File) -> tuple[int, int]:
    """(st_dev, st_ino) of the file ``f`` has open (its own descriptor, not its path)."""
    return _ident(os.fstat(f.id.get_vfd_handle()))


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def dataset(
    group: h5py.Group, name: str, shape: tuple, dtype, fill=None, prefill: bool = True
) -> h5py.Dataset:
    """A contiguous dataset whose space is allocated now, so writes never change metadata.

    With ``fill`` (and ``prefill``) the space is filled at creation; else it is left as
    the file system gives it (zeros), which keeps creating gigabytes of results instant,
    and ``fill`` is only the fill value HDF5 reports.
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return group.create_dataset(
        name,
        shape=shape,
        dtype=dtype,
        dcpl=dcpl,
        fillvalue=fill,
        fill_time="alloc" if fill is not None and prefill else "never",
    )


def param_dtype(column: np.ndarray):
    if column.dtype.kind == "U":
        width = max(1, int(np.char.str_len(np.char.encode(column, "utf-8")).max()))
        return h5py.string_dtype("utf-8", width)
    return column.dtype


def field(key: str, obj: h5py.Dataset | h5py.Group) -> Field:
    """The schema field of a result already in a file (``--resume``)."""
    kind = _ragged.result_type(obj)
    if kind == TYPE_FIXED:
        return Field(key, obj.dtype, obj.shape[1:])
    _, dtype, shape = _ragged.describe_key(obj)
    if kind == "ragged":
        return Field(key, np.dtype(dtype), shape, kind=kind)
    width = obj.dtype.itemsize if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "S" else 0
    return Field(key, np.dtype(f"S{width}") if width else VARIABLE, shape, kind=kind)


def string_dtype(fld: Field):
    """A fixed-width str or bytes key's HDF5 dtype."""
    return h5py.string_dtype("utf-8" if fld.kind == "str" else "ascii", fld.dtype.itemsize)


def add_tail_key(group: h5py.Group, fld: Field, n: int) -> None:
    """A ragged or variable-length string key: a group of start and length columns."""
    g = group.create_group(fld.key)
    g.attrs[RESULT_TYPE_ATTR] = fld.kind
    if fld.kind == "ragged":
        g.attrs[DTYPE_ATTR] = str(fld.dtype)
        g.attrs[INNER_SHAPE_ATTR] = json.dumps(list(fld.shape))
    else:
        g.attrs[SHAPE_ATTR] = json.dumps(list(fld.shape))
    g.attrs[MISSING_ATTR] = MISSING_NOTE_TAIL
    for name in (RAGGED_START, RAGGED_LENGTH):
        dataset(g, name, (n,), np.int64, -1)


def write_pieces(ds: h5py.Dataset, row: int, arr: np.ndarray) -> None:
    """``ds[row : row + len(arr)] = arr`` in pieces of about ``WRITE_PIECE`` bytes."""
    n = len(arr)
    step = max(1, WRITE_PIECE // max(1, arr.nbytes // n))
    for a in range(0, n, step):
        b = min(n, a + step)
        ds[row + a : row + b] = arr[a:b]
