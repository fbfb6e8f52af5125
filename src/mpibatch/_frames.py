"""Results as tables: ``Results.to_pandas()`` and ``Results.to_xarray()`` (see results.py)."""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ._views import TYPE_BYTES, TYPE_RAGGED, TYPE_STR, Column
from .grid import Grid
from .layout import STATUS_NAMES, Status

if TYPE_CHECKING:
    from .results import Results

_TASK_COLS = ("task_id", "status", "rank", "start", "elapsed")


def _need(module: str, method: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{method} needs {module}: pip install 'mpibatch[{module}]' (or pip install {module})"
        ) from None


def _left_out(method: str, keys: list[str], why: str) -> None:
    if keys:
        warnings.warn(f"{method} left out results {', '.join(keys)}: {why}", stacklevel=4)


def to_pandas(res: Results, expand: bool) -> Any:
    pd = _need("pandas", "to_pandas()")
    cols: dict[str, Any] = {"task_id": res.task_id[:]}
    cols.update({k: v[:] for k, v in res.params.items()})
    clash, left = [], ~res.done
    for key, col in res.results.items():
        new = _pandas_columns(key, col, expand, left)
        if any(k in cols or k in _TASK_COLS for k in new):
            clash.append(key)
            continue
        cols.update(new)
    _left_out(
        "to_pandas()",
        clash,
        "their names are those of grid axes or task columns; read them with res.results[key]",
    )
    cols["status"] = np.asarray([STATUS_NAMES[Status(int(s))] for s in res.status[:]])
    cols.update(rank=res.rank[:], start=res.start[:], elapsed=res.elapsed[:])
    return pd.DataFrame(cols).set_index("task_id")


def _pandas_columns(key: str, col: Column, expand: bool, left: np.ndarray) -> dict[str, Any]:
    """The DataFrame column(s) of one result."""
    arr = col[:]
    if col.kind == TYPE_STR and col.ndim == 1:
        import pandas as pd

        return {key: pd.array(np.ma.getdata(arr), dtype="string")}
    if col.ndim == 1 or (expand and col.kind not in (TYPE_RAGGED, TYPE_STR, TYPE_BYTES)):
        if col.ndim == 1:
            return {key: _scalar_column(arr)}
        return {
            f"{key}_{'_'.join(map(str, i))}": _scalar_column(arr[(slice(None),) + i])
            for i in np.ndindex(*col.shape[1:])
        }
    return {key: _array_column(arr, left)}


def _scalar_column(arr: np.ndarray) -> Any:
    """A 1-D result for pandas: masked integers and bools become nullable (pd.NA)."""
    import pandas as pd

    if not isinstance(arr, np.ma.MaskedArray):
        return arr
    kind = {"b": "boolean", "i": "Int64", "u": "UInt64"}.get(arr.dtype.kind)
    if kind is None:
        return np.asarray(
            [pd.NA if m else v for v, m in zip(arr.data, np.ma.getmaskarray(arr), strict=True)]
        )
    out = pd.array(arr.data, dtype=kind)
    out[np.ma.getmaskarray(arr)] = pd.NA
    return out


def _array_column(arr: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """One array per row (object column), pd.NA where the task holds no result."""
    import pandas as pd

    data = np.ma.getdata(arr)
    out = np.empty(len(arr), dtype=object)
    for i in range(len(arr)):
        out[i] = pd.NA if missing[i] else data[i]
    return out


def to_xarray(res: Results) -> Any:
    xr = _need("xarray", "to_xarray()")
    grid = Grid.from_json(res.attrs["grid"])
    dims, coords, keeps = [], {}, []
    for d in json.loads(grid.to_json())["dims"]:
        name = "+".join(d["names"])
        keep = [j for j in range(len(d["values"][0])) if _kept(res, d, j)]
        dims.append(name)
        keeps.append(keep)
        for a, v in zip(d["names"], d["values"], strict=True):
            coords[a] = (name, [v[j] for j in keep])
    reps = res._where.get("rep", list(range(grid.reps)))
    dims.append("rep")
    keeps.append(reps)
    coords["rep"] = ("rep", reps)
    shape = tuple(len(k) for k in keeps)
    where = _positions(res.task_id[:], grid, keeps)
    status = np.zeros(shape, np.int8)  # cells the file does not hold: pending
    status[where] = res.status[:]
    data: dict[str, Any] = {"status": (dims, status)}
    ragged, clash = [], []
    for key, col in res.results.items():
        if col.kind == TYPE_RAGGED:
            ragged.append(key)
        elif key in coords or key in data:
            clash.append(key)
        else:
            inner = [f"{key}_dim_{k}" for k in range(col.ndim - 1)]
            data[key] = ([*dims, *inner], _dense(col[:], shape, where))
    why = "ragged results have no dense shape; read them with res.results[key] or to_pandas()"
    _left_out("to_xarray()", ragged, why)
    _left_out("to_xarray()", clash, "their names are those of coordinates or status")
    return xr.Dataset(data, coords=coords, attrs={"source": res.path})


def _kept(res: Results, dim: dict, j: int) -> bool:
    """Whether value ``j`` of a grid dim is one ``res.where`` kept."""
    pairs = zip(dim["names"], dim["values"], strict=True)
    return all(v[j] in res._where.get(a, [v[j]]) for a, v in pairs)


def _positions(ids: np.ndarray, grid: Grid, keeps: list[list[int]]) -> tuple:
    """Each row's index into the dense (axes..., rep) array."""
    cell, rep = np.divmod(ids.astype(np.int64), grid.reps)
    digits = list(np.unravel_index(cell, grid.sizes)) if grid.sizes else []
    out = []
    for digit, keep, size in zip([*digits, rep], keeps, [*grid.sizes, grid.reps], strict=True):
        lookup = np.full(size, -1, np.int64)
        lookup[np.asarray(keep, np.int64)] = np.arange(len(keep))
        out.append(lookup[digit])
    return tuple(out)


def _dense(arr: np.ndarray, shape: tuple, where: tuple) -> np.ndarray:
    """A result spread over the grid: NaN (None for strings) where no task holds one."""
    if arr.dtype.kind == "O":
        out = np.full(shape + arr.shape[1:], None, dtype=object)
    else:
        kind = arr.dtype if arr.dtype.kind in "fc" else np.dtype(np.float64)
        out = np.full(shape + arr.shape[1:], np.nan, dtype=kind)
    values = np.ma.getdata(arr).astype(out.dtype)
    values[np.ma.getmaskarray(arr)] = None if out.dtype.kind == "O" else np.nan
    out[where] = values
    return out
