"""The kinds of grid values, in one place: bool, int, float and str.

:func:`normalize` checks one axis's values and gives its kind, :data:`DTYPE` the numpy
dtype of its /params column, :func:`matches` the axis values a given value selects
(``Results.where``: floats within a relative 1e-12) and :func:`same_values` whether two
axes hold the same values in that sense (``--resume`` of a file whose ranges were
computed otherwise). numpy is not imported: grid.py must not load it early.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import operator
from typing import Any

from .errors import GridError

DTYPE = {"bool": "bool", "int": "int64", "float": "float64", "str": "U"}
REL_TOL = 1e-12  # float grid values this close (relative) are the same value
ABS_TOL = 1e-300  # ... and at 0.0, this close in absolute terms


def _fail(where: str, expected: str, got: Any, fix: str) -> GridError:
    return GridError(f"{where}: expected {expected}, got {got}; {fix}")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def is_bool(v: Any) -> bool:
    """A Python bool or a numpy bool scalar (which is not a subclass of bool)."""
    if isinstance(v, bool):
        return True
    dtype = getattr(v, "dtype", None)
    return getattr(dtype, "kind", None) == "b" and getattr(v, "ndim", None) == 0


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not is_bool(v)


def normalize(name: str, values: list) -> tuple[str, list]:
    """Check one axis's values; return its kind and the values as plain bool/int/float/str."""
    types = set(map(type, values))
    if types == {float}:
        return "float", list(values)  # the common cases, checked without a loop in Python
    if types == {int} and -(2**63) <= min(values) and max(values) < 2**63:
        return "int", list(values)
    if all(isinstance(v, str) for v in values):
        return "str", [str(v) for v in values]
    if all(is_bool(v) for v in values):
        return "bool", [bool(v) for v in values]
    where = f"grid axis {name!r}"
    bad = [v for v in values if not _number(v)]
    odd = [v for v in bad if not isinstance(v, str) and not is_bool(v)]
    if odd:
        got = f"{_short(odd[0])} ({type(odd[0]).__name__})"
        raise _fail(where, "ints, floats, bools or strings", got, "use str for anything else")
    if bad:
        other = next(v for v in values if type(v) is not type(bad[0]))
        got = f"a mix ({_short(other)} and {_short(bad[0])})"
        fix = 'make every value one kind (quote strings: --grid \'x="True","1"\')'
        raise _fail(where, "all numbers, all bools or all strings", got, fix)
    if all(isinstance(v, numbers.Integral) for v in values):
        ints = [int(v) for v in values]
        for v in ints:
            if not -(2**63) <= v < 2**63:
                raise _fail(where, "integers that fit in int64", v, "use smaller ints or strings")
        return "int", ints
    return "float", [float(v) for v in values]


def _same(kind: str, a: Any, b: Any) -> bool:
    if kind == "float":
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return type(a) is type(b) and a == b


def _probe(kind: str, v: Any) -> Any:
    """``v`` as a value of ``kind`` (2.0 as the int 2), or None where it cannot be one."""
    if kind == "bool":
        return bool(v) if is_bool(v) else None
    if kind == "str":
        return str(v) if isinstance(v, str) else None
    if not _number(v):
        return None
    try:
        if kind == "float":
            return float(v)
        if isinstance(v, numbers.Integral):
            return int(v)
        return int(v) if float(v).is_integer() else None
    except (OverflowError, ValueError):
        return None


def matches(kind: str, values: list | range, v: Any) -> list:
    """The distinct axis ``values`` that ``v`` stands for: equal ones (a number for an int
    axis, a bool for a bool axis, a str for a str axis), or for a float axis the values
    within a relative 1e-12 of it (an absolute 1e-300 at 0.0). Two of them: ambiguous."""
    probe = _probe(kind, v)
    if probe is None:
        return []
    if isinstance(values, range):  # the replicates
        return [probe] if probe in values else []
    found = {repr(g): g for g in values if _same(kind, g, probe)}  # distinct, in order
    return list(found.values())


def same_values(kind_a: str, a: list, kind_b: str, b: list) -> bool:
    """Whether two axes' values agree, floats within :data:`REL_TOL`; a str axis of an
    older file's ``'True'``/``'False'`` agrees with the bools they now stand for."""
    if len(a) != len(b):
        return False
    if kind_a != kind_b:
        if {kind_a, kind_b} != {"str", "bool"}:
            return False
        return [str(x) for x in a] == [str(y) for y in b]
    return all(_same(kind_a, x, y) for x, y in zip(a, b, strict=True))


def _rising(col: list) -> bool:
    """Strictly increasing (so distinct; -0.0 before 0.0 and NaN are not)."""
    return all(map(operator.lt, col, itertools.islice(col, 1, None)))


def check_distinct(names: tuple[str, ...], kinds: tuple[str, ...], cols: tuple[list, ...]) -> None:
    """Two equal values (rows of a zipped group) would be two identical grid points: equal
    as JSON (0.0 and -0.0 are two values, two NaNs one)."""
    if len(cols) == 1 and kinds[0] in ("int", "float") and _rising(cols[0]):
        return  # a range: distinct without a set of a million values
    rows = cols[0] if len(cols) == 1 else list(zip(*cols, strict=True))
    nan = any(k == "float" and any(v != v for v in c) for k, c in zip(kinds, cols, strict=True))
    if not nan and len(set(rows)) == len(rows):
        return  # distinct as Python values, so as JSON too (NaN and -0.0 go the long way)
    seen: set[str] = set()
    for row in zip(*cols, strict=True):
        key = json.dumps(row)
        if key in seen:
            what = row[0] if len(row) == 1 else row
            raise _fail(
                f"grid axis {'+'.join(names)!r}",
                "distinct values",
                f"{_short(what)} twice",
                "drop the repeat (replicates come from --reps)",
            )
        seen.add(key)
