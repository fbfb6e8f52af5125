"""mpibatch.open on files built with plain h5py after the layout contract: lazy columns,
missing rows per kind, where(), to_pandas(), to_xarray(), and other handles on the file."""

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pandas as pd
import pytest

import mpibatch
from mpibatch.errors import UsageError
from mpibatch.grid import Grid

STATUS = [1, 2, 0, 1]  # done, failed, pending, done


def _file(path, grid: Grid, ids, status, results=None):
    """A results file as mpibatch lays it out: /tasks, /params from the grid, /results."""
    ids = np.asarray(ids, np.int64)
    with h5py.File(path, "w") as f:
        f.attrs.update(grid=grid.to_json(), seed=1, streams="task", function="task")
        f["tasks/id"] = ids
        f["tasks/status"] = np.asarray(status, np.int8)
        f["tasks/rank"] = np.where(np.asarray(status) > 0, 0, -1).astype(np.int32)
        f["tasks/start"] = np.zeros(len(ids))
        f["tasks/elapsed"] = np.ones(len(ids))
        cols = grid.columns(int(ids[0]), int(ids[-1]) + 1)
        for name, col in cols.items():
            dtype = h5py.string_dtype() if col.dtype.kind == "U" else col.dtype
            f.create_dataset(
                f"params/{name}",
                data=col.astype(object) if dtype != col.dtype else col,
                dtype=dtype,
            )
        f.create_group("results")
        for key, write in (results or {}).items():
            write(f["results"], key)
    return path


def _fixed(data, dtype=None):
    def write(g, key):
        g.create_dataset(key, data=np.asarray(data, dtype)).attrs["mpibatch_type"] = "fixed"

    return write


def _str(data, kind="str", dtype=None):
    def write(g, key):
        values = np.asarray(data, object)
        if dtype is not None:  # fixed width: the encoded bytes
            values = np.asarray([v.encode() for v in values.ravel()], dtype).reshape(values.shape)
        elif kind == "bytes":  # variable-length bytes: uint8 sequences (NUL kept)
            values.reshape(-1)[:] = [np.frombuffer(v, np.uint8) for v in values.ravel()]
        vlen = h5py.string_dtype() if kind == "str" else h5py.vlen_dtype(np.uint8)
        ds = g.create_dataset(key, data=values, dtype=dtype or vlen)
        ds.attrs["mpibatch_type"] = kind

    return write


def _ragged(rows, dtype="float64", inner=()):
    """Values concatenated in write order (here: reversed task order), start and length."""

    def write(g, key):
        grp = g.create_group(key)
        grp.attrs.update(mpibatch_type="ragged", dtype=dtype, inner_shape=json.dumps(list(inner)))
        start, length, values, at = [], [], [], 0
        for v in reversed(rows):
            if v is None:
                start.append(-1), length.append(-1)
                continue
            v = np.asarray(v, dtype).reshape((-1, *inner))
            start.append(at), length.append(len(v)), values.append(v)
            at += len(v)
        grp["start"] = np.asarray(start[::-1], np.int64)
        grp["length"] = np.asarray(length[::-1], np.int64)
        grp["values"] = np.concatenate(values) if values else np.empty((0, *inner), dtype)

    return write


@pytest.fixture
def every_kind(tmp_path):
    grid = Grid({"n": [10, 100], "stat": ["mean", "median"]})
    results = {
        "x": _fixed([0.5, 9.0, 0.0, 3.5]),
        "k": _fixed([7, -(2**63), 0, 9], np.int64),
        "ok": _fixed([True, False, False, True]),
        "z": _fixed([1 + 2j, 0, 0, 3j]),
        "coef": _fixed(np.arange(12.0).reshape(4, 3)),
        "model": _str(["ols", "", "", "lasso é"]),
        "tag": _str(["ab", "", "", "cd"], dtype=h5py.string_dtype("utf-8", 8)),
        "blob": _str([b"\x00a", b"", b"", b"z"], kind="bytes"),
        "names": _str([["a", "b"], ["", ""], ["", ""], ["c", "d"]]),
        "rewards": _ragged([[1.0, 2.0], [5.0], [9.0, 9.0, 9.0], []]),
        "path": _ragged([np.arange(6), None, None, np.arange(3)], "int32", (3,)),
    }
    return _file(tmp_path / "r.h5", grid, range(4), STATUS, results)


