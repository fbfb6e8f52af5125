"""Unit tests for mpibatch.grid (single process)."""

from __future__ import annotations

import itertools
import json
import math
import random
import subprocess
import sys

import numpy as np
import pytest

from mpibatch.errors import GridError, UsageError
from mpibatch.grid import Grid


def sample_grids() -> list[Grid]:
    return [
        Grid({"a": [1, 2, 3], "b": ["x", "y"], "c": [0.5, 1.5]}, reps=3),
        Grid({"n": [10, 20], **Grid.zip(alpha=[0.1, 0.2, 0.3], l1=[1, 2, 3])}, reps=2),
        Grid({"lr": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}),
        Grid({"a": [1, 2], "b": [3, 4, 5], "c": [6, 7], "d": ["p", "q", "r"]}),
        Grid(reps=5),
        Grid(),
        Grid({"x": [1]}, reps=4),
    ]


# ---------------------------------------------------------------- flattening order


def test_flatten_order_is_row_major_with_rep_fastest():
    g = Grid({"a": [1, 2, 3], "b": ["x", "y"], "c": [0.5, 1.5]}, reps=3)
    ref = [
        {"a": a, "b": b, "c": c, "rep": r}
        for a in [1, 2, 3]
        for b in ["x", "y"]
        for c in [0.5, 1.5]
        for r in range(3)
    ]
    assert g.n_tasks == len(ref) == 36
    assert list(g.iter_params(0, g.n_tasks)) == ref
    assert [g.params(i) for i in range(g.n_tasks)] == ref
    assert all(list(p) == ["a", "b", "c", "rep"] for p in g.iter_params(0, g.n_tasks))


def test_zipped_group_iterates_together():
    g = Grid({"n": [10, 20], **Grid.zip(alpha=[0.1, 0.2, 0.3], l1=[1, 2, 3])}, reps=2)
    ref = [
        {"n": n, "alpha": alpha, "l1": l1, "rep": r}
        for n in [10, 20]
        for alpha, l1 in zip([0.1, 0.2, 0.3], [1, 2, 3], strict=True)
        for r in range(2)
    ]
    assert g.names == ("n", "alpha", "l1")
    assert g.sizes == (2, 3)
    assert g.n_tasks == 12
    assert list(g.iter_params(0, 12)) == ref
    assert [g.params(i) for i in range(12)] == ref


def test_zipped_group_given_as_tuple_key():
    g = Grid({("alpha", "l1"): [(0.1, 1), (0.2, 2)], "s": ["u", "v"]})
    assert g.names == ("alpha", "l1", "s")
    assert g.params(3) == {"alpha": 0.2, "l1": 2, "s": "v", "rep": 0}


def test_zip_helper_returns_tuple_key_and_rows():
    assert Grid.zip(alpha=[0.1, 0.2], l1=[1, 2]) == {("alpha", "l1"): [(0.1, 1), (0.2, 2)]}


def test_empty_grid_is_just_reps():
    g = Grid(reps=4)
    assert g.names == () and g.sizes == ()
    assert g.n_tasks == 4
    assert list(g.iter_params(0, 4)) == [{"rep": r} for r in range(4)]
    assert Grid().n_tasks == 1
    assert Grid().params(0) == {"rep": 0}
    cols = g.columns(1, 3)
    assert list(cols) == ["rep"] and cols["rep"].tolist() == [1, 2]


@pytest.mark.parametrize("g", sample_grids(), ids=lambda g: g.describe())
def test_params_matches_iter_params_on_random_spans(g):
    rng = random.Random(1234)
    n = g.n_tasks
    everything = [g.params(i) for i in range(n)]
    for _ in range(200):
        start = rng.randrange(0, n + 1)
        stop = rng.randrange(start, n + 1)
        assert list(g.iter_params(start, stop)) == everything[start:stop], (start, stop)


@pytest.mark.parametrize("g", sample_grids(), ids=lambda g: g.describe())
def test_columns_match_iter_params(g):
    rng = random.Random(99)
    n = g.n_tasks
    for _ in range(50):
        start = rng.randrange(0, n + 1)
        stop = rng.randrange(start, n + 1)
        cols = g.columns(start, stop)
        rows = list(g.iter_params(start, stop))
        assert list(cols) == [*g.names, "rep"]
        for name, col in cols.items():
            assert len(col) == stop - start
            assert col.tolist() == [p[name] for p in rows], (name, start, stop)


