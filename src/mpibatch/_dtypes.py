"""The result type policy: which dtype a result is stored with, whatever the order tasks end in.

A result's dtype must not depend on which task finishes first (nor on -np, the schedule
or timing), so it is decided by the *kind* of number alone, never by its width:

======================================  ==========  ===========================
a task returns                           kind        stored as
======================================  ==========  ===========================
``bool``, ``np.bool_``                   bool        ``bool``
``int``, any NumPy signed/unsigned int   integer     ``int64``
``float``, any NumPy float up to 64 bit  float       ``float64``
``complex``, NumPy complex up to 128     complex     ``complex128``
======================================  ==========  ===========================

Every task must return the same kind for a key: an integer in one task and a float in
another is a schema error whatever their order (the run stops with one line saying how to
fix it), because accepting it in one order and not the other would make the same command
pass or fail by chance. A value of the right kind that does not fit without loss (a
``uint64`` above 2**63 - 1, a ``longdouble``) fails *that task*: it depends on the value
only, never on the order.

A task file may declare its results' dtypes (for compact storage, or to mix kinds)::

    results = {"x": "float32", "n": "int16", "v": ("float64", (3,))}

Ragged arrays and strings are declared too (see README "Result types")::

    results = {"rewards": "ragged float64", "xy": ("ragged float32", (2,)),
               "model": "str", "code": "str8", "names": ("str", (5,)), "blob": "bytes"}

A ragged key's rows vary in their leading axis (the declared shape is the inner one); a
str key holds UTF-8 strings (variable length, or at most N bytes for ``strN``), a bytes
key bytes. Undeclared, a str or bytes value (or a NumPy array of them) is a "str" or
"bytes" result; an array whose length varies between tasks is never inferred as ragged
(the first task's shape would decide, which depends on the order): declare it.

A declared key accepts any number that converts without loss: integers within the
dtype's range (integral floats too), and any real number into a declared float (rounded
to its width: that is what declaring a narrower float asks for; only an overflow to inf
is a loss). A value that does not convert fails its task with a clear message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ResultError, TaskFileError, UsageError
from .layout import result_key_problem

# kind of number -> the dtype results of that kind are stored with, unless declared
STORED = {
    "b": np.dtype(np.bool_),
    "i": np.dtype(np.int64),
    "u": np.dtype(np.int64),
    "f": np.dtype(np.float64),
    "c": np.dtype(np.complex128),
}
_KIND = {"b": "bool", "i": "integer", "u": "integer", "f": "float", "c": "complex"}
# the kinds of value a declared dtype's kind accepts
_ACCEPTS = {"b": "b", "i": "iuf", "u": "iuf", "f": "iuf", "c": "iufc"}
_HINT = "float(...)"


class LossyResult(ResultError):
    """A value that does not convert to its result's dtype without loss: its task fails."""


FIXED, RAGGED, STR, BYTES = "fixed", "ragged", "str", "bytes"  # as layout.TYPE_*
VARIABLE = np.dtype(np.uint8)  # dtype of a variable-length string key's encoded bytes


@dataclass(frozen=True)
class Declared:
    """A declaration of one result: its kind, dtype and (optionally) its shape.

    Ragged: ``shape`` is the inner shape of a row. Str/bytes: ``dtype`` is ``S<N>`` for
    fixed width, VARIABLE (uint8) for variable length.
    """

    dtype: np.dtype
    shape: tuple[int, ...] | None = None
    kind: str = FIXED


def kind(dtype: np.dtype) -> str:
    """``"integer"``, ``"float"``, ... of a numeric dtype (signed and unsigned are one kind)."""
    return _KIND[dtype.kind]


def stored_dtype(value_dtype: np.dtype) -> np.dtype:
    """The dtype an undeclared result of ``value_dtype`` is stored with (kind, not width)."""
    return STORED[value_dtype.kind]


def fill_value(dtype: np.dtype):
    """The value rows without a result hold: NaN, the int's minimum (unsigned: maximum).

    None for bool, which has no value to spare: mask by /tasks/status.
    """
    if dtype.kind in "fc":
        return dtype.type(complex(np.nan, np.nan) if dtype.kind == "c" else np.nan)
    if dtype.kind == "i":
        return dtype.type(np.iinfo(dtype).min)
    if dtype.kind == "u":
        return dtype.type(np.iinfo(dtype).max)
    return None