def test_every_kind_reads_back_with_missing_rows_never_0(every_kind):
    res = mpibatch.open(every_kind)
    r = res.results
    x = r["x"][:]
    assert x[[0, 3]].tolist() == [0.5, 3.5] and np.isnan(x[[1, 2]]).all()
    assert r["k"][:].tolist() == [7, None, None, 9] and r["k"].mean() == 8.0
    assert r["ok"][:].tolist() == [True, None, None, True]
    assert r["z"][3] == 3j and np.isnan(r["z"][1])
    assert r["coef"][3].tolist() == [9.0, 10.0, 11.0] and np.isnan(r["coef"][1]).all()
    assert r["model"][:].tolist() == ["ols", None, None, "lasso é"]
    assert r["tag"][:].tolist() == ["ab", None, None, "cd"]
    assert r["blob"][0] == b"\x00a" and r["blob"][:].mask.tolist() == [0, 1, 1, 0]
    assert r["names"][3].tolist() == ["c", "d"] and r["names"][:].mask[1].all()
    rewards = r["rewards"][:]
    assert rewards[0].tolist() == [1.0, 2.0] and rewards[3].tolist() == []
    assert rewards.mask.tolist() == [False, True, True, False]  # row 2 has values, not done
    assert rewards.dtype == object and rewards[3].dtype == np.float64
    path = r["path"][[3, 0]]
    assert path[0].shape == (1, 3) and path[1].shape == (2, 3) and path[1].dtype == np.int32
    assert res.done.tolist() == [True, False, False, True]


def test_info_types_name_every_kind(every_kind):
    types = mpibatch.open(every_kind).types()
    assert types == {
        "blob": "bytes",
        "coef": "float64[3]",
        "k": "int64",
        "model": "str",
        "names": "str[2]",
        "ok": "bool",
        "path": "ragged int32[*,3]",
        "rewards": "ragged float64[*]",
        "tag": "str8",
        "x": "float64",
        "z": "complex128",
    }


def test_columns_act_as_numpy_arrays(every_kind):
    res = mpibatch.open(every_kind)
    x, k = res.results["x"], res.results["k"]
    assert len(x) == 4 and x.shape == (4,) and x.dtype == np.float64 and x.ndim == 1
    assert np.nanmean(x) == 2.0 and np.isnan(np.asarray(x)[1])
    assert (x > 1).tolist() == [False, False, False, True]  # NaN compares False
    assert (res.status == 1).tolist() == [True, False, False, True]
    assert res.status[-1] == 1 and res.params["stat"][:2].tolist() == ["mean", "median"]
    assert k[res.done].tolist() == [7, 9] and k[::-1].tolist() == [9, None, None, 7]
    assert k[[3, 0, 3]].tolist() == [9, 7, 9]
    assert res.results["coef"][:, 1][[0, 3]].tolist() == [1.0, 10.0]
    with pytest.raises(IndexError, match="out of bounds"):
        x[4]
    with pytest.raises(IndexError, match="boolean mask of 4 rows"):
        x[np.ones(3, bool)]


def test_a_large_file_opens_and_indexes_reading_only_the_rows_asked(tmp_path, monkeypatch):
    n = 10_000_000
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:  # never filled: the file is sparse, the reads count
        f.attrs["grid"] = Grid({}, reps=n).to_json()
        for name, dtype in (
            ("id", "i8"),
            ("status", "i1"),
            ("rank", "i4"),
            ("start", "f8"),
            ("elapsed", "f8"),
        ):
            f.create_dataset(f"tasks/{name}", (n,), dtype, fillvalue=0, fill_time="never")
        f["params/rep"] = np.arange(n)
        x = f.create_dataset("results/x", (n,), "f8", fill_time="never")
        f["tasks/status"][[5, 9_000_000]] = 1
        x[5], x[9_000_000] = 2.5, 7.0
    read = []
    real = h5py.Dataset.__getitem__

    def counting(self, key):
        out = real(self, key)
        read.append(np.size(out))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counting)
    res = mpibatch.open(path)
    assert sum(read) == 0 and res.results["x"].shape == (n,)  # opening reads no row
    assert res.results["x"][5] == 2.5 and sum(read) == 2  # that row's status and value
    read.clear()
    assert res.results["x"][[9_000_000, 5]].tolist() == [7.0, 2.5] and sum(read) <= 4
    read.clear()
    assert np.isnan(res.results["x"][100:110]).all() and sum(read) == 20
    read.clear()
    mask = np.zeros(n, bool)
    mask[[5, 9_000_000]] = True
    assert res.results["x"][mask].tolist() == [2.5, 7.0] and sum(read) <= 4
    read.clear()
    assert res.where(rep=[5, 6]).results["x"][:1].tolist() == [2.5]


