import sys

import h5py
import numpy as np
import pytest

from mpibatch import _output
from mpibatch import store as store_mod
from mpibatch._records import Columns, Packer, infer_schema
from mpibatch.errors import OutputError
from mpibatch.grid import Grid
from mpibatch.results import open_results
from mpibatch.runner import TaskFailure
from mpibatch.store import Store, check_output


def _store(tmp_path, ids=range(0, 6)):
    grid = Grid({"n": [10, 20, 30], "label": ["é", "long label"]}, reps=1)
    return Store.create(tmp_path / "s.h5", grid, ids, {"seed": 4, "note": None}), grid


def test_create_writes_params_and_pending_tasks(tmp_path):
    store, grid = _store(tmp_path)
    store.close({"end_time": "x"})
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["tasks/id"][()].tolist() == list(range(6))
        assert (f["tasks/status"][()] == 0).all() and (f["tasks/rank"][()] == -1).all()
        assert np.isnan(f["tasks/start"][()]).all()
        assert f["params/n"][()].tolist() == [10, 10, 20, 20, 30, 30]
        assert f["params/label"].asstr()[()].tolist() == ["é", "long label"] * 3
        assert list(f["params"]) == ["n", "label", "rep"]  # grid order, not alphabetical
        assert f.attrs["seed"] == 4 and "note" not in f.attrs


def test_rows_written_by_slice_read_back_through_open(tmp_path):
    store, _ = _store(tmp_path, ids=range(2, 6))
    schema = infer_schema({"m": 0.5, "v": np.zeros(2)}, 2)
    store.add_results(schema)
    cols, packer = Columns(schema, 2), Packer(schema, 2)
    for row in range(2):
        packer.put(cols, row, {"m": row + 0.5, "v": np.array([row, 1.0])}, row)
        cols.status[row], cols.start[row], cols.elapsed[row] = 1, 0.1, 0.2
    store.write_rows(1, cols, rank=3)
    failed = Columns(schema, 1)
    failed.status[0] = 2
    store.write_rows(3, failed, rank=1)  # task 5 failed; task 4 failed once, then passed
    store.write_failures(
        [
            TaskFailure(5, 1, "h", "KeyError", "k", "tb"),
            TaskFailure(4, 1, "h", "OSError", "flaky", "tb"),
        ]
    )
    assert (tmp_path / "s.h5.failures").exists()  # waits beside the file until it closes
    store.write_ranks([{"host": "h", "local_rank": 0, "blas": []}])
    store.close({"wall_seconds": 1.0})
    res = open_results(tmp_path / "s.h5")
    assert res.task_id.tolist() == [2, 3, 4, 5]
    assert res.status.tolist() == [0, 1, 1, 2]
    assert res.rank.tolist() == [-1, 3, 3, 1]
    assert not (tmp_path / "s.h5.failures").exists()
    assert np.isnan(res.results["m"][0]) and res.results["m"][1:3].tolist() == [0.5, 1.5]
    assert res.errors["task"].tolist() == [5] and res.errors["type"][0] == "KeyError"
    assert res.count("done") == 2 and res.count("pending") == 1
    assert "4 tasks, 2 done" in repr(res)


def test_create_removes_the_file_if_it_fails(tmp_path, monkeypatch):
    def boom(self, grid):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Store, "_write_params", boom)
    with pytest.raises(RuntimeError):
        _store(tmp_path)
    assert not (tmp_path / "s.h5").exists()


def test_check_output_errors(tmp_path):
    assert check_output(tmp_path / "new.h5", overwrite=False) == tmp_path / "new.h5"
    (tmp_path / "old.h5").write_text("x")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        check_output(tmp_path / "old.h5", overwrite=False)
    with pytest.raises(OutputError, match="is not an mpibatch results file"):
        check_output(tmp_path / "old.h5", overwrite=True)  # not ours: never replaced
    store, _ = _store(tmp_path)
    store.close({})
    assert check_output(tmp_path / "s.h5", overwrite=True) == tmp_path / "s.h5"
    (tmp_path / "study.py").write_text("def task(p, rng): return 1\n")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="is a Python file"):
            check_output(tmp_path / "study.py", overwrite=overwrite)
    assert (tmp_path / "study.py").read_text().startswith("def task")
    with pytest.raises(OutputError, match="does not exist; create it"):
        check_output(tmp_path / "no" / "x.h5", overwrite=False)
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path, overwrite=True)


def test_to_pandas_names_the_extra_when_pandas_is_missing(tmp_path, monkeypatch):
    store, _ = _store(tmp_path)
    store.close({})
    res = open_results(tmp_path / "s.h5")
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"mpibatch\[pandas\]"):
        res.to_pandas()


