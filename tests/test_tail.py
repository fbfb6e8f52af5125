"""The first ragged key's values in the results file's own tail (_tail.py)."""

import os

import h5py
import numpy as np
import pytest

from mpibatch import _tail
from mpibatch._dtypes import parse_declarations
from mpibatch._ragged import read_values
from mpibatch._records import Columns, Packer, declared_schema
from mpibatch.errors import OutputError
from mpibatch.grid import Grid
from mpibatch.layout import open_file, values_path
from mpibatch.store import Store

BIG = 40_000  # float64 values per row: 4 rows are over _tail.THRESHOLD


def _store(path, decl, n=4):
    schema = declared_schema(parse_declarations(decl))
    assert schema is not None
    store = Store.create(path, Grid(None, reps=n), range(n), {"seed": 1})
    store.add_results(schema)
    return store, schema, Packer(schema, -1)


def _write(store, schema, packer, first, values):
    cols = Columns(schema, len(values))
    for k, v in enumerate(values):
        packer.put(cols, k, v, first + k)
    cols.status[:] = 1
    store.write_rows(first, cols.seal(), 0)
    store.flush()


def _rows(n, size=BIG):
    return [np.full(size + i, float(i)) for i in range(n)]


def test_big_values_become_the_dataset_where_they_were_written(tmp_path):
    path = tmp_path / "t.h5"
    store, schema, p = _store(path, {"r": "ragged float64", "s": "ragged int32"})
    rows = _rows(4)
    _write(store, schema, p, 0, [{"r": v, "s": np.arange(i)} for i, v in enumerate(rows)])
    x = store.tail_at
    assert x % (1 << 20) == 0 and os.path.getsize(path) == x + sum(v.nbytes for v in rows)
    assert values_path(path, "s").is_file() and not values_path(path, "r").is_file()
    with open_file(path) as f:  # a running file (this process writes it): the tail is read
        assert int(f["results/r"].attrs[_tail.TAIL_ATTR]) == x
        got = read_values(f, "r")
        assert all(np.array_equal(a, b) for a, b in zip(got, rows, strict=True))
    store.close({})
    with h5py.File(path, "r") as f:
        values = f["results/r/values"]
        assert values.id.get_offset() == x  # no byte moved
        assert _tail.TAIL_ATTR not in f["results/r"].attrs  # the file may grow past it now
        start, length = f["results/r/start"][()], f["results/r/length"][()]
        for i, v in enumerate(rows):
            assert np.array_equal(values[start[i] : start[i] + length[i]], v)
        assert [a.tolist() for a in read_values(f, "s")] == [list(range(i)) for i in range(4)]
    assert not values_path(path, "r").parent.exists()


def test_small_values_are_written_into_the_dataset_wherever_hdf5_puts_it(tmp_path):
    path = tmp_path / "t.h5"
    store, schema, p = _store(path, {"r": "ragged float64"})
    rows = _rows(4, size=3)
    _write(store, schema, p, 0, [{"r": v} for v in rows])
    store.close({})
    with h5py.File(path, "r") as f:
        assert f["results/r/values"].shape == (sum(len(v) for v in rows),)
        assert all(np.array_equal(a, b) for a, b in zip(read_values(f, "r"), rows, strict=True))
    assert os.path.getsize(path) < (1 << 20)  # the tail's room is given back


def test_a_killed_runs_tail_is_moved_to_the_side_file_on_resume(tmp_path):
    path = tmp_path / "t.h5"
    store, schema, p = _store(path, {"r": "ragged float64"})
    rows = _rows(4)
    _write(store, schema, p, 0, [{"r": v} for v in rows[:2]])
    store.sidecars["r"].append(np.arange(7.0))  # bytes a kill left that no row points to
    x = store.tail_at
    store.f.close()  # a kill: no close
    with h5py.File(path, "r") as f:  # plain h5py reads a killed file
        assert f["tasks/status"][()].tolist() == [1, 1, 0, 0]
        assert np.array_equal(read_values(f, "r", [1])[0], rows[1])
    again = Store.reopen(path, range(4))
    assert os.path.getsize(path) <= x and again.sidecars["r"].size == (2 * BIG + 1) * 8
    _write(again, schema, p, 2, [{"r": v} for v in rows[2:]])
    again.close({})
    with h5py.File(path, "r") as f:
        assert all(np.array_equal(a, b) for a, b in zip(read_values(f, "r"), rows, strict=True))


def test_rows_whose_tail_was_cut_before_resume_run_again(tmp_path):
    path = tmp_path / "t.h5"
    store, schema, p = _store(path, {"r": "ragged float64"})
    _write(store, schema, p, 0, [{"r": v} for v in _rows(2)])
    store.f.close()  # a kill; then the file opened to write with plain h5py: HDF5 cuts it
    with h5py.File(path, "a") as f:
        f.attrs["note"] = "looked at it"
    again = Store.reopen(path, range(4))
    assert again.pending() == [(0, 4)]  # nothing lost silently: both rows run again
    assert again.f["results/r/length"][()].tolist() == [-1, -1, -1, -1]
    again.close({})


@pytest.mark.parametrize("allocated", [0, 1, (1 << 20) - 1, 5 << 20])
def test_the_tail_starts_on_a_mib_past_the_slack(allocated):
    x = _tail.place(allocated)
    assert (
        x % (1 << 20) == 0
        and x - allocated >= _tail.SLACK
        and x - allocated < _tail.SLACK + (1 << 20)
    )


def test_a_file_cut_short_while_the_tail_is_written_stops_the_run_with_one_line(tmp_path):
    path = tmp_path / "t.h5"
    store, schema, p = _store(path, {"r": "ragged float64"})
    _write(store, schema, p, 0, [{"r": v} for v in _rows(2)])
    os.truncate(path, store.tail_at + 10)
    with pytest.raises(OutputError, match="cut short while 'r' values were written"):
        store.flush()
    store.f.close()
    again = Store.reopen(path, range(4))  # the rows whose values are gone run again
    assert again.pending() == [(0, 4)]
    again.close({})


def _episode(params, rng):
    return {"r": rng.normal(size=params["rep"] * 20_000), "name": f"t{params['rep']}"}


def test_a_run_with_a_relative_out_path_keeps_its_values(tmp_path, monkeypatch):
    import mpibatch

    monkeypatch.chdir(tmp_path)
    mpibatch.run(_episode, reps=9, seed=4, out="rel.h5", quiet=True,
                 results={"r": "ragged float64", "name": "str"})  # fmt: skip
    with h5py.File(tmp_path / "rel.h5", "r") as f:
        assert f["tasks/status"][()].tolist() == [1] * 9
        got = read_values(f, "r")
        assert [len(v) for v in got] == [i * 20_000 for i in range(9)]
        assert f["results/name"].asstr()[8] == "t8"
    assert not (tmp_path / "rel.h5.values").exists()


@pytest.mark.parametrize("a, b", [(3 << 20, 1 << 20), (1 << 20, 3 << 20), (100, 0), (0, 100)])
def test_bytes_move_within_a_file_whatever_the_overlap(tmp_path, a, b, monkeypatch):
    monkeypatch.setattr(_tail, "_PIECE", 1 << 20)  # several pieces, overlapping ranges
    path = tmp_path / "f.bin"
    data = np.random.default_rng(0).integers(0, 256, 5 << 20, dtype=np.uint8).tobytes()
    n = (5 << 20) - max(a, b)
    path.write_bytes(data)
    _tail._move(path, a, b, n)
    assert path.read_bytes()[b : b + n] == data[a : a + n]