@pytest.fixture
def study(tmp_path):
    """A 3 x (a+b zipped, 2) grid x 2 reps; the file holds tasks 2..9 of 12 (--tasks)."""
    grid = Grid({"n": [10, 100, 1000], ("a", "b"): [(0.1, "x"), (0.2, "y")]}, reps=2)
    ids = range(2, 10)
    status = [1, 1, 2, 1, 1, 1, 0, 1]
    est = [float(i) for i in ids]
    results = {
        "est": _fixed(est),
        "k": _fixed(list(ids), np.int32),
        "coef": _fixed(np.arange(16.0).reshape(8, 2)),
        "model": _str([f"m{i}" for i in ids]),
        "rewards": _ragged([[float(i)] * (i % 3) for i in ids]),
    }
    return _file(tmp_path / "s.h5", grid, ids, status, results)


def test_where_selects_tasks_by_grid_values(study):
    res = mpibatch.open(study)
    sel = res.where(n=100, b="x")
    assert sel.task_id[:].tolist() == [4, 5] and sel.n_tasks == 2
    assert (
        np.isnan(sel.results["est"][0])
        and sel.results["est"][1] == 5.0
        and sel.params["a"][:].tolist()
        == [
            0.1,
            0.1,
        ]
    )
    assert res.where(n=[10, 1000]).task_id[:].tolist() == [2, 3, 8, 9]
    assert res.where(n=100).where(rep=1).task_id[:].tolist() == [5, 7]
    assert res.where(n=100, a=0.1, rep=1).results["est"][:].tolist() == [5.0]
    assert res.where(n=100).done.tolist() == [False, True, True, True]
    with pytest.raises(UsageError, match=r"expected one of the grid axes n, a, b, rep, got 'm'"):
        res.where(m=1)
    with pytest.raises(
        UsageError, match=r"expected one of the values of n: \[10, 100, 1000\], got 50"
    ):
        res.where(n=50)


def test_to_pandas_keeps_every_result(study):
    df = mpibatch.open(study).to_pandas()
    assert df.index.tolist() == list(range(2, 10))
    assert str(df["k"].dtype) == "Int64" and df["k"].isna().tolist() == [0, 0, 1, 0, 0, 0, 1, 0]
    assert df["coef"][2].tolist() == [0.0, 1.0] and df["coef"].isna().sum() == 2
    assert (
        df["model"][2] == "m2"
        and df["model"].isna().sum() == 2
        and str(df["model"].dtype) == "string"
    )
    assert df["rewards"][5].tolist() == [5.0, 5.0] and df["rewards"].isna().sum() == 2
    assert df["status"].tolist()[2] == "failed" and df["b"].tolist()[:2] == ["y", "y"]
    wide = mpibatch.open(study).where(n=100).to_pandas(expand=True)
    assert wide["coef_1"].tolist()[1:] == [7.0, 9.0, 11.0] and "coef" not in wide
    assert np.isnan(wide["coef_0"][4])


def test_to_xarray_spreads_results_over_the_grid(study):
    with pytest.warns(UserWarning, match="left out results rewards"):
        ds = mpibatch.open(study).to_xarray()
    assert ds["est"].dims == ("n", "a+b", "rep")
    assert ds["coef"].dims == ("n", "a+b", "rep", "coef_dim_0")
    assert ds["a"].values.tolist() == [0.1, 0.2] and ds["b"].values.tolist() == ["x", "y"]
    est = ds["est"].values
    assert np.isnan(est[0, 0]).all()  # tasks 0 and 1: not in this file
    assert est[0, 1].tolist() == [2.0, 3.0] and np.isnan(est[1, 0, 0])  # task 4 failed
    assert ds["k"].dtype == np.float64 and np.isnan(ds["k"].values[2, 1, 0])  # task 10: none
    mean = ds["est"].mean("rep")
    assert mean.dims == ("n", "a+b") and mean.values[1, 1] == 6.5
    assert ds["model"].values[0, 1, 1] == "m3" and pd.isna(ds["model"].values[0, 0, 0])
    assert ds["status"].values[:2].tolist() == [[[0, 0], [1, 1]], [[2, 1], [1, 1]]]
    with pytest.warns(UserWarning, match="rewards"):
        sub = mpibatch.open(study).where(n=100, b="y").to_xarray()
    assert sub["est"].shape == (1, 1, 2) and sub["est"].values.ravel().tolist() == [6.0, 7.0]