def test_columns_dtypes():
    g = Grid({"i": [1, 2], "f": [0.5, 1], "s": ["a", "long string"]}, reps=2)
    cols = g.columns(0, g.n_tasks)
    assert cols["i"].dtype == np.int64
    assert cols["f"].dtype == np.float64
    assert cols["s"].dtype.kind == "U"
    assert cols["rep"].dtype == np.int64
    assert cols["s"].tolist()[-1] == "long string"
    empty = g.columns(3, 3)
    assert {k: (len(v), v.dtype.kind) for k, v in empty.items()} == {
        "i": (0, "i"),
        "f": (0, "f"),
        "s": (0, "U"),
        "rep": (0, "i"),
    }


def test_iter_params_yields_fresh_dicts():
    g = Grid({"lr": [0.1, 0.2]}, reps=3)
    ps = list(g.iter_params(0, g.n_tasks))
    ps[0]["lr"] = 99
    assert ps[1]["lr"] == 0.1
    assert len({id(p) for p in ps}) == len(ps)
    assert g.params(0)["lr"] == 0.1
    assert list(g.iter_params(2, 2)) == []


def test_large_grid_spans_without_materializing():
    g = Grid({"a": list(range(1000)), "b": list(range(1000))}, reps=1000)
    assert g.n_tasks == 10**9
    start = 123_456_789
    got = list(g.iter_params(start, start + 5))
    assert got == [g.params(i) for i in range(start, start + 5)]
    assert got[0] == {"a": 123, "b": 456, "rep": 789}
    assert g.columns(start, start + 2)["b"].tolist() == [456, 456]


# ---------------------------------------------------------------- values


def test_value_kinds_are_normalized():
    g = Grid(
        {
            "i": [np.int64(1), 2],
            "f": [1, 2.5, np.float32(0.5)],
            "s": [np.str_("a"), "b"],
            "nan": [float("nan"), 1.0],
            "arr": np.arange(3),
            "sarr": np.array(["p", "q"]),
        }
    )
    p = g.params(0)
    assert [type(p[k]) for k in ("i", "f", "s", "nan", "arr", "sarr")] == [
        int,
        float,
        str,
        float,
        int,
        str,
    ]
    assert g.axis_values()["f"] == [1.0, 2.5, 0.5]
    assert all(type(v) is float for v in g.axis_values()["f"])
    assert math.isnan(p["nan"])


def test_axis_values_as_given():
    g = Grid({"n": [3, 1, 2], **Grid.zip(a=[0.1, 0.1], b=["x", "y"])})
    assert g.axis_values() == {"n": [3, 1, 2], "a": [0.1, 0.1], "b": ["x", "y"]}


def test_describe():
    assert Grid({"n": [1, 2, 3], "stat": ["a", "b"]}, reps=100).describe() == (
        "3 x 2 (n, stat) x 100 reps = 600 tasks"
    )
    g = Grid({"n": [1, 2], **Grid.zip(alpha=[1, 2, 3], l1=[4, 5, 6])})
    assert g.describe() == "2 x 3 (n, alpha+l1) x 1 rep = 6 tasks"
    assert Grid(reps=5).describe() == "5 reps = 5 tasks"
    assert Grid().describe() == "1 rep = 1 task"


def test_equality():
    assert Grid({"x": [1, 2]}, reps=2) == Grid({"x": [1, 2]}, reps=2)
    assert Grid({"x": [1, 2]}, reps=2) != Grid({"x": [1, 2]}, reps=3)
    assert Grid({"x": [1, 2]}) != Grid({"x": [1.0, 2.0]})
    assert Grid({"x": [1], "y": [2]}) != Grid({"y": [2], "x": [1]})
    assert Grid({"x": [1], "y": [2]}) != Grid(Grid.zip(x=[1], y=[2]))
    assert Grid({"x": [float("nan")]}) == Grid({"x": [float("nan")]})
    assert Grid() != {"rep": [0]}


# ---------------------------------------------------------------- from_spec


