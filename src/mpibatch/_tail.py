"""One ragged key's values written once, in the results file's own tail, and adopted at close.

A ragged key's values have no size known in advance, so the file cannot hold a dataset
for them while tasks run without changing metadata (which a kill can tear). Copying a
side file in at close costs a second pass over every byte. So the first ragged key of a
fresh run has its values appended to the results file itself, past everything HDF5 has
allocated, from a place ``X`` recorded in the key's ``tail_at`` attribute before its
first value lands:

- choosing ``X``: the file is flushed, ``X`` is the first MiB boundary at least
  :data:`SLACK` past HDF5's end of allocation, and the file is closed and reopened with
  HDF5's alignment set to ``X`` for objects of :data:`THRESHOLD` bytes or more. Closing
  first releases HDF5's free-space aggregators; nothing is allocated while tasks run, so
  HDF5 never truncates the file back to its end of allocation (it does that only when the
  two differ in its own accounting) and never writes past ``X``;
- adopting at close (:func:`adopt`): the contiguous ``values`` dataset is created, and with
  that alignment HDF5 places it exactly at ``X`` (checked), over the bytes already there.
  Values under :data:`THRESHOLD` bytes are not aligned: they are read first and written.
  Then the file is reopened without the alignment for the rest of the close;
- while the run goes or after a kill, readers find the values at ``X`` (:func:`source`);
  plain h5py opens the file read-only as ever (bytes past HDF5's end are ignored);
- ``--resume`` first moves a killed run's tail into the key's side file and cuts the file
  at ``X`` (:func:`evacuate`), before HDF5 opens it for writing (which would cut it at its
  own end), and goes on with the side file.

Other ragged and string keys keep their side files (see _ragged.py).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._say import plural
from .layout import DTYPE_ATTR, INNER_SHAPE_ATTR, RAGGED_VALUES, RESULTS, plain, values_path

if TYPE_CHECKING:
    import h5py

TAIL_ATTR = "tail_at"  # a ragged group's attribute: where its values start in the file
SLACK = 256 << 10  # room for what the close allocates before the values (a few headers)
THRESHOLD = 1 << 20  # values at least this big are placed by alignment, without a copy
_MIB = 1 << 20
_PIECE = 64 << 20  # bytes copied by one call


def place(allocated: int) -> int:
    """Where the tail starts in a file whose HDF5 allocation ends at ``allocated``."""
    return (allocated + SLACK + _MIB - 1) // _MIB * _MIB


def row_bytes(group: h5py.Group) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, inner shape, bytes per row) of a ragged group."""
    import json

    dtype = np.dtype(plain(group.attrs[DTYPE_ATTR]))
    inner = tuple(json.loads(plain(group.attrs[INNER_SHAPE_ATTR])))
    return dtype, inner, dtype.itemsize * math.prod(inner)


def tail_at(group: h5py.Group) -> int | None:
    """``X`` of a group whose values wait in the file's tail, else None."""
    if TAIL_ATTR not in group.attrs or RAGGED_VALUES in group:
        return None
    return int(group.attrs[TAIL_ATTR]) or None


def source(path: str | os.PathLike, group: h5py.Group, x: int) -> np.ndarray:
    """The tail's values as a read-only memory map (rows written so far)."""
    dtype, inner, row = row_bytes(group)
    m = max(0, os.path.getsize(path) - x) // row if row else 0
    if m == 0:
        return np.empty((0, *inner), dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=x, shape=(m, *inner))


