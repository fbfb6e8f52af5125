import numpy as np
import pytest

from mpibatch._records import (
    BARE,
    Buffers,
    Columns,
    Packer,
    columns_bytes,
    infer_schema,
    record_bytes,
)
from mpibatch.errors import ResultError


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
        ("text", "expected a number"),
        ([[1, 2], [3]], "ragged"),
        (np.array([object()]), "expected a number"),
        (None, "expected a number"),
        ({"a/b": 1.0}, "without '/'"),
    ],
)
def test_unstorable_returns_name_the_task_and_say_what_to_do(bad, words):
    with pytest.raises(ResultError, match=words) as info:
        infer_schema(bad, 17)
    assert "task 17" in str(info.value)


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
    for n in (60, 30, 50):  # 140 bytes given: the largest that fit in 100 are kept
        pool.give(np.empty(n, np.uint8))
    assert sorted(k.nbytes for k in pool.kept) == [60]
    pool.give(np.empty(0, np.uint8))
    assert len(pool.kept) == 1  # empty buffers are not kept
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
