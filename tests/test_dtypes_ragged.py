"""Ragged arrays, strings and declared types: packing, the side file, the closed layout."""

import h5py
import numpy as np
import pytest

import mpibatch
from mpibatch._dtypes import Declared, LossyResult, parse_declarations
from mpibatch._ragged import describe_key, read_values
from mpibatch._records import Columns, Packer, declared_schema, infer_schema, join
from mpibatch.errors import ResultError, TaskFileError
from mpibatch.grid import Grid
from mpibatch.layout import values_path
from mpibatch.store import Store
from mpibatch.streams import task_generator

DECL = {
    "r": "ragged float64",
    "xy": ("ragged float32", (2,)),
    "s": "str",
    "names": ("str", (2,)),
    "b": "bytes",
    "code": "str4",
}


def _packer(decl=DECL):
    schema = declared_schema(parse_declarations(decl))
    assert schema is not None
    return schema, Packer(schema, -1)


def _value(i: int) -> dict:
    return {
        "r": np.arange(i, dtype=float),
        "xy": np.full((i % 3, 2), i, np.float32),
        "s": "é" * i,
        "names": [str(i), ""],
        "b": bytes([0, i]),
        "code": f"c{i}",
    }


def test_declarations_of_ragged_strings_and_bytes():
    got = parse_declarations(
        {"a": "ragged int8", "b": ("ragged float32", (3,)), "c": "str", "d": "str16"}
        | {"e": ("bytes", 2), "f": "bytes4"}
    )
    assert got["a"] == Declared(np.dtype("i1"), (), "ragged")
    assert got["b"] == Declared(np.dtype("f4"), (3,), "ragged")
    assert got["c"] == Declared(np.dtype("u1"), (), "str")  # variable length
    assert got["d"] == Declared(np.dtype("S16"), (), "str")
    assert got["e"] == Declared(np.dtype("u1"), (2,), "bytes")
    assert got["f"] == Declared(np.dtype("S4"), (), "bytes")


@pytest.mark.parametrize("spec", ["ragged", "ragged str", "ragged f8 f4", "str0", "strx", "text"])
def test_bad_declarations_say_what_is_expected(spec):
    with pytest.raises(TaskFileError, match="expected") as info:
        parse_declarations({"k": spec}, "rl.py")
    assert str(info.value).startswith("rl.py's results declares 'k'")


def test_a_declaration_with_every_shape_is_the_schema_before_any_task():
    assert declared_schema(parse_declarations({"x": "float32"})) is None  # shape from a task
    schema = declared_schema(parse_declarations(DECL))
    assert [f.key for f in schema] == list(DECL)
    assert [f.tail for f in schema] == [True, True, True, True, True, False]


def test_columns_carry_ragged_and_string_bytes_in_one_buffer():
    schema, p = _packer()
    cols = Columns(schema, 5)
    for row in (0, 1, 3, 4):
        p.put(cols, row, _value(row), row)
    cols.status[:] = [1, 1, 2, 1, 1]  # row 2 failed before storing
    sealed = cols.seal()
    back = Columns(schema, 5, sealed.buffer.copy())  # as rank 0 receives it
    tails = back.tail_bytes()
    r = np.frombuffer(tails["r"], float)
    assert r.tolist() == [0.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0]  # rows 1, 3, 4 (0 is empty)
    assert back.results["r"].tolist() == [0, 8, 0, 24, 32]  # bytes per row
    assert back.results["code"][3] == b"c3"
    joined = join([back, Columns(schema, 5, sealed.buffer.copy())])
    assert joined.rows == 10 and joined.tail_bytes()["r"].nbytes == 2 * 64


