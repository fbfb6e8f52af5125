import numpy as np
import pytest

from mpibatch._records import BARE, Columns, Packer, infer_schema, record_bytes
from mpibatch.errors import ResultError


def test_schema_of_a_dict_and_of_a_bare_value():
    s = infer_schema({"a": 1.5, "b": np.arange(3), "c": [1.0, 2.0]}, 0)
    assert [(f.key, f.dtype.str, f.shape) for f in s] == [
        ("a", "<f8", ()),
        ("b", np.dtype(int).str, (3,)),
        ("c", "<f8", (2,)),
    ]
    (f,) = infer_schema(np.zeros((2, 2), np.float32), 0)
    assert (f.key, f.dtype, f.shape) == (BARE, np.float32, (2, 2))


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
    assert record_bytes(schema) == 17 + 8 + 12


def test_packer_rejects_changed_keys_shapes_and_unsafe_dtypes():
    schema = infer_schema({"x": 1.0, "ci": np.zeros(2)}, 3)
    cols, p = Columns(schema, 1), Packer(schema, 3)
    with pytest.raises(ResultError, match=r"keys \['x'\]; expected \['x', 'ci'\] as task 3"):
        p.put(cols, 0, {"x": 1.0}, 9)
    with pytest.raises(ResultError, match=r"'ci' with shape \(3,\).*expected shape \(2,\)"):
        p.put(cols, 0, {"x": 1.0, "ci": np.zeros(3)}, 9)
    p.put(cols, 0, {"x": 2, "ci": [1, 2]}, 9)  # int -> float64 is a safe cast
    assert cols.results["x"][0] == 2.0
    ischema = infer_schema(5, 0)
    with pytest.raises(ResultError, match="dtype float64"):
        Packer(ischema, 0).put(Columns(ischema, 1), 0, 2.5, 4)
