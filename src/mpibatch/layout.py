"""The results file's layout, defined once: status codes, dataset names, error fields.

One HDF5 file that plain h5py (or h5dump) can read; ``n`` rows, one per task of the
run, in task order::

    /tasks/id        (n,) int64     global task id of each row
    /tasks/status    (n,) int8      Status: 0 pending, 1 done, 2 failed
    /tasks/rank      (n,) int32     rank that ran it (-1 pending)
    /tasks/start     (n,) float64   seconds since the run started (NaN pending)
    /tasks/elapsed   (n,) float64   seconds the task took (NaN pending)
    /params/<axis>   (n,)           grid value of each task; /params/rep the replicate
    /results/<key>   (n, *shape)    what tasks returned; only rows with status 1 hold one
    /errors/*        (m,)           task, rank, host, type, message, traceback per failure
    /ranks/*         (n_ranks,)     host, local rank, cores, GPU, BLAS libraries per rank
                                    (and peak_rss_bytes, each rank's VmHWM, at the end)
    /shared/<name>   (group)        attrs dtype, shape, nbytes, sha256 of each shared input
                                    (load()); /shared attrs bytes_per_node, nodes
    attributes of /                seed, streams, schedule, grid, versions, command, ...

While a run writes the file, its failures wait beside it in ``<file>.failures`` (one
JSON object per line, the error fields); closing the file moves them into /errors.

Every module that writes, reads, merges or resumes a results file takes its names from
here; store.py writes it (see there for the order it writes in, and why). numpy and h5py
are imported only inside the readers: workers import :class:`Status` without them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._failtext import storable_text
from .errors import UsageError
from .grid import Grid

if TYPE_CHECKING:
    from collections.abc import Iterator

    import h5py
    import numpy as np


class Status(IntEnum):
    """``/tasks/status`` of a row: int8 in the file."""

    PENDING = 0
    DONE = 1
    FAILED = 2


STATUS_NAMES = {s: s.name.lower() for s in Status}  # {Status.PENDING: "pending", ...}

TASKS, PARAMS, RESULTS, ERRORS, RANKS = "tasks", "params", "results", "errors", "ranks"
SHARED = "shared"  # the shared inputs' records (see read_shared)
SHARED_ARRAY_ATTRS = ("dtype", "shape", "nbytes", "sha256")
SHARED_ATTRS = ("bytes_per_node", "nodes")
TEXT = "text"  # dtype of a variable-length UTF-8 string dataset (see file_dtype)
FAILURES_SUFFIX = ".failures"


# Result kinds (issue 13): every /results/<key> dataset or group carries RESULT_TYPE_ATTR
# (files from before lack it: "fixed"). A ragged key is a group of RAGGED_* datasets;
# task i's value is values[start[i] : start[i] + length[i]] (-1: no value). While a run
# goes (and after a kill) the values and variable-length strings wait in a sidecar
# directory ``<file>.values/`` (see _ragged.py: read_values works in every state).
RESULT_TYPE_ATTR = "mpibatch_type"
TYPE_FIXED, TYPE_STR, TYPE_BYTES, TYPE_RAGGED = "fixed", "str", "bytes", "ragged"
RESULT_TYPES = (TYPE_FIXED, TYPE_STR, TYPE_BYTES, TYPE_RAGGED)
RAGGED_VALUES, RAGGED_START, RAGGED_LENGTH = "values", "start", "length"
DTYPE_ATTR, INNER_SHAPE_ATTR, SHAPE_ATTR = "dtype", "inner_shape", "shape"
KEYS_ATTR = "keys"  # attribute of /results: its keys in the tasks' order (JSON list)
VALUES_SUFFIX = ".values"  # the sidecar directory of ragged values and strings


@dataclass(frozen=True)
class Column:
    """A dataset: its name in its group, its dtype, and (in /tasks) a pending row's value."""

    name: str
    dtype: str
    pending: Any = None

    @property
    def path(self) -> str:
        """Its path in the file, for a column of /tasks."""
        return f"{TASKS}/{self.name}"