def adopt(group: h5py.Group, path: os.PathLike, x: int, nbytes: int) -> None:
    """Make ``nbytes`` of values at ``x`` the group's ``values`` dataset.

    The file must be open with alignment ``x`` (see the module's docstring); HDF5's end
    of allocation must not have passed ``x`` (nothing allocates during a run).
    """
    from ._h5 import dataset as _dataset

    dtype, inner, row = row_bytes(group)
    m = nbytes // row if row else 0
    allocated = group.file.id.get_filesize()
    if allocated > x:
        raise RuntimeError(f"mpibatch: HDF5 allocated past the values' tail ({allocated} > {x})")
    small = None
    if m * row < THRESHOLD:  # not aligned by HDF5: read first, written below
        small = _read(path, x, m * row)
    ds = _dataset(group, RAGGED_VALUES, (m, *inner), dtype)
    group.file.flush()
    at = ds.id.get_offset()
    if m and at is not None:
        if small is not None:
            _write(path, int(at), small)
        elif at != x:  # not expected: move the bytes where HDF5 put the dataset
            _move(path, x, int(at), m * row)
    forget(group)


def forget(group: h5py.Group) -> None:
    """The group's values are no longer in the tail: its ``X`` goes (the file may grow past
    it from now on, and :func:`evacuate` would cut it there)."""
    if TAIL_ATTR in group.attrs:
        del group.attrs[TAIL_ATTR]
        group.file.flush()


def evacuate(path: Path) -> None:
    """A killed run's tail into its key's side file, and the file cut at ``X`` (resume).

    The side file is written under a temporary name and renamed, then the file is cut:
    a kill in between leaves both, and the side file is the truth.
    """
    import h5py

    from .layout import _open_h5

    with _open_h5(path) as f:
        tails = [
            (key, x)
            for key, obj in f[RESULTS].items()
            if isinstance(obj, h5py.Group) and (x := tail_at(obj))
        ]
    for key, x in tails:
        side = values_path(path, key)
        if not side.is_file():
            side.parent.mkdir(exist_ok=True)
            tmp = side.with_name(side.name + ".moving")
            size = max(0, os.path.getsize(path) - x)
            tmp.unlink(missing_ok=True)  # one a kill left: made new, never through a link
            new = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            src, dst = os.open(path, os.O_RDONLY), os.open(tmp, new, 0o644)
            try:
                os.ftruncate(dst, 0)
                copy_bytes(src, dst, size, x, 0)
                os.fsync(dst)
            finally:
                os.close(src)
                os.close(dst)
            os.replace(tmp, side)
        if os.path.getsize(path) > x:
            os.truncate(path, x)


def _read(path: os.PathLike, at: int, n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(at)
        return fh.read(n)


def _write(path: os.PathLike, at: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view.nbytes:
            done = os.pwrite(fd, view, at)
            at, view = at + done, view[done:]
    finally:
        os.close(fd)


def copy_bytes(src: int, dst: int, n: int, a: int = 0, b: int = 0) -> None:
    """``n`` bytes from offset ``a`` of ``src`` to offset ``b`` of ``dst``: by the kernel
    (``copy_file_range``) where it can, else by hand in 1 MiB pieces, read before written
    (so a move to a lower offset in the same file is safe)."""
    done = 0
    while done < n:
        k = min(n - done, _PIECE)
        try:
            copied = os.copy_file_range(src, dst, k, a + done, b + done)
        except (AttributeError, OSError):  # not Linux, not between these files, overlapping
            copied = 0
        if copied <= 0:
            data = os.pread(src, min(k, _MIB), a + done)
            if not data:
                raise OSError(f"mpibatch: the values ended {plural(n - done, 'byte')} early")
            copied = os.pwrite(dst, data, b + done)
        done += copied


def _move(path: os.PathLike, a: int, b: int, n: int) -> None:
    """``n`` bytes from ``a`` to ``b`` within one file (the ranges may overlap)."""
    fd = os.open(path, os.O_RDWR)
    try:
        if b < a:  # forward: every piece is read before anything writes over it
            copy_bytes(fd, fd, n, a, b)
            return
        end = n
        while end > 0:  # backward
            k = min(end, _PIECE)
            data = os.pread(fd, k, a + end - k)
            os.pwrite(fd, data, b + end - k)
            end -= k
    finally:
        os.close(fd)
