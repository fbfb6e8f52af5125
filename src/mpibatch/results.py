"""Reading a results file back: ``mpibatch.open(path)``, sidecar failures, attributes.

See layout.py for the layout; this module only reads, so it works on a file a run is
still writing (HDF5 file locking is off for readers) and on one a kill left behind.
Opening reads the attributes, the failures and each column's type, never a row: the
columns (``res.results``, ``res.params``, ``res.status``, ...) are lazy views that read
the rows they are indexed with (see _views.py), so a 50 GB file opens at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._gridkinds import REL_TOL, matches
from ._say import plural
from ._views import TASK, Column, Meta, Source, column_meta
from .errors import UsageError
from .grid import Grid
from .layout import (
    ERROR_NAMES,
    ERRORS,
    KEYS_ATTR,
    PARAMS,
    RANKS,
    RESULTS,
    STATUS_NAMES,
    TASK_COLUMNS,
    TASK_ID,
    TASK_STATUS,
    Status,
    failure_record,
    failures_path,
    open_file,
    plain,
    read_attrs,
    read_group,
    read_shared,
)

STATUS = STATUS_NAMES  # kept for callers of results.STATUS
ERROR_FIELDS = ERROR_NAMES  # kept for callers of results.ERROR_FIELDS


class Results:
    """A results file, its columns read lazily.

    ``res.results[key]``, ``res.params[axis]`` and ``res.task_id``, ``res.status``,
    ``res.rank``, ``res.start``, ``res.elapsed`` are columns: index them (``[i]``,
    ``[a:b]``, ``[mask]``) to read those rows, or use them as numpy arrays to read them
    all. Rows without a result (pending, failed) read as missing: NaN for floats, masked
    for the rest. ``res.where(n=1000)`` narrows every column to some grid values.
    ``res.attrs``, ``res.errors`` and ``res.ranks`` are small and read at open.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        with open_file(path) as f:  # readable while a run writes it
            self.attrs = read_attrs(f)
            self.errors = read_group(f, ERRORS)
            self.ranks = read_group(f, RANKS)
            n_rows = int(f[TASK_STATUS.path].shape[0])
            self._metas = {
                "tasks": [column_meta(f, c.path, TASK) for c in TASK_COLUMNS if c.path in f],
                PARAMS: [column_meta(f, f"{PARAMS}/{k}", TASK) for k in f.get(PARAMS, {})],
                RESULTS: [column_meta(f, f"{RESULTS}/{k}") for k in result_keys(f)],
            }
            self.shared = read_shared(f)  # the shared inputs' records (load())
        if not self.errors:  # a run that has not closed its file keeps failures beside it
            found = read_failures(failures_path(path))
            if found:
                self.errors = {
                    name: np.asarray([e[name] for e in found], dtype=object) for name in ERROR_NAMES
                }
        self._source = Source(path, n_rows)
        self._rows: np.ndarray | None = None
        self._where: dict[str, list] = {}
        self._make_columns()

    def _make_columns(self) -> None:
        def cols(metas: list[Meta]) -> dict[str, Column]:
            return {m.name.split("/", 1)[1]: Column(self._source, m, self._rows) for m in metas}

        tasks = cols(self._metas["tasks"])
        self.task_id, self.status = tasks[TASK_ID.name], tasks[TASK_STATUS.name]
        self.rank, self.start, self.elapsed = tasks["rank"], tasks["start"], tasks["elapsed"]
        self.params = cols(self._metas[PARAMS])
        self.results = cols(self._metas[RESULTS])

    @property
    def n_tasks(self) -> int:
        return len(self.status)

    @property
    def done(self) -> np.ndarray:
        """Which rows hold a result (status done), as a boolean array."""
        return np.asarray(self.status[:] == Status.DONE)

    def count(self, status: str) -> int:
        code = {v: k for k, v in STATUS_NAMES.items()}[status]
        return int(np.count_nonzero(self.status[:] == code))

    def types(self) -> dict[str, str]:
        """Each result key's type and per-task shape: ``{"coef": "float64[10]", ...}``."""
        return {k: col.describe() for k, col in self.results.items()}

    def where(self, **values: Any) -> Results:
        """The tasks whose grid values are those given: ``res.where(n=1000, stat="mean")``.

        A value may be one value or a list of them; ``rep`` selects replicates. Returns a
        Results whose columns (and to_pandas, to_xarray) hold only those tasks.
        """
        grid = Grid.from_json(self.attrs["grid"])
        axes: dict[str, Any] = {**grid.axis_values(), "rep": range(grid.reps)}
        kinds = {**grid.kinds(), "rep": "int"}
        keep = np.ones(self.n_tasks, bool)
        where = dict(self._where)
        for name, given in values.items():
            if name not in axes or name not in self.params:
                raise UsageError(
                    f"where: expected one of the grid axes {', '.join(axes)}, got {name!r}; "
                    "name an axis of this study's grid"
                )
            asked = list(given) if isinstance(given, (list, tuple, set, range)) else [given]
            wanted = [_grid_value(name, kinds[name], axes[name], v) for v in asked]
            keep &= np.isin(np.asarray(self.params[name][:]), np.asarray(wanted))
            before = where.get(name, axes[name])
            ordered = sorted(set(wanted)) if name == "rep" else list(axes[name])
            where[name] = [a for a in ordered if a in wanted and a in before]
        view = object.__new__(Results)
        view.__dict__.update(self.__dict__)
        base = np.arange(self._source.n_rows) if self._rows is None else self._rows
        view._rows, view._where = base[keep], where
        view._make_columns()
        return view

    def to_pandas(self, expand: bool = False) -> Any:
        """Params, results and task status as a pandas DataFrame indexed by task id.

        Scalars are columns (missing: NaN, or pd.NA in nullable Int64/boolean/string
        columns); a fixed-shape vector is one column of arrays, or with ``expand=True``
        one column per element (``coef_0``, ``coef_1``, ...); ragged results are columns
        of arrays. A result that cannot be a column is named in a warning. Needs pandas.
        """
        from ._frames import to_pandas

        return to_pandas(self, expand)

    def to_xarray(self) -> Any:
        """The results as an xarray Dataset over the grid: dims (axes..., rep, *shape).

        Zipped axes are one dimension with a coordinate per axis; tasks the file does
        not hold, or that failed or are pending, are NaN (integer and bool results are
        therefore float64; strings are objects, NaN where missing). Ragged results are
        left out, with a warning. Needs xarray.
        """
        from ._frames import to_xarray

        return to_xarray(self)

    def close(self) -> None:
        """Stop reading: later reads raise. No file handle is held between reads."""
        self._source.closed = True

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" where {self._where}" if self._where else ""
        return (
            f"<mpibatch results {self.path!r}{where}: {plural(self.n_tasks, 'task')}, "
            f"{self.count('done')} done, {self.count('failed')} failed; "
            f"results {list(self.results)}>"
        )


