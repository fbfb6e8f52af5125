import numpy as np
import pytest

from mpibatch._dtypes import (
    Declared,
    LossyResult,
    declarations_of,
    fill_value,
    parse_declarations,
)
from mpibatch._records import (
    BARE,
    Buffers,
    Columns,
    Packer,
    columns_bytes,
    infer_schema,
    record_bytes,
)
from mpibatch.errors import ResultError, TaskFileError


def test_schema_of_a_dict_and_of_a_bare_value():
    s = infer_schema({"a": 1.5, "b": np.arange(3), "c": [1.0, 2.0]}, 0)
    assert [(f.key, f.dtype.str, f.shape) for f in s] == [
        ("a", "<f8", ()),
        ("b", np.dtype(int).str, (3,)),
        ("c", "<f8", (2,)),
    ]
    (f,) = infer_schema(np.zeros((2, 2), np.float32), 0)  # the kind fixes the dtype
    assert (f.key, f.dtype, f.shape) == (BARE, np.float64, (2, 2))


@pytest.mark.parametrize(
    "bad, words",
    [
        ([[1, 2], [3]], "ragged"),
        (np.array([object()]), "cannot store"),
        (None, "cannot store"),
        ([{"a": 1}], "cannot store"),
    ],
)
def test_a_value_that_cannot_be_stored_at_all_fails_its_task(bad, words):
    with pytest.raises(LossyResult, match=words) as info:  # per value: never the run
        infer_schema(bad, 17)
    assert "task 17" in str(info.value) and "\n" not in str(info.value)


def test_keys_with_a_slash_stop_the_run():
    with pytest.raises(ResultError, match="without '/'") as info:
        infer_schema({"a/b": 1.0}, 17)
    assert "task 17" in str(info.value) and not isinstance(info.value, LossyResult)


def test_strings_and_bytes_infer_variable_length_str_and_bytes():
    s, b, a = infer_schema({"s": "text", "b": b"\x00x", "a": np.array(["u", "vw"])}, 0)
    assert (s.kind, s.shape, s.tail) == ("str", (), True)
    assert (b.kind, b.shape, b.tail) == ("bytes", (), True)
    assert (a.kind, a.shape) == ("str", (2,))


def test_columns_round_trip_through_one_byte_buffer():
    schema = infer_schema({"x": 0.0, "v": np.zeros(3, np.int32)}, 0)
    cols = Columns(schema, 4)
    assert np.isnan(cols.results["x"]).all()  # not yet computed reads as NaN
    p = Packer(schema, 0)
    for row in range(4):
        p.put(cols, row, {"x": row / 2, "v": np.full(3, row, np.int32)}, row)
        cols.status[row] = 1
    back = Columns(schema, 4, cols.buffer.copy())
    assert back.results["x"].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert back.results["v"][3].tolist() == [3, 3, 3]
    assert back.status.tolist() == [1, 1, 1, 1]
    assert record_bytes(schema) == 17 + 8 + 24  # int32 stores as int64


def test_packer_rejects_changed_keys_shapes_and_unsafe_dtypes():
    schema = infer_schema({"x": 1.0, "ci": np.zeros(2)}, 3)
    cols, p = Columns(schema, 1), Packer(schema, 3)
    with pytest.raises(ResultError, match=r"keys \['x'\]; expected \['x', 'ci'\] as task 3"):
        p.put(cols, 0, {"x": 1.0}, 9)
    with pytest.raises(ResultError, match=r"'ci' with shape \(3,\).*expected shape \(2,\)"):
        p.put(cols, 0, {"x": 1.0, "ci": np.zeros(3)}, 9)
    p.put(cols, 0, {"x": np.float32(2), "ci": np.array([1, 2], np.float16)}, 9)  # any width
    assert cols.results["x"][0] == 2.0 and cols.results["ci"][0].tolist() == [1.0, 2.0]
    with pytest.raises(ResultError, match=r"'ci' as integer \(int64\); expected float"):
        p.put(cols, 0, {"x": 1.0, "ci": [1, 2]}, 9)  # another kind: whatever the order
    ischema = infer_schema(5, 0)
    with pytest.raises(ResultError, match="task 4 returned 'value' as float.*as task 0"):
        Packer(ischema, 0).put(Columns(ischema, 1), 0, 2.5, 4)