def convert(key: str, arr: np.ndarray, dtype: np.dtype, declared: bool, task_id: int):
    """``arr`` as it goes into a ``dtype`` column; raise if it does not go in without loss.

    Undeclared: a kind other than the column's raises ResultError (the caller adds who
    set the column's kind); declared or not, a value that does not fit raises LossyResult.
    """
    if arr.dtype == dtype:
        return arr
    vk, dk = arr.dtype.kind, dtype.kind
    if not declared:
        if STORED[vk] != dtype:
            raise ResultError(f"task {task_id} returned {key!r} as {kind(arr.dtype)}")
        if vk == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise LossyResult(
                f"task {task_id} returned {key!r} = {arr.max()} ({arr.dtype}), above int64's "
                f"maximum; declare results = {{{key!r}: 'uint64'}} in the task file"
            )
        if arr.dtype.itemsize > dtype.itemsize:  # longdouble, clongdouble
            raise LossyResult(
                f"task {task_id} returned {key!r} as {arr.dtype}, which {dtype} cannot hold "
                f"without rounding; declare results = {{{key!r}: '{dtype}'}} to round it"
            )
        return arr
    if vk not in _ACCEPTS[dk]:
        raise LossyResult(
            f"task {task_id} returned {key!r} as {kind(arr.dtype)} ({arr.dtype}); the task "
            f"file declares it {dtype}, which holds no {kind(arr.dtype)} values"
        )
    with np.errstate(all="ignore"):
        out = arr.astype(dtype)
        lost = _int_loss(arr, dtype) if dk in "iu" else _float_loss(arr, out)
    if lost:
        raise LossyResult(
            f"task {task_id} returned {key!r} = {lost}; the task file declares it {dtype}, "
            "which cannot hold that without loss - declare a dtype that holds it"
        )
    return out


def _int_loss(arr: np.ndarray, dtype: np.dtype) -> str:
    """The first value of ``arr`` that the integer ``dtype`` cannot hold exactly, or ""."""
    info = np.iinfo(dtype)
    if arr.dtype.kind == "f":
        ok = np.isfinite(arr) & (arr == np.trunc(arr))
        ok &= (arr >= float(info.min)) & (arr < float(info.max) + 1.0)
    else:
        ok = (arr >= info.min) & (arr <= info.max)
    return "" if ok.all() else str(arr[~ok].flat[0] if arr.ndim else arr)


def _float_loss(arr: np.ndarray, out: np.ndarray) -> str:
    """An integer that does not round-trip, or a finite value that overflowed; else ""."""
    if arr.dtype.kind in "iu":
        bad = out.real.astype(arr.dtype) != arr
    else:
        bad = np.isinf(out) & np.isfinite(arr)
    return "" if not bad.any() else str(arr[bad].flat[0] if arr.ndim else arr)


def mixed_kinds(key: str, got: np.dtype, want: np.dtype, task_id: int, first: int) -> str:
    """One line: a key returned as two kinds of number (a schema error, whatever the order)."""
    hint = _HINT if kind(want) == "float" or kind(got) == "float" else "one kind"
    decl = want if kind(want) == "float" else got
    return (
        f"task {task_id} returned {key!r} as {kind(got)} ({got}); expected {kind(want)} as "
        f"task {first} returned - a result keeps one kind of number in every task (any width: "
        f"integers store as int64, floats as float64); return {hint} in every task, or "
        f"declare results = {{{key!r}: '{decl}'}} in the task file, or --results {key}={decl}"
    )


_FLAG_ITEM = re.compile(r"^\s*([^=\s]+)\s*=\s*([^\[\]]+?)\s*(?:\[([\d,\s]*)\])?\s*$")