def _grid_value(name: str, kind: str, values: list | range, v: Any) -> Any:
    """The value of axis ``name`` that ``v`` selects (floats: within a relative 1e-12)."""
    found = matches(kind, values, v)
    if not found:
        raise UsageError(
            f"where: expected one of the values of {name}: {_short(values)}, "
            f"got {v!r}; pick values of the study's grid"
        )
    if len(found) > 1:
        raise UsageError(
            f"where: expected a value near one value of {name}, got {v!r}, within "
            f"{REL_TOL:g} of both {found[0]!r} and {found[1]!r}; select those rows with "
            f"res.params[{name!r}][:] == value instead"
        )
    return found[0]


def _short(values: list | range) -> str:
    if isinstance(values, range) or len(values) > 12:
        return f"{list(values[:12])} ... ({len(values)} values)"
    return str(values)


def result_keys(f: Any) -> list[str]:
    """The keys of /results in the tasks' order (its ``keys`` attribute), else the file's."""
    if RESULTS not in f:
        return []
    keys = [k for k in json.loads(plain(f[RESULTS].attrs.get(KEYS_ATTR, "[]"))) if k in f[RESULTS]]
    return keys + [k for k in f[RESULTS] if k not in keys]


def read_failures(path: Path) -> list[dict]:
    """Failures recorded in a sidecar, their text storable (as an older version may not
    have left it); a line torn by a kill is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("task"), int):
                out.append(failure_record(record))
        except (TypeError, ValueError):  # torn, or not a record of ours
            continue
    return out


def open_results(path: str | os.PathLike) -> Results:
    """Open a results file: ``mpibatch.open("out.h5").results["estimate"][:10]``."""
    return Results(path)