def test_a_value_that_fails_its_declaration_leaves_no_bytes_behind():
    schema, p = _packer()
    cols = Columns(schema, 2)
    p.put(cols, 0, _value(2), 0)
    bad = {**_value(5), "names": ["only one"]}
    with pytest.raises(LossyResult, match="task 1 returned 'names'"):
        p.put(cols, 1, bad, 1)
    cols.status[:] = [1, 2]
    sealed = cols.seal()
    assert sealed.results["r"].tolist() == [16, 0]
    assert sealed.tail_bytes()["r"].nbytes == 16  # row 1's rewards were taken back


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("r", 1.5, "expected ragged shape ('k',)"),
        ("r", np.zeros((2, 2)), "expected ragged shape"),
        ("xy", np.zeros((2, 3)), "expected ragged shape ('k', 2)"),
        ("r", ["a", "b"], "expected a number"),
        ("s", 1.5, "expected str"),
        ("s", "a\0b", "NUL"),
        ("s", "caf\udcff", "lone surrogate"),  # os.fsdecode of odd bytes
        ("names", ["a", "\udcff"], "lone surrogate"),
        ("code", "\udcfe", "lone surrogate"),
        ("b", "text", "expected bytes"),
        ("names", ["a", "b", "c"], "expected str of shape (2,)"),
        ("code", "abcde", "declared str4"),
        ("code", "ééé", "declared str4"),  # 6 bytes of UTF-8
    ],
)
def test_a_value_that_does_not_fit_its_declaration_fails_its_task(key, value, words):
    schema, p = _packer()
    cols = Columns(schema, 1)
    with pytest.raises(LossyResult, match="task 4 returned") as info:
        p.put(cols, 0, {**_value(1), key: value}, 4)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_other_keys_than_declared_fail_the_task():
    schema, p = _packer()
    with pytest.raises(LossyResult, match="expected .* declared"):
        p.put(Columns(schema, 1), 0, {"r": [1.0]}, 2)


@pytest.mark.parametrize(
    "first, later, words",
    [
        ({"s": "a"}, {"s": 1.0}, "expected str as task 0 returned"),
        ({"s": 1.0}, {"s": "a"}, "expected a number or a numeric array"),
        ({"v": np.zeros(3)}, {"v": np.zeros(4)}, "declare results = {'v': 'ragged float64'}"),
        ({"v": np.zeros((3, 2))}, {"v": np.zeros((4, 2))}, "('ragged float64', (2,))"),
    ],
)
def test_undeclared_kinds_and_shapes_that_differ_stop_the_run(first, later, words):
    schema = infer_schema(first, 0)
    with pytest.raises(ResultError) as info:
        Packer(schema, 0).put(Columns(schema, 1), 0, later, 9)
    assert not isinstance(info.value, LossyResult)
    assert words in str(info.value) and "task 9 returned" in str(info.value)


def _task(params, rng):
    i = params["rep"]
    if i == 3:
        raise ValueError("no value")
    if i == 5:
        return {"r": np.arange(3.0), "s": 5}  # does not fit "str": fails alone
    return {"r": rng.normal(size=i % 4), "s": f"model {i}"}


def test_run_results_keyword_declares_and_the_closed_file_is_plain_h5py(tmp_path):
    out = tmp_path / "rl.h5"
    s = mpibatch.run(_task, reps=8, seed=2, out=out, results={"r": "ragged float64", "s": "str"})
    assert (s.done, s.failed) == (6, 2)
    assert not values_path(out, "r").parent.exists()
    with h5py.File(out, "r") as f:
        status = f["tasks/status"][()]
        g = f["results/r"]
        assert g.attrs["mpibatch_type"] == "ragged" and g["values"].dtype == np.float64
        start, length = g["start"][()], g["length"][()]
        assert length.tolist() == [0, 1, 2, -1, 0, -1, 2, 3]
        rows = read_values(f, "r")
        for i in np.flatnonzero(status == 1):
            assert np.array_equal(g["values"][start[i] : start[i] + length[i]], rows[i])
            rng = task_generator(2, int(i))
            assert np.array_equal(rows[i], rng.normal(size=i % 4))
        assert f["results/s"].asstr()[7] == "model 7" and f["results/s"].asstr()[5] == ""
        assert describe_key(f["results/s"]) == ("str", "str", ())
        assert f["results"].attrs["keys"] == '["r", "s"]'
    res = mpibatch.open(out)  # until the results API knows ragged keys: object arrays
    assert res.results["r"][7].tolist() == rows[7].tolist()
    assert any("task 5 returned 's' as int; expected str" in m for m in res.errors["message"])