def parse_results_flag(text: str) -> dict[str, Any]:
    """``--results 'v=float64,trace=ragged float32[2]'`` as a ``results = {...}`` dict
    (``{"v": "float64", "trace": ("ragged float32", (2,))}``); one line if it is bad."""
    items = re.split(r",(?![^\[]*\])", text)  # commas outside [..]
    out: dict[str, Any] = {}
    for item in items:
        match = _FLAG_ITEM.match(item)
        if match is None or not item.strip():
            raise UsageError(
                f"--results: expected KEY=TYPE items separated by commas, such as "
                f"'v=float64,trace=ragged float32[2]', got {item.strip()!r} in {text!r}"
            )
        key, kind, dims = match.groups()
        shape = tuple(int(d) for d in dims.split(",") if d.strip()) if dims is not None else None
        out[key] = kind if shape is None else (kind, shape)
    parse_declarations(out, "--results")  # each type checked now, in one line
    return out


def parse_declarations(spec: object, where: str = "the task file") -> dict[str, Declared]:
    """``results = {"x": "float32", "v": ("float64", (3,))}`` checked, as :class:`Declared`."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise TaskFileError(
            f"{where}'s results = {spec!r}; expected a dict of result dtypes like "
            "{'x': 'float32', 'v': ('float64', (3,))}"
        )
    for key in spec:
        problem = result_key_problem(key)
        if problem:
            raise TaskFileError(f"{where}'s results declares key {key!r}; {problem}")
    return {str(k): _declared(str(k), v, where) for k, v in spec.items()}


def _declared(key: str, spec: object, where: str) -> Declared:
    pair: Any = spec if isinstance(spec, tuple) and len(spec) == 2 else (spec, None)
    dtype_spec, shape = pair
    text = dtype_spec.strip() if isinstance(dtype_spec, str) else None
    if text and (text.split()[0] == RAGGED or text.startswith((STR, BYTES))):
        return _declared_other(key, spec, text, shape, where)
    try:
        dtype = np.dtype(dtype_spec)
        if isinstance(shape, int):
            shape = (shape,)
        elif shape is not None:
            shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biufc" or dtype.byteorder == ">":
        raise TaskFileError(
            f"{where}'s results declares {key!r} as {spec!r}; expected a numeric dtype name "
            "such as 'float32' or 'int16', or (dtype, shape) like ('float64', (3,))"
        )
    return Declared(dtype, shape)


def _declared_other(key: str, spec: object, text: str, shape: object, where: str) -> Declared:
    """A ragged, str or bytes declaration (``"ragged float32"``, ``"str"``, ``"str16"``)."""
    try:
        dims: Any = () if shape is None else (shape,) if isinstance(shape, int) else shape
        shape = tuple(int(n) for n in dims)
        words = text.split()
        if words[0] == RAGGED and len(words) == 2:
            inner = _declared(key, (words[1], shape), where)
            if inner.kind == FIXED:
                return Declared(inner.dtype, shape, RAGGED)
        kind = BYTES if text.startswith(BYTES) else STR
        width = text[len(kind) :]
        if len(words) == 1 and (width == "" or width.isdigit() and int(width) > 0):
            return Declared(np.dtype(f"S{width}") if width else VARIABLE, shape, kind)
    except (TypeError, ValueError, TaskFileError):
        pass
    raise TaskFileError(
        f"{where}'s results declares {key!r} as {spec!r}; expected 'ragged <dtype>' "
        "(e.g. 'ragged float64', or ('ragged float32', (3,)) for rows of shape (k, 3)), "
        "'str', 'str<N>' (at most N bytes), 'bytes' or 'bytes<N>', optionally with a shape"
    )


def declarations_of(fn: object, override: object = None) -> dict[str, Declared]:
    """The result dtypes the module defining task function ``fn`` declares (``results``).

    Only a dict counts: a script's ``results = mpibatch.run(...)`` (not yet assigned while
    the run goes) or any other non-dict ``results`` is not a declaration.
    """
    if override is not None:  # mpibatch.run(results=...) wins over the task file's
        return parse_declarations(override, "mpibatch.run(results=...)")
    spec = getattr(fn, "__globals__", {}).get("results")
    if not isinstance(spec, Mapping):
        return {}
    return parse_declarations(spec, getattr(fn, "__module__", None) or "the task file")