def test_to_xarray_without_xarray_names_the_extra(study, monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(ImportError, match=r"mpibatch\[xarray\]"):
        mpibatch.open(study).to_xarray()


def test_another_h5py_handle_in_either_order(study):
    with h5py.File(study, "r") as f:  # the notebook's own handle first
        res = mpibatch.open(study)
        assert res.results["est"][0] == 2.0 and f["results/est"][0] == 2.0
    res = mpibatch.open(study)
    assert res.results["est"][1] == 3.0
    with h5py.File(study, "r") as f:  # then a handle after mpibatch.open
        assert f["tasks/status"][0] == 1 and res.results["model"][0] == "m2"
    with h5py.File(study, "r+") as f:  # a writer in this process: reads see its writes
        f["results/est"][2] = 40.0
        f["tasks/status"][2] = 1
        f.flush()
        assert res.results["est"][2] == 40.0


def test_a_running_study_in_another_process_writes_while_it_is_open(study):
    res = mpibatch.open(study)
    assert res.results["est"].mask if False else np.isnan(res.results["est"][6])  # pending
    writer = textwrap.dedent(
        f"""
        import sys, h5py
        with h5py.File({str(study)!r}, "r+") as f:  # HDF5 file locking on, as a run has it
            f["results/est"][6] = 60.0
            f["tasks/status"][6] = 1
            f.flush()
            print("written", flush=True)
            sys.stdin.readline()
        """
    )
    p = subprocess.Popen(
        [sys.executable, "-c", writer], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "written"
        assert res.results["est"][6] == 60.0 and res.done[6]
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()


def test_close_and_context_manager(study):
    with mpibatch.open(study) as res:
        assert res.results["est"][0] == 2.0
    with pytest.raises(ValueError, match="was closed"):
        res.results["est"][0]


def _grid_file(tmp_path, grid, name="g.h5"):
    n = grid.n_tasks
    return _file(tmp_path / name, grid, range(n), [1] * n, {"est": _fixed(np.arange(n) * 1.0)})


def test_where_matches_float_axes_within_a_relative_1e_12(tmp_path):
    old = mpibatch.open(_grid_file(tmp_path, Grid({"a": np.linspace(0, 1, 11)})))
    assert old.params["a"][3] == 0.30000000000000004  # a file made before the short decimals
    assert old.where(a=0.3).task_id[:].tolist() == [3]
    assert old.where(a=[0.3, 0.7, 0]).task_id[:].tolist() == [0, 3, 7]
    assert old.where(a=0.3 * (1 + 5e-13)).results["est"][:].tolist() == [3.0]
    new = mpibatch.open(_grid_file(tmp_path, Grid.from_spec(["a=0:1:11lin"]), "n.h5"))
    assert new.params["a"][3] == 0.3 and new.where(a=0.1 + 0.2).task_id[:].tolist() == [3]
    for bad in (0.3 * (1 + 3e-12), 0.35, "0.3", True):
        with pytest.raises(UsageError, match=r"expected one of the values of a: .*, got "):
            old.where(a=bad)


def test_where_at_zero_is_absolute_1e_300_and_two_near_values_are_refused(tmp_path):
    res = mpibatch.open(_grid_file(tmp_path, Grid({"x": [0.0, 1.0, 1.0 + 2e-13, 2.0]})))
    assert res.where(x=1e-301).task_id[:].tolist() == [0] and res.where(x=-0.0).n_tasks == 1
    with pytest.raises(UsageError, match="expected one of the values of x"):
        res.where(x=1e-299)
    with pytest.raises(UsageError) as info:
        res.where(x=1.0)
    msg = str(info.value)
    assert "\n" not in msg and "within 1e-12 of both 1.0 and 1.0000000000002" in msg
    assert "res.params['x'][:] == value" in msg
    assert res.where(x=2).task_id[:].tolist() == [3]  # an int for a float axis


def test_where_on_bool_and_int_axes_keeps_kinds_apart(tmp_path):
    grid = Grid.from_spec(["flag=True,False", "n=0,1"])
    path = _grid_file(tmp_path, grid)
    with h5py.File(path, "r") as f:
        assert f["params/flag"].dtype == np.bool_
    res = mpibatch.open(path)
    assert res.params["flag"][:].tolist() == [True, True, False, False]
    assert res.where(flag=False).task_id[:].tolist() == [2, 3]
    assert res.where(flag=np.bool_(True), n=1).task_id[:].tolist() == [1]
    assert res.where(n=1.0).task_id[:].tolist() == [1, 3]
    for axis, bad in (("flag", 1), ("flag", "True"), ("n", True), ("n", 0.5)):
        with pytest.raises(UsageError, match=f"expected one of the values of {axis}"):
            res.where(**{axis: bad})
