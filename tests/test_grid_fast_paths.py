"""The shortcuts that keep a big grid quick to build give what the long ways give."""

from __future__ import annotations

import math

import pytest

from mpibatch.errors import GridError
from mpibatch.grid import Grid


def test_distinct_values_by_json_not_by_python_equality():
    assert Grid({"x": [0.0, -0.0]}).n_tasks == 2  # equal in Python, distinct as values
    assert Grid({"x": [math.nan, 1.0]}).n_tasks == 2
    with pytest.raises(GridError, match="distinct values, got nan twice"):
        Grid({"x": [math.nan, math.nan]})  # different objects, the same value
    with pytest.raises(GridError, match=r"distinct values, got \(1, 'a'\) twice"):
        Grid({("n", "s"): [(1, "a"), (2, "b"), (1, "a")]})
    with pytest.raises(GridError, match="distinct values, got 3 twice"):
        Grid({"n": list(range(5)) + [3]})


def test_plain_ints_and_floats_keep_their_checks():
    with pytest.raises(GridError, match="integers that fit in int64"):
        Grid({"n": [1, 2**63]})
    assert Grid({"n": [1, 2]}).kinds() == {"n": "int"}
    assert Grid({"n": [1, 2.5]}).kinds() == {"n": "float"}
    assert Grid({"n": [True, False]}).kinds() == {"n": "bool"}


def test_params_one_by_one_equal_the_odometer_on_a_zipped_typed_grid():
    grid = Grid.from_spec(["lr=1e-3,0.5", "a+b=1/x,2/y,3/z", "n=0:3"], reps=2)
    assert [grid.params(i) for i in range(grid.n_tasks)] == list(grid.iter_params(0, 36))
    assert grid.params(35) == {"lr": 0.5, "a": 3, "b": "z", "n": 2, "rep": 1}


def test_specs_keep_typed_numbers_and_spell_ranges_as_repr():
    grid = Grid.from_spec(["x=1e-3,0.5", "n=1:4", "s='1:3',plain"])
    assert grid.to_specs() == ["x=1e-3,0.5", "n=1,2,3", 's="1:3",plain']
    assert Grid.from_spec(grid.to_specs()) == grid


def test_from_json_gives_back_a_live_grid_and_rebuilds_an_equal_one():
    grid = Grid.from_spec(["x=1e-3,0.5"], reps=3)
    text = grid.to_json()
    assert Grid.from_json(text) is grid  # no rebuild of a grid still in use
    rebuilt = Grid.from_json(text.replace('"reps": 3', '"reps":  3'))  # other text
    assert rebuilt is not grid and rebuilt == grid
    assert rebuilt.spellings() == {"x": ["1e-3", "0.5"]}
    assert grid.axis_values(first=1) == {"x": [0.001]}
    assert grid.axis_sizes() == {"x": 2}
