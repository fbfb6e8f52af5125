"""layout: the results file's schema, defined once and matching what store writes."""

import dataclasses
import json

import h5py
import numpy as np
import pytest

from mpibatch import _resume
from mpibatch._records import Columns, infer_schema
from mpibatch.grid import Grid
from mpibatch.layout import (
    ERROR_FIELDS,
    ERROR_NAMES,
    RANK_COLUMNS,
    STATUS_NAMES,
    STUDY_ATTRS,
    TASK_COLUMNS,
    TASK_STATUS,
    Status,
    failures_path,
    file_dtype,
    read_attrs,
    read_column,
    read_errors,
    same_study,
)
from mpibatch.results import open_results, read_failures
from mpibatch.runner import TaskFailure
from mpibatch.store import Store

FAILURES = [
    TaskFailure(3, 1, "node-é", "KeyError", "'k'", "Traceback (most recent call last):\n  ..."),
    TaskFailure(1, 0, "node-a", "ValueError", "bad mu 2.0", "tb"),
]


def _store(tmp_path, n=4):
    grid = Grid({"mu": [0.0, 1.0]}, reps=n // 2)
    return Store.create(tmp_path / "s.h5", grid, range(n), {"seed": 1})


def _write(store, statuses):
    schema = infer_schema(0.5, 0)
    store.add_results(schema)
    cols = Columns(schema, len(statuses))
    cols.status[:] = statuses
    cols.results["value"][:] = 0.5
    store.write_rows(0, cols, rank=1)


def test_status_members_are_the_bytes_in_a_written_file(tmp_path):
    store = _store(tmp_path)
    _write(store, [Status.DONE, Status.FAILED, Status.PENDING, Status.DONE])
    store.close({})
    with h5py.File(tmp_path / "s.h5", "r") as f:
        status = f[TASK_STATUS.path]
        assert status.dtype == np.dtype("i1") == np.dtype(TASK_STATUS.dtype)
        assert status[()].tobytes() == bytes([1, 2, 0, 1])
        assert f["tasks/rank"][()].tolist() == [1, 1, -1, 1]  # a pending row has no rank
    assert [int(s) for s in Status] == [0, 1, 2]
    assert [STATUS_NAMES[s] for s in Status] == ["pending", "done", "failed"]
    res = open_results(tmp_path / "s.h5")
    assert res.count("done") == 2 and res.count("failed") == 1 and res.count("pending") == 1


def test_task_columns_are_the_datasets_store_creates(tmp_path):
    _store(tmp_path).close({})
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert sorted(f["tasks"]) == sorted(c.name for c in TASK_COLUMNS)
        for col in TASK_COLUMNS:
            ds = f[col.path]
            assert ds.dtype == np.dtype(col.dtype), col.name
            if col.pending is not None:  # a new file holds every row pending
                assert np.array_equal(ds[()], np.full(4, col.pending, col.dtype), equal_nan=True)


def test_rank_columns_are_the_datasets_store_writes(tmp_path):
    store = _store(tmp_path)
    store.write_ranks([{"host": "h", "local_rank": 0, "blas": []}])
    store.close({})
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert sorted(f["ranks"]) == sorted(c.name for c in RANK_COLUMNS)
        for col in RANK_COLUMNS:
            info = h5py.check_string_dtype(f["ranks"][col.name].dtype)
            assert (info is not None) == (col.dtype == "text"), col.name
    assert read_column(tmp_path / "s.h5", "ranks/gpu_index").tolist() == [-1]
    assert read_column(tmp_path / "s.h5", "ranks/host").tolist() == ["h"]  # str, not bytes


def test_error_fields_are_the_fields_of_a_task_failure():
    attrs = [f.attr for f in ERROR_FIELDS]
    assert attrs == [f.name for f in dataclasses.fields(TaskFailure)]
    assert ERROR_NAMES == ("task", "rank", "host", "type", "message", "traceback")


def test_error_fields_round_trip_through_store_and_results(tmp_path):
    store = _store(tmp_path)
    _write(store, [Status.PENDING, Status.FAILED, Status.PENDING, Status.FAILED])
    store.write_failures(FAILURES)
    expected = sorted(
        ({f.name: getattr(fl, f.attr) for f in ERROR_FIELDS} for fl in FAILURES),
        key=_task,
    )
    store.f.close()  # killed: the failures wait in the sidecar, which results reads
    assert sorted(read_failures(failures_path(tmp_path / "s.h5")), key=_task) == expected
    assert _records(open_results(tmp_path / "s.h5").errors) == expected
    Store.reopen(tmp_path / "s.h5", range(4)).close({})  # resumed and closed: into /errors
    assert not failures_path(tmp_path / "s.h5").exists()
    with h5py.File(tmp_path / "s.h5", "r") as f:
        for fld in ERROR_FIELDS:
            ds = f["errors"][fld.name]
            if fld.dtype == "text":
                assert h5py.check_string_dtype(ds.dtype).encoding == "utf-8"
            else:
                assert ds.dtype == np.dtype(file_dtype(fld.dtype))
        assert read_errors(f) == expected
    assert _records(open_results(tmp_path / "s.h5").errors) == expected
    # resumed again: /errors goes back to the sidecar, and into /errors again on close
    Store.reopen(tmp_path / "s.h5", range(4)).close({})
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert read_errors(f) == expected
    kinds = [type(v) for v in read_errors(h5py.File(tmp_path / "s.h5", "r"))[0].values()]
    assert kinds == [fld.kind for fld in ERROR_FIELDS]


def _task(record):
    return record["task"]


def _records(errors):
    """Results.errors (one array per field) as records of plain values, by task."""
    assert sorted(errors) == sorted(ERROR_NAMES)  # /errors lists them alphabetically
    rows = zip(*(errors[name] for name in ERROR_NAMES), strict=True)
    out = [{f.name: f.kind(v) for f, v in zip(ERROR_FIELDS, row, strict=True)} for row in rows]
    return sorted(out, key=_task)


def test_read_attrs_gives_plain_values(tmp_path):
    _store(tmp_path).close({"name": "x", "flag": True})
    attrs = read_attrs(tmp_path / "s.h5")
    assert attrs["seed"] == 1 and type(attrs["seed"]) is int
    assert attrs["name"] == "x" and attrs["flag"] is True


def test_same_study_compares_grids_as_grids():
    grid = Grid({"mu": [0.0, 1.0], "name": ["a", "b"]}, reps=2)
    text = grid.to_json()
    respelled = json.dumps(json.loads(text), indent=2, sort_keys=True)
    assert respelled != text and same_study("grid", text, respelled)
    other = Grid({"mu": [0.0, 1.0], "name": ["a", "b"]}, reps=3).to_json()
    assert not same_study("grid", text, other)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("task", "task", True),
        ("task", "study:task", True),  # the CLI records a bare name, the API module:name
        ("__main__:task", "study:task", True),
        ("task", "study:other", False),
        ("Runner.task", "study:Runner.task", True),
    ],
)
def test_same_study_compares_function_names_without_their_module(a, b, same):
    assert same_study("function", a, b) is same


@pytest.mark.parametrize(
    ("key", "a", "b", "same"),
    [
        ("seed", 1, 1, True),
        ("seed", 1, 2, False),
        ("seed", 1, "1", False),
        ("streams", "task", "rank", False),
        ("task_file_sha256", "ab", "ab", True),
        ("task_file_sha256", "ab", "", False),
        ("tasks", "0:4", "0:4", True),
        ("tasks", "0:4", "4:8", False),
    ],
)
def test_same_study_is_plain_equality_otherwise(key, a, b, same):
    assert same_study(key, a, b) is same


def test_resume_checks_the_study_attributes_and_the_task_range():
    assert [key for key, _, _ in _resume._CHECKS if key != "tasks"] == list(STUDY_ATTRS)
    assert "tasks" in [key for key, _, _ in _resume._CHECKS]