TASK_ID = Column("id", "i8")
TASK_STATUS = Column("status", "i1", int(Status.PENDING))
TASK_RANK = Column("rank", "i4", -1)
TASK_START = Column("start", "f8", float("nan"))
TASK_ELAPSED = Column("elapsed", "f8", float("nan"))
TASK_COLUMNS = (TASK_ID, TASK_STATUS, TASK_RANK, TASK_START, TASK_ELAPSED)

# A result key is a name in /results and a column of the block buffer that carries a
# task's row between ranks beside the row's own start, elapsed and status (_records.py):
# those three names are taken, and HDF5 reads '.' as the group itself and cuts at a NUL.
ROW_COLUMNS = (TASK_START.name, TASK_ELAPSED.name, TASK_STATUS.name)


def result_key_problem(key: object) -> str | None:
    """What is wrong with ``key`` as a result key ("expected ...; fix"), None if nothing."""
    if not isinstance(key, str) or not key or "/" in key or "\x00" in key or key == ".":
        return "expected non-empty string keys without '/' or NUL, other than '.'"
    if key in ROW_COLUMNS:
        return (
            f"expected keys other than {', '.join(ROW_COLUMNS)} (the file's own columns "
            f"of every task); rename it, e.g. to {key + '_value'!r}"
        )
    return None


RANK_COLUMNS = (
    Column("host", TEXT),
    Column("local_rank", "i4"),
    Column("cores", TEXT),
    Column("gpu_index", "i4"),  # -1 on CPU ranks
    Column("gpu_uuid", TEXT),
    Column("gpu_name", TEXT),
    Column("blas", TEXT),  # JSON: the BLAS libraries and their threads
)
RANK_PEAK_RSS = Column("peak_rss_bytes", "i8")  # VmHWM of each rank, written at the end


@dataclass(frozen=True)
class ErrorField:
    """One field of a failure: a dataset of /errors and a key of the sidecar's lines."""

    name: str
    dtype: str
    attr: str  # the attribute of worker.TaskFailure that holds it
    kind: type  # its Python type, as read back
    chars: int = 0  # text: the most characters stored (see storable_text)


ERROR_FIELDS = (
    ErrorField("task", "i8", "task_id", int),
    ErrorField("rank", "i4", "rank", int),
    ErrorField("host", TEXT, "host", str, 1_000),
    ErrorField("type", TEXT, "type", str, 1_000),
    ErrorField("message", TEXT, "message", str, 10_000),
    ErrorField("traceback", TEXT, "traceback", str, 100_000),
)
ERROR_NAMES = tuple(f.name for f in ERROR_FIELDS)

# Attributes of each /results dataset, for readers without mpibatch. Failed rows hold
# FILL_ATTR (NaN for floats, the minimum for signed ints); pending rows may hold 0, as
# their space is never pre-filled. /tasks/status is the truth; MISSING_ATTR says so.
FILL_ATTR = "fillvalue"
MISSING_ATTR = "missing"
MISSING_NOTE = (
    "only rows whose /tasks/status is 1 (done) hold a result; failed rows hold the "
    "fillvalue attribute, pending rows may hold 0: mask by /tasks/status"
)
MISSING_NOTE_BOOL = (
    "only rows whose /tasks/status is 1 (done) hold a result; a bool has no value to "
    "spare, so failed and pending rows hold False: mask by /tasks/status"
)
MISSING_NOTE_TAIL = (
    "only rows whose /tasks/status is 1 (done) hold a result; row i's value is "
    "values[start[i] : start[i] + length[i]] (start and length -1: none)"
)
MISSING_NOTE_STR = (
    "only rows whose /tasks/status is 1 (done) hold a result; others hold empty strings"
)

# Root attributes that make two files one study: a file and the run that resumes it
# (which also agree on "tasks"), or the parts that merge joins.
STUDY_ATTRS = ("function", "seed", "streams", "grid", "task_file_sha256", "command_template")


def same_study(key: str, a: Any, b: Any) -> bool:
    """Whether two values of study attribute ``key`` agree.

    Grids compare as grids (not as JSON text); a function name agrees with the same
    name behind a module (``mod:task`` from the API, ``task`` from the CLI).
    """
    if key == "grid":
        return Grid.from_json(a) == Grid.from_json(b)
    if key == "function":
        return str(a).split(":")[-1] == str(b).split(":")[-1]
    return a == b


