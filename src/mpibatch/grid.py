"""The task grid: named axes (product or zipped), times replicates, flattened to task ids.

Task ``i`` is the row-major index into the product of the dims in the order given, with the
replicate index ``rep`` innermost. numpy is imported only where arrays are built, so that
``import mpibatch.grid`` does not load numpy before the thread limits are set.
"""

from __future__ import annotations

import json
import keyword
import math
import numbers
import operator
import weakref
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any

from ._gridkinds import DTYPE, _fail, _short, check_distinct, normalize, same_values
from ._gridspec import (
    default_spelling,
    default_spellings,
    is_default_spelling,
    parse_spec,
    spelled_column,
)
from ._say import plural

_MAX_TASKS = 2**62  # task ids and /params columns are int64


def _check_reps(reps: Any) -> int:
    if isinstance(reps, bool) or not isinstance(reps, numbers.Integral) or reps < 1:
        raise _fail("reps", "an integer >= 1", _short(reps), "pass --reps 1 or more")
    return int(reps)


def _check_name(name: Any, seen: set[str]) -> str:
    where = f"grid axis {_short(name)}"
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise _fail(where, "a Python identifier as name", _short(name), "e.g. lr or n_hidden")
    if name == "rep":
        raise _fail(where, "a name other than 'rep'", "'rep'", "rep is the replicate index")
    if name in seen:
        raise _fail(where, "each axis name once", "it twice", "give it one list of values")
    seen.add(name)
    return name


def _as_list(where: str, values: Any, example: str) -> list:
    if isinstance(values, (list, tuple, range)):
        out = list(values)
    elif getattr(values, "ndim", None) == 1 and hasattr(values, "tolist"):
        out = values.tolist()  # a 1-D numpy array
    else:
        got = f"{_short(values)} ({type(values).__name__})"
        raise _fail(where, "a list of values", got, f"give a list, e.g. {example}")
    if not out:
        raise _fail(
            where, "a non-empty list of values", "[]", f"give at least one value ({example})"
        )
    return out


_SPELL_FIX = "give spellings={name: [text of each value]} (Grid.from_spec does it)"


class _Dim:
    """One product dimension: a single axis, or several zipped axes of equal length."""

    def __init__(self, names: tuple[str, ...], cols: list[list]):
        self.names = names
        pairs = [normalize(n, c) for n, c in zip(names, cols, strict=True)]
        self.kinds, self.cols = tuple(k for k, _ in pairs), tuple(c for _, c in pairs)
        self.size = len(cols[0])
        check_distinct(names, self.kinds, self.cols)
        self.typed: list[list[str] | None] = [None] * len(names)  # spell_as sets them

    @property
    def spellings(self) -> tuple[list[str], ...]:
        """Each axis's values as text: as typed (:meth:`spell_as`), else as repr writes them
        (built at each use, not kept: an axis may have a million values)."""
        return tuple(map(self.texts, range(len(self.names))))

    def texts(self, k: int) -> list[str]:
        """Axis ``k``'s values as text (see :attr:`spellings`)."""
        typed = self.typed[k]
        return default_spellings(self.kinds[k], self.cols[k]) if typed is None else typed

    def text(self, k: int, j: int) -> str:
        """Value ``j`` of axis ``k`` as text (see :attr:`spellings`)."""
        typed = self.typed[k]
        return default_spelling(self.cols[k][j]) if typed is None else typed[j]

    def spelled_as_default(self) -> bool:
        """Whether every value's text is the one repr (or a str itself) gives."""
        pairs = zip(self.typed, self.kinds, self.cols, strict=True)
        return all(t is None or is_default_spelling(k, c, t) for t, k, c in pairs)

    @cached_property
    def frags(self) -> list[dict]:
        """``{name: value}`` of each row: built when tasks are first iterated, not before
        (a dry run of a grid with a million values never needs them)."""
        return [dict(zip(self.names, row, strict=True)) for row in zip(*self.cols, strict=True)]

    def frag(self, j: int) -> dict:
        """Row ``j``'s ``{name: value}``, without building :attr:`frags`."""
        return {n: c[j] for n, c in zip(self.names, self.cols, strict=True)}

    def spell_as(self, typed: Mapping[str, list]) -> None:
        """Keep the values of axes in ``typed`` as they were typed (``1e-3``, not 0.001)."""
        for k, name in enumerate(self.names):
            if name in typed:
                given = list(map(str, typed[name]))
                if len(given) != self.size:
                    got = f"{plural(len(given), 'spelling')} for {plural(self.size, 'value')}"
                    raise _fail(f"grid axis {name!r}", "one spelling per value", got, _SPELL_FIX)
                if not is_default_spelling(self.kinds[k], self.cols[k], given):
                    self.typed[k] = given  # else kept as None: built again when needed