def test_buffers_give_the_smallest_kept_buffer_that_fits_and_keep_a_bounded_set():
    pool = Buffers(max_bytes=100)
    pool.min_bytes = 1  # every size pooled, so small numbers show the rules
    a, b = np.empty(60, np.uint8), np.empty(30, np.uint8)
    pool.give(a)
    pool.give(b)
    assert pool.take(20) is b and pool.take(20) is a  # smallest first, then the next
    fresh = pool.take(20)
    assert fresh is not a and fresh is not b and fresh.nbytes == 20
    for n in (60, 30, 50, 40):  # 180 bytes given: three kept whatever their size, no more
        pool.give(np.empty(n, np.uint8))
    assert sorted(k.nbytes for k in pool.kept) == [40, 50, 60]
    small = Buffers(max_bytes=100)
    small.min_bytes = 1
    for n in (10, 20, 30, 40, 50):  # the three largest; a fourth only within the 100 bytes
        small.give(np.empty(n, np.uint8))
    assert sorted(k.nbytes for k in small.kept) == [30, 40, 50]
    pool.give(np.empty(0, np.uint8))
    assert len(pool.kept) == 3  # empty buffers are not kept
    many = Buffers(max_bytes=1 << 20)
    many.min_bytes = 1
    for _ in range(40):
        many.give(np.empty(8, np.uint8))
    assert len(many.kept) == 16


def test_reused_columns_clear_only_the_rows_that_did_not_finish():
    schema = infer_schema({"x": 0.5, "n": np.zeros(2, dtype=np.int32)}, 0)
    pool = Buffers(1 << 20)
    pool.min_bytes = 1
    pool.give(np.full(columns_bytes(schema, 4) + 64, 0xFF, np.uint8))  # stale bytes
    cols = Columns.reusing(schema, 4, pool)
    for meta in ("start", "elapsed", "status"):  # zeroed, as in fresh columns
        assert (cols.arrays[meta] == 0).all()
    cols.results["x"][[0, 2]] = [1.5, 2.5]
    cols.results["n"][[0, 2]] = [[1, 2], [3, 4]]
    cols.status[:] = [1, 2, 1, 0]  # a failure and a row never run keep stale bytes so far
    cols.clear_unfinished()
    assert cols.results["x"][[0, 2]].tolist() == [1.5, 2.5]
    assert np.isnan(cols.results["x"][[1, 3]]).all()
    low = np.iinfo(np.int64).min  # the fill value of int results
    assert cols.results["n"].tolist() == [[1, 2], [low, low], [3, 4], [low, low]]


def test_small_buffers_are_left_to_malloc_and_small_columns_are_fresh():
    pool = Buffers(max_bytes=1 << 30)
    small, big = np.empty(pool.min_bytes - 1, np.uint8), np.empty(pool.min_bytes, np.uint8)
    pool.give(small)
    pool.give(big)
    assert len(pool.kept) == 1 and pool.kept[0] is big
    schema = infer_schema(0.5, 0)
    cols = Columns.reusing(schema, 3, pool)  # a few bytes: fresh, NaN until filled
    assert cols.storage is not big and not cols.stale and np.isnan(cols.results[BARE]).all()


# ---- the type policy: the kind of number fixes the dtype, never the width or the order ----

WIDTHS = {
    "int": [np.int8(-3), np.int64(7), 5, np.uint16(9), np.int32(-1)],
    "float": [np.float32(0.5), 1.25, np.float16(2.0), np.float64(-3.5)],
    "bool": [True, np.bool_(False)],
    "complex": [np.complex64(1 + 2j), 3j, np.complex128(-1)],
}
STORED = {"int": "<i8", "float": "<f8", "bool": "|b1", "complex": "<c16"}


@pytest.mark.parametrize("kind", sorted(WIDTHS))
def test_every_order_of_widths_stores_the_same_dtype_and_bytes(kind):
    values = WIDTHS[kind]
    seen = set()
    for shift in range(len(values)):  # each value first in turn
        order = values[shift:] + values[:shift]
        schema = infer_schema({"x": order[0], "v": np.asarray([order[0]] * 2)}, 0)
        cols, p = Columns(schema, len(values)), Packer(schema, 0)
        for row, v in enumerate(order):
            p.put(cols, (row + shift) % len(values), {"x": v, "v": np.asarray([v, v])}, row)
        assert [f.dtype.str for f in schema] == [STORED[kind]] * 2
        seen.add(cols.results["x"].tobytes() + cols.results["v"].tobytes())
    assert len(seen) == 1  # byte-identical whatever came first


@pytest.mark.parametrize(
    "first, then", [(0, 0.5), (0.5, 0), (True, 1), (1, True), (1.0, 1j), (np.int8(1), 2.0)]
)
def test_two_kinds_for_one_key_stop_the_run_in_either_order(first, then):
    schema = infer_schema({"m": first}, 0)
    with pytest.raises(ResultError) as info:
        Packer(schema, 0).put(Columns(schema, 1), 0, {"m": then}, 6)
    msg = str(info.value)
    assert not isinstance(info.value, LossyResult)  # a schema error: the run stops
    assert msg.startswith("task 6 returned 'm' as") and "as task 0 returned" in msg
    assert "declare results = {'m':" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "value, words",
    [
        (np.uint64(2**63), "above int64's maximum"),
        (2**64, "beyond 64-bit integers"),
        (np.longdouble(1) / 3, "without rounding"),
    ],
)
def test_a_value_of_the_right_kind_that_does_not_fit_fails_only_its_task(value, words):
    schema = infer_schema(np.int64(1) if np.asarray(value).dtype.kind != "f" else 1.0, 0)
    cols = Columns(schema, 1)
    with pytest.raises(LossyResult, match=words):
        Packer(schema, 0).put(cols, 0, value, 4)