def test_a_killed_files_side_file_is_read_and_resume_appends_after_it(tmp_path):
    path = tmp_path / "k.h5"
    schema, p = _packer({"r": "ragged int64", "s": "str"})
    store = Store.create(path, Grid(None, reps=4), range(4), {"seed": 1})
    store.add_results(schema)
    cols = Columns(schema, 2)
    p.put(cols, 0, {"r": [1, 2], "s": "a"}, 0)
    p.put(cols, 1, {"r": [3], "s": "bé"}, 1)
    cols.status[:] = 1
    store.write_rows(0, cols.seal(), 0)
    store.flush()
    store.sidecars["r"].append(np.arange(5))  # bytes a kill left that no row points to
    got = read_values(store.f, "r", path=path)
    assert [None if v is None else v.tolist() for v in got] == [[1, 2], [3], None, None]
    assert read_values(store.f, "s", [1, 0], path=path) == ["bé", "a"]
    store.f.close()  # a kill: no close, the side files stay
    again = Store.reopen(path, range(4))
    assert again.sidecars["r"].size == 3 * 8  # cut to what done rows hold
    cols = Columns(schema, 2)
    p.put(cols, 0, {"r": [], "s": ""}, 2)
    p.put(cols, 1, {"r": [4, 5, 6], "s": "c"}, 3)
    cols.status[:] = 1
    again.write_rows(2, cols.seal(), 0)
    again.close({})
    with h5py.File(path, "r") as f:
        assert f["results/r/values"][()].tolist() == [1, 2, 3, 4, 5, 6]
        assert [v.tolist() for v in read_values(f, "r")] == [[1, 2], [3], [], [4, 5, 6]]
        assert f["results/s"].asstr()[()].tolist() == ["a", "bé", "", "c"]
    reopened = Store.reopen(path, range(4))  # a closed file resumed: values out again
    assert reopened.sidecars["r"].size == 6 * 8 and reopened.schema == schema
    reopened.close({})
    with h5py.File(path, "r") as f:
        assert [v.tolist() for v in read_values(f, "r")] == [[1, 2], [3], [], [4, 5, 6]]
        assert read_values(f, "s") == ["a", "bé", "", "c"]


def test_ranks_whose_first_tasks_returned_a_str_and_a_number_stop_the_run():
    from mpibatch._dispatch.ledger import SchemaGate

    class _Store:
        schema = None

        def add_results(self, schema):
            self.schema = schema

    gate = SchemaGate(_Store())
    assert gate.check(infer_schema({"x": 1.5}, 0), 0) is None
    line = gate.check(infer_schema({"x": "a"}, 3), 3)
    assert line is not None and "task 3 returned {x: str}; expected {x: float64}" in line
    assert gate.check(infer_schema({"x": 2.5}, 4), 4) is None


def test_the_results_flag_reads_types_and_shapes_and_says_what_is_wrong():
    from mpibatch._dtypes import parse_results_flag
    from mpibatch.errors import UsageError

    got = parse_results_flag("v=float64, trace=ragged float32[2], img=uint8[4,4], name=str")
    assert got == {
        "v": "float64",
        "trace": ("ragged float32", (2,)),
        "img": ("uint8", (4, 4)),
        "name": "str",
    }
    for bad in ("v", "=float64", "v=float64,,w=int8", "v=floot", "status=float64"):
        with pytest.raises(UsageError):
            parse_results_flag(bad)