def _make_dim(key: Any, values: Any, seen: set[str]) -> _Dim:
    if isinstance(key, str):
        names: tuple[str, ...] = (_check_name(key, seen),)
        return _Dim(names, [_as_list(f"grid axis {key!r}", values, f"--grid {key}=1,2")])
    if not isinstance(key, tuple) or not key:
        got, eg = _short(key), "e.g. {'lr': [0.1, 0.2]} or Grid.zip(alpha=[0.1, 0.2], l1=[1, 2])"
        raise _fail("grid axes", "an axis name or a tuple of names as key", got, eg)
    names = tuple(_check_name(n, seen) for n in key)
    where, eg = f"zipped axes {'+'.join(names)}", f"Grid.zip({'=[...], '.join(names)}=[...])"
    rows = _as_list(where, values, eg)
    for row in rows:
        if not isinstance(row, (tuple, list)) or len(row) != len(names):
            raise _fail(where, f"items of {plural(len(names), 'value')}", _short(row), f"use {eg}")
    return _Dim(names, [list(col) for col in zip(*rows, strict=True)])


def _axes(dims: Any) -> dict:
    """``(names, columns)`` pairs -> the ``axes`` mapping that :class:`Grid` takes."""
    out: dict = {}
    for names, cols in dims:
        if len(names) == 1:
            out[names[0]] = cols[0]
        else:
            out[tuple(names)] = list(zip(*cols, strict=True))
    return out