def test_fill_values_mark_rows_without_a_result():
    assert np.isnan(fill_value(np.dtype("f4"))) and np.isnan(fill_value(np.dtype("c16")).imag)
    assert fill_value(np.dtype("i8")) == np.iinfo(np.int64).min
    assert fill_value(np.dtype("i2")) == -32768 and fill_value(np.dtype("u1")) == 255
    assert fill_value(np.dtype(bool)) is None  # no value to spare: mask by status
    schema = infer_schema({"n": 1, "b": True, "x": 1.0}, 0)
    cols = Columns(schema, 2)  # fresh columns hold the fill until a row is stored
    assert cols.results["n"].tolist() == [np.iinfo(np.int64).min] * 2
    assert cols.results["b"].tolist() == [False, False]


# ---- declarations: results = {...} in the task file ----


def test_declarations_parse_names_types_and_shapes():
    got = parse_declarations(
        {"x": "float32", "n": np.int16, "v": ("float64", (3,)), "w": ("u1", 2)}
    )
    assert got == {
        "x": Declared(np.dtype("f4")),
        "n": Declared(np.dtype("i2")),
        "v": Declared(np.dtype("f8"), (3,)),
        "w": Declared(np.dtype("u1"), (2,)),
    }
    assert parse_declarations(None) == {}


@pytest.mark.parametrize(
    "spec",
    [{"x": "U3"}, {"x": ("f8", "three")}, [1], "f4", {"x": "str0"}, {"x": "ragged"}],
)
def test_bad_declarations_say_what_is_expected(spec):
    with pytest.raises(TaskFileError, match="expected") as info:
        parse_declarations(spec, "study.py")
    assert str(info.value).startswith("study.py's results") and "\n" not in str(info.value)


def test_declarations_come_from_the_task_functions_module_only_as_a_dict():
    space: dict = {"results": {"x": "float32"}}
    exec("def task(params, rng):\n    return 1.0\n", space)
    assert declarations_of(space["task"]) == {"x": Declared(np.dtype("f4"))}
    space["results"] = object()  # e.g. a script's results = mpibatch.run(...): not ours
    assert declarations_of(space["task"]) == {}
    assert declarations_of(len) == {}  # no module globals at all


def _declared(decl: dict, first: object):
    schema = infer_schema({"m": first}, 0, parse_declarations(decl))
    return schema, Columns(schema, 1), Packer(schema, 0)


@pytest.mark.parametrize(
    "decl, values, stored",
    [
        ("float32", [0, 0.1, np.float64(2.5), np.int64(7)], [0.0, np.float32(0.1), 2.5, 7.0]),
        ("int16", [3, np.int64(-4), 5.0, np.uint8(200)], [3, -4, 5, 200]),
        ("uint64", [2**64 - 1, 0], [2**64 - 1, 0]),
        ("complex64", [1, 0.5, 2j], [1, 0.5, 2j]),
        ("bool", [True, np.bool_(False)], [True, False]),
    ],
)
def test_a_declared_key_takes_any_value_that_converts_without_loss(decl, values, stored):
    for value, want in zip(values, stored, strict=True):
        schema, cols, p = _declared({"m": decl}, values[0])
        assert schema[0].dtype == np.dtype(decl) and schema[0].declared
        p.put(cols, 0, {"m": value}, 1)
        assert cols.results["m"][0] == want


@pytest.mark.parametrize(
    "decl, value",
    [
        ("int16", 2.5),
        ("int16", 40000),
        ("int16", float("nan")),
        ("int64", True),
        ("uint8", -1),
        ("float32", 1e39),
        ("float64", 2**63 - 1),
        ("float64", 1j),
        ("bool", 1),
    ],
)
def test_a_declared_key_fails_the_task_of_a_value_that_does_not_convert(decl, value):
    schema = infer_schema({"m": 0, "k": 1.0}, 0, parse_declarations({"m": decl}))
    cols, p = Columns(schema, 1), Packer(schema, 0)
    with pytest.raises(LossyResult, match=f"task 8 returned 'm'.*declares it {decl}"):
        p.put(cols, 0, {"m": value, "k": 2.0}, 8)
    assert np.isnan(cols.results["k"][0])  # no key of a failed task keeps a value


def test_a_declared_shape_is_the_schema_whatever_the_first_value():
    schema = infer_schema({"v": [1, 2, 3]}, 0, parse_declarations({"v": ("float32", (3,))}))
    assert (schema[0].dtype, schema[0].shape) == (np.float32, (3,))
    assert infer_schema({"v": 1}, 0) == infer_schema({"v": np.int8(1)}, 0)  # kind only
