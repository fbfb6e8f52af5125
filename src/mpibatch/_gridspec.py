"""The ``--grid`` spelling of grid axes: parsing ``NAME=V1,V2`` specs and writing them back.

``n=1:4,10`` (int ranges, HI excluded), ``lr=1e-5:1e-3:5log`` / ``x=0:1:5lin`` (N points),
``a+b=1/x,2/y`` (zipped axes), and quoted values that stay strings as typed
(``id="007","a,b","1:3"``). :func:`spell` writes a value so that it parses back to itself.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import GridError


def _fail(where: str, expected: str, got: Any, fix: str) -> GridError:
    return GridError(f"{where}: expected {expected}, got {got}; {fix}")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


_SPEC_EG = "e.g. --grid n=1,2,4 or --grid alpha+l1=0.1/1,0.2/2"
_QUOTE_EG = 'quote a string that must stay as typed, e.g. --grid \'id="007","a,b"\''
_RANGE_EG = (
    "use LO:HI[:STEP] (ints, HI exclusive), LO:HI:Nlin or LO:HI:Nlog, e.g. --grid lr=1e-5:1e-3:5log"
)


_QUOTES = "\"'"


def _split(text: str, sep: str, where: str) -> list[str]:
    """Split on ``sep`` outside quotes; the pieces keep their quotes."""
    pieces, buf, quote = [], "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in _QUOTES:
            quote = ch
        elif ch == sep:
            pieces.append(buf)
            buf = ""
            continue
        buf += ch
    if quote:
        raise _fail(where, f"a closing {quote}", f"none in {text!r}", _QUOTE_EG)
    return pieces + [buf]


def _item(piece: str, where: str) -> tuple[str, bool]:
    """``(text, quoted)``: a piece in matching quotes is a literal string (``"007"``)."""
    text = piece.strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == text[0]:
        if text[0] not in text[1:-1]:
            return text[1:-1], True
    if any(q in text for q in _QUOTES):
        raise _fail(where, "quotes around a whole value", repr(piece.strip()), _QUOTE_EG)
    return text, False


def _value(item: tuple[str, bool]) -> bool | int | float | str:
    text, quoted = item
    return text if quoted else _scalar(text)


_BOOLS = {"True": True, "False": False}


def _scalar(text: str) -> bool | int | float | str:
    if text in _BOOLS:
        return _BOOLS[text]
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _is_range(item: str) -> bool:
    return ":" in item and not isinstance(_scalar(item.split(":")[0].strip()), str)


def _parse_range(spec: str, item: str) -> list:
    parts, where = [p.strip() for p in item.split(":")], f"grid spec {spec!r}"
    try:
        if len(parts) == 3 and parts[2][-3:] in ("lin", "log"):
            return _points(where, parts)
        if len(parts) == 3 and isinstance(_scalar(parts[2]), float):
            raise _float_step(where, parts)
        if len(parts) in (2, 3) and range(*map(int, parts)):
            return list(range(*map(int, parts)))
    except ValueError:
        pass
    raise _fail(where, "a valid non-empty range", repr(item), _RANGE_EG)


def _short_decimal(x: float) -> float:
    """The decimal a range point stands for: 0.3, not 0.30000000000000004."""
    return float(format(x, ".15g"))


def _points(where: str, parts: list[str]) -> list[float]:
    """``LO:HI:Nlin`` / ``LO:HI:Nlog``: N points, both ends as typed, each one the short
    decimal of its 15 significant digits (:func:`_short_decimal`)."""
    lo, hi, n, how = float(parts[0]), float(parts[1]), int(parts[2][:-3]), parts[2][-3:]
    if n < 1 or (how == "log" and not lo * hi > 0):
        raise ValueError
    if n == 1 and lo != hi:
        got, fix = f"1{how} from {parts[0]} to {parts[1]}", f"use {parts[0]}:{parts[1]}:2{how}"
        raise _fail(where, "at least 2 points (a range includes both ends)", got, fix)
    import numpy as np

    out = [_short_decimal(x) for x in (np.linspace if how == "lin" else np.geomspace)(lo, hi, n)]
    out[0], out[-1] = lo, hi  # the ends as typed
    if len(set(out)) < n:
        got = f"{n} points from {parts[0]} to {parts[1]}"
        raise _fail(where, "points 15 significant digits apart", got, "use fewer points")
    return out


def _float_step(where: str, parts: list[str]) -> GridError:
    """``0:1:0.25``: LO:HI:STEP ranges are ints; name the ``Nlin`` range that was meant."""
    lo, hi, step = map(float, parts)
    fix = "use LO:HI:Nlin for N evenly spaced floats (both ends included)"
    if step and (hi - lo) / step >= 1:
        k = math.floor((hi - lo) / step + 1e-9)
        last = parts[1] if _short_decimal(lo + k * step) == hi else format(lo + k * step, ".15g")
        fix = f"use {parts[0]}:{last}:{k + 1}lin ({k + 1} points, both ends included)"
    return _fail(where, "an integer STEP (LO:HI:STEP ranges are ints)", parts[2], fix)


def default_spelling(value: Any) -> str:
    """How a value is written when nobody typed it: a str as is, a number as repr writes it."""
    return value if isinstance(value, str) else repr(value)


def parse_spec(spec: Any) -> tuple[str | tuple[str, ...], list, dict[str, list[str]]]:
    """``(axis name or zipped names, values, each axis's values as typed)``."""
    if not isinstance(spec, str) or "=" not in spec:
        raise _fail(f"grid spec {_short(spec)}", "NAME=V1,V2,...", "no '='", _SPEC_EG)
    where = f"grid spec {spec!r}"
    lhs, rhs = spec.split("=", 1)
    names = tuple(n.strip() for n in lhs.split("+"))
    pieces = _split(rhs, ",", where)
    items = [_item(p, where) for p in pieces] if len(names) == 1 else []
    rows = [[_item(p, where) for p in _split(it, "/", where)] for it in pieces]
    if not all(names):
        raise _fail(where, "an axis name before '='", "an empty one", _SPEC_EG)
    if not all(text or quoted for row in rows for text, quoted in row):
        raise _fail(where, "a value between commas and after '='", "an empty one", _SPEC_EG)
    if len(names) == 1:
        ranges = [not q and _is_range(text) for text, q in items]
        if all(ranges):  # spelled as repr writes them: no texts to keep (a range may be huge)
            return names[0], [v for text, _ in items for v in _parse_range(spec, text)], {}
        out: list = []
        texts: list[str] = []
        for it, is_range in zip(items, ranges, strict=True):
            if is_range:
                values = _parse_range(spec, it[0])
                out.extend(values)
                texts.extend(map(repr, values))  # numbers: default_spelling is repr
            else:
                out.append(_value(it))
                texts.append(it[0])  # as typed: 1e-3 stays 1e-3
        return names[0], out, {names[0]: texts}
    for piece, row in zip(pieces, rows, strict=True):
        if len(row) != len(names) or any(not q and _is_range(t) for t, q in row):
            got = repr(piece.strip())
            raise _fail(where, f"{len(names)} values joined by '/' (no ranges)", got, _SPEC_EG)
    typed = {n: [row[k][0] for row in rows] for k, n in enumerate(names)}
    return names, [tuple(map(_value, row)) for row in rows], typed


def spell(value: Any, typed: str | None = None) -> str:
    """A value as a ``--grid`` item that parses back to exactly it (quoted if need be);
    as ``typed`` (``1e-3``) where that text reads back as the same number."""
    if not isinstance(value, str):
        back = None if typed is None else _scalar(typed)
        if typed is not None and type(back) is type(value) and back == value:
            return typed
        return repr(value)
    plain = value == value.strip() and value and not set(value) & set(",/'\"")
    if plain and isinstance(_scalar(value), str) and not _is_range(value):
        return value
    quote = next((q for q in _QUOTES if q not in value), None)
    if quote is None:
        raise _fail(
            f"grid value {_short(value)}",
            "no more than one kind of quote to be spelled as a --grid flag",
            "both",
            "the file's 'grid' attribute holds the exact grid (JSON)",
        )
    return quote + value + quote


def default_spellings(kind: str, col: list) -> list[str]:
    """:func:`default_spelling` of each value of an axis of ``kind``."""
    return list(map(repr, col)) if kind in ("int", "float") else list(map(default_spelling, col))


def is_default_spelling(kind: str, col: list, texts: list[str]) -> bool:
    """Whether ``texts`` are :func:`default_spellings` of ``col`` (without building them)."""
    spelled = map(repr, col) if kind in ("int", "float") else map(default_spelling, col)
    return len(texts) == len(col) and all(map(str.__eq__, texts, spelled))


def spelled_column(kind: str, col: list, typed: list[str] | None) -> list[str]:
    """Each value as a ``--grid`` item (:func:`spell`) from its text as typed (None: as
    repr writes it); a number spelled as repr writes it is its own item, not parsed back."""
    if kind not in ("int", "float"):
        return list(map(spell, col)) if typed is None else list(map(spell, col, typed))
    if typed is None:
        return list(map(repr, col))
    return [t if t == repr(v) else spell(v, t) for v, t in zip(col, typed, strict=True)]