def failures_path(path: str | os.PathLike) -> Path:
    """The sidecar where a running study's failures wait until its file closes (beside
    the file itself: a symlink's target)."""
    return Path(os.path.realpath(path) + FAILURES_SUFFIX)


def values_path(path: str | os.PathLike, key: str) -> Path:
    """The sidecar file where a running study's values of ragged or string ``key`` wait."""
    from urllib.parse import quote

    return Path(os.path.realpath(path) + VALUES_SUFFIX) / (quote(key, safe="") + ".bin")


def failure_record(failure: Any) -> dict[str, Any]:
    """A ``runner.TaskFailure`` (or a record read back) as the error fields, its text
    storable (``_failtext.storable_text``): what the sidecar and /errors store."""
    if isinstance(failure, dict):
        values = [failure.get(f.name, f.kind()) for f in ERROR_FIELDS]
    else:
        values = [getattr(failure, f.attr) for f in ERROR_FIELDS]
    return {
        f.name: storable_text(str(v), f.chars) if f.chars else f.kind(v)
        for f, v in zip(ERROR_FIELDS, values, strict=True)
    }


def file_dtype(dtype: str) -> Any:
    """The dtype h5py is given for a column's ``dtype`` (TEXT: variable-length UTF-8)."""
    if dtype == TEXT:
        import h5py

        return h5py.string_dtype("utf-8")
    return dtype


class NotResultsFile(UsageError):
    """A path that is not a results file mpibatch can read; ``problem`` says why."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str = "") -> None:
        self.path, self.problem, self.fix = str(path), problem, fix
        super().__init__(
            f"'{path}': expected an mpibatch results file, got {problem}; "
            + (fix or "pass the .h5 file that mpibatch run --out wrote")
        )

    def __reduce__(self) -> tuple:  # pickled to the other ranks (_comm.agreed)
        return (type(self), (self.path, self.problem, self.fix))


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _open_h5(path: str | os.PathLike) -> h5py.File:
    """Read-only, locking off (a run writing the file does not block readers); if this
    process already holds the file open with locking (a notebook's own h5py handle),
    HDF5 refuses other locking flags, so that handle's are used."""
    import h5py

    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "locking flag" not in str(exc) and "close degree" not in str(exc):
            raise
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "close degree" not in str(exc) and "locking flag" not in str(exc):
            raise
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)  # this process's own run writes it (_h5.fapl)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    fapl.set_file_locking(False, False)
    return h5py.File(h5py.h5f.open(os.fsencode(str(path)), h5py.h5f.ACC_RDONLY, fapl))


def open_file(path: str | os.PathLike) -> h5py.File:
    """Open a results file for reading; NotResultsFile (one line) if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise NotResultsFile(path, "no such file" if not p.exists() else "not a file")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head != _HDF5_SIGNATURE:
        raise NotResultsFile(path, "an empty file (0 bytes)" if not head else "not an HDF5 file")
    try:
        f = _open_h5(p)
    except OSError as exc:
        raise _unopenable(path, exc) from None
    lacks = next((f"/{c.path}" for c in TASK_COLUMNS if c.path not in f), None)
    lacks = lacks or (None if RESULTS in f else f"/{RESULTS}")
    if lacks:
        f.close()
        raise NotResultsFile(path, f"an HDF5 file that mpibatch did not write (no {lacks})")
    return f


def _unopenable(path: str | os.PathLike, exc: OSError) -> NotResultsFile:
    """Why HDF5 could not open ``path``, in one line; a file cut short says so."""
    import re

    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    cut = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if not cut:
        return NotResultsFile(path, f"a file HDF5 cannot open ({text})")
    what = f"a truncated file ({int(cut[1]):,} of its {int(cut[2]):,} bytes: an interrupted copy?)"
    return NotResultsFile(path, what, "copy it again whole, or run its tasks again into a new file")


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a results file mpibatch can read (None if it is one)."""
    try:
        open_file(path).close()
    except NotResultsFile as exc:
        return exc.problem
    return None