@pytest.mark.parametrize(
    "spec, name, values",
    [
        ("n=1,2,3", "n", [1, 2, 3]),
        ("x=0.5,2", "x", [0.5, 2.0]),
        ("x=1.0,2.0", "x", [1.0, 2.0]),
        ("x=1e-3, 1", "x", [0.001, 1.0]),
        ("s=ab, c d ,e", "s", ["ab", "c d", "e"]),
        ("s=ab:cd", "s", ["ab:cd"]),
        ("n=1:4,10", "n", [1, 2, 3, 10]),
        ("n=0:10:3", "n", [0, 3, 6, 9]),
        ("n=5:0:-2", "n", [5, 3, 1]),
        ("n = -2:1", "n", [-2, -1, 0]),
        ("x=0:1:5lin", "x", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("x=2:2:1lin", "x", [2.0]),
        ("x=0:1:3lin,7", "x", [0.0, 0.5, 1.0, 7.0]),
    ],
)
def test_from_spec_values(spec, name, values):
    g = Grid.from_spec([spec])
    assert g.names == (name,)
    got = g.axis_values()[name]
    assert got == values
    assert [type(v) for v in got] == [type(v) for v in values]


def test_from_spec_log_range_has_exact_ends():
    lr = Grid.from_spec(["lr=1e-5:1e-3:5log"]).axis_values()["lr"]
    assert len(lr) == 5
    assert lr[0] == 1e-5 and lr[-1] == 1e-3
    assert lr == pytest.approx([1e-5, 10**-4.5, 1e-4, 10**-3.5, 1e-3], rel=1e-12)
    assert Grid.from_spec(["x=-1:-100:3log"]).axis_values()["x"] == pytest.approx([-1, -10, -100])


def test_from_spec_lin_ends_are_exact():
    x = Grid.from_spec(["x=0.1:0.7:7lin"]).axis_values()["x"]
    assert x[0] == 0.1 and x[-1] == 0.7 and len(x) == 7


def test_from_spec_zipped_and_several_axes():
    g = Grid.from_spec(["n=1,2", "alpha+l1=0.1/1, 0.2/2", "s=a"], reps=3)
    assert g == Grid({"n": [1, 2], ("alpha", "l1"): [(0.1, 1), (0.2, 2)], "s": ["a"]}, reps=3)
    assert g.sizes == (2, 2, 1)
    assert g.params(5) == {"n": 1, "alpha": 0.2, "l1": 2, "s": "a", "rep": 2}


def test_from_spec_empty_list_is_empty_grid():
    assert Grid.from_spec([], reps=2) == Grid(reps=2)


# ---------------------------------------------------------------- errors


def raises(match_all: list[str], fn, *args, **kwargs) -> str:
    with pytest.raises(GridError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    assert "expected" in msg and "got" in msg and ";" in msg, msg
    for part in match_all:
        assert part in msg, (part, msg)
    return msg


@pytest.mark.parametrize(
    "axes, parts",
    [
        ({"lr": []}, ["'lr'", "non-empty", "--grid lr="]),
        ({"lr": 0.1}, ["'lr'", "a list of values", "0.1"]),
        ({"lr": "abc"}, ["'lr'", "a list of values"]),
        ({"lr": {1, 2}}, ["'lr'", "set"]),
        ({"x": [1, "a"]}, ["'x'", "mix", "1", "'a'"]),
        ({"x": ["a", 2.5]}, ["'x'", "mix"]),
        ({"x": [1, None]}, ["'x'", "NoneType"]),
        ({"x": ["a", None]}, ["'x'", "NoneType"]),
        ({"x": [[1, 2]]}, ["'x'", "list"]),
        ({"x": [True, 1]}, ["'x'", "mix", "1", "True"]),
        ({"x": [0.5, np.bool_(True)]}, ["'x'", "mix", "bools"]),
        ({"x": ["a", True]}, ["'x'", "mix", "'a'", "True"]),
        ({"x": [1 + 2j]}, ["'x'", "complex"]),
        ({"x": [object()]}, ["'x'", "object"]),
        ({"x": [2**70]}, ["'x'", "int64"]),
        ({"1x": [1]}, ["'1x'", "identifier"]),
        ({"a-b": [1]}, ["'a-b'", "identifier"]),
        ({"class": [1]}, ["'class'", "identifier"]),
        ({"": [1]}, ["identifier"]),
        ({"rep": [1]}, ["'rep'", "replicate"]),
        ({("a", "rep"): [(1, 2)]}, ["'rep'"]),
        ({"a": [1], ("b", "a"): [(1, 2)]}, ["'a'", "once"]),
        ({("a", "a"): [(1, 2)]}, ["'a'", "once"]),
        ({3: [1]}, ["grid axes", "3"]),
        ({(): [1]}, ["grid axes"]),
        ({("a", 3): [(1, 2)]}, ["identifier", "3"]),
        ({("a", "b"): [(1, 2), (3,)]}, ["a+b", "2 values", "(3,)"]),
        ({("a", "b"): [1, 2]}, ["a+b", "2 values"]),
        ({("a", "b"): []}, ["a+b", "non-empty"]),
        ({("a", "b"): [(1, "x"), ("y", 2)]}, ["'a'", "mix"]),
    ],
)
def test_grid_value_and_name_errors(axes, parts):
    raises(parts, Grid, axes)


@pytest.mark.parametrize("reps", [0, -1, 1.5, True, "3", None])
def test_bad_reps(reps):
    raises(["reps", "integer >= 1", "--reps"], Grid, {"x": [1]}, reps)


def test_numpy_reps_accepted():
    assert Grid({"x": [1]}, reps=np.int32(3)).n_tasks == 3


def test_too_many_tasks():
    raises(["2**62"], Grid, reps=2**62 + 1)
    raises(["2**62"], Grid, {"a": [1, 2]}, 2**61 + 1)
    assert Grid({"a": [1, 2]}, reps=2**61).n_tasks == 2**62


def test_axes_not_a_mapping():
    raises(["dict", "list"], Grid, [("a", [1])])


def test_zip_errors():
    raises(
        ["Grid.zip", "equal length", "'alpha': 2", "'l1': 3"], Grid.zip, alpha=[1, 2], l1=[1, 2, 3]
    )
    raises(["Grid.zip", "none"], Grid.zip)
    raises(["'alpha'", "list"], Grid.zip, alpha=5, l1=[1])


@pytest.mark.parametrize(
    "spec, parts",
    [
        ("lr", ["'lr'", "NAME=", "--grid"]),
        ("=1,2", ["'=1,2'", "axis name"]),
        (" + b=1/2", ["' + b=1/2'", "axis name"]),
        ("lr=", ["'lr='", "empty"]),
        ("lr=1,,2", ["'lr=1,,2'", "empty"]),
        ("lr=1:x:3log", ["'lr=1:x:3log'", "'1:x:3log'", "5log"]),
        ("lr=1:2:0log", ["'lr=1:2:0log'", "range"]),
        ("lr=1:2:-1lin", ["'lr=1:2:-1lin'", "range"]),
        ("lr=0:1:3log", ["'lr=0:1:3log'", "range"]),
        ("lr=-1:1:3log", ["'lr=-1:1:3log'", "range"]),
        ("n=5:1", ["'n=5:1'", "non-empty"]),
        ("n=0.5:2", ["'n=0.5:2'", "LO:HI"]),
        ("n=0:10:0", ["'n=0:10:0'", "range"]),
        ("n=0:10:2:3", ["'n=0:10:2:3'", "range"]),
        ("n=1:", ["'n=1:'", "range"]),
        ("a+b=1/2,3", ["'a+b=1/2,3'", "2 values", "'3'"]),
        ("a+b=1/2/3", ["'a+b=1/2/3'", "2 values"]),
        ("a+b=0:3/1", ["'a+b=0:3/1'", "no ranges"]),
        ("a+=1/2", ["'a+=1/2'", "axis name"]),
        ("x=1,a", ["'x'", "mix"]),
        ("rep=1,2", ["'rep'"]),
        ("my-axis=1", ["'my-axis'", "identifier"]),
    ],
)
def test_from_spec_errors(spec, parts):
    raises(parts, Grid.from_spec, [spec])


def test_from_spec_duplicate_axis():
    raises(["'n'", "'n=1,2'", "'n=3'"], Grid.from_spec, ["n=1,2", "n=3"])
    raises(["'a'", "'a+b=1/2'", "'a=3'"], Grid.from_spec, ["a+b=1/2", "a=3"])


def test_from_spec_not_a_string():
    raises(["grid spec", "NAME="], Grid.from_spec, [3])


def test_from_spec_bad_reps():
    raises(["reps"], Grid.from_spec, ["n=1"], reps=0)


def test_task_id_errors():
    g = Grid({"x": [1, 2]}, reps=2)
    for bad in (-1, 4, 1.5, "0", None):
        raises(["task id", "[0, 4)"], g.params, bad)
    assert g.params(np.int64(3)) == {"x": 2, "rep": 1}


@pytest.mark.parametrize("span", [(2, 1), (-1, 2), (0, 5), (0.0, 1), (None, 2)])
def test_span_errors(span):
    g = Grid({"x": [1, 2]}, reps=2)
    raises(["task range", "<= 4"], g.iter_params, *span)
    raises(["task range", "<= 4"], g.columns, *span)


def test_grid_error_is_a_usage_error():
    with pytest.raises(UsageError):
        Grid({"x": []})


# ---------------------------------------------------------------- json, coerce


def test_json_round_trip_is_lossless():
    g = Grid(
        {
            "n": [3, 1, 2],
            ("alpha", "l1"): [(1.0, 1), (0.5, 2)],
            "s": ["é", "a b", ""],
            "f": [1.0, 2.0],
            "nan": [float("nan"), float("inf"), -0.0],
            "big": [2**62, -(2**63)],
        },
        reps=7,
    )
    s = g.to_json()
    json.loads(s)  # it is JSON (with NaN/Infinity, as Python's json writes them)
    h = Grid.from_json(s)
    assert h == g
    assert h.to_json() == s
    assert h.names == g.names and h.sizes == g.sizes and h.reps == 7
    assert [type(v) for v in h.axis_values()["f"]] == [float, float]
    assert [type(v) for v in h.axis_values()["alpha"]] == [float, float]
    assert math.copysign(1, h.axis_values()["nan"][2]) == -1
    assert h.describe() == g.describe()
    for i in (0, 17, g.n_tasks - 1):
        assert json.dumps(h.params(i)) == json.dumps(g.params(i))


def test_json_round_trip_empty_grid():
    assert Grid.from_json(Grid(reps=3).to_json()) == Grid(reps=3)


@pytest.mark.parametrize(
    "s",
    [
        "not json",
        "[]",
        '{"dims": 3, "reps": 1}',
        '{"dims": [{"names": ["x"]}], "reps": 1}',
        '{"dims": [{"names": ["x"], "kinds": ["int"], "values": [[1.5]]}], "reps": 1}',
    ],
)
def test_from_json_errors(s):
    raises(["stored grid", "Grid.to_json"], Grid.from_json, s)


def test_from_json_checks_contents():
    raises(["reps"], Grid.from_json, '{"dims": [], "reps": 0}')


def test_coerce():
    assert Grid.coerce(None) == Grid()
    assert Grid.coerce(None, reps=4) == Grid(reps=4)
    assert Grid.coerce({"x": [1, 2]}) == Grid({"x": [1, 2]})
    assert Grid.coerce({"x": [1, 2]}, reps=3) == Grid({"x": [1, 2]}, reps=3)
    g = Grid({"x": [1, 2], **Grid.zip(a=[1], b=["q"])}, reps=5)
    assert Grid.coerce(g) is g
    assert Grid.coerce(g, reps=1) is g
    assert Grid.coerce(g, reps=5) is g
    h = Grid.coerce(g, reps=3)
    assert h is not g and h.reps == 3 and g.reps == 5
    assert h == Grid({"x": [1, 2], **Grid.zip(a=[1], b=["q"])}, reps=3)
    raises(["grid", "list"], Grid.coerce, [1, 2])
    raises(["reps"], Grid.coerce, g, reps=0)


def test_import_does_not_load_numpy():
    code = (
        "import sys, mpibatch.grid as m;"
        "g = m.Grid.from_spec(['n=1:4', 'a+b=1/x']);"
        "list(g.iter_params(0, g.n_tasks)); g.to_json();"
        "assert 'numpy' not in sys.modules, 'numpy loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_itertools_product_reference_for_many_dims():
    axes = {"a": [1, 2], "b": [3, 4, 5], "c": [6, 7], "d": ["p", "q", "r"]}
    g = Grid(axes, reps=2)
    ref = [
        {**dict(zip(axes, combo, strict=True)), "rep": r}
        for combo in itertools.product(*axes.values())
        for r in range(2)
    ]
    assert list(g.iter_params(0, g.n_tasks)) == ref


def test_from_spec_accepts_a_single_string():
    assert Grid.from_spec("n=1,2") == Grid({"n": [1, 2]})


def test_to_specs_round_trips_through_from_spec():
    g = Grid(
        {
            "n": [1, 10],
            "lr": [1e-05, 0.5],
            "model": ["ridge", "lasso"],
            ("a", "b"): [(1, 2.5), (3, 4.5)],
        },
        reps=3,
    )
    assert Grid.from_spec(g.to_specs(), reps=3) == g


# ---------------------------------------------------------------- quoting and repeats


@pytest.mark.parametrize(
    "values",
    [
        ["a,b", "007", "1:3"],
        [" padded ", "", "it's", 'say "hi"'],
        ["1e-3", "nan", "inf", "a/b"],
    ],
)
def test_strings_that_look_like_other_things_round_trip_through_specs(values):
    g = Grid({"s": values, "n": [1, 2]}, reps=2)
    back = Grid.from_spec(g.to_specs(), reps=2)
    assert back == g
    assert back.n_tasks == len(values) * 2 * 2
    assert back.axis_values()["s"] == values


def test_zipped_strings_round_trip_through_specs():
    g = Grid(Grid.zip(a=["1/2", "x", "0"], b=["3", "q,r", "z"]))
    assert Grid.from_spec(g.to_specs()) == g


def test_quoted_values_are_strings_and_unquoted_ones_parse():
    g = Grid.from_spec(['id="007", \'1:3\' ,"a,b"'])
    assert g.axis_values()["id"] == ["007", "1:3", "a,b"]
    assert Grid.from_spec(["n=007,1:3"]).axis_values()["n"] == [7, 1, 2]


@pytest.mark.parametrize(
    "spec, words",
    [
        ('x="a', ["closing", "007"]),
        ('x="a"b', ["quotes around a whole value"]),
        ("x=1,1", ["distinct values", "1 twice", "--reps"]),
        ("x=1,1.0", ["distinct values"]),
        ("s=a,b,a", ["'a' twice"]),
        ("a+b=1/x,1/x", ["(1, 'x') twice"]),
    ],
)
def test_bad_quotes_and_repeated_values_are_one_line_errors(spec, words):
    raises(words, Grid.from_spec, [spec])


def test_repeated_values_from_python_are_refused_too():
    raises(["distinct values", "2 twice"], Grid, {"x": [1, 2, 2]})


def test_a_value_with_both_quotes_cannot_be_a_flag():
    raises(["one kind of quote", "'grid' attribute"], Grid({"s": ["a'\""]}).to_specs)


# ---- spellings: grid values keep the text they were typed as (commands as tasks) ----


def test_from_spec_keeps_each_value_as_typed():
    g = Grid.from_spec(["size=150,200", "lr=1e-3,1e-4,0.5", "n=1:3"], reps=2)
    assert g.params(0)["lr"] == 0.001 and isinstance(g.params(0)["lr"], float)
    assert g.spellings() == {"size": ["150", "200"], "lr": ["1e-3", "1e-4", "0.5"], "n": ["1", "2"]}
    assert g.spelled(9) == {"size": "150", "lr": "0.5", "n": "1"}  # cell 4 (0, 2, 0), rep 1
    assert g.spelled(13) == {"size": "200", "lr": "1e-3", "n": "1"}
    assert g.to_specs() == ["size=150,200", "lr=1e-3,1e-4,0.5", "n=1,2"]


def test_zipped_axes_and_quoted_strings_keep_their_spelling():
    g = Grid.from_spec(['a+b=1e-2/x,2/"0.5"'])
    assert g.params(1) == {"a": 2.0, "b": "0.5", "rep": 0}
    assert g.spelled(1) == {"a": "2", "b": "0.5"}
    assert Grid.from_spec(g.to_specs()) == g


def test_spellings_survive_json_and_coerce_and_do_not_change_equality():
    g = Grid.from_spec(["lr=1e-3,1e-5"], reps=2)
    back = Grid.from_json(g.to_json())
    assert back.spellings() == {"lr": ["1e-3", "1e-5"]}
    assert Grid.coerce(g, 3).spellings() == g.spellings()
    assert g == Grid({"lr": [0.001, 1e-5]}, reps=2)  # the same study, typed otherwise


def test_values_nobody_typed_are_spelled_as_repr_and_json_is_unchanged():
    g = Grid({"lr": [0.001, 1e-5], "n": [3], "s": ["a b"]})
    assert g.spellings() == {"lr": ["0.001", "1e-05"], "n": ["3"], "s": ["a b"]}
    assert "spellings" not in g.to_json()  # files of grids without typed values: as before
    assert "spellings" in Grid.from_spec(["lr=1e-3"]).to_json()


def test_spellings_given_in_python_are_checked():
    g = Grid({"lr": [0.001, 0.01]}, spellings={"lr": ["1e-3", "1e-2"]})
    assert g.spelled(1) == {"lr": "1e-2"}
    with pytest.raises(GridError, match="one spelling per value"):
        Grid({"lr": [0.001, 0.01]}, spellings={"lr": ["1e-3"]})
    with pytest.raises(GridError, match="axes among"):
        Grid({"lr": [0.001]}, spellings={"mu": ["1"]})


def test_a_spelling_that_reads_back_as_another_number_is_not_used_in_specs():
    g = Grid({"x": [0.5]}, spellings={"x": ["0.25"]})  # a wrong spelling from Python
    assert g.to_specs() == ["x=0.5"]


# ---- grid values as written (issue 22, item 5) ----


def test_lin_and_log_points_are_the_short_decimals():
    x = Grid.from_spec(["x=0:1:11lin"]).axis_values()["x"]
    assert x == [i / 10 for i in range(11)]  # 0.3, not 0.30000000000000004
    assert 0.30000000000000004 not in x and np.linspace(0, 1, 11)[3] == 0.30000000000000004
    lr = Grid.from_spec(["lr=1e-5:1e-3:5log"]).axis_values()["lr"]
    assert lr == [float(format(v, ".15g")) for v in np.geomspace(1e-5, 1e-3, 5)]
    assert lr[1] == 3.16227766016838e-05 and lr[2] == 1e-4
    y = Grid.from_spec(["y=-1:2.5:8lin"]).axis_values()["y"]
    assert y == [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_range_points_are_what_params_columns_specs_and_spellings_see():
    g = Grid.from_spec(["a=0:1:11lin"], reps=2)
    assert g.params(6)["a"] == 0.3 and repr(g.params(6)["a"]) == "0.3"
    assert g.columns(6, 8)["a"].tolist() == [0.3, 0.3]
    assert g.spelled(6) == {"a": "0.3"} and g.spellings()["a"][3] == "0.3"
    assert g.to_specs() == ["a=0.0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0"]
    assert Grid.from_spec(g.to_specs(), reps=2) == g == Grid.from_json(g.to_json())


def test_a_recorded_grid_is_never_recomputed():
    """A file made before the change holds linspace's own doubles: JSON keeps them."""
    old = Grid({"a": np.linspace(0, 1, 11)}, reps=2)
    back = Grid.from_json(old.to_json())
    assert back.axis_values()["a"][3] == 0.30000000000000004 and back == old
    new = Grid.from_spec(["a=0:1:11lin"], reps=2)
    assert new != old and new.close_to(old) and old.close_to(new)
    assert not Grid.from_spec(["a=0:1:11lin"], reps=3).close_to(old)
    assert not Grid.from_spec(["a=0:1:12lin"], reps=2).close_to(old)
    assert not Grid.from_spec(["b=0:1:11lin"], reps=2).close_to(old)
    assert not Grid({"a": [v + 1e-9 for v in old.axis_values()["a"]]}, reps=2).close_to(old)
    # an older file's 'True'/'False' strings are the bools they stood for, nothing else
    assert Grid({"f": [True, False]}).close_to(Grid({"f": ["True", "False"]}))
    assert not Grid({"f": [True, False]}).close_to(Grid({"f": ["False", "True"]}))
    assert not Grid({"f": [1, 0]}).close_to(Grid({"f": ["1", "0"]}))


@pytest.mark.parametrize(
    "spec, parts",
    [
        ("x=0:1:1lin", ["'x=0:1:1lin'", "at least 2 points", "both ends", "use 0:1:2lin"]),
        ("x=1e-3:1e-1:1log", ["at least 2 points", "use 1e-3:1e-1:2log"]),
        ("x=1:1.0000000000000002:3lin", ["15 significant digits", "fewer points"]),
    ],
)
def test_ranges_that_cannot_hold_both_ends_are_refused(spec, parts):
    raises(parts, Grid.from_spec, [spec])


@pytest.mark.parametrize(
    "spec, fix",
    [
        ("x=0:1:0.25", "use 0:1:5lin (5 points"),
        ("x=0:10:2.5", "use 0:10:5lin (5 points"),
        ("x=1:0:-0.25", "use 1:0:5lin (5 points"),
        ("x=0:1:0.3", "use 0:0.9:4lin (4 points"),
        ("x=0.5:2:0.5", "use 0.5:2:4lin (4 points"),
        ("x=0:1:-0.3", "use LO:HI:Nlin"),
        ("x=0:1:2.5", "use LO:HI:Nlin"),
        ("x=0:1:1e-1,5", "use 0:1:11lin (11 points"),
    ],
)
def test_a_float_step_is_refused_with_the_lin_range_meant(spec, fix):
    msg = raises([f"grid spec {spec!r}", "an integer STEP", fix], Grid.from_spec, [spec])
    assert msg.endswith("both ends included)") or "LO:HI:Nlin" in msg


def test_true_and_false_are_bools():
    g = Grid.from_spec(["flag=True,False", "n=1,2"])
    assert g.axis_values()["flag"] == [True, False] and g.kinds()["flag"] == "bool"
    assert [type(v) for v in g.axis_values()["flag"]] == [bool, bool]
    assert g.params(2) == {"flag": False, "n": 1, "rep": 0} and g.params(2)["flag"] is False
    col = g.columns(0, 4)["flag"]
    assert col.dtype == np.bool_ and col.tolist() == [True, True, False, False]
    assert g.spelled(0) == {"flag": "True", "n": "1"} and g.to_specs()[0] == "flag=True,False"
    back = Grid.from_json(g.to_json())
    assert back == g and back.kinds()["flag"] == "bool" and back.params(0)["flag"] is True
    assert Grid({"flag": [np.bool_(True), False]}) == Grid({"flag": [True, False]})
    assert Grid({"flag": [True]}) != Grid({"flag": [1]})


def test_quoted_true_stays_a_string_and_mixes_are_refused():
    g = Grid.from_spec(["s=\"True\",'False'"])
    assert g.axis_values()["s"] == ["True", "False"] and g.kinds()["s"] == "str"
    assert Grid.from_spec(g.to_specs()) == g  # spelled back with its quotes
    assert Grid.from_spec(["s=true,false"]).kinds()["s"] == "str"  # Python's spelling only
    raises(["'x'", "mix", "True", "1"], Grid.from_spec, ["x=True,1"])
    raises(["'x'", "distinct", "True"], Grid, {"x": [True, True]})


def test_axis_kinds():
    g = Grid({"b": [True], "i": [1], "f": [0.5, 1], "s": ["a"], ("z", "w"): [(1, "a")]})
    assert g.kinds() == {"b": "bool", "i": "int", "f": "float", "s": "str", "z": "int", "w": "str"}


def test_matching_values_to_an_axis():
    from mpibatch._gridkinds import matches

    xs = [0.0, 0.1, 0.2, 0.30000000000000004]
    assert matches("float", xs, 0.3) == [0.30000000000000004]
    assert matches("float", xs, 0.30000000000000004) == [0.30000000000000004]
    assert matches("float", xs, 0.3 * (1 + 2e-12)) == []
    assert matches("float", xs, 0) == [0.0] and matches("float", xs, 1e-301) == [0.0]
    assert matches("float", xs, 1e-299) == [] and matches("float", xs, float("nan")) == []
    assert matches("float", [1.0, 1.0 + 1e-13], 1.0) == [1.0, 1.0 + 1e-13]  # ambiguous
    assert matches("float", [0.1, 0.1, 0.2], 0.1) == [0.1]  # a zipped column's repeats
    assert matches("float", xs, True) == [] and matches("float", xs, "0.1") == []
    assert matches("int", [1, 2], 2.0) == [2] and matches("int", [1, 2], 2.5) == []
    assert matches("int", [1, 2], True) == [] and matches("int", [1, 2], np.int32(1)) == [1]
    assert matches("int", [1, 2], 1e300) == [] and matches("int", [1, 2], float("inf")) == []
    assert matches("bool", [True, False], np.bool_(False)) == [False]
    assert matches("bool", [True, False], 1) == [] and matches("bool", [True, False], 0) == []
    assert matches("str", ["a", "1"], 1) == [] and matches("str", ["a", "1"], np.str_("a")) == ["a"]
    assert matches("int", range(3), 2) == [2] and matches("int", range(3), 3) == []


def test_a_resume_takes_the_file_grid_where_the_run_gives_none():
    from mpibatch._plan import resolve_grid

    old = Grid.from_spec(["a=0:1:3lin", "s=x,y"], reps=4)
    stored = old.to_json()
    assert resolve_grid(None, None, None, stored) == old  # no --grid, no --reps: the file's
    assert resolve_grid(None, None, 4, stored) == old
    assert resolve_grid(None, None, 5, stored) == Grid.coerce(old, 5)  # then refused as such
    given = Grid.from_spec(["a=0:1:3lin", "s=x,y"])  # --grid again, no --reps: reps 4
    assert resolve_grid(given, None, None, stored) == old
    assert resolve_grid({"n": [1, 2]}, None, None, stored) == Grid({"n": [1, 2]}, reps=4)
    assert resolve_grid(Grid({"n": [1]}, reps=3), None, None, stored).reps == 3  # its own
    assert resolve_grid(None, None, None, None) == Grid()  # not a resume: as before

    class Module:
        @staticmethod
        def grid():
            return {"a": [0.0, 0.5, 1.0], "s": ["x", "y"]}

    assert resolve_grid(None, Module, None, stored) == old  # the task file's grid(), reps 4


def test_a_resume_keeps_a_recorded_grid_an_older_mpibatch_computed():
    from mpibatch._plan import resolve_grid

    old = Grid({"a": np.linspace(0, 1, 11), "f": ["True", "False"]}, reps=2)
    spec = Grid.from_spec(["a=0:1:11lin", "f=True,False"])
    got = resolve_grid(spec, None, None, old.to_json())
    assert got == old and got.params(12)["a"] == 0.30000000000000004
    assert got.spellings() == old.spellings() and got.params(0)["f"] == "True"
    other = resolve_grid(Grid.from_spec(["a=0:1:12lin"]), None, None, old.to_json())
    assert other != old and other.reps == 2  # a different grid: the resume check refuses it