@pytest.mark.parametrize("row_values", [1, 3000, 200_000])  # rows of 8 B, ~23 KiB, ~1.5 MiB
def test_results_written_in_pieces_land_on_their_rows(tmp_path, monkeypatch, row_values):
    from mpibatch import _h5

    monkeypatch.setattr(_h5, "WRITE_PIECE", 64 << 10)  # several pieces per report
    store = Store.create(tmp_path / "p.h5", Grid({"n": [1]}, reps=40), range(40), {})
    schema = infer_schema({"v": np.zeros(row_values)}, 0)
    store.add_results(schema)
    cols = Columns(schema, 37)
    cols.results["v"][...] = np.arange(37, dtype=float)[:, None]
    cols.status[...] = 1
    store.write_rows(2, cols, rank=0)
    store.close({})
    with h5py.File(tmp_path / "p.h5", "r") as f:
        v = f["results/v"][()]
    assert (v[2:39] == np.arange(37, dtype=float)[:, None]).all()
    assert (v[:2] == 0).all() and (v[39:] == 0).all()  # rows outside the report untouched


def test_a_new_file_appears_under_its_name_only_when_complete(tmp_path, monkeypatch):
    seen = []
    real_fill = Store._fill

    def fill(store, grid, attrs):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return real_fill(store, grid, attrs)

    monkeypatch.setattr(Store, "_fill", staticmethod(fill))
    store, _ = _store(tmp_path)
    assert seen and "s.h5" not in seen[0]  # built under another name ...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]  # ... then renamed
    assert store.path == tmp_path / "s.h5"
    store.close({})
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert "tasks/status" in f


@pytest.mark.parametrize("rows_at_once", [1, 2, 3, 4, 1 << 20])
def test_pending_and_counts_read_status_in_slices(tmp_path, monkeypatch, rows_at_once):
    monkeypatch.setattr(store_mod, "_ROWS_AT_ONCE", rows_at_once)
    grid = Grid({"n": list(range(10))}, reps=1)
    store = Store.create(tmp_path / "p.h5", grid, range(0, 10), {})
    status = np.array([1, 0, 0, 1, 2, 2, 2, 1, 1, 0], dtype=np.int8)
    store.f["tasks/status"][...] = status
    assert store.pending() == [(1, 3), (4, 7), (9, 10)]
    assert store.counts() == (4, 3)
    assert store.f["tasks/id"][()].tolist() == list(range(10))
    store.close({})


def test_a_task_table_larger_than_the_free_disk_is_refused_before_writing(tmp_path, monkeypatch):
    class Usage:
        free = 10_000

    monkeypatch.setattr(_output.shutil, "disk_usage", lambda path: Usage)
    grid = Grid({"name": ["a", "bbbb"]}, reps=1000)
    with pytest.raises(OutputError, match="2,000 tasks need 0.0 GB") as info:
        Store.create(tmp_path / "big.h5", grid, range(0, 2000), {})
    assert "--tasks START:STOP" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_result_datasets_carry_their_fill_value_for_plain_h5py_readers(tmp_path):
    store, _ = _store(tmp_path)
    schema = infer_schema({"n": 1, "x": 1.0, "z": 1j, "ok": True, "v": [1, 2]}, 0)
    store.add_results(schema)
    store.close({})
    with h5py.File(tmp_path / "s.h5", "r") as f:
        low = np.iinfo(np.int64).min
        for key in ("n", "v"):  # the HDF5 fill value and the attribute agree
            assert (
                f["results"][key].fillvalue == low and f["results"][key].attrs["fillvalue"] == low
            )
        assert np.isnan(f["results/x"].attrs["fillvalue"]) and np.isnan(f["results/x"].fillvalue)
        assert np.isnan(f["results/z"].attrs["fillvalue"].real)
        assert "fillvalue" not in f["results/ok"].attrs  # bool: no value to spare
        for key in ("n", "x", "z", "ok", "v"):
            assert "/tasks/status" in f["results"][key].attrs["missing"]


def test_blocks_that_only_failed_leave_the_fill_value_before_and_after_the_datasets(tmp_path):
    store, _ = _store(tmp_path)
    failed = Columns((), 2)  # a rank's block before its first result: no result columns
    failed.status[:] = 2
    store.write_rows(0, failed, rank=1)  # before any dataset exists: filled when made
    schema = infer_schema({"n": 1, "v": [1, 2]}, 0)
    store.add_results(schema)
    store.write_rows(4, failed, rank=2)  # after: filled at once
    store.close({})
    low = np.iinfo(np.int64).min
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["results/n"][()].tolist() == [low, low, 0, 0, low, low]  # 2, 3 pending: 0
        assert (f["results/v"][()][[0, 1, 4, 5]] == low).all()