def read_column(source: h5py.Group | str | os.PathLike, name: str) -> np.ndarray:
    """Dataset ``name`` (e.g. ``"tasks/status"``) of a file or group; strings as str objects."""
    if isinstance(source, (str, os.PathLike)):
        with open_file(source) as f:
            return read_column(f, name)
    import h5py
    import numpy as np

    ds = source[name]
    if isinstance(ds, h5py.Group):  # a ragged key (or strings while a run goes)
        from ._ragged import read_values

        values = np.empty(len(ds[RAGGED_START]), dtype=object)
        values[:] = read_values(source.file, ds.name.rsplit("/", 1)[-1])
        return values
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(ds.asstr()[()], dtype=object)
    return ds[()]


_STATUS_ROWS = 1 << 20  # rows of /tasks/status read at a time (bounded memory)


def _status_slices(ds: h5py.Dataset) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, statuses)`` of /tasks/status, a bounded slice at a time."""
    for a in range(0, ds.shape[0], _STATUS_ROWS):
        yield a, ds[a : a + _STATUS_ROWS]


def pending_ranges(ds: h5py.Dataset) -> list[tuple[int, int]]:
    """Row ranges of /tasks/status ``ds`` whose tasks are not done (pending or failed)."""
    import numpy as np

    out: list[tuple[int, int]] = []
    for a, status in _status_slices(ds):
        todo = np.flatnonzero(status != Status.DONE) + a
        if todo.size == 0:
            continue
        cuts = np.flatnonzero(np.diff(todo) > 1)
        starts = np.concatenate(([todo[0]], todo[cuts + 1])).tolist()
        stops = np.concatenate((todo[cuts] + 1, [todo[-1] + 1])).tolist()
        if out and out[-1][1] == starts[0]:  # a range running on from the last slice
            starts[0] = out.pop()[0]
        out += zip(starts, stops, strict=True)
    return out


def status_counts(ds: h5py.Dataset) -> tuple[int, int]:
    """(done, failed) of /tasks/status ``ds``."""
    import numpy as np

    done = failed = 0
    for _, status in _status_slices(ds):
        done += int(np.count_nonzero(status == Status.DONE))
        failed += int(np.count_nonzero(status == Status.FAILED))
    return done, failed


def read_group(f: h5py.Group, group: str) -> dict[str, np.ndarray]:
    """Every dataset of ``group`` by name, in the file's order; empty if it is absent."""
    return {name: read_column(f[group], name) for name in f[group]} if group in f else {}


def read_errors(f: h5py.Group) -> list[dict[str, Any]]:
    """The failures in /errors, one dict of plain Python values each, in the file's order."""
    if ERRORS not in f:
        return []
    cols = [read_column(f[ERRORS], fld.name) for fld in ERROR_FIELDS]
    return [
        {fld.name: fld.kind(v) for fld, v in zip(ERROR_FIELDS, row, strict=True)}
        for row in zip(*cols, strict=True)
    ]


def read_attrs(source: h5py.Group | str | os.PathLike) -> dict[str, Any]:
    """The root attributes of a file as plain Python values (bytes decoded, scalars unwrapped)."""
    if isinstance(source, (str, os.PathLike)):
        with open_file(source) as f:
            return read_attrs(f)
    return {k: plain(v) for k, v in source.attrs.items()}


def plain(v: Any) -> Any:
    """An attribute or element as a plain Python value."""
    import numpy as np

    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_shared(f: h5py.Group) -> dict[str, Any]:
    """The /shared records: ``{"bytes_per_node", "nodes", "arrays": {name: {dtype, shape,
    nbytes, sha256}}}``; empty if the run had no shared inputs."""
    if SHARED not in f:
        return {}
    group = f[SHARED]
    arrays = {}
    for name in group:
        attrs = {k: plain(group[name].attrs[k]) for k in SHARED_ARRAY_ATTRS}
        attrs["shape"] = [int(n) for n in attrs["shape"]]
        arrays[name] = attrs
    return {**{k: plain(group.attrs[k]) for k in SHARED_ATTRS}, "arrays": arrays}