class Grid:
    """An ordered list of dims (single axes or zipped groups) times ``reps`` replicates."""

    def __init__(
        self, axes: Mapping | None = None, reps: int = 1, spellings: Mapping | None = None
    ) -> None:
        self._reps = _check_reps(reps)
        if not isinstance(axes, (Mapping, type(None))):
            eg = "e.g. {'lr': [0.1, 0.2]}"
            raise _fail("grid", "a dict of axis name -> values", type(axes).__name__, eg)
        seen: set[str] = set()
        self._dims = tuple(_make_dim(k, v, seen) for k, v in (axes or {}).items())
        self.names: tuple[str, ...] = tuple(n for d in self._dims for n in d.names)
        self.sizes: tuple[int, ...] = tuple(d.size for d in self._dims)
        self._cells = math.prod(self.sizes)
        self._arrays: dict[str, Any] = {}
        self._spell(spellings or {})
        if self.n_tasks > _MAX_TASKS:
            raise _fail("grid", "at most 2**62 tasks", self.n_tasks, "use fewer values or reps")

    def _spell(self, spellings: Mapping) -> None:
        unknown = [n for n in spellings if n not in self.names]
        if unknown:
            got = f"spellings for {unknown[0]!r}"
            raise _fail("grid spellings", f"axes among {list(self.names)}", got, _SPELL_FIX)
        for d in self._dims:
            d.spell_as(spellings)

    @staticmethod
    def zip(**axes: Any) -> dict:
        """``Grid.zip(alpha=[..], l1=[..])`` -> ``{("alpha", "l1"): [(a0, l0), ...]}``."""
        cols = {n: _as_list(f"zipped axis {n!r}", v, f"{n}=[1, 2]") for n, v in axes.items()}
        lengths = {n: len(c) for n, c in cols.items()}
        if not cols or len(set(lengths.values())) > 1:
            fix = "give each zipped axis the same number of values, e.g. a=[1, 2], b=[3, 4]"
            raise _fail("Grid.zip", "axes of equal length", lengths or "none", fix)
        return {tuple(cols): list(zip(*cols.values(), strict=True))}

    @classmethod
    def from_spec(cls, specs: list[str], reps: int = 1) -> Grid:
        """Build a grid from ``--grid`` strings such as ``n=1:4,10`` or ``a+b=1/x,2/y``."""
        axes: dict = {}
        given: dict[str, str] = {}
        typed: dict[str, list[str]] = {}
        for spec in [specs] if isinstance(specs, str) else specs:
            key, values, texts = parse_spec(spec)
            typed.update(texts)
            for name in key if isinstance(key, tuple) else (key,):
                if name in given:
                    got = f"it in {given[name]!r} and {spec!r}"
                    raise _fail(f"grid axis {name!r}", "once", got, "give each axis once")
                given[name] = spec
            axes[key] = values
        return cls(axes, reps, typed)

    @classmethod
    def coerce(cls, obj: Any, reps: int | None = None) -> Grid:
        """None -> empty grid; dict -> Grid; Grid -> itself (a copy if given reps other than 1)."""
        if isinstance(obj, Grid):
            if reps is None or reps == 1 or reps == obj.reps:
                return obj
            return cls(_axes((d.names, d.cols) for d in obj._dims), reps, obj.spellings())
        if obj is None or isinstance(obj, Mapping):
            return cls(obj, 1 if reps is None else reps)
        eg = "e.g. grid={'lr': [0.1, 0.2]}"
        raise _fail("grid", "a dict of axis name -> values, a Grid or None", type(obj).__name__, eg)

    @property
    def reps(self) -> int:
        return self._reps

    @property
    def n_tasks(self) -> int:
        return self._cells * self._reps

    def _span(self, start: Any, stop: Any) -> tuple[int, int]:
        try:
            start, stop = operator.index(start), operator.index(stop)
        except TypeError:
            start = stop = -1
        if not 0 <= start <= stop <= self.n_tasks:
            got = f"start={start}, stop={stop}"
            raise _fail(
                "task range", f"0 <= start <= stop <= {self.n_tasks}", got, "clip it to the grid"
            )
        return start, stop

    def params(self, i: int) -> dict:
        """The arguments of task ``i``: ``{axis: value, ..., "rep": r}``."""
        if not isinstance(i, numbers.Integral) or not 0 <= i < self.n_tasks:
            fix = f"task ids run from 0 to n_tasks - 1 = {self.n_tasks - 1}"
            raise _fail("task id", f"an integer in [0, {self.n_tasks})", _short(i), fix)
        cell, rep = divmod(int(i), self._reps)
        out = dict.fromkeys(self.names)
        for d in reversed(self._dims):
            cell, j = divmod(cell, d.size)
            out.update(d.frag(j))
        out["rep"] = rep
        return out

    def iter_params(self, start: int, stop: int) -> Iterator[dict]:
        """A fresh ``params(i)`` dict for each ``i`` in ``range(start, stop)``, by odometer."""
        start, stop = self._span(start, stop)
        return self._odometer(start, stop) if start < stop else iter(())

    def _odometer(self, start: int, stop: int) -> Iterator[dict]:
        reps, dims = self._reps, self._dims
        first, r = divmod(start, reps)
        last, last_r = divmod(stop, reps)  # the final cell yields reps 0..last_r-1
        digits: list[int] = []
        rest = first
        for d in reversed(dims):
            rest, j = divmod(rest, d.size)
            digits.insert(0, j)
        frags, sizes = [d.frags for d in dims], self.sizes
        cur = dict.fromkeys(self.names)
        for rows, j in zip(frags, digits, strict=True):
            cur.update(rows[j])
        cur["rep"] = 0
        for cell in range(first, last + (last_r > 0)):
            copy = cur.copy
            for rr in range(r, reps if cell < last else last_r):
                p = copy()
                p["rep"] = rr
                yield p
            r, k = 0, len(dims) - 1
            while k >= 0:  # advance the odometer by one cell
                digits[k] = (digits[k] + 1) % sizes[k]
                cur.update(frags[k][digits[k]])
                k = k - 1 if digits[k] == 0 else -1

    def columns(self, start: int, stop: int) -> dict[str, Any]:
        """Per-task numpy columns for ids ``start..stop-1``, ``rep`` included."""
        import numpy as np

        start, stop = self._span(start, stop)
        cells, rep = np.divmod(np.arange(start, stop, dtype=np.int64), self._reps)
        idx = np.unravel_index(cells, self.sizes) if self._dims else ()
        out = {}
        for d, j in zip(self._dims, idx, strict=True):
            for name, kind, col in zip(d.names, d.kinds, d.cols, strict=True):
                if name not in self._arrays:
                    self._arrays[name] = np.array(col, dtype=DTYPE[kind])
                out[name] = self._arrays[name][j]
        out["rep"] = rep
        return out

    def axis_values(self, first: int | None = None) -> dict[str, list]:
        """Each axis's values as given (a zipped axis lists its column, repeats included);
        ``first``: only the first that many of each."""
        return {n: c[:first] for d in self._dims for n, c in zip(d.names, d.cols, strict=True)}

    def axis_sizes(self) -> dict[str, int]:
        """Each axis's number of values (a zipped axis: its group's)."""
        return {n: d.size for d in self._dims for n in d.names}

    def kinds(self) -> dict[str, str]:
        """Each axis's kind: ``bool``, ``int``, ``float`` or ``str``."""
        return {n: k for d in self._dims for n, k in zip(d.names, d.kinds, strict=True)}

    def close_to(self, other: Grid) -> bool:
        """The same grid but for float values within a relative 1e-12 and bools that an
        older mpibatch kept as the strings 'True'/'False': same reps, dims and values."""
        if self._reps != other._reps or len(self._dims) != len(other._dims):
            return False
        for a, b in zip(self._dims, other._dims, strict=True):
            if a.names != b.names:
                return False
            if not all(map(same_values, a.kinds, a.cols, b.kinds, b.cols)):
                return False
        return True

    def spellings(self) -> dict[str, list[str]]:
        """Each axis's values as text: as typed in a ``--grid`` spec, else as repr writes them."""
        return {n: list(t) for d in self._dims for n, t in zip(d.names, d.spellings, strict=True)}

    def spelled(self, i: int) -> dict[str, str]:
        """Task ``i``'s axis values as text (see :meth:`spellings`), without ``rep``."""
        self.params(i)  # checks i
        cell = int(i) // self._reps
        out: dict[str, str] = {}
        for d in reversed(self._dims):
            cell, j = divmod(cell, d.size)
            out.update((n, d.text(k, j)) for k, n in enumerate(d.names))
        return out

    def to_json(self) -> str:
        """A lossless JSON form: dims in order, zipped groups, value kinds, reps; the
        spellings of values typed otherwise than repr writes them (``1e-3``)."""
        return self._json

    @cached_property
    def _json(self) -> str:
        dims = []
        for d in self._dims:
            dim: dict = {"names": d.names, "kinds": d.kinds, "values": d.cols}
            if not d.spelled_as_default():
                dim["spellings"] = d.spellings
            dims.append(dim)
        text = json.dumps({"format": "mpibatch.grid/1", "reps": self._reps, "dims": dims})
        _BUILT[text] = self  # from_json(text) gives this grid back while it lives
        return text

    @classmethod
    def from_json(cls, s: str) -> Grid:
        """Rebuild a grid from :meth:`to_json` output (a grid still alive that wrote or
        read this very text is given back: a grid never changes, and a big one is slow
        to rebuild)."""
        known = _BUILT.get(s) if isinstance(s, str) else None
        if known is not None:
            return known
        try:
            data = json.loads(s)
            typed = {
                n: t
                for d in data["dims"]
                for n, t in zip(d["names"], d.get("spellings", ()), strict=False)
            }
            grid = cls(_axes((d["names"], d["values"]) for d in data["dims"]), data["reps"], typed)
            ok = [tuple(d["kinds"]) for d in data["dims"]] == [d.kinds for d in grid._dims]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            ok = False
        if not ok:
            raise _fail("stored grid", "JSON from Grid.to_json", _short(s), "re-create the grid")
        _BUILT[s] = grid
        return grid

    def to_specs(self) -> list[str]:
        """``--grid`` strings that rebuild the axes (``NAME=V1,V2`` or ``A+B=a1/b1,a2/b2``).

        Strings that would read back as something else (``"007"``, ``"a,b"``, ``"1:3"``)
        are quoted; numbers keep their spelling as typed (``1e-3``); a GridError says
        when a value cannot be spelled at all.
        """
        specs = []
        for d in self._dims:
            texts = list(map(spelled_column, d.kinds, d.cols, d.typed))
            items = texts[0] if len(texts) == 1 else map("/".join, zip(*texts, strict=True))
            specs.append("+".join(d.names) + "=" + ",".join(items))
        return specs

    def describe(self) -> str:
        """One line, e.g. ``3 x 2 (n, stat) x 100 reps = 600 tasks``."""
        parts = [f"{self._reps} rep{'s' * (self._reps != 1)}"]
        if self._dims:
            labels = ", ".join("+".join(d.names) for d in self._dims)
            parts.insert(0, f"{' x '.join(map(str, self.sizes))} ({labels})")
        return f"{' x '.join(parts)} = {self.n_tasks} task{'s' * (self.n_tasks != 1)}"

    def _key(self) -> tuple:
        return self._reps, [(d.names, d.kinds, json.dumps(d.cols)) for d in self._dims]

    def __eq__(self, other: object) -> bool:
        return self._key() == other._key() if isinstance(other, Grid) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Grid {self.describe()}>"


_BUILT: weakref.WeakValueDictionary[str, Grid] = weakref.WeakValueDictionary()
